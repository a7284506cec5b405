"""The library's exceptions: a leaf module that every other module may import.

They are defined here, below everything, so that the transports
(``_connection``, ``_handshake``...) can raise them without importing the
context, which wires the whole API together and imports them back.  Their
public home is ``mp_core.context`` (re-exported as ``multiprocess.context``
and at the top of ``multiprocess``), as the standard library's live in
``multiprocessing.context``: each class says so in ``__module__``, so that
reprs, tracebacks and pickles (which name a class by module and qualified
name) read ``mp_core.context.TimeoutError`` as they did before the move, and a
pickle made by one version of the library loads in another.
"""

from __future__ import annotations

__all__ = ["ProcessError", "BufferTooShort", "TimeoutError", "AuthenticationError"]

# The public home of these classes (see the module docstring).
_PUBLIC_MODULE = "mp_core.context"


class ProcessError(Exception):
    """Base class of this library's errors."""

    __module__ = _PUBLIC_MODULE


class BufferTooShort(ProcessError):
    """``recv_bytes_into`` got a message larger than the buffer.

    ``args[0]`` is the whole message, as bytes.
    """

    __module__ = _PUBLIC_MODULE


class TimeoutError(ProcessError):  # the stdlib's name: it shadows the builtin, as there
    """An operation with a timeout did not complete in time."""

    __module__ = _PUBLIC_MODULE


class AuthenticationError(ProcessError):
    """The peer of a connection failed (or refused) authentication."""

    __module__ = _PUBLIC_MODULE

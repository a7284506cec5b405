"""Run-time stand-ins for ``typing.Generic`` and ``typing.Protocol``.

A program's first ``Pool`` imports the pool's modules, and importing
``typing`` (with ``contextlib``) costs it about 3 ms: more than the
standard library's whole difference.  Type checkers read the real ones
(the modules import them under ``TYPE_CHECKING``); at run time these do
what the classes need of them: ``AsyncResult[int]`` is a
``types.GenericAlias``, as ``multiprocessing.pool.AsyncResult[int]`` is.
"""

from __future__ import annotations

import types

__all__ = ["Generic", "Protocol", "T"]


class Generic:
    """A class that can be subscripted (``C[int]``) and subclassed subscripted (``class D(C[T])``)."""

    __slots__ = ()
    __class_getitem__ = classmethod(types.GenericAlias)  # type: ignore[var-annotated]


class Protocol:
    """A base that says what an interface offers; nothing at run time."""

    __slots__ = ()


#: The type parameter's stand-in in run-time subscriptions (``Generic[T]``).
T = "T"

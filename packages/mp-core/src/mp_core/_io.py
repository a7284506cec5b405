"""Moving bytes between buffers and a descriptor with as few system calls and copies as we can.

Every writer and reader of the wire format (``Connection``, the pool's task
and result pipes, the managers' message stream) goes through these
functions; none calls ``writev``/``readv`` on its own.  Not every
interpreter has them: PyPy 3.9 has neither ``os.writev`` nor ``os.readv``
(nor ``os.readinto``, which only CPython 3.14 adds).  The way each job is
done is chosen once, when this module is imported:

* **writing several buffers** (a frame is a size header and one or more
  pickle blocks): one ``writev`` of up to ``IOV_MAX`` buffers per system
  call.  Without ``writev``, the small buffers at the head of the list are
  joined into one ``write`` of at most ``JOIN_LIMIT`` bytes (a copy that
  costs less than the system calls it saves), and a buffer above that
  goes out in a ``write`` of its own, never copied;
* **reading into a buffer**: ``os.readv`` with one buffer (or 3.14's
  ``os.readinto``), which fills it in place.  Without them, ``readinto``
  of an unbuffered ``FileIO`` over the descriptor (not closing it), which
  fills the buffer in place too: ``os.read`` followed by a copy runs at a
  fifth of that speed on PyPy for large payloads.

``os.write`` is looked up at each call (not bound at import), so that a
test can watch the writes.
"""

from __future__ import annotations

import errno
import io
import itertools
import os
from collections import deque

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, Callable, Sequence

__all__ = ["write_buffers", "write_available", "readinto", "HAVE_WRITEV", "HAVE_READV", "IOV_MAX", "JOIN_LIMIT"]

#: The most buffers handed to one ``writev`` (POSIX guarantees at least 16; Linux takes 1024).
IOV_MAX = 64
#: Without ``writev``: small buffers are joined into one write of at most this many bytes.
JOIN_LIMIT = 64 * 1024

HAVE_WRITEV = hasattr(os, "writev")
HAVE_READV = hasattr(os, "readv")


# ---------------------------------------------------------------- one write


def _write_head_writev(fd: int, buffers: Sequence[Any]) -> int:
    """Write the head of ``buffers`` (non-empty views) with one ``writev``; return the bytes written."""
    if len(buffers) == 1:
        return os.write(fd, buffers[0])
    return os.writev(fd, list(itertools.islice(buffers, IOV_MAX)))


def _write_head_joined(fd: int, buffers: Sequence[Any]) -> int:
    """Write the head of ``buffers`` with one ``write``, joining the small buffers in front.

    The first buffer goes alone when it is large (or alone in the list);
    otherwise as many of the following buffers are joined to it as fit in
    ``JOIN_LIMIT`` bytes.
    """
    first = buffers[0]
    total = len(first)
    if total >= JOIN_LIMIT or len(buffers) == 1:
        return os.write(fd, first)
    count = 1
    for buffer in itertools.islice(buffers, 1, IOV_MAX):
        size = len(buffer)
        if total + size > JOIN_LIMIT:
            break
        total += size
        count += 1
    if count == 1:
        return os.write(fd, first)
    return os.write(fd, b"".join(itertools.islice(buffers, count)))


#: Writes the head of a list of non-empty byte views in one system call and
#: returns how many bytes the kernel took.  Tests replace it with
#: ``_write_head_joined`` to run the path of interpreters without ``writev``.
_write_head: Callable[[int, Sequence[Any]], int] = _write_head_writev if HAVE_WRITEV else _write_head_joined


def _consume(buffers: deque[Any], written: int) -> None:
    """Drop the first ``written`` bytes from the front of ``buffers``."""
    while written:
        size = len(buffers[0])
        if written >= size:
            written -= size
            buffers.popleft()
        else:
            buffers[0] = memoryview(buffers[0])[written:]
            return


def _byte_view(buffer: Any) -> memoryview:
    view = memoryview(buffer)
    if view.itemsize != 1 or view.ndim != 1:
        view = view.cast("B")
    return view


# ---------------------------------------------------------------- writers


def write_buffers(fd: int, buffers: Sequence[Any]) -> None:
    """Write every byte of ``buffers`` (bytes-like objects) to the blocking ``fd``, in order.

    A message made of several parts is written without first being joined
    into one buffer (``writev``), or, where the interpreter has no
    ``writev``, with its small parts joined and its large ones written
    one by one.  Returns when everything is written; ``OSError`` from the
    descriptor propagates (what was written by then stays written).
    """
    pending = deque(_byte_view(b) for b in buffers if len(b))
    while pending:
        _consume(pending, _write_head(fd, pending))


def write_available(fd: int, outbox: deque[Any]) -> bool:
    """Write what the non-blocking ``fd`` takes of the byte buffers in ``outbox``, in order.

    Written bytes are removed from the front of ``outbox`` (``bytes`` or
    byte memoryviews; a partly written buffer is replaced by a view of its
    rest).  Stops when ``outbox`` is empty or the descriptor is full.
    Returns whether ``outbox`` is empty.  ``OSError`` other than a full
    descriptor (``BlockingIOError``) propagates.
    """
    while outbox:
        if not len(outbox[0]):
            outbox.popleft()
            continue
        try:
            written = _write_head(fd, outbox)
        except BlockingIOError:
            return False
        _consume(outbox, written)
    return True


# ---------------------------------------------------------------- reader


def _readinto_readv(fd: int, view: memoryview) -> int:
    return os.readv(fd, [view])


def _readinto_file(fd: int, view: memoryview) -> int:
    with io.FileIO(fd, "rb", closefd=False) as file:
        try:
            count = file.readinto(view)
        except TypeError:
            # PyPy refuses a slice of a cast memoryview (the byte view of an
            # array) as a writable buffer: read, then copy into it.
            data = os.read(fd, len(view))
            view[: len(data)] = data
            return len(data)
    if count is None:  # FileIO's answer for "would block"; os.readv raises instead
        raise BlockingIOError(errno.EAGAIN, "read would block")
    return count


_os_readinto = getattr(os, "readinto", None)

#: ``readinto(fd, view)``: one ``read`` system call filling the front of the
#: writable byte view ``view``; returns the number of bytes read, 0 at end of
#: file.  ``BlockingIOError`` when a non-blocking ``fd`` has nothing, as
#: ``os.read`` does.
readinto: Callable[[int, memoryview], int]
if HAVE_READV:
    readinto = _readinto_readv
elif _os_readinto is not None:  # pragma: no cover - CPython 3.14 without readv (Windows)
    readinto = _os_readinto
else:
    readinto = _readinto_file

"""``FrameReader``: many frames of the wire format per ``read`` system call, with bounded memory.

The wire format is ``_connection``'s (the standard library's): a 4-byte
big-endian signed size, or -1 and an 8-byte unsigned size, then the
payload.  ``Connection.recv_bytes`` reads one message with two reads
(header, then payload) and never reads ahead, which is right for a general
connection.  A channel that carries only such frames and has one reader
(a pool worker's pipes, a manager connection once authenticated) can read
ahead: one ``read`` of up to ``READ_SIZE`` bytes yields every frame that is
waiting, each returned as a view into the block read (no copy).  The rest
of a frame cut by the end of a read is read straight into a buffer of its
size.

The reader works on a non-blocking descriptor (``read_available``, for an
event loop, which must never block on one peer) or a blocking one
(``next_frame``, for a process waiting for its next message).

A corrupt stream is an error, never a hang or a flood of memory:

* a header with any negative size but the long marker -1, or a long size
  beyond what one buffer can hold, stops the reader with
  ``BadMessageLength`` (``error``), after the frames before it;
* the buffer of a cut frame is committed by the system page by page as
  it is written (``PayloadBuffer``), so a bare
  header announcing gigabytes costs nothing until they come, and a size
  that cannot be allocated at all is a ``BadMessageLength``;
* the owner can look at the first bytes of a frame still being completed
  (``pending_head``) to tell a valid frame from garbage before the rest
  arrives (the pool checks the task id there).
"""

from __future__ import annotations

import io
import mmap
import os
import struct
import sys
from collections import deque
from typing import Any, Optional, Union

from . import _io

__all__ = ["FrameReader", "PayloadBuffer", "BadMessageLength", "READ_SIZE", "MAX_MESSAGE_SIZE"]

READ_SIZE = 256 * 1024
#: The largest size a header may announce: what one buffer can hold.
MAX_MESSAGE_SIZE = sys.maxsize
_SHORT = struct.Struct("!i")
_LONG = struct.Struct("!Q")

Payload = Union[memoryview, bytes]


class BadMessageLength(OSError):
    """A message header announced a size that is refused (or is malformed).

    An ``OSError`` as in the standard library; its own type lets the
    authentication handshake tell it from other I/O errors.
    """


class _ExportingBytesIO(io.BytesIO):
    """A BytesIO whose ``close`` tolerates a view still exported.

    A ``PayloadBuffer`` dropped before it was filled (a stream cut short,
    an exception whose traceback forms a reference cycle) can reach the
    garbage collector together with its view; the IOBase finalizer then
    calls ``close()``, which would fail with ``BufferError`` and be
    reported as an unraisable exception.  The memory is freed either way
    once the view is cleared.
    """

    def close(self) -> None:
        try:
            super().close()
        except BufferError:
            pass


#: CPython builds ``bytes(n)`` with ``calloc``: untouched pages of a big
#: buffer are never committed.  Other interpreters (PyPy) zero-fill it,
#: committing every page at once; there an anonymous mapping, committed page
#: by page as it is written, holds the payload instead.
_LAZY_BYTES = sys.implementation.name == "cpython"


class PayloadBuffer:
    """A buffer for one message of ``size`` bytes, filled in place through ``view``.

    Its memory is committed only as bytes are written to it (``calloc`` on
    CPython, an anonymous ``mmap`` elsewhere), so a header announcing
    gigabytes costs nothing until they arrive; ``take()`` returns the filled
    buffer as ``bytes`` (without a copy on CPython).  Raises
    ``BadMessageLength`` for a size that cannot be allocated (too big for
    this machine).
    """

    __slots__ = ("_holder", "view")

    def __init__(self, size: int) -> None:
        holder: Union[_ExportingBytesIO, mmap.mmap, None] = None
        try:
            if _LAZY_BYTES or not size:
                # The buffer of a BytesIO built from a bytes object of the
                # right size is that very object: getbuffer() writes into it
                # and getvalue() hands it back without a copy.
                holder = _ExportingBytesIO(bytes(size))
                self.view = holder.getbuffer()
            else:
                holder = mmap.mmap(-1, size)
                self.view = memoryview(holder)
        except (MemoryError, OverflowError, OSError, ValueError) as exc:
            raise BadMessageLength(
                f"a message of {size} bytes was announced, which cannot be allocated ({type(exc).__name__})"
            ) from None
        self._holder = holder

    def take(self) -> bytes:
        """The message; the buffer is not usable afterwards."""
        self.view.release()
        holder = self._holder
        if isinstance(holder, mmap.mmap):
            data = holder[:]
            holder.close()
            return data
        return holder.getvalue()


def _bad_header(size: int) -> BadMessageLength:
    if size < 0:
        return BadMessageLength(f"malformed message header (size {size}; only -1 marks a long header)")
    return BadMessageLength(f"a message of {size} bytes was announced (at most {MAX_MESSAGE_SIZE})")


class FrameReader:
    """Splits the byte stream of a descriptor into frame payloads.

    Frames come back as read-only memoryviews into the block that was read
    (no copy per frame); a frame that was cut by the end of a read gets a
    ``PayloadBuffer`` of its own, completed in place by the next reads and
    returned as ``bytes``.  After a malformed header, ``error`` holds the
    ``BadMessageLength`` and ``eof`` is set: the stream cannot be trusted
    past it.
    """

    __slots__ = ("fd", "eof", "error", "_data", "_pos", "_head", "_partial", "_got", "_ready", "_short")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.eof = False
        self.error: Optional[BadMessageLength] = None
        self._data = b""  # the block last read, parsed up to _pos
        self._pos = 0
        self._head = b""  # a size header cut in two by the end of a read
        self._partial: Optional[PayloadBuffer] = None  # the frame being completed in place
        self._got = 0
        self._ready: deque[Payload] = deque()
        self._short = False  # the last read got less than it asked for

    def read_available(self) -> list[Payload]:
        """Read what a non-blocking descriptor holds; return the frames completed (sets ``eof``)."""
        out: list[Payload] = []
        try:
            # Read until a read comes back short: the descriptor is then
            # empty (usually after one read of every frame that was waiting).
            while not self.eof and self._fill():
                self._parse(out)
                if self._short:
                    break
        except BlockingIOError:
            pass
        return out

    def next_frame(self) -> Payload:
        """The next frame of a blocking descriptor.

        Raises ``EOFError`` at end of file, ``BadMessageLength`` (for good)
        once a malformed header was met.
        """
        ready = self._ready
        while not ready:
            if self.error is not None:
                raise self.error
            if self.eof or not self._fill():
                raise EOFError
            self._parse(ready)
        return ready.popleft()

    def pending_head(self, count: int) -> Optional[bytes]:
        """The first ``count`` bytes of the frame being completed, once they have arrived (else ``None``)."""
        partial = self._partial
        if partial is None or self._got < count:
            return None
        return bytes(partial.view[:count])

    def _fill(self) -> bool:
        """One read; false (and ``eof`` set) at end of file."""
        partial = self._partial
        if partial is not None:
            wanted = len(partial.view) - self._got
            count = _io.readinto(self.fd, partial.view[self._got :])
            if not count:
                self.eof = True
                return False
            self._got += count
            self._short = count < wanted
            return True
        data = os.read(self.fd, READ_SIZE)
        if not data:
            self.eof = True
            return False
        self._short = len(data) < READ_SIZE
        if self._head:
            data = self._head + data  # rare: at most 11 bytes were left over
            self._head = b""
        self._data = data
        self._pos = 0
        return True

    def _parse(self, out: Any) -> None:
        partial = self._partial
        if partial is not None:
            if self._got < len(partial.view):
                return
            out.append(partial.take())
            self._partial = None
        data = self._data
        pos = self._pos
        end = len(data)
        view = memoryview(data)
        while pos < end:
            if end - pos < 4:
                break
            size = _SHORT.unpack_from(data, pos)[0]
            start = pos + 4
            if size < 0:
                if size != -1:
                    self._fail(_bad_header(size))
                    return
                if end - pos < 12:
                    break
                size = _LONG.unpack_from(data, start)[0]
                if size > MAX_MESSAGE_SIZE:
                    self._fail(_bad_header(size))
                    return
                start += 8
            have = end - start
            if have >= size:
                out.append(view[start : start + size])
                pos = start + size
            else:
                try:
                    partial = PayloadBuffer(size)
                except BadMessageLength as exc:
                    self._fail(exc)
                    return
                partial.view[:have] = view[start:end]
                self._partial = partial
                self._got = have
                pos = end
        # What is left is a cut header (or nothing): keep it for the next read.
        self._head = bytes(view[pos:end]) if pos < end else b""
        self._data = b""
        self._pos = 0

    def _fail(self, error: BadMessageLength) -> None:
        # The frames parsed before the bad header stand; nothing after it does.
        self.error = error
        self.eof = True
        self._data = self._head = b""
        self._pos = 0

"""The wire format: framed messages over a byte stream, read and written in one place.

Every channel of this project carries the same frames, the standard
library's ``multiprocessing.connection`` format (byte for byte, so that
either end may be the stdlib's ``Connection``): a size header, then the
payload::

    short form, 0 <= size <= 2**31 - 1 (MAX_SHORT_SIZE):
    +-------------------------+------------------------+
    | size: int32 big-endian  | payload: size bytes    |
    +-------------------------+------------------------+
       4 bytes

    long form, size >= 2**31 (the stdlib writes it only there):
    +-------------------------+-------------------------+---------------------+
    | -1: int32 big-endian    | size: uint64 big-endian | payload: size bytes |
    +-------------------------+-------------------------+---------------------+
       4 bytes                   8 bytes

Any other negative int32 is a malformed header; a long size beyond what one
buffer can hold (``MAX_MESSAGE_SIZE``) is refused.  Readers accept a long
header for any size, as the stdlib does; writers use it only above
``MAX_SHORT_SIZE`` (``message_header``).

What lives here, used by ``Connection`` (``mp_core._connection``), the
pool's worker channels (``mp_pool._wire``, ``_transport``, ``_worker``) and
the managers' message stream (``mp_managers._wire``):

* ``message_header`` / ``short_size`` / ``long_size``: the header, encoded
  and decoded, with one boundary rule and one set of error messages;
* ``write_message``: one framed message to a blocking descriptor;
* ``Outbox``: frames queued for a non-blocking descriptor, written as far as
  it takes them (an event loop must never block on one peer);
* ``FrameReader``: many frames per ``read`` system call, with bounded
  memory (below);
* ``PayloadBuffer``: the buffer of one large message, committed page by
  page as it is written.

The system calls under them (``writev`` where the interpreter has it,
reading in place) are ``mp_core._io``'s, which knows nothing of frames.

``FrameReader``: ``Connection.recv_bytes`` reads one message with two reads
(header, then payload) and never reads ahead, which is right for a general
connection.  A channel that carries only frames and has one reader (a pool
worker's pipes, a manager connection once authenticated) can read ahead:
one ``read`` of up to ``read_size`` bytes yields every frame that is
waiting, each returned as a view into the block read (no copy).  The rest
of a frame cut by the end of a read is read straight into a buffer of its
size.  The reader works on a non-blocking descriptor (``read_available``,
for an event loop) or a blocking one (``next_frame``, for a process waiting
for its next message).

A corrupt stream is an error, never a hang or a flood of memory:

* a header with any negative size but the long marker -1, or a long size
  beyond what one buffer can hold, stops the reader with
  ``BadMessageLength`` (``error``), after the frames before it;
* the buffer of a cut frame is committed by the system page by page as
  it is written (``PayloadBuffer``), so a bare
  header announcing gigabytes costs nothing until they come, and a size
  that cannot be allocated at all is a ``BadMessageLength``;
* end of file in the middle of a frame is ``EOFError("got end of file
  during message")``, at a frame boundary a bare ``EOFError``;
* the owner can look at the first bytes of a frame still being completed
  (``pending_head``) to tell a valid frame from garbage before the rest
  arrives (the pool checks the task id there).
"""

from __future__ import annotations

import errno
import io
import mmap
import os
import struct
import sys
from collections import deque

from . import _io

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, Callable, Iterable, Optional, Union

    Payload = Union[memoryview, bytes]

__all__ = [
    "BadMessageLength",
    "FrameReader",
    "Outbox",
    "PayloadBuffer",
    "joined_messages",
    "message_header",
    "short_size",
    "long_size",
    "write_message",
    "write_message_with_descriptors",
    "SHORT_HEADER",
    "SHORT_HEADER_SIZE",
    "LONG_HEADER_SIZE",
    "LONG_FOLLOWS",
    "DESCRIPTORS_FOLLOW",
    "MAX_FRAME_DESCRIPTORS",
    "MAX_SHORT_SIZE",
    "MAX_MESSAGE_SIZE",
    "READ_SIZE",
]

#: The 4-byte header: a big-endian signed size (or ``LONG_FOLLOWS``).
SHORT_HEADER = struct.Struct("!i")
SHORT_HEADER_SIZE = SHORT_HEADER.size
#: The size after the long marker: big-endian unsigned, 8 bytes.
_LONG_SIZE = struct.Struct("!Q")
#: The marker and the 8-byte size of the long form.
LONG_HEADER_SIZE = SHORT_HEADER_SIZE + _LONG_SIZE.size
#: The value of the 4-byte header that announces an 8-byte size behind it.
LONG_FOLLOWS = -1
_LONG_MARKER = SHORT_HEADER.pack(LONG_FOLLOWS)
#: The value of the 4-byte header that announces a frame carrying descriptors
#: (only between two of our ``Pipe()`` ends: see ``write_message_with_descriptors``).
DESCRIPTORS_FOLLOW = -2
#: At most this many descriptors ride with one frame (the kernel's own limit is 253).
MAX_FRAME_DESCRIPTORS = 64
_DESCRIPTORS_MARKER = SHORT_HEADER.pack(DESCRIPTORS_FOLLOW)
#: The largest size written with the short header: the stdlib's writer
#: switches to the long form only above it (``n > 0x7fffffff``).
MAX_SHORT_SIZE = 0x7FFFFFFF
#: The largest size a header may announce: what one buffer can hold.
MAX_MESSAGE_SIZE = sys.maxsize
#: How much a ``FrameReader`` asks for per read by default.
READ_SIZE = 64 * 1024

# write_message: messages up to this size are joined to their header and go
# out in one write (a copy cheaper than a second system call); up to
# _VECTOR_MESSAGE, header and payload go out together without a copy
# (writev); beyond it, separately.
_SMALL_MESSAGE = 16 * 1024
_VECTOR_MESSAGE = 64 * 1024


# ---------------------------------------------------------------- the header


class BadMessageLength(OSError):
    """A message header announced a size that is refused (or is malformed).

    An ``OSError`` as in the standard library; its own type lets the
    authentication handshake tell it from other I/O errors.
    """


def message_header(size: int) -> bytes:
    """The header in front of a payload of ``size`` bytes: 4 bytes, or 12 above ``MAX_SHORT_SIZE``."""
    return SHORT_HEADER.pack(size) if size <= MAX_SHORT_SIZE else _LONG_MARKER + _LONG_SIZE.pack(size)


def joined_messages(payloads: list) -> bytes:
    """``payloads`` as one buffer of messages, each behind its own header: many messages in one write.

    A reader sees exactly the messages it would see had each been written on
    its own; batching writers (the queue feeder) use it for small payloads.
    """
    parts = []
    for payload in payloads:
        parts.append(message_header(len(payload)))
        parts.append(payload)
    return b"".join(parts)


def short_size(data: Any, offset: int = 0) -> int:
    """The size in the 4-byte header at ``offset`` of ``data``: a size, or ``LONG_FOLLOWS``.

    Raises ``BadMessageLength`` for any other negative value.
    """
    size: int = SHORT_HEADER.unpack_from(data, offset)[0]
    if size < 0 and size != LONG_FOLLOWS:
        raise BadMessageLength(f"malformed message header (size {size}; only -1 marks a long header)")
    return size


def long_size(data: Any, offset: int = 0) -> int:
    """The 8-byte size at ``offset`` of ``data`` (behind the long marker).

    Raises ``BadMessageLength`` for a size beyond ``MAX_MESSAGE_SIZE``.
    """
    size: int = _LONG_SIZE.unpack_from(data, offset)[0]
    if size > MAX_MESSAGE_SIZE:
        raise BadMessageLength(f"a message of {size} bytes was announced (at most {MAX_MESSAGE_SIZE})")
    return size


# ---------------------------------------------------------------- writing


def write_message(fd: int, payload: Any) -> None:
    """Write ``payload`` (bytes or a 1-D byte memoryview) to the blocking ``fd`` as one frame.

    A small payload is joined to its header (one ``write``); a larger one
    is never copied: up to 64 KiB it goes out with its header in one
    ``writev``, beyond that header and payload are written separately, so
    the payload starts aligned in the kernel's buffers.  ``OSError``
    propagates (what was written by then stays written).
    """
    size = len(payload)
    if size <= _SMALL_MESSAGE:
        data = SHORT_HEADER.pack(size) + payload
        written = os.write(fd, data)
        if written != len(data):
            _io.write_buffers(fd, [memoryview(data)[written:]])
    elif size <= _VECTOR_MESSAGE:
        _io.write_buffers(fd, [SHORT_HEADER.pack(size), payload])
    else:
        # Its own write keeps the payload at the start of the kernel's
        # socket/pipe buffers: behind a 4-byte header, every byte is copied
        # in and out of the kernel misaligned, which costs up to a third of
        # the bandwidth between two cores.
        _io.write_buffers(fd, [message_header(size)])
        _io.write_buffers(fd, [payload])


def write_message_with_descriptors(
    fd: int, payload: Any, descriptors: list[int], without_descriptors: Callable[[], Any]
) -> None:
    """Write ``payload`` to the blocking Unix stream socket ``fd`` as one frame carrying ``descriptors``.

    The frame is the marker ``DESCRIPTORS_FOLLOW`` (written alone), then the
    8-byte size and the payload, with the descriptors attached (``SCM_RIGHTS``)
    to the first byte of the size.  A reader that reads the 4-byte header
    with a plain ``read`` stops before the descriptors (a stream socket
    never hands out bytes of two ``sendmsg`` calls' worth of ancillary data
    in one read); on the marker it reads the size with ``recvmsg`` and
    receives them, or with a plain ``read``, and the kernel closes them.
    Two system calls more than ``write_message``: only large buffers travel
    this way.  The caller still owns (and closes) ``descriptors``.

    If the kernel refuses the descriptors (``ETOOMANYREFS``: too many in
    flight for this user), the frame is finished with the payload that
    ``without_descriptors()`` makes instead, and none ride with it.
    """
    import array
    import socket

    from .util import socket_over_fd

    _io.write_buffers(fd, [_DESCRIPTORS_MARKER])
    head = [_LONG_SIZE.pack(len(payload)), payload]
    sock = socket_over_fd(fd)
    try:
        sent = sock.sendmsg(head, [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", descriptors))])
    except OSError as exc:
        if exc.errno != errno.ETOOMANYREFS:
            raise
        payload = without_descriptors()
        head = [_LONG_SIZE.pack(len(payload)), payload]
        sent = 0
    finally:
        sock.detach()
    rest = sent - _LONG_SIZE.size
    if rest < 0:
        _io.write_buffers(fd, [head[0][sent:], payload])
    elif rest < len(payload):
        _io.write_buffers(fd, [memoryview(payload)[rest:]])


class Outbox:
    """Frames waiting to be written to a non-blocking descriptor, in order.

    ``put(frame)`` queues a frame given as buffers (a header and payload
    blocks: what ``mp_pool._wire`` builds), after everything queued before;
    ``flush`` writes as much as the descriptor takes now (one ``writev`` of
    many frames where it can) and keeps the rest, a partly written buffer
    as a view of its tail, for the next ``flush``.  Nothing blocks: a full
    descriptor (``EAGAIN``) just ends the ``flush``.  The buffers must not
    change until written.
    """

    __slots__ = ("fd", "_buffers", "put")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffers: deque[Any] = deque()
        # A pool queues a frame per task: the deque's own method, no Python call.
        self.put: Callable[[Iterable[Any]], None] = self._buffers.extend

    def flush(self) -> bool:
        """Write what the descriptor takes; return whether everything is written.

        ``OSError`` other than a full descriptor (a closed reader: EPIPE)
        propagates; what was not written stays queued.
        """
        return _io.write_available(self.fd, self._buffers)

    def clear(self) -> None:
        """Drop what is not written yet (the reader is gone)."""
        self._buffers.clear()

    def __bool__(self) -> bool:
        return bool(self._buffers)

    def __len__(self) -> int:
        """The number of bytes waiting."""
        return sum(map(len, self._buffers))


# ---------------------------------------------------------------- reading


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


class FrameReader:
    """Splits the byte stream of a descriptor into frame payloads.

    Frames come back as read-only memoryviews into the block that was read
    (no copy per frame); a frame that was cut by the end of a read gets a
    ``PayloadBuffer`` of its own, completed in place by the next reads and
    returned as ``bytes``.  After a malformed header, ``error`` holds the
    ``BadMessageLength`` and ``eof`` is set: the stream cannot be trusted
    past it.  ``read_size``: the most bytes asked for per read.
    """

    __slots__ = ("fd", "eof", "error", "_read_size", "_data", "_pos", "_head", "_partial", "_got", "_ready", "_short")

    def __init__(self, fd: int, read_size: int = READ_SIZE) -> None:
        self.fd = fd
        self._read_size = read_size
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

        Raises ``EOFError`` at end of file (saying so when it cut a frame),
        ``BadMessageLength`` (for good) once a malformed header was met.
        """
        ready = self._ready
        if not ready and self._partial is None and not self._head and not self.eof:
            # A request/reply stream (the managers') mostly reads exactly one
            # whole short frame per read: hand it out without the general parse.
            data = os.read(self.fd, self._read_size)
            count = len(data)
            self._short = count < self._read_size
            if count >= SHORT_HEADER_SIZE and SHORT_HEADER.unpack_from(data)[0] == count - SHORT_HEADER_SIZE:
                return memoryview(data)[SHORT_HEADER_SIZE:]
            if not data:
                self.eof = True
            else:
                self._data = data
                self._pos = 0
                self._parse(ready)
        while not ready:
            if self.error is not None:
                raise self.error
            if self.eof or not self._fill():
                if self._partial is not None or self._head:
                    raise EOFError("got end of file during message")
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
        data = os.read(self.fd, self._read_size)
        if not data:
            self.eof = True
            return False
        self._short = len(data) < self._read_size
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
        unpack = SHORT_HEADER.unpack_from
        while pos < end:
            if end - pos < SHORT_HEADER_SIZE:
                break
            size = unpack(data, pos)[0]
            start = pos + SHORT_HEADER_SIZE
            if size < 0:
                # Rare (a payload of 2 GiB or more, or garbage): the checks
                # and the messages are short_size's and long_size's.
                try:
                    short_size(data, pos)
                    if end - pos < LONG_HEADER_SIZE:
                        break
                    size = long_size(data, start)
                except BadMessageLength as exc:
                    self._fail(exc)
                    return
                start = pos + LONG_HEADER_SIZE
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

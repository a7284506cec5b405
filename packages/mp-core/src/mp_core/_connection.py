"""``Connection`` and ``Pipe``: framed messages over a file descriptor.

The wire format is ``mp_core._framing``'s (the standard library's, so that
both interoperate: a 4-byte size, or -1 and an 8-byte size, then the
payload).

Copies and system calls, per message:

* sending is ``_framing.write_message``: a small message (up to 16 KiB)
  joined to its header in one ``write``; a larger one never copied into a
  new buffer;
* receiving reads the header, then the payload: a small payload with one
  ``read``; a large one from a socket with one ``recv(MSG_WAITALL)`` into
  a fresh ``bytes`` (never zeroed first), from a pipe into a single buffer
  of the announced size, read into in place, and returned as ``bytes``
  without a final copy;
  ``recv_bytes_into`` reads straight into the caller's buffer.

Between the two ends of a ``Pipe()`` (a Unix socket pair), a message whose
large buffers travel as memory files carries their descriptors
(``_framing.write_message_with_descriptors``); ``recv`` reads them with the
message and hands them to the envelope's loader (``mp_core._fd_segments``),
and ``recv_bytes`` leaves them to the kernel, which closes them.

Receiving never reads past the end of the current message.  A read-ahead
buffer would save one ``read`` per message, but bytes sitting in it are
invisible to ``select``/``poll``/asyncio readers watching ``fileno()``, and
descriptors passed with ``send_handle`` right after a message would be
swallowed (and closed by the kernel) by a plain read.
"""

from __future__ import annotations

import _socket  # the C module under socket: its constants and socketpair without socket.py's enums (ms of import)
import fcntl
import math
import os
import select
import stat
import sys
import threading
import time

from . import _io, _out_of_band, reduction, util
from ._challenge_response import _CHALLENGE  # what a keyed listener sends first
from ._exceptions import AuthenticationError, BufferTooShort
from ._framing import (
    DESCRIPTORS_FOLLOW,
    LONG_FOLLOWS,
    MAX_FRAME_DESCRIPTORS,
    SHORT_HEADER,
    SHORT_HEADER_SIZE,
    BadMessageLength,
    PayloadBuffer,
    long_size,
    short_size,
    write_message,
    write_message_with_descriptors,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, NoReturn, Optional

__all__ = [
    "Connection",
    "Pipe",
    "reduce_connection",
    "rebuild_connection",
    "BUFSIZE",
]

#: Kept for compatibility with code that reads it; framing does not use it.
BUFSIZE = 8192

# Payloads up to this size are read with os.read (which allocates the result
# itself); larger ones into one preallocated buffer.
_SMALL_READ = 64 * 1024

_MSG_WAITALL: Optional[int] = getattr(_socket, "MSG_WAITALL", None)

# An OS pipe defaults to 64 KiB on Linux; a larger one lets the writer run
# ahead of the reader with fewer context switches.  Pipe buffers count
# against a per-user quota (fs.pipe-user-pages-soft, 64 MiB by default);
# once it is exceeded the kernel gives *every* new pipe of that user a tiny
# buffer, so each process enlarges a bounded number of pipes at a time.
_PIPE_BUFFER_SIZE = 1 << 20
_MAX_ENLARGED_PIPES = 16
_SOCKET_BUFFER_SIZE = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031 if sys.platform.startswith("linux") else None)
_enlarged_pipes = 0
_enlarged_lock = threading.Lock()


class _ConnectionBase:
    """A message-oriented, two-way or one-way connection over a handle.

    Subclasses provide the transport: ``_write_frame``, ``_read_header``,
    ``_read_payload``, ``_read_into``, ``_poll`` and ``_close``.
    """

    _handle: Optional[int] = None
    # Whether both ends are ours and a Unix socket pair (``Pipe()``): large
    # buffers then travel as memory files whose descriptors ride with the
    # message.  ``_carrier``: what the sending side keeps for them.
    _passes_fds = False
    _carrier: Optional[_out_of_band.Carrier] = None

    def __init__(self, handle: int, readable: bool = True, writable: bool = True) -> None:
        handle = handle.__index__()
        if handle < 0:
            raise ValueError("invalid handle")
        if not readable and not writable:
            raise ValueError("at least one of `readable` and `writable` must be True")
        self._handle = handle
        self._readable = readable
        self._writable = writable

    def __del__(self) -> None:
        if self._handle is not None:
            self._close()

    # ------------------------------------------------------------ state

    def _check_closed(self) -> None:
        if self._handle is None:
            raise OSError("handle is closed")

    def _check_readable(self) -> None:
        if not self._readable:
            raise OSError("connection is write-only")

    def _check_writable(self) -> None:
        if not self._writable:
            raise OSError("connection is read-only")

    def _bad_message_length(self, message: str = "bad message length") -> NoReturn:
        # The unread payload leaves the stream out of step: no further
        # message can be read from it.
        if self._writable:
            self._readable = False
        else:
            self.close()
        raise BadMessageLength(message)

    @property
    def closed(self) -> bool:
        """True if the connection is closed."""
        return self._handle is None

    @property
    def readable(self) -> bool:
        """True if the connection can receive."""
        return self._readable

    @property
    def writable(self) -> bool:
        """True if the connection can send."""
        return self._writable

    def fileno(self) -> int:
        """The file descriptor (or handle) the connection uses."""
        self._check_closed()
        return self._handle  # type: ignore[return-value]

    def close(self) -> None:
        """Close the connection; further use raises ``OSError``. Idempotent."""
        if self._handle is not None:
            try:
                self._close()
            finally:
                self._handle = None

    def __enter__(self) -> _ConnectionBase:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # ------------------------------------------------------------ sending

    def send_bytes(self, buf: Any, offset: int = 0, size: Optional[int] = None) -> None:
        """Send the bytes of ``buf[offset:offset + size]`` as one message.

        ``buf`` is any C-contiguous bytes-like object; ``offset`` and
        ``size`` count bytes (``size`` defaults to the rest of the buffer).
        Raises ``ValueError`` for a negative or out-of-range offset or size,
        ``OSError`` if the connection is closed or read-only.
        """
        self._check_closed()
        self._check_writable()
        view = memoryview(buf)
        if view.itemsize != 1 or view.ndim != 1 or not view.c_contiguous:
            view = view.cast("B")  # raises TypeError for a non-contiguous buffer
        n = view.nbytes
        if offset < 0:
            raise ValueError("offset is negative")
        if n < offset:
            raise ValueError("buffer length < offset")
        if size is None:
            size = n - offset
        elif size < 0:
            raise ValueError("size is negative")
        elif offset + size > n:
            raise ValueError("buffer length < offset + size")
        if offset or size != n:
            view = view[offset : offset + size]
        self._write_frame(view)

    def send(self, obj: Any) -> None:
        """Serialize ``obj`` (``mp_core.reduction``) and send it as one message.

        A serialization error is raised before anything is written, so the
        connection stays usable.
        """
        self._check_closed()
        self._check_writable()
        if self._passes_fds:
            self._send_with_descriptors(obj)
        else:
            self._write_frame(reduction.dumps(obj, oob=True))

    def _send_with_descriptors(self, obj: Any) -> None:
        carrier = self._carrier
        if carrier is None:
            carrier = self._carrier = _out_of_band.Carrier(self._handle)  # type: ignore[arg-type]
        outgoing = carrier.outgoing
        try:
            message = reduction.dumps(obj, oob=True, carrier=carrier)
        except BaseException:
            _close_all(outgoing)
            raise
        if not outgoing:
            self._write_frame(message)
            return

        def without_descriptors() -> Any:
            _close_all(outgoing)
            return reduction.dumps(obj, oob=True)  # (no carrier: named segments, or in band)

        try:
            write_message_with_descriptors(self._handle, message, outgoing, without_descriptors)  # type: ignore[arg-type]
        finally:
            _close_all(outgoing)  # the kernel holds what is in flight

    # ------------------------------------------------------------ receiving

    def recv_bytes(self, maxlength: Optional[int] = None) -> bytes:
        """Receive one message and return its bytes.

        Blocks until a message arrives.  Raises ``EOFError`` if the other end
        was closed and nothing is left to read; ``OSError`` if the message is
        longer than ``maxlength`` (the connection then stops being readable,
        since the rest of that message was not consumed); ``ValueError`` for a
        negative ``maxlength``.
        """
        self._check_closed()
        self._check_readable()
        if maxlength is not None and maxlength < 0:
            raise ValueError("negative maxlength")
        size = self._read_header()
        if maxlength is not None and size > maxlength:
            self._bad_message_length()
        return self._read_payload(size)

    def recv_bytes_into(self, buf: Any, offset: int = 0) -> int:
        """Receive one message into the writable buffer ``buf`` at byte ``offset``.

        Returns the message size in bytes.  If the message does not fit, it
        is consumed anyway and ``BufferTooShort`` is raised with the whole
        message as ``args[0]``.  Raises ``ValueError`` if ``offset`` is
        negative or beyond the end of ``buf``.
        """
        self._check_closed()
        self._check_readable()
        with memoryview(buf) as outer:
            if outer.readonly:
                raise TypeError("recv_bytes_into() needs a writable buffer")
            plain = outer.itemsize == 1 and outer.ndim == 1 and outer.c_contiguous
            view = outer if plain else outer.cast("B")
            try:
                capacity = view.nbytes
                if offset < 0:
                    raise ValueError("negative offset")
                if offset > capacity:
                    raise ValueError("offset too large")
                size = self._read_header()
                if offset + size > capacity:
                    raise BufferTooShort(self._read_payload(size))
                if size:
                    self._read_into(view[offset : offset + size])
                return size
            finally:
                if view is not outer:
                    view.release()

    def recv(self) -> Any:
        """Receive one message and return the object it carries.

        Raises ``EOFError`` if the other end was closed and nothing is left,
        and ``AuthenticationError`` if the message is an authentication
        challenge (a client without an authkey talking to a listener with one).
        """
        self._check_closed()
        self._check_readable()
        if self._passes_fds:
            descriptors: list[int] = []
            try:
                payload = self._read_payload(self._read_header(descriptors))
            except BaseException:
                _close_all(descriptors)
                raise
            if descriptors:
                return _load_with(payload, descriptors)
        else:
            payload = self._read_payload(self._read_header())
        try:
            return reduction.loads(payload)
        except Exception:
            if payload.startswith(_CHALLENGE):
                raise AuthenticationError(
                    "received an authentication challenge: the listener requires an authkey"
                ) from None
            raise

    def poll(self, timeout: Optional[float] = 0.0) -> bool:
        """Whether a message (or end of file) is ready to be read.

        Waits up to ``timeout`` seconds; ``None`` waits without limit, a
        negative timeout does not wait.
        """
        self._check_closed()
        self._check_readable()
        return self._poll(timeout)

    # ------------------------------------------------------------ transport

    def _write_frame(self, view: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _read_header(self, descriptors: Optional[list[int]] = None) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _read_payload(self, size: int) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def _read_into(self, view: memoryview) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _poll(self, timeout: Optional[float]) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class Connection(_ConnectionBase):
    """A connection over a POSIX file descriptor: a socket or one end of a pipe.

    The connection owns the descriptor and closes it on ``close()`` (or when
    it is garbage collected).  Not thread-safe: one thread sends and one
    receives at a time.  ``mp_core.reduction`` can pickle it to another
    process, which receives a duplicate of the descriptor.
    """

    _holds_pipe_slot = False
    # Whether the descriptor is a socket: None until first asked (a
    # connection rebuilt in another process may wrap either kind).
    _socket: Optional[bool] = None

    def _close(self, _close: Any = os.close) -> None:
        if self._holds_pipe_slot:
            self._holds_pipe_slot = False
            try:
                _release_pipe_slot()
            except Exception:  # pragma: no cover - module globals gone at interpreter exit
                pass
        _close(self._handle)

    # ------------------------------------------------------------ writing

    def _write_frame(self, view: Any) -> None:
        write_message(self._handle, view)  # type: ignore[arg-type]  # callers checked it is open

    # ------------------------------------------------------------ reading

    def _read_header(self, descriptors: Optional[list[int]] = None) -> int:
        """The size of the next message; the descriptors it carries are appended to ``descriptors``.

        Without ``descriptors`` (or on a connection that is not a ``Pipe()``'s
        socket pair) they are read as plain bytes, and the kernel closes them.
        """
        fd: int = self._handle  # type: ignore[assignment]
        header = os.read(fd, SHORT_HEADER_SIZE)
        if len(header) != SHORT_HEADER_SIZE:
            if not header:
                raise EOFError
            header = _read_rest(fd, header, SHORT_HEADER_SIZE)
        size: int = SHORT_HEADER.unpack(header)[0]
        if size < 0:
            try:
                if size == DESCRIPTORS_FOLLOW and self._passes_fds:
                    size = long_size(_read_with_descriptors(fd, 8, descriptors))
                elif short_size(header) == LONG_FOLLOWS:
                    size = long_size(_read_rest(fd, b"", 8))
            except BadMessageLength as exc:
                self._bad_message_length(str(exc))
        return size

    def _read_payload(self, size: int) -> bytes:
        if size <= _SMALL_READ:
            if not size:
                return b""
            fd: int = self._handle  # type: ignore[assignment]
            data = os.read(fd, size)
            if len(data) != size:
                data = _read_rest(fd, data, size)
            return data
        # Either way, memory is committed only as the bytes arrive: a bare
        # header announcing gigabytes costs nothing until they come.
        if self._is_socket():
            try:
                received = _recv_exactly(self._handle, size)  # type: ignore[arg-type]
            except (MemoryError, OverflowError):
                self._bad_message_length(f"a message of {size} bytes was announced, which cannot be allocated")
            if received is not None:
                return received
        try:
            buffer = PayloadBuffer(size)  # committed page by page as it is written
        except BadMessageLength as exc:
            self._bad_message_length(str(exc))
        self._read_into(buffer.view)
        return buffer.take()

    def _is_socket(self) -> bool:
        is_socket = self._socket
        if is_socket is None:
            try:
                is_socket = stat.S_ISSOCK(os.fstat(self._handle).st_mode)  # type: ignore[arg-type]
            except OSError:
                is_socket = False
            self._socket = is_socket
        return is_socket

    def _read_into(self, view: memoryview) -> None:
        fd: int = self._handle  # type: ignore[assignment]
        got = 0
        if view.nbytes > _SMALL_READ and self._is_socket():
            got = _recv_into_waitall(fd, view)
        size = view.nbytes
        readinto = _io.readinto
        while got < size:
            n = readinto(fd, view[got:])
            if not n:
                raise OSError("got end of file during message")
            got += n

    def _poll(self, timeout: Optional[float]) -> bool:
        return _fd_ready(self._handle, timeout)  # type: ignore[arg-type]


# ---------------------------------------------------------------- fd helpers


def _close_all(descriptors: list[int]) -> None:
    """Close the (non-negative) descriptors of ``descriptors`` and empty it."""
    try:
        for fd in descriptors:
            if fd >= 0:
                os.close(fd)
    finally:
        descriptors.clear()


def _load_with(payload: bytes, descriptors: list[int]) -> Any:
    """Load ``payload``, whose out-of-band references name ``descriptors``; close those it did not take."""
    previous = _out_of_band.receiving_with(descriptors)
    try:
        return reduction.loads(payload)
    finally:
        _out_of_band.receiving_with(previous)
        _close_all(descriptors)


_ANCILLARY_SPACE = _socket.CMSG_SPACE(MAX_FRAME_DESCRIPTORS * 4) if hasattr(_socket, "CMSG_SPACE") else 0
_RECEIVE_CLOEXEC = getattr(_socket, "MSG_CMSG_CLOEXEC", 0)


def _read_with_descriptors(fd: int, size: int, descriptors: Optional[list[int]]) -> bytes:
    """``size`` bytes from the socket ``fd``, appending the descriptors that come with them to ``descriptors``.

    With ``descriptors`` None the bytes are read plainly (the kernel closes
    the descriptors).
    """
    if descriptors is None or not _ANCILLARY_SPACE:
        return _read_rest(fd, b"", size)
    import array

    sock = util.socket_over_fd(fd)
    try:
        data, ancillary, _flags, _address = sock.recvmsg(size, _ANCILLARY_SPACE, _RECEIVE_CLOEXEC)
    finally:
        sock.detach()
    for level, kind, cdata in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            received = array.array("i")
            received.frombytes(cdata[: len(cdata) - len(cdata) % received.itemsize])
            descriptors.extend(received)
    if len(data) != size:
        if not data:
            raise OSError("got end of file during message")
        data = _read_rest(fd, data, size)
    return data


def _recv_exactly(fd: int, size: int) -> Optional[bytes]:
    """``size`` bytes from the stream socket ``fd``, or None if this path is unavailable.

    One ``recv(size, MSG_WAITALL)`` fills a fresh, unzeroed ``bytes`` in
    place: no zeroing pass over the buffer and no return to Python between
    the chunks the kernel hands over, which is what keeps ``recv_bytes``
    close to a raw read loop into a reused buffer.  A signal or end of file
    can cut the call short; the rest is then read the ordinary way.
    """
    if _MSG_WAITALL is None:
        return None
    sock = util.socket_over_fd(fd)
    try:
        data = sock.recv(size, _MSG_WAITALL)
    finally:
        sock.detach()
    if len(data) != size:
        if not data:
            raise OSError("got end of file during message")
        data = _read_rest(fd, data, size)
    return data


def _recv_into_waitall(fd: int, view: memoryview) -> int:
    """Fill ``view`` from the stream socket ``fd`` with one ``recv_into(MSG_WAITALL)``.

    Returns how many bytes arrived: all of them unless a signal or end of
    file cut the call short, or 0 if this path is unavailable (the caller
    reads the rest the ordinary way).
    """
    if _MSG_WAITALL is None:
        return 0
    sock = util.socket_over_fd(fd)
    try:
        return sock.recv_into(view, view.nbytes, _MSG_WAITALL)
    except TypeError:
        # PyPy refuses a slice of a cast memoryview (the byte view of an
        # array) here: mp_core._io.readinto knows how to fill it.
        return 0
    finally:
        sock.detach()


def _read_rest(fd: int, start: bytes, size: int) -> bytes:
    """Complete ``start`` to ``size`` bytes read from ``fd``."""
    parts = [start]
    remaining = size - len(start)
    while remaining:
        chunk = os.read(fd, remaining)
        if not chunk:
            raise OSError("got end of file during message")
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


if hasattr(select, "poll"):
    _POLL_READY = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR | select.POLLNVAL

    def _fd_ready(fd: int, timeout: Optional[float]) -> bool:
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        if timeout is None:
            return bool(poller.poll())
        deadline = time.monotonic() + timeout
        while True:
            # Round up: poll(0.0004 s) must wait, not spin with 0 ms.
            events = poller.poll(max(0, math.ceil(timeout * 1000)))
            if events:
                return True
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                return False
else:  # pragma: no cover - platforms without poll()

    def _fd_ready(fd: int, timeout: Optional[float]) -> bool:
        if timeout is not None and timeout < 0:
            timeout = 0
        return bool(select.select([fd], [], [], timeout)[0])


# ---------------------------------------------------------------- Pipe


def Pipe(duplex: bool = True) -> tuple[Connection, Connection]:
    """Return a pair ``(conn1, conn2)`` of connected ``Connection`` objects.

    Duplex (the default): a Unix socket pair, both ends can send and receive.
    Otherwise an OS pipe: ``conn1`` only receives, ``conn2`` only sends.
    """
    if duplex:
        left, right = _socket.socketpair()  # (AF_UNIX, SOCK_STREAM)
        for end in (left, right):
            end.setblocking(True)
            _enlarge_socket(end)
        ends = Connection(left.detach()), Connection(right.detach())
        for conn in ends:
            conn._socket = True
            conn._passes_fds = True
        return ends
    read_fd, write_fd = os.pipe()
    reader = Connection(read_fd, writable=False)
    writer = Connection(write_fd, readable=False)
    if _enlarge_pipe(write_fd):
        reader._holds_pipe_slot = True
    return reader, writer


def _enlarge_socket(sock: _socket.socket) -> None:
    """Ask for larger send and receive buffers on ``sock`` (best effort).

    A Unix stream socket holds at most its sender's buffer in flight
    (~208 KiB by default); a larger one lets a big message cross in fewer
    sleep/wake-up rounds.  The kernel caps the request at
    ``net.core.wmem_max``/``rmem_max`` and only uses the memory while data
    is queued.
    """
    for option in (_socket.SO_SNDBUF, _socket.SO_RCVBUF):
        try:
            if sock.getsockopt(_socket.SOL_SOCKET, option) < _SOCKET_BUFFER_SIZE:
                sock.setsockopt(_socket.SOL_SOCKET, option, _SOCKET_BUFFER_SIZE)
        except OSError:  # pragma: no cover - a platform without the option
            pass


def _enlarge_pipe(fd: int) -> bool:
    """Try to give the pipe of ``fd`` a larger buffer; report whether it did."""
    global _enlarged_pipes
    if _F_SETPIPE_SZ is None:
        return False
    with _enlarged_lock:
        if _enlarged_pipes >= _MAX_ENLARGED_PIPES:
            return False
        try:
            fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_BUFFER_SIZE)
        except OSError:
            # EPERM above fs.pipe-max-size or over the user's quota: the
            # default buffer works, only slower.
            return False
        _enlarged_pipes += 1
        return True


def _release_pipe_slot() -> None:
    global _enlarged_pipes
    with _enlarged_lock:
        _enlarged_pipes = max(0, _enlarged_pipes - 1)


def _reset_pipe_slots_after_fork() -> None:
    global _enlarged_lock
    _enlarged_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_pipe_slots_after_fork)


# ---------------------------------------------------------------- pickling


def reduce_connection(conn: Connection) -> tuple:
    """Reduce ``conn`` for another process: its descriptor travels as a ``DupFd``."""
    df = reduction.DupFd(conn.fileno())
    if conn._passes_fds:
        return rebuild_connection, (df, conn.readable, conn.writable, True)
    return rebuild_connection, (df, conn.readable, conn.writable)


def rebuild_connection(df: Any, readable: bool, writable: bool, passes_fds: bool = False) -> Connection:
    """Rebuild a connection in the receiving process from a ``DupFd`` (``passes_fds``: a ``Pipe()`` end)."""
    conn = Connection(df.detach(), readable, writable)
    if passes_fds:
        conn._passes_fds = True
        conn._socket = True
    return conn


reduction.register(Connection, reduce_connection)

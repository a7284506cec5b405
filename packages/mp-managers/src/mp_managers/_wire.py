"""Messages on a manager connection: one system call to send, usually one to receive.

A manager round trip is short messages back and forth, so its time is
system calls and fixed costs.  Once a connection is authenticated, both
ends move messages with a ``MessageStream`` over its descriptor:

* the frame is the one ``mp_core.connection`` uses (4-byte big-endian
  size, or -1 and an 8-byte size), so either end may be a plain
  ``Connection``;
* receiving reads up to 64 KiB at once and keeps whatever follows the
  message for the next call (a ``Connection`` reads the header and the
  payload separately, so as never to read past a message: it cannot know
  who else reads its descriptor; a manager connection has one reader);
* sending is ``Connection``'s (``connection.write_message``): header and
  payload in one ``write`` for a short message, and a TCP socket sends at
  once (``TCP_NODELAY``);
* the ``'pickle'`` serializer reuses one ``ForkingPickler`` per stream
  (the default serialization mode, ``auto``), instead of building a
  pickler and a buffer per message; anything it cannot carry alone, and
  any other mode set with ``reduction.configure``, goes through
  ``reduction.dumps`` as usual.
"""

from __future__ import annotations

import io
import os
import pickle
import socket
import struct
from typing import Any, Callable

from mp_core import _io, connection, reduction, util

__all__ = ["MessageStream"]

_SHORT = struct.Struct("!i")
_LONG = struct.Struct("!Q")
_READ_SIZE = 64 * 1024
# Messages up to this size are received into a buffer of their announced
# size at once; larger ones grow with what arrives.
_EAGER_LIMIT = 4 * 1024 * 1024


class _Encoder:
    """Serializes like ``reduction.dumps``, reusing one pickler while the settings stay the same."""

    __slots__ = ("_settings", "_buffer", "_pickler")

    def __init__(self) -> None:
        self._settings: Any = None
        self._buffer = io.BytesIO()
        self._pickler: Any = None

    def __call__(self, obj: Any) -> bytes:
        settings = reduction.get_serializer()
        if settings.mode != "auto":
            return bytes(reduction.dumps(obj))
        if settings is not self._settings:
            self._settings = settings
            self._pickler = reduction.ForkingPickler(self._buffer, settings.protocol)
        buffer = self._buffer
        buffer.seek(0)
        buffer.truncate()
        try:
            self._pickler.dump(obj)
        except Exception:
            # Let the full path decide: dill for the whole object, or an
            # error that names what cannot be serialized.
            self._settings = None
            return bytes(reduction.dumps(obj))
        finally:
            if self._pickler is not None:
                self._pickler.clear_memo()
        return buffer.getvalue()


def _send_without_delay(fd: int) -> None:
    """Turn off Nagle's algorithm on a TCP socket.

    A release is sent without waiting for a reply; with Nagle's algorithm
    the request right behind it would wait for the peer's delayed
    acknowledgement of the release, about 40 ms.
    """
    try:
        sock = util.socket_over_fd(os.dup(fd))
    except OSError:
        return
    try:
        if sock.family in (socket.AF_INET, getattr(socket, "AF_INET6", None)):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
    finally:
        sock.close()


def _xml_loads(data: Any) -> Any:
    return connection._xml_loads(bytes(data))


class MessageStream:
    """Framed, serialized messages over the descriptor of the authenticated ``conn``.

    ``conn`` stays the owner of the descriptor (and closes it); the stream
    must be its only reader and writer from now on.
    """

    __slots__ = ("_fd", "_pending", "encode", "decode")

    def __init__(self, conn: Any, serializer: str) -> None:
        self._fd = conn.fileno()
        _send_without_delay(self._fd)
        self._pending = b""
        self.encode: Callable[[Any], bytes]
        self.decode: Callable[[Any], Any]
        if serializer == "xmlrpclib":
            self.encode, self.decode = connection._xml_dumps, _xml_loads
        else:
            self.encode, self.decode = _Encoder(), pickle.loads

    # ------------------------------------------------------------ sending

    def send(self, obj: Any) -> None:
        """Serialize and send ``obj`` (a serialization error leaves the stream untouched)."""
        self.send_bytes(self.encode(obj))

    def send_bytes(self, payload: bytes) -> None:
        connection.write_message(self._fd, payload)

    # ------------------------------------------------------------ receiving

    def recv(self) -> Any:
        """Receive and deserialize one message; ``EOFError`` once the peer has closed."""
        return self.decode(self.recv_bytes())

    def recv_bytes(self) -> Any:
        """The payload of the next message (``bytes`` or a view of them).

        Raises ``EOFError`` at end of file (also in the middle of a message)
        and ``BadMessageLength`` for a malformed header; after either, the
        stream is out of step and must be closed.  Memory follows the bytes
        that arrive, not the size a header announces: a bare header of any
        size commits at most ``_EAGER_LIMIT`` bytes.
        """
        data = self._pending
        if len(data) < 4:
            data = self._read_at_least(data, 4)
        size = _SHORT.unpack_from(data)[0]
        start = 4
        if size < 0:
            if size != -1:
                self._pending = b""
                raise connection.BadMessageLength(
                    f"malformed message header: size {size} (the only negative size is -1, "
                    f"the marker of an 8-byte size)"
                )
            if len(data) < 12:
                data = self._read_at_least(data, 12)
            size = _LONG.unpack_from(data, 4)[0]
            start = 12
        end = start + size
        if len(data) >= end:
            self._pending = data[end:] if len(data) > end else b""
            return memoryview(data)[start:end]
        self._pending = b""
        if size <= _EAGER_LIMIT:
            payload = bytearray(size)
            have = len(data) - start
            payload[:have] = memoryview(data)[start:]
            view = memoryview(payload)
            readinto = _io.readinto
            while have < size:
                n = readinto(self._fd, view[have:])
                if not n:
                    raise EOFError("got end of file during message")
                have += n
            return payload
        return self._read_large(bytearray(memoryview(data)[start:]), size)

    def _read_large(self, payload: bytearray, size: int) -> bytearray:
        # Grown as the bytes arrive (one copy each, from a reused buffer):
        # a header announcing gigabytes that never come costs nothing.
        chunk = memoryview(bytearray(min(size - len(payload), _EAGER_LIMIT)))
        readinto = _io.readinto
        while len(payload) < size:
            n = readinto(self._fd, chunk[: size - len(payload)])
            if not n:
                raise EOFError("got end of file during message")
            payload += chunk[:n]
        return payload

    def _read_at_least(self, data: bytes, count: int) -> bytes:
        while len(data) < count:
            chunk = os.read(self._fd, _READ_SIZE)
            if not chunk:
                if data:
                    raise EOFError("got end of file during message")
                raise EOFError
            data = data + chunk if data else chunk
        return data

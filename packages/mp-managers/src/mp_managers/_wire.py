"""Messages on a manager connection: one system call to send, usually one to receive.

A manager round trip is short messages back and forth, so its time is
system calls and fixed costs.  Once a connection is authenticated, both
ends move messages with a ``MessageStream`` over its descriptor, built from
the shared pieces of ``mp_core``:

* the frames are ``mp_core._framing``'s (the standard library's), so
  either end may be a plain ``Connection``;
* receiving is a ``FrameReader``: it reads up to 64 KiB at once and keeps
  whatever follows the message for the next call (a ``Connection`` reads
  the header and the payload separately, so as never to read past a
  message: it cannot know who else reads its descriptor; a manager
  connection has one reader).  A large message is read into a buffer
  committed page by page as the bytes arrive: a bare header announcing
  gigabytes costs nothing;
* sending is ``write_message``: header and payload in one ``write`` for a
  short message, and a TCP socket sends at once (``TCP_NODELAY``);
* the ``'pickle'`` serializer is ``mp_core.reduction``'s, through a
  ``MessageEncoder`` per stream (one pickler reused instead of one built
  per message).
"""

from __future__ import annotations

import socket
from typing import Any, Callable

from mp_core import connection, reduction, util
from mp_core._framing import FrameReader, write_message

__all__ = ["MessageStream"]

#: A manager's messages are short: a small read leaves less to move around.
_READ_SIZE = 64 * 1024


def _send_without_delay(fd: int) -> None:
    """Turn off Nagle's algorithm on a TCP socket.

    A release is sent without waiting for a reply; with Nagle's algorithm
    the request right behind it would wait for the peer's delayed
    acknowledgement of the release, about 40 ms.  Borrows ``fd`` instead of
    duplicating it: a server out of descriptors still gets the option, and
    its count of open descriptors never moves under a connection.
    """
    try:
        sock = util.socket_over_fd(fd)
    except OSError:
        return
    try:
        if sock.family in (socket.AF_INET, getattr(socket, "AF_INET6", None)):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
    finally:
        sock.detach()


def _xml_loads(data: Any) -> Any:
    return connection._xml_loads(bytes(data))


class MessageStream:
    """Framed, serialized messages over the descriptor of the authenticated ``conn``.

    ``conn`` stays the owner of the descriptor (and closes it); the stream
    must be its only reader and writer from now on.
    """

    __slots__ = ("_fd", "_next_frame", "encode", "decode")

    def __init__(self, conn: Any, serializer: str) -> None:
        self._fd = conn.fileno()
        _send_without_delay(self._fd)
        self._next_frame = FrameReader(self._fd, _READ_SIZE).next_frame
        self.encode: Callable[[Any], bytes]
        self.decode: Callable[[Any], Any]
        if serializer == "xmlrpclib":
            self.encode, self.decode = connection._xml_dumps, _xml_loads
        else:
            self.encode, self.decode = reduction.MessageEncoder(), reduction.loads

    def send(self, obj: Any) -> None:
        """Serialize and send ``obj`` (a serialization error leaves the stream untouched)."""
        write_message(self._fd, self.encode(obj))

    def send_bytes(self, payload: Any) -> None:
        """Send ``payload`` (bytes-like) as one message."""
        write_message(self._fd, payload)

    def recv_bytes(self) -> Any:
        """The payload of the next message (``bytes`` or a view of them).

        Raises ``EOFError`` at end of file (naming a message it cut short)
        and ``BadMessageLength`` for a malformed header; after either, the
        stream is out of step and must be closed.
        """
        return self._next_frame()

    def recv(self) -> Any:
        """Receive and deserialize one message; ``EOFError`` once the peer has closed."""
        return self.decode(self.recv_bytes())

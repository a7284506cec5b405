"""``Listener`` and ``Client``: authenticated connections between any two processes.

Addresses and families:

* ``'AF_UNIX'`` (the default on POSIX): a path (``str``); a path starting
  with a NUL byte lives in Linux's abstract namespace.  A listener's socket
  file is removed when the listener is closed.
* ``'AF_INET'``: a ``(host, port)`` tuple; ``arbitrary_address`` picks a free
  port on ``127.0.0.1``.
* ``'AF_PIPE'`` (Windows named pipes, ``r'\\\\.\\pipe\\name'``) is recognised
  by ``address_type`` but not implemented yet.

With an ``authkey`` (bytes), every connection is authenticated in both
directions before either side reads anything else (see ``_handshake``).
``authkey=None`` means no authentication at all, as the standard library
documents: ``Client`` returns as soon as the socket connects (before the
listener even calls ``accept``) and ``accept`` returns the raw connection.
The library's own users (managers, the resource sharer) always pass an
explicit key.

A keyed ``Listener`` waits at most ``Listener.handshake_timeout`` seconds
for each answer, so a client that never answers cannot block ``accept``.
A keyed ``Client`` fails at once if the listener sends anything but a
challenge (a listener without a key sending data); it waits for the
challenge itself as long as the standard library does (no limit, since a
server may accept late), unless ``Client.handshake_timeout`` is set.
"""

from __future__ import annotations

import os
import socket
import sys

from . import util
from ._connection import Connection
from ._handshake import answer_challenge, deliver_challenge
from ._handshake import prepare as prepare_handshakes

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, Callable, Optional

__all__ = [
    "Listener",
    "Client",
    "SocketListener",
    "SocketClient",
    "address_type",
    "arbitrary_address",
    "families",
    "default_family",
    "CONNECTION_TIMEOUT",
    "ConnectionWrapper",
    "XmlListener",
    "XmlClient",
]

#: Seconds a listener waits for each handshake message of a client it accepted.
CONNECTION_TIMEOUT = 20.0

families = ["AF_INET"]
if hasattr(socket, "AF_UNIX"):
    families.append("AF_UNIX")
if sys.platform == "win32":  # pragma: no cover
    families.append("AF_PIPE")
default_family = "AF_UNIX" if "AF_UNIX" in families else "AF_INET"


def address_type(address: Any) -> str:
    """The family of ``address``: ``'AF_INET'``, ``'AF_UNIX'`` or ``'AF_PIPE'``.

    Raises ``ValueError`` for anything else.
    """
    if isinstance(address, tuple):
        return "AF_INET"
    if isinstance(address, str) and address.startswith("\\\\"):
        return "AF_PIPE"
    if isinstance(address, (str, bytes)) or _is_abstract(address):
        return "AF_UNIX"
    raise ValueError(f"address type of {address!r} unrecognized")


def arbitrary_address(family: str) -> Any:
    """A fresh address of ``family`` that no one listens on yet."""
    if family == "AF_INET":
        return ("127.0.0.1", 0)
    if family == "AF_UNIX":
        return os.path.join(util.get_temp_dir(), f"listener-{os.urandom(8).hex()}")
    if family == "AF_PIPE":  # pragma: no cover
        return rf"\\.\pipe\pyc-{os.getpid()}-{os.urandom(8).hex()}"
    raise ValueError("unrecognized family")


def _validate_family(family: str) -> None:
    if family not in families:
        raise ValueError(f"Family {family} is not recognized.")


def _is_abstract(address: Any) -> bool:
    return isinstance(address, (str, bytes)) and address[:1] in ("\0", b"\0")


def _check_authkey(authkey: Optional[bytes]) -> Optional[bytes]:
    if authkey is not None and not isinstance(authkey, bytes):
        raise TypeError("authkey should be a byte string")
    return authkey


# ---------------------------------------------------------------- sockets


class SocketListener:
    """A listening socket that returns unauthenticated ``Connection`` objects."""

    def __init__(self, address: Any, family: str, backlog: int = 1) -> None:
        self._socket = socket.socket(getattr(socket, family))
        try:
            if os.name == "posix":
                # Restarting a server must not wait for TIME_WAIT to expire.
                self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.setblocking(True)
            self._socket.bind(address)
            self._socket.listen(backlog)
            self._address = self._socket.getsockname()
        except OSError:
            self._socket.close()
            raise
        self._family = family
        self._last_accepted: Any = None
        self._unlink: Optional[util.Finalize] = None
        if family == "AF_UNIX" and not _is_abstract(address):
            # exitpriority 0: the file goes even if close() is never called.
            self._unlink = util.Finalize(self, _unlink_quietly, args=(address,), exitpriority=0)

    def accept(self) -> Connection:
        sock, self._last_accepted = self._socket.accept()
        sock.setblocking(True)
        return Connection(sock.detach())

    def close(self) -> None:
        try:
            self._socket.close()
        finally:
            unlink, self._unlink = self._unlink, None
            if unlink is not None:
                unlink()


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def SocketClient(address: Any) -> Connection:
    """Connect to a ``SocketListener`` at ``address``; no authentication."""
    family = address_type(address)
    with socket.socket(getattr(socket, family)) as sock:
        sock.setblocking(True)
        sock.connect(address)
        return Connection(sock.detach())


# ---------------------------------------------------------------- the public pair


class Listener:
    """Accept authenticated connections at ``address``.

    ``family`` is inferred from ``address``; with neither, a fresh
    ``AF_UNIX`` path in this process's temp directory is used.  ``backlog``
    is passed to ``listen()``.  ``authkey`` (``bytes``) authenticates every
    client in both directions before ``accept`` returns; ``None`` (the
    default) does no authentication.  Raises ``TypeError`` for a non-bytes
    authkey.
    """

    #: Seconds ``accept`` waits for each handshake message (``None``: no limit).
    handshake_timeout: Optional[float] = CONNECTION_TIMEOUT

    def __init__(
        self, address: Any = None, family: Optional[str] = None, backlog: int = 1, authkey: Optional[bytes] = None
    ) -> None:
        family = family or (address and address_type(address)) or default_family
        address = address or arbitrary_address(family)
        _validate_family(family)
        self._authkey = _check_authkey(authkey)
        if self._authkey is not None:
            prepare_handshakes()
        if family == "AF_PIPE":  # pragma: no cover
            raise NotImplementedError("Windows named pipes are not implemented yet")
        self._listener: Optional[SocketListener] = SocketListener(address, family, backlog)

    def accept(self) -> Connection:
        """Wait for a client, authenticate it, and return the connection.

        Raises ``AuthenticationError`` (after closing that connection) if the
        client fails authentication; the listener stays usable.  Raises
        ``OSError`` if the listener is closed.
        """
        if self._listener is None:
            raise OSError("listener is closed")
        conn = self._listener.accept()
        if self._authkey is None:
            return conn
        try:
            deliver_challenge(conn, self._authkey, timeout=self.handshake_timeout)
            answer_challenge(conn, self._authkey, timeout=self.handshake_timeout)
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        """Stop listening (and remove an ``AF_UNIX`` socket file). Idempotent."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    @property
    def address(self) -> Any:
        """The address the listener is bound to."""
        return self._listener._address  # type: ignore[union-attr]

    @property
    def last_accepted(self) -> Any:
        """The address of the last accepted client (``None`` before any)."""
        return self._listener._last_accepted  # type: ignore[union-attr]

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def Client(address: Any, family: Optional[str] = None, authkey: Optional[bytes] = None) -> Connection:
    """Connect to the ``Listener`` at ``address``; with ``authkey``, authenticate both ways.

    ``authkey=None`` (the default) does no authentication: the connection is
    returned as soon as it is made.  With a key, raises
    ``AuthenticationError`` if the listener rejects it, cannot prove it holds
    it, sends something other than a challenge, or (when
    ``Client.handshake_timeout`` is set) sends no handshake message within
    that many seconds.  Raises
    ``OSError`` if nothing listens at ``address`` and ``TypeError`` for a
    non-bytes authkey.
    """
    family = family or address_type(address)
    _validate_family(family)
    authkey = _check_authkey(authkey)
    if family == "AF_PIPE":  # pragma: no cover
        raise NotImplementedError("Windows named pipes are not implemented yet")
    conn = SocketClient(address)
    if authkey is None:
        return conn
    try:
        answer_challenge(conn, authkey, timeout=Client.handshake_timeout)  # type: ignore[attr-defined]
        deliver_challenge(conn, authkey, timeout=Client.handshake_timeout)  # type: ignore[attr-defined]
    except BaseException:
        conn.close()
        raise
    return conn


# Seconds a keyed Client waits for each handshake message; None (the
# default) waits as long as it takes, as the standard library does.  The
# first message comes only once the listener accepts, and a server that
# serves its clients one at a time may accept a waiting client much later,
# so no limit is imposed by default.  Set a number to bound the wait (a
# listener without a key never challenges and would otherwise keep a keyed
# client waiting until it sends something or closes).
Client.handshake_timeout = None  # type: ignore[attr-defined]


# ---------------------------------------------------------------- wrappers


class ConnectionWrapper:
    """A connection that serializes with the given ``dumps``/``loads`` pair."""

    def __init__(self, conn: Any, dumps: Callable[[Any], bytes], loads: Callable[[bytes], Any]) -> None:
        self._conn = conn
        self._dumps = dumps
        self._loads = loads
        for attr in ("fileno", "close", "poll", "recv_bytes", "send_bytes"):
            setattr(self, attr, getattr(conn, attr))

    def send(self, obj: Any) -> None:
        self._conn.send_bytes(self._dumps(obj))

    def recv(self) -> Any:
        return self._loads(self._conn.recv_bytes())


def _xml_dumps(obj: Any) -> bytes:
    import xmlrpc.client

    return xmlrpc.client.dumps((obj,), None, None, None, True).encode("utf-8")


def _xml_loads(data: bytes) -> Any:
    import xmlrpc.client

    (obj,), _method = xmlrpc.client.loads(data.decode("utf-8"))
    return obj


class XmlListener(Listener):
    """A ``Listener`` whose connections carry XML-RPC-marshalled data."""

    def accept(self) -> ConnectionWrapper:  # type: ignore[override]
        return ConnectionWrapper(super().accept(), _xml_dumps, _xml_loads)


def XmlClient(*args: Any, **kwds: Any) -> ConnectionWrapper:
    """A ``Client`` whose connection carries XML-RPC-marshalled data."""
    return ConnectionWrapper(Client(*args, **kwds), _xml_dumps, _xml_loads)

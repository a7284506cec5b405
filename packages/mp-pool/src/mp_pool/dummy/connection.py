"""``multiprocess.dummy.connection``: ``Pipe``, ``Listener`` and ``Client`` between threads.

A connection is a pair of ``queue.Queue`` objects; objects pass by
reference, nothing is serialized.  A ``Listener`` accepts the connections
that ``Client(address)`` makes to its address within this process.
"""

from __future__ import annotations

import itertools
import queue
import threading
from typing import Any, Optional

__all__ = ["Client", "Listener", "Pipe"]

families = [None]

_listeners: dict[Any, Listener] = {}
_listeners_lock = threading.Lock()
_addresses = itertools.count(1)


class Connection:
    """One end of a thread connection: ``send``/``recv`` objects, ``poll`` for one."""

    def __init__(self, inbox: queue.Queue[Any], outbox: queue.Queue[Any]) -> None:
        self._in = inbox
        self._out = outbox
        self.closed = False

    def send(self, obj: Any) -> None:
        self._out.put(obj)

    def recv(self) -> Any:
        return self._in.get()

    send_bytes = send
    recv_bytes = recv

    def poll(self, timeout: Optional[float] = 0.0) -> bool:
        """Whether an object is waiting (waits up to ``timeout`` seconds; ``None``: forever)."""
        if self._in.qsize() > 0:
            return True
        if timeout is not None and timeout <= 0:
            return False
        with self._in.not_empty:
            # qsize() takes the queue's mutex, which not_empty shares: inside
            # the condition only the unlocked _qsize() may be used.
            return self._in.not_empty.wait_for(lambda: self._in._qsize() > 0, timeout)

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def Pipe(duplex: bool = True) -> tuple[Connection, Connection]:
    """Two connected ends (both can send and receive, whatever ``duplex`` says)."""
    a: queue.Queue[Any] = queue.Queue()
    b: queue.Queue[Any] = queue.Queue()
    return Connection(a, b), Connection(b, a)


class Listener:
    """Accepts connections made by ``Client(self.address)`` from other threads."""

    def __init__(self, address: Any = None, family: Any = None, backlog: int = 1) -> None:
        self._backlog: queue.Queue[Any] = queue.Queue(backlog)
        with _listeners_lock:
            if address is None:
                address = f"dummy-listener-{next(_addresses)}"
            if address in _listeners:
                raise OSError(f"address {address!r} is already in use")
            _listeners[address] = self
        self._address = address

    @property
    def address(self) -> Any:
        return self._address

    def accept(self) -> Connection:
        if self._backlog is None:
            raise OSError("listener is closed")
        return Connection(*self._backlog.get())

    def close(self) -> None:
        with _listeners_lock:
            if _listeners.get(self._address) is self:
                del _listeners[self._address]
        self._backlog = None  # type: ignore[assignment]

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def Client(address: Any) -> Connection:
    """Connect to the ``Listener`` at ``address`` (blocks while its backlog is full)."""
    with _listeners_lock:
        listener = _listeners.get(address)
    if listener is None or listener._backlog is None:
        raise ConnectionRefusedError(f"no dummy listener at {address!r}")
    to_server: queue.Queue[Any] = queue.Queue()
    to_client: queue.Queue[Any] = queue.Queue()
    listener._backlog.put((to_server, to_client))
    return Connection(to_client, to_server)

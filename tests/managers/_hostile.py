"""Helpers for tests that play hostile peers of a manager server: raw sockets, /proc figures."""

from __future__ import annotations

import os
import pickle
import socket
from typing import Any

from mp_core import connection
from mp_core._framing import message_header
from mp_managers.managers import Server, SyncManager


class TightServer(Server):
    """A server with a small table of pending handshakes, quick to evict, slow to time out."""

    max_pending_handshakes = 4
    handshake_timeout = 60.0
    eviction_age = 0.5


class TightManager(SyncManager):
    _Server = TightServer


class ShortDeadlineServer(Server):
    """A server that gives a peer two seconds for the whole handshake (the test's own clients need less)."""

    handshake_timeout = 2.0


class ShortDeadlineManager(SyncManager):
    _Server = ShortDeadlineServer


def limit_descriptors(headroom: int) -> None:
    """Server initializer: leave the process ``headroom`` descriptors it may still open."""
    import resource

    used = {int(name) for name in os.listdir("/proc/self/fd")}
    limit = 0
    free = 0
    while free < headroom:
        if limit not in used:
            free += 1
        limit += 1
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def free_descriptors(pid: int) -> int:
    """How many descriptors process ``pid`` may still open (numbers below its soft limit not in use)."""
    with open(f"/proc/{pid}/limits") as f:
        line = next(line for line in f if line.startswith("Max open files"))
    soft = int(line.split()[3])
    used = {int(name) for name in os.listdir(f"/proc/{pid}/fd")}
    return sum(1 for fd in range(soft) if fd not in used)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time process ``pid`` has used."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def authkey_of(manager: Any) -> bytes:
    return bytes(manager._authkey)


def raw_socket(address: Any) -> socket.socket:
    """A connected, unauthenticated socket to the server at ``address``."""
    family = getattr(socket, connection.address_type(address))
    sock = socket.socket(family)
    sock.connect(address)
    return sock


def authenticated(manager: Any) -> Any:
    """A fresh authenticated ``Connection`` to ``manager``'s server."""
    return connection.Client(manager.address, authkey=authkey_of(manager))


def ask(conn: Any, request: Any, timeout: float = 30) -> Any:
    """Send ``request`` pickled as is; return the decoded reply (``EOFError`` if the server hung up)."""
    conn.send_bytes(pickle.dumps(request))
    return reply_of(conn, timeout)


def reply_of(conn: Any, timeout: float = 30) -> Any:
    assert conn.poll(timeout), f"no reply from the manager within {timeout} seconds"
    return conn.recv()


def serves(conn: Any) -> bool:
    """Whether the connection still gets a reply to a ``dummy`` request."""
    return ask(conn, (None, "dummy", (), {})) == (0, None)


def header(size: int) -> bytes:
    """A message size header as the managers' wire format writes it."""
    return message_header(size)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class UnhashableById:
    """An object id whose hash fails as if memory ran out."""

    def __hash__(self) -> int:
        raise MemoryError("no memory to hash this id")

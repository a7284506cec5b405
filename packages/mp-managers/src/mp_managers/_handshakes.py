"""Connections a manager server accepted but has not authenticated yet.

An unauthenticated peer costs the server a descriptor and a thread, so
what one may hold is bounded::

    accept loop ── room? ──> admit(conn) ──> handshake thread ── finish() ──> serve / close
        ^    │                                    ^
        │    └─ full: wait for a slot, or evict   │ evicted: its socket is shut down,
        │       the oldest past ``eviction_age``  │ the handshake fails at once
        └── wakes at the next deadline: every handshake older than ``timeout`` is evicted

* at most ``limit`` handshakes run at once; more peers wait in the
  listen backlog, unaccepted (no descriptor, no thread);
* a handshake must be complete ``timeout`` seconds after the accept,
  however its peer trickles bytes;
* when the table is full (or descriptors run out), the oldest handshake
  that has run ``eviction_age`` seconds and waits on its peer makes room
  for the next peer: an honest client answers in milliseconds, so stalled
  peers cannot keep one out for the whole ``timeout``.  (One whose peer's
  bytes are still unread is slow because of this server, not its peer,
  and stays.)

Eviction shuts the socket down rather than closing it: the handshake
thread owns the descriptor and closes it, so its number is never reused
under a thread still reading it.  Both sides act under one lock, and a
handshake thread leaves the table (``finish``) before it touches the
connection again.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Optional

from mp_core import util

__all__ = ["PendingHandshakes", "shut_down_socket"]


class _Entry:
    __slots__ = ("conn", "started")

    def __init__(self, conn: Any, started: float) -> None:
        self.conn = conn
        self.started = started


class PendingHandshakes:
    """The table of handshakes in progress: bounded, timed out, evictable.

    ``limit`` (>= 1) handshakes at most; each must finish ``timeout``
    seconds after ``admit`` (``None``: no deadline); one that has run
    ``eviction_age`` seconds may be evicted to make room.  Thread-safe.
    """

    def __init__(self, limit: int, timeout: Optional[float], eviction_age: float) -> None:
        if limit < 1:
            raise ValueError(f"the limit of pending handshakes must be at least 1, not {limit!r}")
        self.limit = limit
        self.timeout = timeout
        self.eviction_age = eviction_age
        self._changed = threading.Condition(threading.Lock())
        self._entries: dict[int, _Entry] = {}
        self._closed = False
        #: Handshakes evicted so far (expired, or to make room).
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    # ------------------------------------------------------------ the accept loop's side

    def make_room(self) -> bool:
        """Block until a handshake may be admitted; ``False`` once closed.

        While the table is full, waits for a handshake to finish, evicting
        one that waits on its peer as soon as it has run ``eviction_age``
        seconds.
        """
        with self._changed:
            while not self._closed:
                self._expire_locked()
                if len(self._entries) < self.limit:
                    return True
                key, wait = self._evictable_locked()
                if key is not None:
                    self._evict_locked(key, "to make room for a newer peer")
                    continue
                self._changed.wait(wait)
            return False

    def admit(self, conn: Any) -> int:
        """Enter ``conn``, just accepted; returns the key its handshake thread passes to ``finish``."""
        with self._changed:
            key = id(conn)
            self._entries[key] = _Entry(conn, time.monotonic())
            if self._closed:  # the server stopped since make_room(): no handshake to run
                self._evict_locked(key, "the server is stopping")
            return key

    def remaining(self, key: int) -> Optional[float]:
        """Seconds left to the handshake of ``key`` (``None``: no deadline)."""
        if self.timeout is None:
            return None
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        return max(entry.started + self.timeout - time.monotonic(), 0.0)

    def finish(self, key: int) -> bool:
        """The handshake of ``key`` is over; ``False`` if it had been evicted (drop the connection)."""
        with self._changed:
            entry = self._entries.pop(key, None)
            self._changed.notify_all()
            return entry is not None

    def next_deadline(self) -> Optional[float]:
        """Seconds until the earliest deadline (``None``: nothing pending, or no deadline)."""
        if self.timeout is None:
            return None
        with self._changed:
            if not self._entries:
                return None
            first = min(entry.started for entry in self._entries.values())
        return max(first + self.timeout - time.monotonic(), 0.0)

    def expire(self) -> None:
        """Evict every handshake past its deadline."""
        with self._changed:
            self._expire_locked()

    def evict_oldest(self) -> bool:
        """Evict the oldest handshake that waits on its peer, if it has run ``eviction_age`` seconds.

        For when descriptors ran out; ``False`` if none may go yet.
        """
        with self._changed:
            key, _wait = self._evictable_locked()
            if key is None:
                return False
            self._evict_locked(key, "to free a descriptor")
            return True

    def close(self) -> None:
        """Evict everything and make ``make_room`` return ``False`` (the server stops)."""
        with self._changed:
            self._closed = True
            for key in list(self._entries):
                self._evict_locked(key, "the server is stopping")
            self._changed.notify_all()

    # ------------------------------------------------------------ internals

    def _expire_locked(self) -> None:
        if self.timeout is None:
            return
        limit = time.monotonic() - self.timeout
        for key, entry in list(self._entries.items()):
            if entry.started <= limit:
                self._evict_locked(key, f"no complete handshake within {self.timeout:g} seconds")

    def _evictable_locked(self) -> tuple[Optional[int], float]:
        """The oldest handshake that may be evicted now, else ``None`` and how long to wait for one.

        Only a handshake old enough and waiting on its peer may go: one
        with bytes from its peer still unread is being slowed down by this
        server (its thread has not run yet), not by the peer.
        """
        age_limit = self.eviction_age if self.timeout is None else min(self.eviction_age, self.timeout)
        now = time.monotonic()
        wait = age_limit
        for key, entry in sorted(self._entries.items(), key=lambda item: item[1].started):
            ripe_in = entry.started + age_limit - now
            if ripe_in > 0:
                wait = min(wait, ripe_in)
                break
            if not _has_unread_bytes(entry.conn):
                return key, 0.0
            wait = min(wait, _RECHECK)
        return None, wait

    def _evict_locked(self, key: int, reason: str) -> None:
        entry = self._entries.pop(key)
        self.evicted += 1
        self._changed.notify_all()
        util.info("manager dropped an unauthenticated connection (%s)", reason)
        shut_down_socket(entry.conn)


# How soon to look again at a handshake that was not evicted because its
# thread has yet to read what its peer sent.
_RECHECK = 0.05


def _has_unread_bytes(conn: Any) -> bool:
    """Whether bytes from the peer of ``conn`` wait to be read (end of file counts as none)."""
    try:
        sock = util.socket_over_fd(conn.fileno())
    except (OSError, ValueError):
        return False
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except OSError:  # nothing to read (EAGAIN), or the socket failed
        return False
    finally:
        sock.detach()


def shut_down_socket(conn: Any) -> None:
    """End both directions of ``conn``'s socket, leaving its descriptor open.

    A thread blocked reading ``conn`` sees end of file; its owner still
    closes the descriptor (closing it here would race the reader, and the
    number could be reused under it).  Needs no new descriptor, so it works
    when they have run out.
    """
    try:
        sock = util.socket_over_fd(conn.fileno())
    except (OSError, ValueError):
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.detach()

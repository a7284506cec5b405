"""A queue feeder's writes to its pipe, which a fork can interrupt (Linux).

A feeder thread writing to a full pipe waits for as long as nobody reads,
and the reader may be the very child about to be forked: the fork cannot
wait for that write to end, and must not copy the process while our thread
runs (see ``mp_core._forksafe_threads``).  So where it can, the feeder
writes through a descriptor of its own for the pipe: a second open file
description of it, made non-blocking (opened through ``/proc/self/fd``:
the flag stays off the descriptor that children inherit and write to).
When the pipe is full it waits in ``poll()`` for room or for a fork
(``fork_requested_fd``), and steps aside in the middle of a batch if a
fork is coming: the bytes not yet written and the write lock stay with the
queue until the feeder runs again after the fork.  Nobody else writes to
the pipe while the lock is held, so every message stays whole.

Elsewhere (no ``/proc``), the feeder writes with blocking writes
(``write_blocking``), and a fork does not wait for one that is stuck
(``ForkSafeThread.blocked``).

Both ways, a batch of several payloads travels as one buffer of messages
(``mp_core._framing.joined_messages``): one system call for many small items.
"""

from __future__ import annotations

import os
import select
import sys
import time
from collections import deque
from typing import Any, Optional

from mp_core._forksafe_threads import ForkSafeThread, fork_requested_fd
from mp_core._framing import joined_messages, message_header

__all__ = ["FeedState", "private_nonblocking_end", "frames", "write_out", "write_blocking"]

# A payload up to this size is joined to its size header (one write).
_JOIN_BELOW = 64 * 1024
# Where a Connection is a socket-like handle (Windows), each message goes through its send_bytes.
_CAN_JOIN = sys.platform != "win32"


class FeedState:
    """What one process's feeder of one queue carries between its runs (across forks).

    ``fd``: its non-blocking descriptor for the pipe (``None`` until tried,
    -1 if there is none); ``parts``: the bytes of the batch not yet
    written, ``batch`` and ``stop`` what they came from, ``lock`` the write
    lock held meanwhile; ``waiting``: the feeder sleeps, or is about to, on
    the queue's condition (set and cleared with its lock held; producers
    notify only then).
    """

    __slots__ = ("fd", "parts", "batch", "stop", "lock", "waiting")

    def __init__(self) -> None:
        self.fd: Optional[int] = None
        self.parts: Optional[deque] = None
        self.batch: Optional[list] = None
        self.stop = False
        self.lock: Any = None
        self.waiting = False

    def begin(self, batch: list, stop: bool, lock: Any) -> None:
        """Hold ``lock`` (unless ``None``) and make ``batch`` the bytes to write."""
        if lock is not None:
            lock.acquire()
        self.lock = lock
        self.batch, self.stop = batch, stop
        self.parts = frames(batch)

    def finish(self) -> None:
        """The batch is written (or failed): forget it and release the lock."""
        lock, self.lock = self.lock, None
        self.parts = self.batch = None
        if lock is not None:
            lock.release()

    def close(self) -> None:
        """Close the private descriptor (the feeder is done, or this is a forked child's copy)."""
        fd, self.fd = self.fd, -1
        if fd is not None and fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass


def private_nonblocking_end(fd: int) -> int:
    """A new non-blocking descriptor for the pipe written through ``fd``, or -1 where none can be had."""
    try:
        private = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, AttributeError):
        return -1
    try:
        mine, theirs = os.fstat(private), os.fstat(fd)
        if (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino):
            return private
    except OSError:
        pass
    os.close(private)
    return -1


def frames(batch: list) -> deque:
    """The bytes of ``batch`` as the pipe carries them: each payload as one message (size header first)."""
    if len(batch) == 1:
        payload = batch[0]
        header = message_header(len(payload))
        if len(payload) < _JOIN_BELOW:
            return deque([memoryview(b"".join((header, payload)))])
        return deque([memoryview(header), memoryview(payload)])
    return deque([memoryview(joined_messages(batch))])


def write_blocking(writer: Any, batch: list) -> None:
    """Write each payload of ``batch`` to the ``Connection`` ``writer`` as one message, in few system calls.

    The caller holds the queue's write lock (if it has one).
    """
    if len(batch) == 1 or not _CAN_JOIN:
        for payload in batch:
            writer.send_bytes(payload)
        return
    data = memoryview(joined_messages(batch))
    fd = writer.fileno()
    # Nobody else writes meanwhile: a short write (a signal) just continues.
    while data:
        data = data[os.write(fd, data) :]


def write_out(state: FeedState, thread: ForkSafeThread) -> bool:
    """Write ``state.parts`` through ``state.fd``; true if it stepped aside for a fork before the end."""
    parts = state.parts
    fd = state.fd
    assert parts is not None and fd is not None and fd >= 0
    poller = None
    while parts:
        view = parts[0]
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            written = 0
        if written == len(view):
            parts.popleft()
            continue
        if written:
            parts[0] = view[written:]
            continue
        # The pipe is full: wait for room, or for a fork to step aside for.
        if thread.pausing:
            return True
        if poller is None:
            fork_fd = fork_requested_fd()
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            poller.register(fork_fd, select.POLLIN)
        ready = dict(poller.poll())
        if fork_fd in ready and not (thread.pausing or ready.get(fd)):
            # Another fork's signal, not for us (we were busy when it
            # asked): let it pass rather than spin on it.
            time.sleep(0.001)
    return False

"""The pool manager's I/O: every worker's two pipes, watched by one ``poll``.

The engine (``_engine``) decides what to send and what a result means; this
module moves the bytes, and never blocks::

    engine                    Transport                                worker
    ------                    ---------                                ------
    send(channel, frame) ──>  channel.outbox ── flush: writev what ──> task pipe
                              the pipe takes; the rest waits for
                              POLLOUT (poll() answers TASKS itself)
    receive(channel)     <──  channel.reader: every frame waiting,  <── result pipe
                              one read for many; end of file
                              unwatches the pipe
    poll()               <──  (kind, owner) of each ready descriptor:
                              WAKE, RESULTS, SENTINEL

A blocking write could deadlock: the manager waiting for a worker to read
its next task while the worker waits for the manager to read its result.
So both pipes are non-blocking in the parent: a full task pipe keeps the
rest of the frames in the channel's ``Outbox`` (``mp_core._framing``) and
the pipe is watched for room until it is written; results are read ahead
with a ``FrameReader``, many frames per system call.

Closing a channel's task pipe is how a worker learns that no task will
follow (besides an explicit STOP: a child the program forked itself may
hold a copy of the pipe): ``close_after_outbox`` closes it once the
outbox is written.
"""

from __future__ import annotations

import math
import os
import select

from mp_core import _connection as connection  # (not mp_core.connection: its listener imports socket)
from mp_core._framing import FrameReader, Outbox

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, Optional

    from mp_core._framing import Payload

__all__ = ["WAKE", "RESULTS", "SENTINEL", "WorkerChannel", "Transport"]

#: What a watched descriptor is, as ``Transport.poll`` reports it.
WAKE, RESULTS, SENTINEL = range(3)
_TASKS = 3  # a task pipe with bytes waiting: handled inside the transport

_READABLE = select.POLLIN | select.POLLPRI


class WorkerChannel:
    """The parent's ends of one worker's pipes: tasks out (``outbox``), results in (``reader``).

    Both ends are made non-blocking.  ``tasks`` is ``None`` once the task
    pipe is closed; ``closing``: it will be closed when the outbox is
    written; ``eof``: the result pipe has reached end of file (or its
    stream cannot be trusted any more).
    """

    __slots__ = ("tasks", "task_fd", "results", "result_fd", "reader", "outbox", "writing", "closing", "eof", "owner")

    def __init__(self, tasks: connection.Connection, results: connection.Connection) -> None:
        self.tasks: Optional[connection.Connection] = tasks
        self.task_fd = tasks.fileno()
        self.results = results
        self.result_fd = results.fileno()
        os.set_blocking(self.task_fd, False)
        os.set_blocking(self.result_fd, False)
        self.reader = FrameReader(self.result_fd)
        self.outbox = Outbox(self.task_fd)
        self.writing = False  # watched for POLLOUT
        self.closing = False
        self.eof = False
        self.owner: Any = None  # what ``poll`` reports with RESULTS (see ``Transport.open``)

    def close_in_child(self) -> None:
        """Close both ends in a process forked from the parent (which keeps its own)."""
        if self.tasks is not None:
            self.tasks.close()
        self.results.close()


class Transport:
    """One ``poll`` over the wake pipe, the workers' result pipes and sentinels, and task pipes with bytes waiting."""

    def __init__(self) -> None:
        self._poller = select.poll()
        self._fds: dict[int, tuple[int, Any]] = {}

    # ---------------------------------------------------------------- watching

    def watch(self, fd: int, kind: int, owner: Any) -> None:
        """Report ``fd`` as ``(kind, owner)`` from ``poll`` when it is readable (or closed)."""
        self._watch(fd, kind, owner, _READABLE)

    def unwatch(self, fd: Optional[int], owner: Any) -> None:
        """Stop watching ``fd`` for ``owner`` (nothing if it is not watched, or watched for another owner).

        The owner is checked because a descriptor number outlives what it
        named: a retiring worker's task pipe is closed before its channel,
        and a replacement's pipe may get the same number meanwhile; closing
        the old channel must not silence the new pipe.
        """
        entry = self._fds.get(fd)  # type: ignore[arg-type]
        if entry is not None and entry[1] is owner:
            del self._fds[fd]  # type: ignore[arg-type]
            self._poller.unregister(fd)  # type: ignore[arg-type]

    def poll(self, timeout: Optional[float] = None) -> list[tuple[int, Any]]:
        """Wait until something is ready (at most ``timeout`` seconds); ``(kind, owner)`` of each ready descriptor.

        Task pipes with room are written here (and those whose worker has
        closed its end are given up: the worker is dying, its sentinel
        will say so).
        """
        fds = self._fds
        ready = []
        events = self._poller.poll() if timeout is None else self._poller.poll(max(0, math.ceil(timeout * 1000)))
        for fd, event in events:
            entry = fds.get(fd)
            if entry is None:
                continue
            kind, owner = entry
            if kind != _TASKS:
                ready.append(entry)
            elif event & select.POLLOUT:
                self.flush(owner)
            else:
                owner.outbox.clear()
                self._stop_writing(owner)
        return ready

    def _watch(self, fd: int, kind: int, owner: Any, events: int) -> None:
        self._fds[fd] = (kind, owner)
        self._poller.register(fd, events)

    # ---------------------------------------------------------------- a channel

    def open(self, channel: WorkerChannel, owner: Any) -> None:
        """Watch ``channel``'s result pipe, reported as ``(RESULTS, owner)``."""
        channel.owner = owner
        self.watch(channel.result_fd, RESULTS, owner)

    def flush(self, channel: WorkerChannel) -> None:
        """Write what the task pipe takes now; watch it for room if some is left.

        A worker that is gone (EPIPE) or whose pipe was closed loses its
        outbox: its sentinel reports the death and settles its tasks.
        """
        outbox = channel.outbox
        try:
            written = outbox.flush()
        except OSError:
            outbox.clear()
            written = True
        if not written:
            if not channel.writing:
                channel.writing = True
                self._watch(channel.task_fd, _TASKS, channel, select.POLLOUT)
            return
        self._stop_writing(channel)
        if channel.closing:
            self._close_tasks(channel)

    def close_after_outbox(self, channel: WorkerChannel) -> None:
        """Close the task pipe (the worker sees end of file) once what is queued is written."""
        channel.closing = True
        if channel.tasks is not None:
            self.flush(channel)

    def receive(self, channel: WorkerChannel) -> list[Payload]:
        """Every result frame waiting in ``channel``'s pipe; at end of file, stop watching it."""
        reader = channel.reader
        try:
            frames = reader.read_available()
        except OSError:
            frames = []
            reader.eof = True
        if reader.eof:
            self.stop_reading(channel)
        return frames

    def stop_reading(self, channel: WorkerChannel) -> None:
        """Read nothing more from ``channel`` (end of file, or a stream that cannot be trusted)."""
        channel.reader.eof = True
        if not channel.eof:
            channel.eof = True
            self.unwatch(channel.result_fd, channel.owner)

    def close(self, channel: WorkerChannel) -> None:
        """Stop watching ``channel`` and close the parent's ends of its pipes; unsent frames are dropped."""
        self.unwatch(channel.result_fd, channel.owner)
        self._stop_writing(channel)
        if channel.tasks is not None:
            channel.tasks.close()
            channel.tasks = None
        channel.results.close()
        channel.outbox.clear()

    def _close_tasks(self, channel: WorkerChannel) -> None:
        if channel.tasks is not None:
            self._stop_writing(channel)
            channel.tasks.close()
            channel.tasks = None

    def _stop_writing(self, channel: WorkerChannel) -> None:
        if channel.writing:
            channel.writing = False
            self.unwatch(channel.task_fd, channel)

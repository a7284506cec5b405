"""The process pool's workers as processes: starting them, their pipes, stopping them.

``ProcessEngine`` (``_engine``) decides *when* a worker starts, what its
death means for the tasks it held, and when the pool is broken; this module
does the process work it asks for::

    ProcessEngine                       WorkerProcesses
    -------------                       ---------------
    __init__, _fill_up ──────────────>  start(): two pipes, a Process from the
                                        pool's factory running ``run_worker``;
                                        under fork, replacements come from the
                                        zygote; the channel and the sentinel
                                        are watched by the ``Transport``
    _on_exit, _kill ─────────────────>  forget(): unwatched, pipes closed
    _close_workers ──────────────────>  send_eof(): STOP, then end of file
    a worker over its memory limit ──>  stop(): the same, for that worker
    _shut_down ──────────────────────>  kill(): SIGTERM, SIGKILL after a grace
    a fork of this process ──────────>  close_in_child(): the child holds none
                                        of the parent's pipe ends

The zygote (``mp_core._zygote``) is forked first, while the pool has
neither threads nor pipes: the workers that replace others under the fork
start method are forked from it, never from the manager thread.  The first
workers are forked from the creating thread, as the zygote was: they hold
what it holds, and starting them costs no round trips.
"""

from __future__ import annotations

import sys
import time
import types
from collections import deque

from mp_core import _connection as connection  # (not mp_core.connection: its listener imports socket)
from mp_core import context, reduction, util
from mp_core._wait import wait
from mp_core._zygote import Zygote, ZygoteLost

from . import _wire
from ._jobs import Task
from ._memory import MemoryLimit
from ._transport import SENTINEL, Transport, WorkerChannel
from ._worker import run_worker

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time (a program's first Pool imports this); annotations are strings
    from typing import Any, Callable, Optional, Sequence

__all__ = ["Worker", "WorkerProcesses"]

#: Seconds a terminated worker gets to exit on SIGTERM before SIGKILL.
TERMINATE_GRACE = 1.0
#: Seconds to wait for a worker to die after SIGKILL before giving up on it.
KILL_WAIT = 10.0


def forked_main_functions() -> dict[str, tuple]:
    """The plain functions defined at the top of ``__main__`` now, each with what defines it.

    Taken as the pool's first workers and its zygote are forked: each of
    its workers then has these very functions (``_engine`` sends one of
    them by name while it is unchanged, as the standard library does, and
    needs no ``dill`` for it).
    """
    main = sys.modules.get("__main__")
    functions: dict[str, tuple] = {}
    for name, obj in list(getattr(main, "__dict__", {}).items()):
        if type(obj) is types.FunctionType and obj.__module__ == "__main__" and obj.__qualname__ == name:
            functions[name] = (obj, obj.__code__, obj.__defaults__, obj.__kwdefaults__)
    return functions


class Worker:
    """A worker process, what it has been sent, and the parent's ends of its pipes (``channel``)."""

    __slots__ = (
        "process",
        "pid",
        "channel",
        "sentinel",
        "running",
        "sent",
        "funcs",
        "ready",
        "claimed",
        "retiring",
        "doomed",
    )

    def __init__(self, process: Any, channel: WorkerChannel) -> None:
        self.process = process
        # Read defensively: a custom Process factory may hand back objects
        # without them (a real Process always has both once started).
        self.pid: Optional[int] = getattr(process, "pid", None)
        self.channel = channel
        self.sentinel: Optional[int] = getattr(process, "sentinel", None)
        self.running: deque[Task] = deque()  # sent, not answered; the first is the one running
        self.sent = 0
        self.funcs: set[int] = set()  # jobs whose function this worker holds
        self.ready = False  # the initializer has run: tasks are sent only from then on
        self.claimed = False  # started on demand for work waiting: not idle although it holds no task yet
        self.retiring = False  # has been sent its last task (maxtasksperchild, max_memory_per_child)
        self.doomed = False  # stopped by the pool (a time-out): what it still sends is not read


class WorkerProcesses:
    """Starts and stops a pool's worker processes; the engine's ``_workers`` is ``workers``."""

    def __init__(
        self,
        *,
        process_factory: Callable[..., Any],
        initializer: Optional[Callable[..., Any]],
        initargs: Sequence[Any],
        maxtasksperchild: Optional[int],
        serializer: Optional[reduction.Serializer],
        transport: Transport,
        zygote: bool,
        memory_limit: Optional[MemoryLimit] = None,
    ) -> None:
        self._factory = process_factory
        self._worker_args: tuple = (initializer, tuple(initargs), maxtasksperchild, serializer)
        if memory_limit is not None:  # (the arguments of a pool without one stay as they were)
            self._worker_args += (memory_limit,)
        self._transport = transport
        self.zygote: Optional[Zygote] = None
        self._retired_zygote: Optional[Zygote] = None
        #: The functions of ``__main__`` as every worker has them (see
        #: ``forked_main_functions``), or ``None`` when a worker may lack one.
        self.forked_main: Optional[dict[str, tuple]] = None
        if zygote and not util.process.current_process()._config.get("daemon"):
            self.forked_main = forked_main_functions()
            self.zygote = Zygote(self._build_in_zygote)
        self.workers: list[Worker] = []
        self.processes: list[Any] = []  # the pool's ``_pool``: live worker processes
        self._starting: tuple[connection.Connection, ...] = ()

    def start(self, from_zygote: bool = True) -> None:
        """Start one worker (from the zygote if there is one and ``from_zygote``) and watch it."""
        tasks_r, tasks_w = connection.Pipe(duplex=False)
        results_r, results_w = connection.Pipe(duplex=False)
        # A worker forked from this process closes these in itself (see
        # close_in_child), so that only the parent holds them.
        self._starting = (tasks_w, results_r)
        try:
            process = self._factory(target=run_worker, args=(tasks_r, results_w, *self._worker_args))
            process.name = process.name.replace("Process", "PoolWorker")
            process.daemon = True
            self._start_process(process, tasks_r, results_w, from_zygote)
        except BaseException:
            tasks_w.close()
            results_r.close()
            raise
        finally:
            self._starting = ()
            tasks_r.close()
            results_w.close()
        worker = Worker(process, WorkerChannel(tasks_w, results_r))
        self.workers.append(worker)
        self.processes.append(process)
        self._transport.open(worker.channel, worker)
        if worker.sentinel is not None:
            self._transport.watch(worker.sentinel, SENTINEL, worker)
        util.debug("added worker %s", process.name)

    def _start_process(
        self, process: Any, tasks_r: connection.Connection, results_w: connection.Connection, from_zygote: bool
    ) -> None:
        zygote = self.zygote
        if not context._forks_when_started(process):
            self.forked_main = None  # this worker starts a fresh interpreter
        if not from_zygote or zygote is None or not context._forks_when_started(process):
            process.start()
            return
        process._Popen = zygote.popen_for([tasks_r.fileno(), results_w.fileno()], (process.name, process._identity))
        try:
            process.start()
        except ZygoteLost as exc:
            # Killed (the OOM killer picks big processes): fork from here,
            # as without a zygote, rather than lose the pool.
            util.sub_warning("pool workers are forked directly from now on: %s", exc)
            self.close_zygote()
            del process._Popen
            process.start()

    def _build_in_zygote(self, fds: list[int], info: tuple[str, tuple]) -> tuple[Any, tuple]:
        """In the zygote: the worker process object for a request of ``_start_process``."""
        tasks_r = connection.Connection(fds[0], writable=False)
        results_w = connection.Connection(fds[1], readable=False)
        process = self._factory(target=run_worker, args=(tasks_r, results_w, *self._worker_args))
        process.name, process._identity = info
        process.daemon = True
        return process, (tasks_r, results_w)

    def close_zygote(self, wait: bool = True) -> None:
        """Stop the zygote (live or retired); ``wait``: until it is reaped."""
        zygote, self.zygote = self.zygote, None
        self.forked_main = None  # workers forked from here on see __main__ as it is then
        if zygote is None:
            zygote, self._retired_zygote = self._retired_zygote, None
        if zygote is not None:
            zygote.close(wait)

    def retire_zygote(self) -> None:
        """No worker will be needed any more: let the zygote exit now (it is reaped by ``close_zygote``)."""
        zygote, self.zygote = self.zygote, None
        if zygote is not None:
            zygote.shut()
            self._retired_zygote = zygote

    def forget(self, worker: Worker) -> None:
        """``worker`` is gone: stop watching it and close the parent's ends of its pipes."""
        self._transport.unwatch(worker.sentinel, worker)
        self._transport.close(worker.channel)
        self.workers.remove(worker)

    def send_eof(self) -> None:
        """Tell every worker that no task will follow; each exits once it has answered the rest."""
        for worker in self.workers:
            self.stop(worker)

    def stop(self, worker: Worker) -> None:
        """Tell ``worker`` that no task will follow; it exits once it has answered the rest."""
        channel = worker.channel
        if not channel.closing:
            # An explicit STOP, then end of file once it is written: a
            # child the program forked itself may hold a copy of the
            # task pipe, and the worker would never see end of file.
            if channel.tasks is not None:
                channel.outbox.put(_wire.STOP_FRAME)
            self._transport.close_after_outbox(channel)

    def terminate(self) -> None:
        """Send every worker SIGTERM, without waiting."""
        for worker in self.workers:
            _signal(worker.process.terminate)

    def kill(self, at_once: bool = False) -> None:
        """Stop every worker: SIGTERM, then SIGKILL for those still alive after a grace (``at_once``: SIGKILL)."""
        workers = list(self.workers)
        for worker in workers:
            _signal(worker.process.kill if at_once else worker.process.terminate)
        deadline = time.monotonic() + (KILL_WAIT if at_once else TERMINATE_GRACE)
        killed = at_once
        pending = {worker.sentinel: worker for worker in workers if worker.sentinel is not None}
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if killed:
                    break  # stuck in the kernel (D state): leave it, do not hang
                for worker in pending.values():
                    _signal(worker.process.kill)
                killed = True
                deadline = time.monotonic() + KILL_WAIT
                continue
            for sentinel in wait(list(pending), remaining):
                pending.pop(sentinel)
        for worker in workers:
            if worker.sentinel is None:
                _signal(worker.process.join)  # nothing to wait on: trust its join()
            elif worker.sentinel not in pending:
                worker.process.join(KILL_WAIT)
            self.forget(worker)

    def close_in_child(self) -> None:
        """In a child forked from this process: close the parent's ends of every worker's pipes."""
        # Another process forked from here must not hold them: a worker
        # would then not see end of file when the pool closes its task pipe.
        for worker in self.workers:
            worker.channel.close_in_child()
        for conn in self._starting:
            conn.close()


def _signal(send: Callable[[], None]) -> None:
    try:
        send()
    except (OSError, ValueError, AttributeError):
        pass  # already gone

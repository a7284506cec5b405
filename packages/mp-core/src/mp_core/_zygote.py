"""A zygote: a single-threaded copy of this process, made now, that forks children on request later.

Under the fork start method a child is a copy of its parent at the moment
of the fork.  A pool needs workers later as well (a replacement for one
that died, a fresh one after ``maxtasksperchild`` tasks), and asks for
them from its manager thread: forking there would copy a process that runs
several threads (CPython 3.12+ warns; a lock another thread held stays
held in the child for ever).  A zygote is forked once, from the thread that
creates the pool, before the pool has started any thread; it holds what a
worker forked at that moment would hold, and forks the workers from its
one thread whenever it is asked::

    owner (any thread)                        zygote (one thread)
    ------------------                        -------------------
    Zygote(build) ── fork ──────────────────> becomes a forked child once
                                              (finalizers dropped, after-fork
                                              hooks run), serves its socket
    process.start() with popen_for(fds, info):
      status socketpair, sentinel pipe
      [status, sentinel_r, *fds] + info ────> process = build(fds, info)
                                              fork() ──────────────────────> child: process._bootstrap()
      <──────────────────────── child's pid      (parent_process(): the owner,
      ...                                         alive while sentinel_r is open)
                                              SIGCHLD: waitpid
      <────────────────────── its exit code
    close() ── end of file ─────────────────> children left get a moment to
    waitpid(zygote)                           exit, then SIGTERM, SIGKILL;
                                              reaped; exits

Each child's pid and exit code travel on a socket of its own, as with the
fork server (the wire and the reaping are ``_child_status``'s), so the
owner's process object is an ordinary ``Process`` with a
``popen_forkserver``-style ``Popen``: ``pid``, ``sentinel``, ``exitcode``,
``join``, ``terminate``, ``kill`` and ``active_children()`` work as for
any child.  The zygote exits when its owner closes the socket or dies
(even by SIGKILL), after stopping and reaping its children; its owner
reaps it.
"""

from __future__ import annotations

import _socket  # the C module under socket: socketpair without socket.py's enums (ms of a first pool's start)
import errno
import os
import select
import threading
import time

from . import _cpickle, process, reduction, util
from ._child_status import SIGNED_STRUCT, drain, read_signed, recv_exactly, report_exited_children
from ._forksafe_threads import ForkSafeThread, fork, fork_requested_fd

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    import signal
    from types import FrameType
    from typing import Any, Callable, Optional, Sequence, Union

    _Handler = Union[Callable[[int, Optional[FrameType]], Any], int, signal.Handlers, None]

__all__ = ["Zygote", "ZygoteLost"]

#: Descriptors a request may carry besides the status socket and the sentinel.
MAX_CHILD_FDS = 16
#: Seconds the zygote's children get to exit once its owner has closed it (or died), then SIGTERM,
#: and as long again before SIGKILL.
CHILD_GRACE = 1.0
#: Seconds the zygote waits for its children to be reaped after SIGKILL before it exits anyway.
KILL_WAIT = 5.0
#: Seconds the owner waits for the zygote to exit when closing it, before SIGKILL.
EXIT_WAIT = 2 * CHILD_GRACE + KILL_WAIT + 2.0

#: Seconds the owner waits for the zygote to answer a request (it forks at once) before giving it up.
REPLY_WAIT = 60.0

_FAILED = -1  # sent instead of a pid: the zygote could not start the child; a message follows


class ZygoteLost(OSError):
    """The zygote is gone (it died, or was closed): it cannot start children any more."""


class Zygote:
    """A single-threaded copy of this process, forked now, that forks children on request.

    ``build(fds, info)`` runs in the zygote for each request: it turns the
    descriptors passed with the request (which it owns from then on) and
    ``info`` into ``(process_obj, owned)``: the process object the child
    runs (with ``_bootstrap``) and the objects holding those descriptors,
    which the zygote closes once the child is forked.

    Create it from the thread that should be copied, before starting
    threads that the children must not inherit.
    """

    def __init__(self, build: Callable[[list[int], Any], tuple[Any, Sequence[Any]]]) -> None:
        control, remote = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        for sock in (control, remote):
            sock.settimeout(None)  # blocking, whatever the default timeout
        exit_r, exit_w = os.pipe()
        owner = os.getpid()
        util._flush_std_streams()
        try:
            pid = fork()  # our threads step aside (see _forksafe_threads)
        except BaseException:
            control.close()
            remote.close()
            util.close_fds(exit_r, exit_w)
            raise
        if pid == 0:  # the zygote
            code = 1
            try:
                control.close()
                os.close(exit_r)
                code = _serve(remote, build, owner, exit_w)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                util._flush_std_streams()
                os._exit(code)
        remote.close()
        os.close(exit_w)
        self.pid: Optional[int] = pid
        self._control: Optional[_socket.socket] = control
        self._exit_r = exit_r
        self._lock = threading.Lock()
        util.register_after_fork(self, Zygote._after_fork_in_child)

    def __repr__(self) -> str:
        state = "open" if self._control is not None else "closed"
        return f"<{type(self).__name__} pid={self.pid} {state}>"

    @property
    def alive(self) -> bool:
        """Whether requests can still be sent (the zygote may have died since the last one)."""
        return self._control is not None

    def popen_for(self, fds: Sequence[int], info: Any) -> Callable[[Any], Any]:
        """A ``_Popen`` for a process object: its ``start()`` then asks the zygote for the child.

        ``fds`` (the caller keeps its copies) and ``info`` (picklable) are
        what ``build`` gets in the zygote.  ``start()`` raises
        ``ZygoteLost`` if the zygote is gone.
        """

        def make_popen(process_obj: Any) -> Any:
            from .popen_zygote import Popen

            return Popen(process_obj, self, fds, info)

        return make_popen

    def shut(self) -> None:
        """Tell the zygote to exit, without waiting: once its children have exited (or been stopped)."""
        with self._lock:
            control, self._control = self._control, None
        if control is not None:
            control.close()

    def close(self, wait: bool = True) -> None:
        """Tell the zygote to exit (``shut``) and reap it.

        With ``wait=False``, a zygote that has not exited yet is reaped by a
        short-lived thread of its own (the caller does not wait for its
        exit; it is never left a zombie), which the interpreter waits for
        when it exits: no zygote outlives its program.
        """
        self.shut()
        pid, self.pid = self.pid, None
        exit_r, self._exit_r = self._exit_r, -1
        if pid is None:
            return
        if wait or _wait_readable(exit_r, 0):
            _reap(pid, exit_r, None)
            return
        reaper = ForkSafeThread(lambda: _reap(pid, exit_r, reaper), name=f"zygote-{pid}-reaper")
        try:
            reaper.start()
        except RuntimeError:  # no new threads (interpreter shutdown)
            _reap(pid, exit_r, None)
        else:
            _reapers.track(reaper)

    def _after_fork_in_child(self) -> None:
        # A forked sibling (or another zygote) must not keep this one alive,
        # nor reap it.
        control, self._control = self._control, None
        if control is not None:
            control.close()
        util.close_fds(self._exit_r)
        self._exit_r = -1
        self.pid = None

    def _request(self, fds: Sequence[int], info: Any) -> tuple[int, int, int]:
        """Ask for a child; return ``(status fd, parent keep-alive fd, pid)``."""
        if len(fds) > MAX_CHILD_FDS:
            raise ValueError(f"a zygote child can be given at most {MAX_CHILD_FDS} descriptors, not {len(fds)}")
        payload = _cpickle.dumps(info)
        with self._lock:
            control = self._control
            if control is None:
                raise ZygoteLost(errno.EPIPE, "the zygote is closed")
            status, remote_status = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
            status.settimeout(None)
            child_r, keep_w = os.pipe()
            try:
                try:
                    reduction.sendfds(control, [remote_status.fileno(), child_r, *fds])
                    control.sendall(SIGNED_STRUCT.pack(len(payload)) + payload)
                finally:
                    remote_status.close()
                    os.close(child_r)
                if not _wait_readable(status.fileno(), REPLY_WAIT):
                    raise TimeoutError(f"no answer in {REPLY_WAIT:.0f} s")
                pid = read_signed(status.fileno())
            except (OSError, EOFError, RuntimeError) as exc:
                status.close()
                os.close(keep_w)
                self._lost()
                raise ZygoteLost(errno.EPIPE, f"zygote {self.pid} is gone: {exc!r}") from exc
            if pid == _FAILED:
                message = _read_message(status)
                status.close()
                os.close(keep_w)
                raise OSError(errno.EAGAIN, f"zygote {self.pid} could not start the process: {message}")
            return status.detach(), keep_w, pid

    def _lost(self) -> None:
        # Called with the lock held: no more requests; close() still reaps.
        control, self._control = self._control, None
        if control is not None:
            control.close()


def _reap(pid: int, exit_r: int, thread: Optional[ForkSafeThread]) -> bool:
    """Wait (at most ``EXIT_WAIT``) for zygote ``pid`` to exit, then reap it; true to step aside for a fork."""
    try:
        if thread is None:
            exited = _wait_readable(exit_r, EXIT_WAIT)
        else:
            # Polled with the fork signal: this thread steps aside for forks.
            poller = select.poll()
            poller.register(exit_r, select.POLLIN)
            poller.register(fork_requested_fd(), select.POLLIN)
            deadline = time.monotonic() + EXIT_WAIT
            while True:
                if thread.pausing:
                    return True
                remaining = deadline - time.monotonic()
                ready = dict(poller.poll(max(0.0, remaining) * 1000))
                exited = exit_r in ready
                if exited or remaining <= 0:
                    break
                if not thread.pausing:
                    time.sleep(0.001)  # another fork's signal: let it pass
        if not exited:
            util.sub_warning("zygote %d did not exit; killing it", pid)
            import signal

            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (OSError, ValueError):
        pass  # already reaped (a SIGCHLD handler of the program's, say)
    util.close_fds(exit_r)
    return False


class _Reapers:
    """The reaper threads of zygotes still exiting, joined when the interpreter exits.

    The threads are daemons (a program's exit does not wait for them by
    itself): without the join, a zygote still stopping its children when
    the program ends would outlive it, an orphan.  Each waits at most
    ``EXIT_WAIT`` before it kills its zygote.  The join is an exit
    finalizer (``util._exit_function``) of the second pass: after the pools
    left open have been terminated by theirs, before the resource tracker
    stops and temporary directories go.
    """

    def __init__(self) -> None:
        self._threads: list[ForkSafeThread] = []
        self._lock = threading.Lock()
        self._at_exit: Optional[util.Finalize] = None
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forget)

    def track(self, thread: ForkSafeThread) -> None:
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            # (Again if a finalizer run dropped it: a first reaper started
            # during the last pass would miss it.)
            if self._at_exit is None or not self._at_exit.still_active():
                self._at_exit = util.Finalize(None, self.join_all, exitpriority=-40)

    def join_all(self) -> None:
        with self._lock:
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(EXIT_WAIT + 1.0)

    def _forget(self) -> None:
        # A forked child did not close these zygotes: not its to wait for.
        self._threads = []
        self._lock = threading.Lock()
        self._at_exit = None  # (the parent's finalizers are not the child's)


_reapers = _Reapers()


def _wait_readable(fd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def _read_message(sock: _socket.socket) -> str:
    try:
        size = read_signed(sock.fileno())
        return recv_exactly(sock, size).decode("utf-8", "replace")
    except (OSError, EOFError):
        return "(no reason given)"


# ---------------------------------------------------------------- the zygote


def _serve(
    control: _socket.socket, build: Callable[[list[int], Any], tuple[Any, Sequence[Any]]], owner: int, exit_w: int
) -> int:
    """The zygote's life: serve requests until its owner hangs up, then stop its children."""
    import signal  # (here, in the zygote: the owner's first pool need not import it)

    _become_forked_child()
    sig_r, sig_w = os.pipe()
    os.set_blocking(sig_r, False)
    os.set_blocking(sig_w, False)
    # SIGCHLD only wakes the loop up (reaping happens in it); Ctrl-C is the
    # owner's business, not the zygote's.  Children get the owner's back.
    handlers: dict[signal.Signals, _Handler] = {signal.SIGCHLD: _wake_only, signal.SIGINT: signal.SIG_IGN}
    old_handlers = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    old_wakeup = signal.set_wakeup_fd(sig_w)
    children: dict[int, _socket.socket] = {}
    zygote_fds = [sig_r, sig_w, exit_w]
    poller = select.poll()
    control_fd = control.fileno()
    poller.register(control_fd, select.POLLIN)
    poller.register(sig_r, select.POLLIN)
    while True:
        ready = {fd for fd, _ in poller.poll()}
        if sig_r in ready:
            drain(sig_r)
            report_exited_children(children)
        if control_fd in ready:
            try:
                fds, info = _receive_request(control)
            except (OSError, EOFError, RuntimeError, AssertionError, _cpickle.UnpicklingError):
                break  # end of file: the owner closed us or died
            _start_child(fds, info, build, owner, children, control, zygote_fds, old_handlers, old_wakeup)
    control.close()
    _stop_children(children, sig_r)
    util._exit_function()  # what the after-fork hooks made here (proxies' references) is released
    return 0


def _wake_only(signum: int, frame: Any) -> None:
    pass


def _become_forked_child() -> None:
    # What Process._bootstrap does in a forked child before running: the
    # owner's finalizers are not ours, its children are not ours (their
    # pipe ends close here), the after-fork hooks reset what must not be
    # shared (other pools' pipes, the owner's fork server, queues...).
    # Each child runs them once more, as any forked grandchild does.
    inherited = process._children
    process._children = set()
    process._close_inherited_child_fds(inherited)
    util._finalizer_registry.clear()
    util._run_after_forkers()


def _receive_request(control: _socket.socket) -> tuple[list[int], Any]:
    fds = reduction.recvfds(control, MAX_CHILD_FDS + 2)
    try:
        if len(fds) < 2:
            raise RuntimeError(f"a request carries at least 2 descriptors, not {len(fds)}")
        size = read_signed(control.fileno())
        info = _cpickle.loads(recv_exactly(control, size))
    except BaseException:
        util.close_fds(*fds)
        raise
    return fds, info


def _start_child(
    fds: list[int],
    info: Any,
    build: Callable[[list[int], Any], tuple[Any, Sequence[Any]]],
    owner: int,
    children: dict[int, _socket.socket],
    control: _socket.socket,
    zygote_fds: list[int],
    old_handlers: dict,
    old_wakeup: int,
) -> None:
    import signal

    status = util.socket_over_fd(fds[0], _socket.AF_UNIX, _socket.SOCK_STREAM)
    sentinel_r, child_fds = fds[1], fds[2:]
    owned: Sequence[Any] = ()
    try:
        process_obj, owned = build(child_fds, info)
        # The child's parent is the owner, as for a child it forked itself.
        process_obj._parent_pid = owner
        util._flush_std_streams()
        pid = os.fork()
    except BaseException as exc:  # noqa: BLE001 - reported to the owner, who raises it
        if not owned:
            util.close_fds(*child_fds)
        for obj in owned:
            obj.close()
        os.close(sentinel_r)
        _refuse(status, exc)
        return
    if pid == 0:  # the child
        code = 1
        try:
            control.close()
            util.close_fds(*zygote_fds, *(conn.fileno() for conn in children.values()))
            status.close()
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            code = process_obj._bootstrap(parent_sentinel=sentinel_r)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            util._flush_std_streams()
            os._exit(code)
    for obj in owned:
        obj.close()
    os.close(sentinel_r)
    del process_obj
    try:
        status.sendall(SIGNED_STRUCT.pack(pid))
    except OSError:
        pass  # the owner gave up on it; it is reaped all the same
    children[pid] = status


def _refuse(status: _socket.socket, exc: BaseException) -> None:
    message = f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")
    try:
        status.sendall(SIGNED_STRUCT.pack(_FAILED) + SIGNED_STRUCT.pack(len(message)) + message)
    except OSError:
        pass
    status.close()


def _stop_children(children: dict[int, _socket.socket], sig_r: int) -> None:
    """The owner has gone or closed us: let what is left exit, then SIGTERM it, then SIGKILL it; reap."""
    import signal

    # Children exit on their own once their owner closes their work (or
    # dies): they get a moment before the signals.
    for sig, wait_for in ((None, CHILD_GRACE), (signal.SIGTERM, CHILD_GRACE), (signal.SIGKILL, KILL_WAIT)):
        report_exited_children(children)
        if not children:
            return
        if sig is not None:  # the first round only waits
            for pid in children:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
        deadline = time.monotonic() + wait_for
        poller = select.poll()
        poller.register(sig_r, select.POLLIN)
        while children:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            poller.poll(1000 * min(remaining, 0.1))
            drain(sig_r)
            report_exited_children(children)
    for conn in children.values():
        conn.close()  # stuck in the kernel: left to init, which reaps it once it dies

"""The resource tracker: unlinks named resources that their owners leaked.

Named semaphores and shared-memory segments outlive the process that
created them.  If it dies without unlinking them (killed, crashed), they
stay in the system until reboot.  One tracker process per process tree
remembers what is in use and cleans up after the whole tree::

    main process ──┬── REGISTER:/psm_1:shared_memory ──>┐
     fork child ───┤   (each holds the write end of     │  tracker process
    spawn child ───┤    one pipe; one line per call,    ├─ keeps a set per type;
    forkserver ────┘    < PIPE_BUF so writes are atomic) │  at EOF (every holder
                                                         │  gone) unlinks the rest
                                                         └─ and warns, naming them

The tracker starts lazily, on the first ``register``/``getfd``, as a fresh
interpreter.  Children of every start method share it: forked ones inherit
the descriptor, spawned ones receive it (``spawn_main`` sets ``_fd``).  A
child whose parent never started one (a fork child: forking does not start
a tracker, as the standard library's does not, so that a fork-method
program pays for none it does not use), or whose tracker died, starts its
own for itself and its descendants; that tracker also outlives the child
until the child's parent has exited, so that a shared-memory block the
child created and handed over lives until the program ends, as under the
other start methods.  It
ignores SIGINT and SIGTERM, so a Ctrl-C or a ``killpg`` does not stop it
before the processes it watches are gone; it exits when the last one is.

Protocol: ASCII lines ``COMMAND:name:rtype``.  Names may not contain ``:``
or line breaks.  ``track=False`` (as in ``SharedMemory``) simply means the
caller does not register.

Beyond the standard library's types, ``folder`` is a private temp dir of a
process of the tree (``util.get_temp_dir()`` registers it), removed quietly
once every process is gone, so that a program killed by SIGKILL leaves
nothing in the temp root.  Only such directories are accepted, by absolute
path (``util.is_private_temp_dir``, checked again just before removal):
any process holding the pipe may send any line, and no other directory,
wherever it lies, may be removed on its say.  A process that stops its
tracker while it lives (``_stop``, as CPython's test helpers do) withdraws
its own temp dir first, since it still uses it (a fork server's socket, a
listener's address) and removes it itself at exit; a tracker started later
is told about it again.

The tracker's exit code says what it found (Python 3.13's, which its tests
and the starter's ``_exitcode`` read): 0 nothing was left registered (temp
dirs aside), 1 it cleaned up leaked resources, 2 a leaked resource could not
be cleaned up, 3 a client sent a malformed message (and nothing leaked).
"""

from __future__ import annotations

import os
import sys
import threading
import warnings

from . import _executable, util

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Callable, Optional

__all__ = ["ensure_running", "register", "unregister", "getfd", "main", "ResourceTracker", "ReentrantCallError"]

# POSIX guarantees atomic pipe writes up to PIPE_BUF, at least 512 bytes.
_MAX_MESSAGE = 512
_COMMANDS = ("REGISTER", "UNREGISTER", "PROBE")


def _ignored_signals() -> tuple:
    """The signals the tracker ignores (a Ctrl-C meant for its program must not stop it).

    (The signal module is imported here: every spawned child imports this
    module, and signal's import (enum) would cost it milliseconds.)
    """
    import signal

    return (signal.SIGINT, signal.SIGTERM)


def _unlink_semaphore(name: str) -> None:
    import _multiprocessing

    _multiprocessing.sem_unlink(name)


def _unlink_shared_memory(name: str) -> None:
    import _posixshmem

    _posixshmem.shm_unlink(name)


def _remove_folder(name: str) -> None:
    if not util.is_private_temp_dir(name):
        if os.path.lexists(name):
            raise ValueError("not a private temp dir of this library; left alone")
        return  # removed by its owner already
    import shutil

    shutil.rmtree(name)


def _remove_oob_segment(name: str) -> None:
    """Unlink the name of a segment an out-of-band buffer was sent in (``mp_core._segments``).

    Its receiver unlinks it on arrival; what is left was never received (its
    receiver or sender died, or the message was dropped).
    """
    if "/" in name or not name.startswith("psm_"):
        raise ValueError("not the name of an out-of-band segment; left alone")
    try:
        os.unlink(os.path.join("/dev/shm", name))
    except FileNotFoundError:
        pass


# Types cleaned up without a leak warning: what 'folder' names is the
# library's own business (a temp dir left by a killed process), not the
# program's leak, and does not count as one in the exit code either; nor
# does an 'oob_segment' (a large buffer's segment whose message was never
# received: the program did not create it); a 'dummy' leak (Python 3.13's
# tests) counts, unannounced.
_HOUSEKEEPING_TYPES = frozenset({"folder", "oob_segment"})
_QUIET_TYPES = _HOUSEKEEPING_TYPES | {"dummy"}


def cleanup_noop(name: str) -> None:
    """The cleanup of the ``'noop'`` resource type (for tests): nothing."""


def _cleanup_dummy(name: str) -> None:
    """The ``'dummy'`` type of Python 3.13's tests: a leak that is counted (exit code 1), never announced."""


#: resource type -> how the tracker disposes of a leaked resource of that type:
#: the types the running interpreter's standard library lists (code, its
#: test suite among it, expects to create a resource of every type listed
#: here but the test artefacts 'noop' and, from 3.13, 'dummy').
_CLEANUP_FUNCS: dict[str, Callable[[str], None]] = {
    "noop": cleanup_noop,
}
if os.name == "posix":
    _CLEANUP_FUNCS["semaphore"] = _unlink_semaphore
    _CLEANUP_FUNCS["shared_memory"] = _unlink_shared_memory

#: Types of ours beyond the standard library's, tracked the same way.
_EXTRA_CLEANUP_FUNCS: dict[str, Callable[[str], None]] = {
    "folder": _remove_folder,
    "oob_segment": _remove_oob_segment,
}
# 'dummy' works on every version; the stdlib lists it from 3.13 on.
(_CLEANUP_FUNCS if sys.version_info >= (3, 13) else _EXTRA_CLEANUP_FUNCS)["dummy"] = _cleanup_dummy


def _cleanup_func(rtype: str) -> Optional[Callable[[str], None]]:
    """How to dispose of a leaked resource of type ``rtype`` (``None``: unknown type)."""
    return _CLEANUP_FUNCS.get(rtype) or _EXTRA_CLEANUP_FUNCS.get(rtype)


class ReentrantCallError(RuntimeError):
    """The tracker was called again from within one of its own calls.

    Happens when a signal handler or a garbage-collection finalizer (say, of
    a ``SharedMemory``) runs in the middle of ``register``/``unregister`` in
    the same thread; waiting for the lock would deadlock.
    """


class ResourceTracker:
    """A handle on the tracker process: starts it, talks to it, stops it.

    ``_fd`` is the write end of the tracker's pipe (``None`` until started
    or received from a parent); ``_pid`` is the tracker's pid, known only
    to the process that started it (``_starter``), which alone reaps it.
    ``_exitcode`` is the exit code of the last tracker ``_stop`` reaped
    (``None`` before, while one runs, or if it was not ours to reap).
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0
        self._fd: Optional[int] = None
        self._pid: Optional[int] = None
        self._starter: Optional[int] = None
        self._exitcode: Optional[int] = None
        self._exit_hook: Optional[util.Finalize] = None
        self._lingers = False  # the tracker waits for our parent too: never wait for it at exit
        # The temp dir this process made and registered (util.get_temp_dir):
        # withdrawn when it stops its tracker, registered again with the next one.
        self._own_folders: set[str] = set()

    # ------------------------------------------------------------ locking

    def _enter(self) -> None:
        self._lock.acquire()
        if self._depth:
            self._lock.release()
            raise ReentrantCallError(
                "Reentrant call into the multiprocess resource tracker "
                "(from a signal handler or finalizer during another of its calls)"
            )
        self._depth += 1

    def _leave(self) -> None:
        self._depth -= 1
        self._lock.release()

    def _at_fork_reinit(self) -> None:
        # The lock may have been held by another thread at fork time.
        self._lock = threading.RLock()
        self._depth = 0
        # The parent's temp dir is the parent's to withdraw and re-register.
        self._own_folders = set()

    # ------------------------------------------------------------ public API

    def getfd(self) -> int:
        """Make sure the tracker runs; return the descriptor children must inherit."""
        self.ensure_running()
        return self._fd  # type: ignore[return-value]

    def ensure_running(self) -> None:
        """Start the tracker if this process has none or it died (with a warning then).

        A child that inherited or received the descriptor uses its parent's
        tracker and does not start its own while that one lives.
        """
        self._enter()
        try:
            self._ensure_running_locked()
        finally:
            self._leave()

    def register(self, name: str, rtype: str) -> None:
        """Have the tracker unlink ``name`` (of type ``rtype``) if it is leaked."""
        self._send("REGISTER", name, rtype)

    def unregister(self, name: str, rtype: str) -> None:
        """Tell the tracker ``name`` was cleaned up by its owner."""
        self._send("UNREGISTER", name, rtype)

    def _register_own_temp_dir(self, path: str) -> None:
        """``register(path, 'folder')`` for the temp dir this process made (``util.get_temp_dir``).

        Unlike a folder registered for another process, it is withdrawn when
        this process stops its tracker (``_stop``) while it lives on, and
        registered again with the tracker it starts next.
        """
        self._send("REGISTER", path, "folder", own_folder=True)

    def _unregister_if_running(self, name: str, rtype: str) -> None:
        """``unregister``, but only through a tracker this process can still reach: never starts one."""
        message = _encode("UNREGISTER", name, rtype)
        self._enter()
        try:
            if rtype == "folder":
                self._own_folders.discard(name)
            if self._fd is not None:
                try:
                    os.write(self._fd, message)
                except OSError:
                    pass  # gone: it cleans up nothing more anyway
        finally:
            self._leave()

    # ------------------------------------------------------------ internals

    def _ensure_running_locked(self) -> None:
        if self._fd is not None:
            if self._check_alive():
                return
            self._forget_dead_tracker()
            warnings.warn(
                "resource_tracker: process died unexpectedly, relaunching. Some resources might leak.", stacklevel=3
            )
        self._launch()

    def _check_alive(self) -> bool:
        """Whether the tracker this process talks to still runs.

        The tracker is the only reader of its pipe: a no-op line fails with
        EPIPE exactly when it is gone, whoever started it.  ``False`` if no
        tracker was started or received.
        """
        if self._fd is None:
            return False
        try:
            os.write(self._fd, b"PROBE:0:noop\n")
        except OSError:
            return False
        return True

    def _forget_dead_tracker(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            util.close_fds(fd)
        if self._starter == os.getpid() and self._pid is not None:
            # Its pipe end is closed, so it is exiting: reap it, not a zombie.
            _reap(self._pid, timeout=1.0)
        self._pid = self._starter = None

    def _launch(self) -> None:
        linger_pid = _parent_to_outlive()
        read_fd, write_fd = os.pipe()
        try:
            exe = _executable.get_executable()
            if exe is None:
                raise RuntimeError("no Python executable to start the resource tracker with")
            package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            program = (
                f"import sys; sys.path.insert(0, {package_parent!r}); "
                f"from mp_core.resource_tracker import main; main({read_fd}, {linger_pid!r})"
            )
            args = [exe, *util._args_from_interpreter_flags(), "-c", program]
            # Blocked here, SIGINT/SIGTERM stay blocked in the new process
            # until main() has set them to be ignored: no startup window.
            import signal

            old_mask = None
            if hasattr(signal, "pthread_sigmask"):
                old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _ignored_signals())
            try:
                pid = util.spawnv_passfds(exe, args, [read_fd])
            finally:
                if old_mask is not None:
                    signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
        self._fd, self._pid, self._starter = write_fd, pid, os.getpid()
        self._exitcode = None
        self._lingers = linger_pid is not None
        self._register_own_folders()
        if self._exit_hook is None or not self._exit_hook.still_active():
            # Runs after children were joined at exit; lets the tracker finish
            # (and be reaped) while we are still here to see its warnings.
            self._exit_hook = util.Finalize(None, self._stop_at_exit, exitpriority=-50)

    def _register_own_folders(self) -> None:
        """Tell a tracker just started about our temp dirs still in use (they outlived the last one)."""
        for name in sorted(self._own_folders):
            if not util.is_private_temp_dir(name):
                self._own_folders.discard(name)  # removed meanwhile: nothing to clean up after a crash
                continue
            try:
                os.write(self._fd, _encode("REGISTER", name, "folder"))  # type: ignore[arg-type]
            except (OSError, ValueError):
                pass  # the directory works without it; only a crash would leave it behind

    def _withdraw_own_folders(self, fd: int) -> None:
        """Unregister our temp dirs from the tracker on ``fd``: we live on, and they are in use."""
        for name in sorted(self._own_folders):
            try:
                os.write(fd, _encode("UNREGISTER", name, "folder"))
            except (OSError, ValueError):
                pass  # gone already: it removes nothing any more

    def _send(self, command: str, name: str, rtype: str, *, own_folder: bool = False) -> None:
        message = _encode(command, name, rtype)
        self._enter()
        try:
            if self._fd is None:
                self._launch()
            try:
                written = os.write(self._fd, message)  # type: ignore[arg-type]
            except BrokenPipeError:
                # The tracker died: what it knew is lost, but later
                # registrations should still be honoured.
                self._forget_dead_tracker()
                warnings.warn(
                    "resource_tracker: process died unexpectedly, relaunching. Some resources might leak.", stacklevel=3
                )
                self._launch()
                written = os.write(self._fd, message)  # type: ignore[arg-type]
            if written != len(message):  # pragma: no cover - atomic below PIPE_BUF
                raise RuntimeError(f"resource_tracker: short write ({written} of {len(message)} bytes)")
            if rtype == "folder":
                if own_folder:
                    self._own_folders.add(name)
                elif command == "UNREGISTER":
                    self._own_folders.discard(name)
        finally:
            self._leave()

    def _stop(self, timeout: Optional[float] = None) -> Optional[int]:
        """Close our end and, if we started the tracker, wait for it to exit.

        The tracker exits (cleaning up what is still registered) once every
        holder of the descriptor has closed it.  Returns its exit code (see
        the module docstring), also kept in ``_exitcode``, or ``None`` if we
        are not its starter or it did not exit within ``timeout`` seconds (it
        then lives on and is no longer ours to reap).

        Our own temp dir is withdrawn first: this process still uses it (a
        fork server listens there) and removes it at exit; a tracker started
        later (by the next ``register`` or process start) is told about it again.
        """
        self._enter()
        try:
            fd, self._fd = self._fd, None
            pid, starter = self._pid, self._starter
            self._pid = self._starter = None
            if fd is not None:
                self._withdraw_own_folders(fd)
                util.close_fds(fd)
            if pid is None or starter != os.getpid():
                return None
            self._exitcode = _reap(pid, timeout)
            return self._exitcode
        finally:
            self._leave()

    def _stop_at_exit(self) -> None:
        # Children have been joined by now, so the tracker normally sees EOF
        # at once; a process still holding the descriptor (a fork server, a
        # detached grandchild) must not hold up our exit for long.  A tracker
        # that outlives our parent is left to it (and to init, which reaps it).
        self._stop(timeout=0 if self._lingers else 0.5)


def _parent_to_outlive() -> Optional[int]:
    """The pid a tracker started now must also outlive: this process's live parent in the tree, if any.

    Only the main process's tracker ends with the processes that hold its
    pipe; one started by a child (whose parent has none) waits for that
    parent as well, since the child may have handed what it registered over.
    """
    from . import process

    parent = process.parent_process()
    if parent is None or not parent.pid or parent.pid == 1 or not parent.is_alive():
        return None
    return parent.pid


def _wait_for_exit(pid: int) -> None:
    """Block until process ``pid`` (not necessarily our child) has exited."""
    import select
    import time

    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is not None:
        try:
            pidfd = pidfd_open(pid)
        except ProcessLookupError:
            return
        except OSError:
            pass  # no pidfd support in this kernel: poll below
        else:
            try:
                select.select([pidfd], [], [])
            finally:
                os.close(pidfd)
            return
    kqueue = getattr(select, "kqueue", None)
    if kqueue is not None:  # macOS and the BSDs
        queue = kqueue()
        try:
            event = select.kevent(  # type: ignore[attr-defined, unused-ignore]  # typeshed: macOS and the BSDs only
                pid,
                filter=select.KQ_FILTER_PROC,  # type: ignore[attr-defined, unused-ignore]
                flags=select.KQ_EV_ADD,  # type: ignore[attr-defined, unused-ignore]
                fflags=select.KQ_NOTE_EXIT,  # type: ignore[attr-defined, unused-ignore]
            )
            queue.control([event], 1, None)
            return
        except ProcessLookupError:
            return
        except OSError:
            pass
        finally:
            queue.close()
    # Polling (PyPy 3.9 has no os.pidfd_open): until the pid is gone or a zombie.
    while not _has_exited(pid):
        time.sleep(0.5)


def _has_exited(pid: int) -> bool:
    """Whether process ``pid`` (not necessarily our child) has exited, reaped or not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return True  # the pid now belongs to another user's process: ours is gone
    # kill() still finds a zombie: a process that has exited and that its
    # parent has not reaped yet.  The parent may well be waiting for us first
    # (subprocess.run() reads the output that we hold to its end before it
    # reaps), so a zombie counts as gone, as a pidfd or kqueue reports it.
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """Whether ``pid`` is a zombie, as far as /proc tells (``False`` without /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            stat = stat_file.read()
    except OSError:
        return False  # no /proc here, or the process is gone: kill() tells next time
    # "pid (comm) state ...": comm may hold spaces and parentheses, the last ')' ends it.
    state = stat.rindex(b")") + 2
    return stat[state : state + 1] == b"Z"


def _reap(pid: int, timeout: Optional[float]) -> Optional[int]:
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            got, status = os.waitpid(pid, 0 if deadline is None else os.WNOHANG)
        except ChildProcessError:
            return None
        if got == pid:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= deadline:  # type: ignore[operator]
            return None
        time.sleep(0.01)


def _encode(command: str, name: str, rtype: str) -> bytes:
    if _cleanup_func(rtype) is None:
        known = ", ".join(sorted([*_CLEANUP_FUNCS, *_EXTRA_CLEANUP_FUNCS]))
        raise ValueError(f"unknown resource type {rtype!r} (known: {known})")
    if not isinstance(name, str) or any(ch in name for ch in ":\r\n\0"):
        raise ValueError(f"resource name {name!r} must be a string without ':', line breaks or NUL")
    if rtype == "folder" and command == "REGISTER" and not util.is_private_temp_dir(name):
        raise ValueError(
            f"folder {name!r} is not a private temp dir of this library "
            f"(a pymp-* directory of util.get_temp_dir() in the temp root): not tracked"
        )
    message = f"{command}:{name}:{rtype}\n".encode("ascii")
    if len(message) > _MAX_MESSAGE:
        raise ValueError(f"resource name too long ({len(message)} bytes in the message, at most {_MAX_MESSAGE})")
    return message


_resource_tracker = ResourceTracker()
ensure_running = _resource_tracker.ensure_running
register = _resource_tracker.register
unregister = _resource_tracker.unregister
getfd = _resource_tracker.getfd
# util._cleanup_tests stops the tracker after the other helpers, which hold its
# descriptor (looked up at the call: a test may put in another tracker).
util._register_helper_stop(__name__, 1, lambda: _resource_tracker._stop())

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _resource_tracker._at_fork_reinit())


# ---------------------------------------------------------------- the tracker process


def main(fd: int, linger_pid: Optional[int] = None) -> None:
    """Run the tracker: read commands from ``fd`` until EOF, then clean up leaks.

    With ``linger_pid``, the cleanup also waits until that process has exited.
    """
    import signal

    for sig in _ignored_signals():
        signal.signal(sig, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _ignored_signals())
    # Holding the terminal or the starter's stdout pipe would keep whoever
    # reads it waiting for us; stderr stays, for the leak warnings.
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)

    registered: dict[str, set[str]] = {rtype: set() for rtype in [*_CLEANUP_FUNCS, *_EXTRA_CLEANUP_FUNCS]}
    malformed = False
    try:
        with open(fd, "rb") as commands:
            for line in commands:
                try:
                    command, name, rtype = line.rstrip(b"\n").decode("ascii").split(":")
                    if command not in _COMMANDS:
                        raise ValueError(f"unknown command {command!r}")
                    names = registered[rtype]
                    if command == "REGISTER":
                        # The path now; what it is, just before removal.
                        if rtype == "folder" and not util.is_private_temp_dir(name, existing=False):
                            raise ValueError("not a private temp dir of this library; refused")
                        names.add(name)
                    elif command == "UNREGISTER":
                        names.discard(name)
                except Exception as exc:
                    # A bad line is a bug in some client; the others still count on us.
                    malformed = True
                    print(f"resource_tracker: ignoring malformed message {line!r}: {exc}", file=sys.stderr)
        if linger_pid is not None and any(registered.values()):
            # What a child registered and did not clean up may have been
            # handed to its parent: it lives as long as the parent does.
            _wait_for_exit(linger_pid)
    finally:
        exitcode = _clean_up(registered) or (3 if malformed else 0)
    sys.exit(exitcode)


def _clean_up(registered: dict[str, set[str]]) -> int:
    """Dispose of what is still registered; 0 nothing was, 1 all was cleaned up, 2 some could not be."""
    cleanups = {**_CLEANUP_FUNCS, **_EXTRA_CLEANUP_FUNCS}
    outcome = 0
    for rtype, names in registered.items():
        if not names:
            continue
        if rtype not in _HOUSEKEEPING_TYPES:
            outcome = max(outcome, 1)
        leaked = sorted(names)
        if rtype not in _QUIET_TYPES:
            warnings.warn(
                f"resource_tracker: There appear to be {len(leaked)} leaked {rtype} objects "
                f"to clean up at shutdown: {leaked}",
                UserWarning,
                stacklevel=1,
            )
        cleanup = cleanups[rtype]
        for name in leaked:
            try:
                cleanup(name)
            except Exception as exc:
                outcome = 2
                warnings.warn(f"resource_tracker: {name!r}: {exc}", UserWarning, stacklevel=1)
    return outcome

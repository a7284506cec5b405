"""Process-wide plumbing: logging, finalizers, after-fork hooks, temp dir, exit.

Everything here is about the life cycle of *this* process: what runs when it
forks, what runs when it exits, and in which order.  At interpreter exit
(``_exit_function``) finalizers with a priority run first, then daemonic
children are terminated and the others joined, then the remaining finalizers
run.  A forked child leaves through ``os._exit`` so it never re-runs the
parent's ``atexit`` handlers.
"""

from __future__ import annotations

import atexit
import itertools
import os
import sys
import threading
import weakref

from . import process
from ._std_streams import close_stdin as _close_stdin  # noqa: F401  (the stdlib's name, used by forkserver)
from ._std_streams import flush_std_streams as _flush_std_streams

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    import logging
    from typing import Any, Callable, Iterable, Optional, Sequence

__all__ = [
    "sub_debug",
    "debug",
    "info",
    "sub_warning",
    "get_logger",
    "log_to_stderr",
    "get_temp_dir",
    "is_private_temp_dir",
    "remove_private_temp_dir",
    "register_after_fork",
    "is_exiting",
    "Finalize",
    "ForkAwareThreadLock",
    "ForkAwareLocal",
    "close_all_fds_except",
    "SUBDEBUG",
    "SUBWARNING",
]

# ---------------------------------------------------------------- logging

NOTSET = 0
SUBDEBUG = 5
DEBUG = 10
INFO = 20
SUBWARNING = 25

LOGGER_NAME = "multiprocess"
DEFAULT_LOGGING_FORMAT = "[%(levelname)s/%(processName)s] %(message)s"

_logger: Optional[logging.Logger] = None
_log_to_stderr = False


def sub_debug(msg: str, *args: Any) -> None:
    if _logger:
        _logger.log(SUBDEBUG, msg, *args, stacklevel=2)


def debug(msg: str, *args: Any) -> None:
    if _logger:
        _logger.log(DEBUG, msg, *args, stacklevel=2)


def info(msg: str, *args: Any) -> None:
    if _logger:
        _logger.log(INFO, msg, *args, stacklevel=2)


def sub_warning(msg: str, *args: Any) -> None:
    if _logger:
        _logger.log(SUBWARNING, msg, *args, stacklevel=2)


def get_logger() -> logging.Logger:
    """Return the library's logger (named ``multiprocess``), creating it once.

    The logger does not propagate to the root logger, like the standard
    library's, so that enabling it never duplicates the application's output.
    """
    global _logger
    import logging  # deferred: most programs never turn logging on

    with logging._lock:  # type: ignore[attr-defined]
        if not _logger:
            _logger = logging.getLogger(LOGGER_NAME)
            _logger.propagate = False
            logging.addLevelName(SUBDEBUG, "SUBDEBUG")
            logging.addLevelName(SUBWARNING, "SUBWARNING")
            # Make sure our exit handler runs before logging's own, so that
            # messages logged while shutting down are not lost.
            atexit.unregister(_exit_function)
            atexit.register(_exit_function)
    return _logger


def log_to_stderr(level: Optional[int | str] = None) -> logging.Logger:
    """Attach a stderr handler to the library logger and return the logger.

    Children started afterwards (under any start method) log to stderr too.
    """
    global _log_to_stderr
    import logging

    logger = get_logger()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(DEFAULT_LOGGING_FORMAT))
    logger.addHandler(handler)
    if level:
        logger.setLevel(level)
    _log_to_stderr = True
    return logger


# ---------------------------------------------------------------- temp dir


def get_temp_dir() -> str:
    """Return a private temporary directory for this process, created lazily.

    The directory (mode 0700, named ``pymp-*`` in the temp root) holds Unix
    socket addresses and similar rendezvous files; it is removed when the
    process exits, and by the resource tracker once every process of the
    tree is gone if this one dies without its exit handlers (SIGKILL,
    ``os._exit``).
    """
    tempdir = process.current_process()._config.get("tempdir")
    if tempdir is None:
        import shutil
        import tempfile

        tempdir = tempfile.mkdtemp(prefix=_TEMP_DIR_PREFIX)
        info("created temp directory %s", tempdir)
        _track_temp_dir(tempdir)
        # The finalizer's priority keeps the directory until the last
        # listener that lives in it has been closed.
        Finalize(None, _remove_temp_dir, args=(shutil.rmtree, tempdir), exitpriority=-100)
        process.current_process()._config["tempdir"] = tempdir
    return tempdir


def _remove_temp_dir(rmtree: Callable[..., None], tempdir: str) -> None:
    _untrack_temp_dir(tempdir)
    rmtree(tempdir, ignore_errors=True)
    current = process.current_process()
    if current is not None and current._config.get("tempdir") == tempdir:
        current._config["tempdir"] = None


_TEMP_DIR_PREFIX = "pymp-"
# What tempfile.mkdtemp() appends to the prefix: 8 characters of this set.
_TEMP_DIR_SUFFIX = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def is_private_temp_dir(path: str, existing: bool = True) -> bool:
    """Whether ``path`` can be a private temp dir that ``get_temp_dir()`` makes.

    True only for an absolute, normalized path of a ``pymp-XXXXXXXX``
    entry directly in this process's temp root (``tempfile.gettempdir()``),
    that is a directory of our user, not a symbolic link (with
    ``existing=False``, the path alone is judged).  The resource tracker
    removes no other directory, wherever it lies, whoever asks.
    """
    if not isinstance(path, str) or not os.path.isabs(path) or os.path.normpath(path) != path:
        return False
    parent, name = os.path.split(path)
    suffix = name[len(_TEMP_DIR_PREFIX) :]
    if not name.startswith(_TEMP_DIR_PREFIX) or len(suffix) != 8 or not _TEMP_DIR_SUFFIX.issuperset(suffix):
        return False
    import stat
    import tempfile

    root = tempfile.gettempdir()
    if parent not in (root, os.path.realpath(root)):
        return False
    if not existing:
        return True
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()


def remove_private_temp_dir(path: str) -> bool:
    """Remove ``path`` if it is a private temp dir (``is_private_temp_dir``), and untrack it.

    For a process that outlives another of the tree whose temp dir it knows
    (a manager's owner, after its server was killed): the directory goes now
    rather than when the whole tree has ended.  Returns whether it was
    removed; any other path is left alone.
    """
    if not is_private_temp_dir(path):
        return False
    import shutil

    _untrack_temp_dir(path)
    shutil.rmtree(path, ignore_errors=True)
    return not os.path.lexists(path)


# The one import cycle outside the serialization layer, left on purpose: the
# temp dir is this module's (``util.get_temp_dir``, the stdlib's name and
# place), and the resource tracker that removes it after a crash is started
# and stopped with this module's helpers (``Finalize``, ``spawnv_passfds``,
# ``close_fds``).  The tracker must be started when the directory is made,
# whichever module was imported before, so it cannot register itself here
# when it loads; moving the temp dir above it would take ``get_temp_dir`` out
# of ``util``.  Deferred to the call, so that neither side needs the other to
# load.


def _track_temp_dir(tempdir: str) -> None:
    """Have the resource tracker remove ``tempdir`` should we die without our exit handlers."""
    if not is_private_temp_dir(tempdir):
        return  # a temp root the tracker would not accept (tempfile.tempdir changed, say)
    from . import resource_tracker

    try:
        resource_tracker._resource_tracker._register_own_temp_dir(tempdir)
    except Exception as exc:  # the directory works without it; only a crash would leave it behind
        info("temp directory %s not tracked: %s", tempdir, exc)


def _untrack_temp_dir(tempdir: str) -> None:
    """Tell a tracker that still runs that ``tempdir`` is being removed (never starts one)."""
    try:
        from . import resource_tracker

        resource_tracker._resource_tracker._unregister_if_running(tempdir, "folder")
    except Exception:  # at exit, or a reentrant call: the tracker copes with a folder already gone
        pass


# ---------------------------------------------------------------- after fork

_afterfork_registry: weakref.WeakValueDictionary[tuple[int, int, Callable[..., Any]], Any] = (
    weakref.WeakValueDictionary()
)
_afterfork_counter = itertools.count()


def _run_after_forkers() -> None:
    """Run the registered after-fork hooks in registration order (child side)."""
    items = sorted(_afterfork_registry.items())
    for (_index, _ident, func), obj in items:
        try:
            func(obj)
        except Exception as exc:
            info("after forker raised exception %s", exc)


def register_after_fork(obj: Any, func: Callable[[Any], None]) -> None:
    """Call ``func(obj)`` in every child started by fork or forkserver.

    The registration is weak: it lapses when ``obj`` is garbage collected.
    """
    _afterfork_registry[(next(_afterfork_counter), id(obj), func)] = obj


# ---------------------------------------------------------------- finalizers

_finalizer_registry: dict[tuple[Any, int], Finalize] = {}
_finalizer_counter = itertools.count()


class Finalize:
    """A callback that runs once: when ``obj`` is collected, when called, or at exit.

    ``exitpriority`` decides whether and in which order it runs at interpreter
    exit: ``None`` means only on collection or explicit call; higher
    priorities run first, equal priorities in reverse order of creation.
    A finalizer created in one process never runs in a forked child.
    """

    def __init__(
        self,
        obj: Any,
        callback: Callable[..., Any],
        args: Sequence[Any] = (),
        kwargs: Optional[dict[str, Any]] = None,
        exitpriority: Optional[int] = None,
    ) -> None:
        if exitpriority is not None and not isinstance(exitpriority, int):
            raise TypeError(f"Exitpriority ({exitpriority!r}) must be None or int, not {type(exitpriority)}")
        if obj is not None:
            self._weakref: Optional[weakref.ref[Any]] = weakref.ref(obj, self)
        elif exitpriority is None:
            raise ValueError("Without object, exitpriority cannot be None")
        else:
            self._weakref = None
        self._callback: Optional[Callable[..., Any]] = callback
        self._args = args
        self._kwargs = kwargs or {}
        self._key: Optional[tuple[Any, int]] = (exitpriority, next(_finalizer_counter))
        self._pid = os.getpid()
        _finalizer_registry[self._key] = self

    def __call__(
        self,
        wr: Any = None,
        # Bound as defaults so they survive module teardown at exit.
        _finalizer_registry: dict = _finalizer_registry,
        sub_debug: Callable[..., None] = sub_debug,
        getpid: Callable[[], int] = os.getpid,
    ) -> Any:
        """Run the callback if it has not run yet; return its result."""
        try:
            del _finalizer_registry[self._key]
        except KeyError:
            sub_debug("finalizer no longer registered")
            return None
        if self._pid != getpid():
            sub_debug("finalizer ignored because different process")
            res = None
        else:
            sub_debug("finalizer calling %s with args %s and kwargs %s", self._callback, self._args, self._kwargs)
            res = self._callback(*self._args, **self._kwargs)  # type: ignore[misc]
        self._weakref = self._callback = self._args = self._kwargs = self._key = None  # type: ignore[assignment]
        return res

    def cancel(self) -> None:
        """Forget the finalizer without running it."""
        key = self._key
        # None once run or cancelled; pop() is as atomic as the del it replaces.
        if key is not None and _finalizer_registry.pop(key, None) is not None:
            self._weakref = self._callback = self._args = self._kwargs = self._key = None  # type: ignore[assignment]

    def still_active(self) -> bool:
        """Whether the callback has neither run nor been cancelled."""
        return self._key in _finalizer_registry

    def __repr__(self) -> str:
        obj = self._weakref() if self._weakref is not None else None
        if self._callback is None:
            return "<Finalize object, dead>"
        text = f"<{type(self).__name__} object, callback={getattr(self._callback, '__name__', self._callback)}"
        if obj is not None:
            text += f", obj={obj!r}"  # pragma: no cover - diagnostic only
        if self._args:
            text += f", args={self._args!r}"
        if self._kwargs:
            text += f", kwargs={self._kwargs!r}"
        if self._key[0] is not None:  # type: ignore[index]
            text += f", exitpriority={self._key[0]}"  # type: ignore[index]
        return text + ">"


def _run_finalizers(minpriority: Optional[int] = None) -> None:
    """Run pending finalizers, highest priority first.

    With ``minpriority`` only those whose priority is at least that run;
    without it, every finalizer that has a priority runs.
    """
    if _finalizer_registry is None:  # pragma: no cover - interpreter teardown
        return
    if minpriority is None:

        def wanted(priority: Optional[int]) -> bool:
            return priority is not None
    else:

        def wanted(priority: Optional[int]) -> bool:
            return priority is not None and priority >= minpriority

    # Finalizers may create or remove others while we run, so re-read the
    # registry instead of iterating over it.
    keys = [key for key in list(_finalizer_registry) if wanted(key[0])]
    keys.sort(reverse=True)
    for key in keys:
        finalizer = _finalizer_registry.get(key)
        if finalizer is None:
            continue
        sub_debug("calling %s", finalizer)
        try:
            finalizer()
        except Exception:
            import traceback

            traceback.print_exc()
    if minpriority is None:
        _finalizer_registry.clear()


# ---------------------------------------------------------------- exit

_exiting = False


def is_exiting() -> bool:
    """True once this process has begun its exit sequence."""
    return _exiting or _exiting is None


def _exit_function(
    info: Callable[..., None] = info,
    debug: Callable[..., None] = debug,
    _run_finalizers: Callable[..., None] = _run_finalizers,
    active_children: Callable[[], list] = process.active_children,
    current_process: Callable[[], Any] = process.current_process,
) -> None:
    """Shut down this process's share of the library (registered with atexit)."""
    global _exiting
    if _exiting:
        return
    _exiting = True
    info("process shutting down")
    debug("running all 'atexit' finalizers with priority >= 0")
    _run_finalizers(0)
    if current_process() is not None:
        # Daemonic children die with us; the others are waited for, as the
        # threading module waits for non-daemon threads.
        for child in active_children():
            if child.daemon:
                info("calling terminate() for daemon %s", child.name)
                child._popen.terminate()
        for child in active_children():
            info("calling join() for process %s", child.name)
            child.join()
    debug("running the remaining 'atexit' finalizers")
    _run_finalizers()


atexit.register(_exit_function)


def _reset_after_fork() -> None:
    """In a child just forked: the parent's finalizers are not its own; the after-fork hooks run."""
    _finalizer_registry.clear()
    _run_after_forkers()


# What a child's bootstrap runs besides its target (process cannot import us:
# we import it; see there).  The steps look our globals up when they run, as
# the bootstrap did when it imported us, so code that replaces
# ``util._exit_function`` or ``util.info`` still reaches the child's bootstrap.
process._install_life_cycle(
    info=lambda *args, **kwargs: info(*args, **kwargs),
    after_fork=lambda: _reset_after_fork(),
    exit_function=lambda: _exit_function(),
)


def _forget_inherited_atexit() -> None:
    """In a child just forked (fork or forkserver): the parent's ``atexit`` handlers are not its own.

    As Python 3.13 does: the inherited handlers are dropped, ours is
    registered again, and whatever the child registers from now on runs
    when it ends (``_run_child_atexit``).
    """
    atexit._clear()
    atexit.register(_exit_function)


def _run_child_atexit() -> None:
    """Just before a forked child's ``os._exit``: run the ``atexit`` handlers it registered.

    A handler that raises is reported on stderr and the others still run;
    the exit code stays the child's.
    """
    atexit._run_exitfuncs()
    _flush_std_streams()


# ---------------------------------------------------------------- fork-aware helpers


class ForkAwareThreadLock:
    """A ``threading.Lock`` that is replaced by a fresh one in forked children."""

    def __init__(self) -> None:
        self._at_fork_reinit()
        register_after_fork(self, ForkAwareThreadLock._at_fork_reinit)

    def _at_fork_reinit(self) -> None:
        self._lock = threading.Lock()
        self.acquire = self._lock.acquire
        self.release = self._lock.release

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *args: Any) -> None:
        self._lock.__exit__(*args)


class ForkAwareLocal(threading.local):
    """A ``threading.local`` whose contents are dropped in forked children."""

    def __init__(self) -> None:
        register_after_fork(self, lambda obj: obj.__dict__.clear())

    def __reduce__(self) -> tuple:
        return type(self), ()


# ---------------------------------------------------------------- file descriptors

try:
    MAXFD = os.sysconf("SC_OPEN_MAX")
except Exception:  # pragma: no cover - platform without sysconf
    MAXFD = 256


def close_all_fds_except(fds: Iterable[int]) -> None:
    """Close every file descriptor of this process except those in ``fds``."""
    keep = sorted(set(fds) | {-1, MAXFD})
    for low, high in zip(keep, keep[1:]):
        if high > low + 1:
            os.closerange(low + 1, high)


def close_fds(*fds: int) -> None:
    """Close each descriptor, ignoring ones that are already closed."""
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def socket_over_fd(fd: int, family: int = -1, kind: int = -1) -> Any:
    """A ``socket.socket`` over the existing descriptor ``fd``, its blocking mode untouched.

    A socket object made while ``socket.setdefaulttimeout()`` is in force
    switches its descriptor to non-blocking mode, and that flag belongs to
    the open file, which other processes and other connection objects share
    (a fork-server client, a pipe end, a manager connection).  This puts the
    mode back as it was and leaves the object without a timeout if the
    descriptor blocks.  The caller owns the object: ``detach()`` it to keep
    ``fd`` open, ``close()`` it to close ``fd``.
    """
    import socket

    if socket.getdefaulttimeout() is None:
        return socket.socket(family, kind, fileno=fd)
    blocking = os.get_blocking(fd)
    sock = socket.socket(family, kind, fileno=fd)
    sock.settimeout(None if blocking else 0.0)
    return sock


def new_blocking_socket(family: int) -> Any:
    """A new stream socket of ``family`` in blocking mode, whatever the default timeout."""
    import socket

    sock = socket.socket(family)
    sock.settimeout(None)
    return sock


def spawnv_passfds(path: str, args: Sequence[str], passfds: Iterable[int]) -> int:
    """Start ``path`` with ``args`` in a new process that inherits ``passfds``.

    Only the listed descriptors and stdin/stdout/stderr reach the child, as
    with ``subprocess``'s ``close_fds=True``: every other descriptor is
    closed in the child, including those the program made inheritable (a
    pipe a shell or ``make`` handed down, one passed with ``pass_fds``), so
    that a reader waiting for end of file on such a pipe is not kept waiting
    by our helpers (spawned children, the fork server, the resource tracker).
    Returns the child's pid; reaping it is the caller's job.
    """
    fds = sorted(set(passfds))
    inheritable = _inheritable_fds() if hasattr(os, "posix_spawn") and sys.platform.startswith("linux") else None
    if inheritable is not None:
        # Descriptors Python makes are close-on-exec already; the file
        # actions close the inheritable others in the child, and
        # ``dup2(fd, fd)`` clears the flag on exactly the ones passed.
        keep = {0, 1, 2, *fds}
        actions: list[tuple[int, ...]] = [(os.POSIX_SPAWN_CLOSE, fd) for fd in inheritable if fd not in keep]
        actions.extend((os.POSIX_SPAWN_DUP2, fd, fd) for fd in fds)
        return os.posix_spawn(path, list(args), os.environ, file_actions=actions)
    return _fork_exec(path, args, fds)


def _inheritable_fds() -> Optional[list[int]]:
    """The descriptors of this process that an ``exec`` would keep open (from /proc; ``None`` without it)."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return None
    found = []
    for name in names:
        fd = int(name)
        try:
            if os.get_inheritable(fd):
                found.append(fd)
        except OSError:
            pass  # the directory's own descriptor, closed by now (or another thread's)
    return found


def _fork_exec(path: str, args: Sequence[str], fds: list[int]) -> int:
    # Portable fallback: close everything but the standard streams and the
    # descriptors passed, and make those inheritable only in the child,
    # between fork and exec, so no other thread's child can pick them up.
    from ._forksafe_threads import fork

    args = list(args)
    pid = fork()  # our threads step aside (macOS: CPython 3.12+ warns there too)
    if pid == 0:  # pragma: no cover - runs in the child until exec
        try:
            close_all_fds_except([0, 1, 2, *fds])
            for fd in fds:
                os.set_inheritable(fd, True)
            os.execv(path, args)
        finally:
            os._exit(127)
    return pid


# Linux has an abstract namespace for Unix socket addresses (CPython's test
# suite asks this module, as it asks the stdlib's).
abstract_sockets_supported = sys.platform == "linux"


# How to stop each long-lived helper (fork server, resource sharer, resource
# tracker), registered by its module when it loads: those modules sit above
# this one and import it.  A helper whose module was never imported is not
# running.  By module name: (order, stop).
_helper_stops: dict[str, tuple[int, Callable[[], object]]] = {}


def _register_helper_stop(module: str, order: int, stop: Callable[[], object]) -> None:
    """Have ``_cleanup_tests`` call ``stop()`` (its result is ignored), in ascending ``order`` among the helpers.

    The resource tracker comes last: the other helpers hold its descriptor,
    and it exits only once every holder has closed it.
    """
    _helper_stops[module] = (order, stop)


def _cleanup_tests() -> None:
    """Stop this package's long-lived helpers; for test suites (the stdlib's name).

    Stops the fork server, the resource sharer and the resource tracker, and
    forgets the start method, so that the next test starts from scratch.
    """
    from . import _current_method

    for _order, stop in sorted(_helper_stops.values(), key=lambda entry: entry[0]):
        stop()
    _current_method.force(None)
    process._cleanup()


def _args_from_interpreter_flags() -> list[str]:
    import subprocess

    return subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]

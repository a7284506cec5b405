"""``Process``: a unit of work in another process, with the ``threading.Thread`` API.

``BaseProcess`` holds what every start method shares (identity, name,
daemon flag, authkey, the child-side bootstrap).  How the child comes to
life is the business of a ``Popen`` class chosen by the context
(``popen_fork``, ``popen_spawn_posix``, ``popen_forkserver``); the
context's ``Process`` subclasses plug it in through ``_Popen``.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
from _weakrefset import WeakSet  # (as the standard library's process module: weakref costs import time)

from . import _current_method

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, Callable, Iterable, Mapping, Optional

# The process tree's state, declared here and assigned at the end of the
# module: PyPy rejects an annotated assignment to a name that a function
# above it declares ``global`` (``BaseProcess._bootstrap`` does).
_parent_process: Optional[BaseProcess]
_current_process: BaseProcess
_children: set[BaseProcess]

__all__ = ["BaseProcess", "current_process", "active_children", "parent_process"]

try:
    ORIGINAL_DIR: Optional[str] = os.path.abspath(os.getcwd())
except OSError:  # the working directory was removed under us
    ORIGINAL_DIR = None


def current_process() -> BaseProcess:
    """Return the ``Process`` object that represents the running process."""
    return _current_process


def parent_process() -> Optional[BaseProcess]:
    """Return the parent's ``Process`` object, or ``None`` in the main process."""
    return _parent_process


def active_children() -> list[BaseProcess]:
    """Return the children of this process that are still alive.

    As a side effect, children that have finished are reaped.
    """
    _cleanup()
    return list(_children)


def _cleanup() -> None:
    # Reap finished children so that they do not linger as zombies.
    for proc in list(_children):
        if proc._popen is not None and proc._popen.poll() is not None:
            _children.discard(proc)


# ---------------------------------------------------------------- the child's life cycle

# Besides its target, a child runs steps that belong to util: after a fork it
# drops the parent's finalizers and runs the after-fork hooks, it logs, and it
# ends with the exit sequence (finalizers, then its own children).  util owns
# the finalizers, the hooks and the logger, and it imports this module (the
# exit sequence terminates and joins our children; the temp dir is kept in our
# process's config), so util installs those steps here when it loads instead of
# the bootstrap importing it.  Until then there is nothing for them to do: no
# finalizer, hook or logger exists without util, and no child either (every
# start method's Popen imports util).


def _nothing(*args: Any) -> None:
    pass


_child_log_info: Callable[..., None] = _nothing
_child_after_fork: Callable[[], None] = _nothing
_child_exit: Callable[[], None] = _nothing


def _install_life_cycle(
    *, info: Callable[..., None], after_fork: Callable[[], None], exit_function: Callable[[], None]
) -> None:
    """Called by util once, when it is imported: the steps the bootstrap runs (see above)."""
    global _child_log_info, _child_after_fork, _child_exit
    _child_log_info, _child_after_fork, _child_exit = info, after_fork, exit_function


class AuthenticationString(bytes):
    """The authkey's type: bytes that refuse to be pickled except to a new child."""

    def __reduce__(self) -> Any:
        from ._spawning import get_spawning_popen

        if get_spawning_popen() is None:
            raise TypeError("Pickling an AuthenticationString object is disallowed for security reasons")
        return AuthenticationString, (bytes(self),)


def _process_state_error(message: str) -> AssertionError:
    # The standard library reports process misuse with AssertionError (from
    # plain asserts); we raise the same type explicitly so that it survives
    # ``python -O`` and ``except AssertionError`` in user code keeps working.
    return AssertionError(message)


class BaseProcess:
    """A process object with the ``threading.Thread`` API.

    Subclass and override ``run()``, or pass ``target``.  Children inherit the
    creator's ``authkey`` and ``daemon`` flag.  ``exitcode`` is ``None`` while
    the child runs, then its exit status: ``0`` for a normal return, the code
    given to ``sys.exit``, ``1`` after an uncaught exception (whose traceback
    is printed to stderr), or ``-N`` when it was killed by signal ``N``.
    """

    _start_method: Optional[str] = None
    # Set by __init__ (and by the _MainProcess/_ParentProcess stand-ins).
    _identity: tuple[int, ...]
    _config: dict[str, Any]
    _parent_pid: Optional[int]

    @staticmethod
    def _Popen(process_obj: BaseProcess) -> Any:  # pragma: no cover - abstract
        # A static method, as in every start method's subclass: the contexts
        # call ``SomeProcess._Popen(process_obj)`` on the class.
        raise NotImplementedError

    def _check_closed(self) -> None:
        if self._closed:
            raise ValueError("process object is closed")

    def __init__(
        self,
        group: None = None,
        target: Optional[Callable[..., Any]] = None,
        name: Optional[str] = None,
        args: Iterable[Any] = (),
        kwargs: Optional[Mapping[str, Any]] = None,
        *,
        daemon: Optional[bool] = None,
    ) -> None:
        if group is not None:
            raise _process_state_error("group argument must be None for now")
        count = next(_process_counter)
        self._identity = _current_process._identity + (count,)
        self._config = _current_process._config.copy()
        self._parent_pid = os.getpid()
        self._parent_name = _current_process.name
        self._popen: Any = None
        self._closed = False
        self._target = target
        self._args = tuple(args)
        self._kwargs = dict(kwargs) if kwargs else {}
        self._name = name or f"{type(self).__name__}-{':'.join(str(i) for i in self._identity)}"
        if daemon is not None:
            self.daemon = daemon
        _dangling.add(self)

    def run(self) -> None:
        """The child's work: call ``target(*args, **kwargs)``. Override freely."""
        if self._target:
            self._target(*self._args, **self._kwargs)

    def start(self) -> None:
        """Start the child. Call at most once, from the process that created it."""
        self._check_closed()
        if self._popen is not None:
            raise _process_state_error("cannot start a process twice")
        if self._parent_pid != os.getpid():
            raise _process_state_error("can only start a process object created by current process")
        if _current_process._config.get("daemon"):
            raise _process_state_error("daemonic processes are not allowed to have children")
        _cleanup()
        self._popen = self._Popen(self)
        self._sentinel = self._popen.sentinel
        # The target and its arguments now live in the child; dropping them
        # here lets their memory (and any resources they hold) go.
        del self._target, self._args, self._kwargs
        _children.add(self)

    def interrupt(self) -> None:
        """Interrupt the child: SIGINT on POSIX (Python 3.14's API, on every version).

        Unless the child handles SIGINT itself, ``KeyboardInterrupt`` is
        raised in its main thread, its traceback is printed and it exits
        with ``exitcode`` 1.  (Windows has no SIGINT for another process:
        there this terminates the child, as ``terminate()``.)
        """
        self._check_closed()
        self._popen.interrupt()

    def terminate(self) -> None:
        """Ask the child to stop (SIGTERM on POSIX)."""
        self._check_closed()
        self._popen.terminate()

    def kill(self) -> None:
        """Stop the child at once (SIGKILL on POSIX)."""
        self._check_closed()
        self._popen.kill()

    def join(self, timeout: Optional[float] = None) -> None:
        """Wait until the child exits or ``timeout`` seconds pass."""
        self._check_closed()
        if self._parent_pid != os.getpid():
            raise _process_state_error("can only join a child process")
        if self._popen is None:
            raise _process_state_error("can only join a started process")
        res = self._popen.wait(timeout)
        if res is not None:
            _children.discard(self)

    def is_alive(self) -> bool:
        """Whether the child has been started and has not exited yet."""
        self._check_closed()
        if self is _current_process:
            return True
        if self._parent_pid != os.getpid():
            raise _process_state_error("can only test a child process")
        if self._popen is None:
            return False
        returncode = self._popen.poll()
        if returncode is None:
            return True
        _children.discard(self)
        return False

    def close(self) -> None:
        """Release the resources of a finished process object.

        Raises ``ValueError`` while the child is still running.  Afterwards
        most methods and attributes raise ``ValueError``.
        """
        if self._popen is not None:
            if self._popen.poll() is None:
                raise ValueError(
                    "Cannot close a process while it is still running. You should first call join() or terminate()."
                )
            self._popen.close()
            self._popen = None
            del self._sentinel
            _children.discard(self)
        self._closed = True

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, name: str) -> None:
        if not isinstance(name, str):
            raise TypeError("name must be a string")
        self._name = name

    @property
    def daemon(self) -> bool:
        """Whether the child is killed (not waited for) when its parent exits."""
        return self._config.get("daemon", False)

    @daemon.setter
    def daemon(self, daemonic: bool) -> None:
        if self._popen is not None:
            raise _process_state_error("process has already started")
        self._config["daemon"] = daemonic

    @property
    def authkey(self) -> bytes:
        return self._config["authkey"]

    @authkey.setter
    def authkey(self, authkey: bytes) -> None:
        self._config["authkey"] = AuthenticationString(authkey)

    @property
    def exitcode(self) -> Optional[int]:
        self._check_closed()
        if self._popen is None:
            return None
        return self._popen.poll()

    @property
    def ident(self) -> Optional[int]:
        self._check_closed()
        if self is _current_process:
            return os.getpid()
        return self._popen and self._popen.pid

    pid = ident

    @property
    def sentinel(self) -> int:
        """A file descriptor that becomes ready when the child exits."""
        self._check_closed()
        try:
            return self._sentinel
        except AttributeError:
            raise ValueError("process not started") from None

    def __repr__(self) -> str:
        exitcode = None
        if self is _current_process:
            status = "started"
        elif self._closed:
            status = "closed"
        elif self._parent_pid != os.getpid():
            status = "unknown"
        elif self._popen is None:
            status = "initial"
        else:
            exitcode = self._popen.poll()
            status = "started" if exitcode is None else "stopped"
        info = [type(self).__name__, f"name={self._name!r}"]
        if self._popen is not None:
            info.append(f"pid={self._popen.pid}")
        info.append(f"parent={self._parent_pid}")
        info.append(status)
        if exitcode is not None:
            name = _exit_code_names().get(exitcode, exitcode)
            info.append(f"exitcode={name}")
        if self.daemon:
            info.append("daemon")
        return f"<{' '.join(info)}>"

    # ------------------------------------------------------------ child side

    def _bootstrap(self, parent_sentinel: Optional[int] = None) -> int:
        """Run in the new child: become the current process, run, report status."""
        from ._std_streams import close_stdin, flush_std_streams

        global _current_process, _parent_process, _process_counter, _children
        try:
            if self._start_method is not None:
                _current_method.force(self._start_method)
            _process_counter = itertools.count(1)
            inherited = _children
            _children = set()
            _close_inherited_child_fds(inherited)
            close_stdin()
            old_process = _current_process
            _current_process = self
            _parent_process = _ParentProcess(self._parent_name, self._parent_pid, parent_sentinel)
            if threading._HAVE_THREAD_NATIVE_ID:  # type: ignore[attr-defined]
                threading.main_thread()._set_native_id()  # type: ignore[attr-defined]
            try:
                # Forked children drop their parent's finalizers and run the
                # after-fork hooks; a spawned child keeps its own (those of
                # objects made while its main module was imported again).
                self._after_fork()
            finally:
                # The parent's process object lives on in the child only as a
                # reference to release.
                del old_process
            _child_log_info("child process calling self.run()")
            try:
                self.run()
                exitcode = 0
            finally:
                # Flush queues, run finalizers and reap children now, before
                # the threads are joined below (a forked child leaves through
                # os._exit: only the atexit handlers registered in it run, after this).
                _child_exit()
        except SystemExit as exc:
            exitcode = _exitcode_from_system_exit(exc)
        except BaseException:
            exitcode = 1
            import traceback

            sys.stderr.write(f"Process {self.name}:\n")
            traceback.print_exc()
        finally:
            threading._shutdown()  # type: ignore[attr-defined]
            _child_log_info("process exiting with exitcode %d", exitcode)
            flush_std_streams()
        return exitcode

    @staticmethod
    def _after_fork() -> None:
        _child_after_fork()


def _exitcode_from_system_exit(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(str(code) + "\n")
    return 1


def _close_inherited_child_fds(inherited: Iterable[BaseProcess]) -> None:
    # A forked child holds copies of its siblings' parent-side pipe ends;
    # releasing them keeps "parent gone" detection exact for every sibling.
    for proc in inherited:
        popen = getattr(proc, "_popen", None)
        close = getattr(popen, "_close_in_forked_child", None)
        if close is not None:
            close()


class _ParentProcess(BaseProcess):
    """The parent, as seen from a child: name, pid and liveness only."""

    def __init__(self, name: str, pid: Optional[int], sentinel: Optional[int]) -> None:
        self._identity = ()
        self._name = name
        self._pid = pid
        self._parent_pid = None
        self._popen = None
        self._closed = False
        self._sentinel = sentinel
        self._config = {}

    def is_alive(self) -> bool:
        if self._sentinel is None:
            return False
        from ._wait import wait

        return not wait([self._sentinel], timeout=0)

    @property
    def ident(self) -> Optional[int]:
        return self._pid

    def join(self, timeout: Optional[float] = None) -> None:
        """Wait until the parent exits or ``timeout`` seconds pass."""
        from ._wait import wait

        if self._sentinel is not None:
            wait([self._sentinel], timeout=timeout)

    pid = ident


class _MainProcess(BaseProcess):
    """The process that imported this library first: the root of the tree."""

    def __init__(self) -> None:
        self._identity = ()
        self._name = "MainProcess"
        self._parent_pid = None
        self._popen = None
        self._closed = False
        self._config = {"authkey": AuthenticationString(os.urandom(32)), "semprefix": "/mp"}

    def close(self) -> None:
        pass


_parent_process = None
_current_process = _MainProcess()
_process_counter = itertools.count(1)
_children = set()
del _MainProcess


_exit_names: Optional[dict[int, str]] = None


def _exit_code_names() -> dict[int, str]:
    """``{-N: '-SIGNAME'}``: how ``repr`` names the exit code of a child killed by a signal.

    Made when first needed, as the stdlib's ``_exitcode_to_name`` is at
    import: the signal module's import (enum) costs every ``import
    multiprocess`` milliseconds.
    """
    global _exit_names
    if _exit_names is None:
        import signal

        _exit_names = {-sig.value: f"-{sig.name}" for sig in signal.Signals}
    return _exit_names


def __getattr__(name: str) -> dict[int, str]:
    if name == "_exitcode_to_name":  # (the stdlib's name)
        return _exit_code_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Process objects that have been created but maybe not started; tests use it
# to find processes that were left behind.
_dangling: WeakSet[BaseProcess] = WeakSet()

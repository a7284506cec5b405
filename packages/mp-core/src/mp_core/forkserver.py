"""The fork server: a clean single-threaded process that forks children on request.

::

    program (client)                         fork server
    ----------------                         -----------
    ensure_running() ── spawn ─────────────> main(): import preload modules,
         keeps alive_w                        then serve on a Unix socket
    connect_to_new_process(fds)
         connect, prove the key (HMAC) ────> check the proof, else hang up
         send [child_r, tracker_fd, *fds] ─> fork() ──> child: spawn._main(child_r)
         <─────────────────── child's pid
         write prep data + process object into the pipe read by the child
         ...
         <─────────────── child's exit code (when the server reaps it)

The server's socket lives in a private directory and every connection must
answer a random challenge with an HMAC of the server's secret key, so no
other process, local user or not, can make it fork.  The server exits when
``alive_w`` is closed, i.e. when the program that started it has gone, even
if that program was killed by SIGKILL.
"""

from __future__ import annotations

import errno
import os
import selectors
import signal
import socket
import sys
import threading

from . import _cpickle, _entropy, process, reduction, spawn, util

# The status wire shared with the zygote (pid, then exit code, per child).
from ._child_status import SIGNED_STRUCT, read_signed  # noqa: F401  (read_signed: the stdlib's name)
from ._child_status import drain as _drain
from ._child_status import recv_exactly as _recv_exactly
from ._child_status import report_exited_children as _report_exited_children

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    import _socket
    from types import FrameType
    from typing import Any, Callable, Optional, Sequence, Union

    _Handler = Union[Callable[[int, Optional[FrameType]], Any], int, signal.Handlers, None]

__all__ = ["ensure_running", "get_inherited_fds", "connect_to_new_process", "set_forkserver_preload"]

MAXFDS_TO_SEND = 256
_CHALLENGE_SIZE = 32
_DIGEST = "sha256"
_HANDSHAKE_TIMEOUT = 5.0
# Every request carries: the child's data pipe, the resource tracker, stdout, stderr.
_FIXED_FDS = 4
#: What set_forkserver_preload(on_error=...) accepts (Python 3.15's parameter).
_ON_ERROR_CHOICES = ("ignore", "warn", "fail")
_CRASH_NOTE = (
    "Forkserver process may have crashed: see its output on stderr "
    "(set_forkserver_preload(..., on_error='fail') makes a failed preload end it)"
)


class ForkServer:
    """The client side: starts the server once and asks it for children.

    The server's address, key, the write end of its keep-alive pipe and its
    pid live in the attributes the standard library uses for them
    (``_forkserver_address``, ``_forkserver_authkey``,
    ``_forkserver_alive_fd``, ``_forkserver_pid``), which its tests and
    some tools read.
    """

    def __init__(self) -> None:
        self._forkserver_address: Optional[str] = None
        self._forkserver_authkey: Optional[bytes] = None
        self._forkserver_alive_fd: Optional[int] = None
        self._forkserver_pid: Optional[int] = None
        self._inherited_fds: Optional[list[int]] = None
        self._lock = threading.Lock()
        self._preload_modules: list[str] = ["__main__"]
        self._preload_on_error = "ignore"
        util.register_after_fork(self, ForkServer._after_fork)

    def _after_fork(self) -> None:
        # A forked child may keep using its parent's server, but it neither
        # owns it (cannot reap it) nor keeps it alive.
        self._lock = threading.Lock()
        if self._forkserver_alive_fd is not None:
            util.close_fds(self._forkserver_alive_fd)
            self._forkserver_alive_fd = None
        self._forkserver_pid = None

    def set_forkserver_preload(self, modules_names: Sequence[str], *, on_error: str = "ignore") -> None:
        """Set the modules the server imports before forking (applies to a server started later).

        ``on_error`` (Python 3.15's parameter) says what a module that fails
        to import (``ImportError``; for ``'__main__'``, any exception) does:
        ``'ignore'`` (the default) skips it silently; ``'warn'`` makes the
        server emit an ``ImportWarning`` naming it (shown where the server's
        warning filters let it through: ``-W always::ImportWarning``); and
        ``'fail'`` makes the server exit with the traceback on its stderr, so
        that starting a process then raises ``EOFError`` or a
        ``ConnectionError`` whose note says the server may have crashed.
        Raises ``TypeError`` for names that are not strings and
        ``ValueError`` for another ``on_error``.
        """
        if not all(type(name) is str for name in modules_names):
            raise TypeError("module_names must be a list of strings")
        if on_error not in _ON_ERROR_CHOICES:
            raise ValueError(f"on_error must be 'ignore', 'warn', or 'fail', not {on_error!r}")
        self._preload_modules = list(modules_names)
        self._preload_on_error = on_error

    def get_inherited_fds(self) -> Optional[list[int]]:
        """In a child of the server: the descriptors its parent passed along."""
        return self._inherited_fds

    def _stop(self) -> None:
        """Stop the server (tests use this to start from a clean slate)."""
        with self._lock:
            self._stop_unlocked()

    def _stop_unlocked(self) -> None:
        if self._forkserver_alive_fd is not None:
            os.close(self._forkserver_alive_fd)
            self._forkserver_alive_fd = None
        if self._forkserver_pid is not None:
            try:
                os.waitpid(self._forkserver_pid, 0)
            except ChildProcessError:
                pass
            self._forkserver_pid = None
        if self._forkserver_address is not None:
            try:
                os.unlink(self._forkserver_address)
            except OSError:
                pass
        self._forkserver_address = None
        self._forkserver_authkey = None

    def _server_alive(self) -> bool:
        if self._forkserver_address is None:
            return False
        if self._forkserver_pid is None:
            # Inherited from a parent: usable as long as its socket is.
            return os.path.exists(self._forkserver_address)
        try:
            pid, _status = os.waitpid(self._forkserver_pid, os.WNOHANG)
        except ChildProcessError:
            return False
        return pid == 0

    def ensure_running(self) -> None:
        """Start the server unless it is already running."""
        from . import resource_tracker

        with self._lock:
            resource_tracker.ensure_running()
            if self._server_alive():
                return
            if self._forkserver_pid is not None:
                util.sub_warning("fork server exited unexpectedly; starting a new one")
            self._stop_unlocked()
            self._start_server()

    def _start_server(self) -> None:
        address = os.path.join(util.get_temp_dir(), f"forkserver-{os.getpid()}-{os.urandom(4).hex()}")
        authkey = os.urandom(32)
        config = {
            "authkey": authkey,
            "preload": self._preload_modules,
            "on_error": self._preload_on_error,
            "address": address,
            "owner": os.getpid(),
            "prep": _server_preparation_data(self._preload_modules),
        }
        with util.new_blocking_socket(socket.AF_UNIX) as listener:
            listener.bind(address)
            os.chmod(address, 0o600)
            listener.listen()
            alive_r, alive_w = os.pipe()
            config_r, config_w = os.pipe()
            try:
                fds = [listener.fileno(), alive_r, config_r]
                program = f"from mp_core.forkserver import main; main({listener.fileno()}, {alive_r}, {config_r})"
                exe = spawn.get_executable()
                assert exe is not None
                cmd = [exe, *util._args_from_interpreter_flags(), "-c", program]
                pid = util.spawnv_passfds(exe, cmd, fds)
            except BaseException:
                os.close(alive_w)
                os.close(config_w)
                raise
            finally:
                os.close(alive_r)
                os.close(config_r)
        with open(config_w, "wb") as f:
            _cpickle.dump(config, f)
        self._forkserver_address, self._forkserver_authkey = address, authkey
        self._forkserver_alive_fd, self._forkserver_pid = alive_w, pid
        # At exit, after our children were joined (priority >= 0) but before
        # the resource tracker is told to finish (-50): the server holds the
        # tracker's pipe, so it must be gone first.
        util.Finalize(None, self._stop, exitpriority=-10)

    def connect_to_new_process(self, fds: Sequence[int]) -> tuple[int, int]:
        """Ask the server for a child; return ``(sentinel, data_w)``.

        ``sentinel`` is a socket descriptor on which the child's pid and then
        its exit code arrive; ``data_w`` is the pipe the child reads its
        preparation data and process object from.  ``fds`` reach the child
        and are found there through ``get_inherited_fds()``.
        """
        from . import resource_tracker

        if len(fds) + _FIXED_FDS >= MAXFDS_TO_SEND:
            raise ValueError("too many fds")
        for attempt in range(2):
            self.ensure_running()
            try:
                client = self._connect()
                break
            except (ConnectionRefusedError, FileNotFoundError) as exc:
                if attempt or self._forkserver_pid is not None:
                    _add_note(exc, _CRASH_NOTE)
                    raise
                # The inherited server went away with its owner: start our own.
                with self._lock:
                    self._forkserver_address = self._forkserver_authkey = None
            except (EOFError, ConnectionError) as exc:
                _add_note(exc, _CRASH_NOTE)
                raise
        with client:
            child_r, parent_w = os.pipe()
            std_fds = _standard_output_fds()
            try:
                all_fds = [child_r, resource_tracker.getfd(), *std_fds, *fds]
                reduction.sendfds(client, all_fds)
            except BaseException as exc:
                os.close(parent_w)
                if isinstance(exc, (EOFError, ConnectionError)):
                    _add_note(exc, _CRASH_NOTE)
                raise
            finally:
                os.close(child_r)
                util.close_fds(*std_fds)
            return client.detach(), parent_w

    def _connect(self) -> socket.socket:
        assert self._forkserver_address is not None and self._forkserver_authkey is not None
        client = util.new_blocking_socket(socket.AF_UNIX)
        import hmac

        try:
            client.connect(self._forkserver_address)
            challenge = _recv_exactly(client, _CHALLENGE_SIZE)
            client.sendall(hmac.new(self._forkserver_authkey, challenge, _DIGEST).digest())
        except BaseException:
            client.close()
            raise
        return client


def _add_note(exc: BaseException, note: str) -> None:
    """Add ``note`` to ``exc`` (``add_note`` where Python has it, 3.11+; the same ``__notes__`` list before)."""
    add_note = getattr(exc, "add_note", None)
    if add_note is not None:
        add_note(note)
    else:
        exc.__notes__ = [*getattr(exc, "__notes__", []), note]  # type: ignore[attr-defined, unused-ignore]  # typed from 3.11


def _standard_output_fds() -> list[int]:
    """Copies of our stdout and stderr (or of /dev/null where one is closed).

    The child writes where the program that asked for it writes *now*, as a
    fork or spawn child would, not wherever the server's output happened to
    go when the server was started.
    """
    fds = []
    for fd in (1, 2):
        try:
            fds.append(os.dup(fd))
        except OSError:
            fds.append(os.open(os.devnull, os.O_WRONLY))
    return fds


def _server_preparation_data(preload: Sequence[str]) -> dict[str, Any]:
    # sys.argv too: a main module may read it when imported.
    data: dict[str, Any] = {"sys_path": sys.path.copy(), "sys_argv": sys.argv.copy(), "dir": os.getcwd()}
    if "__main__" in preload:
        data.update(spawn._main_module_origin(sys.modules["__main__"]))
    return data


# ---------------------------------------------------------------- the server


def main(listener_fd: int, alive_r: int, config_fd: int) -> None:
    """Run the fork server (the program of its process)."""
    with open(config_fd, "rb") as f:
        config = _cpickle.load(f)
    owner: int = config["owner"]
    authkey: bytes = config["authkey"]
    # With on_error='fail' a failed preload raises out of here: the server
    # ends, its traceback on stderr, before it ever serves.
    _preload(config["preload"], config["prep"], config.get("on_error", "ignore"))
    util._close_stdin()
    # What a challenge needs, loaded while descriptors are plenty: a server
    # holding a socket per live child may run out, and must still answer the
    # client it could accept (PyPy's os.urandom opens /dev/urandom per call).
    import hmac  # noqa: F401

    _entropy.prepare()

    # SIGCHLD only needs to wake the loop up; reaping happens in the loop.
    sig_r, sig_w = os.pipe()
    os.set_blocking(sig_r, False)
    os.set_blocking(sig_w, False)
    handlers: dict[signal.Signals, _Handler] = {signal.SIGCHLD: lambda *_: None, signal.SIGINT: signal.SIG_IGN}
    old_handlers = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    signal.set_wakeup_fd(sig_w)

    # Children of the server that start children of their own by forkserver
    # use this same server.
    _forkserver._forkserver_address = config["address"]
    _forkserver._forkserver_authkey = authkey

    pid_to_conn: dict[int, _socket.socket] = {}
    with util.socket_over_fd(listener_fd, socket.AF_UNIX) as listener, selectors.DefaultSelector() as selector:
        selector.register(listener, selectors.EVENT_READ)
        selector.register(alive_r, selectors.EVENT_READ)
        selector.register(sig_r, selectors.EVENT_READ)
        while True:
            try:
                ready = {key.fileobj for key, _ in selector.select()}
                if alive_r in ready:
                    # EOF: the program that started us is gone.
                    if os.read(alive_r, 1) == b"":
                        break
                if sig_r in ready:
                    _drain(sig_r)
                    _report_exited_children(pid_to_conn)
                if listener in ready:
                    _accept_request(
                        listener, authkey, pid_to_conn, (listener, selector), [alive_r, sig_r, sig_w], old_handlers
                    )
            except OSError as exc:
                if exc.errno != errno.ECONNABORTED:
                    raise
    for conn in pid_to_conn.values():
        conn.close()
    if _owner_gone(owner):
        # The owner died without its exit handlers (SIGKILL, os._exit):
        # nobody else will remove our socket and its directory.
        _remove_orphaned_address(config["address"])
    # What preloading made (a main module's global semaphore, say) is
    # released as at any process's exit, so the tracker sees no leak.
    util._exit_function()
    os._exit(0)


_PF_EXITING = 0x4  # Linux task flag: the process is in exit()


def _owner_gone(owner: int) -> bool:
    """Whether the process that started the server is dead or dying (not merely stopping the server)."""
    if os.getppid() != owner:
        return True  # we were handed to a reaper: the owner is gone
    # The end of file on the keep-alive pipe can arrive before the kernel
    # reparents us (a dying process closes its files first): ask /proc
    # whether the owner is exiting.  Without /proc, assume it is alive.
    try:
        with open(f"/proc/{owner}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except FileNotFoundError:
        return os.path.isdir("/proc/self")
    except OSError:
        return False
    return fields[0] in (b"Z", b"X") or bool(int(fields[6]) & _PF_EXITING)


def _remove_orphaned_address(address: str) -> None:
    """Unlink the server's socket file, and its directory if that is left empty (a dead owner's temp dir)."""
    try:
        os.unlink(address)
    except OSError:
        pass
    try:
        os.rmdir(os.path.dirname(address))  # fails, harmlessly, if anything else is in it
    except OSError:
        pass


def _handle_preload(
    preload: Sequence[str],
    main_path: Optional[str] = None,
    sys_path: Optional[list[str]] = None,
    on_error: str = "ignore",
) -> None:
    """Import ``preload`` as the server does (the standard library's helper, by name and signature).

    ``'__main__'`` in ``preload`` with a ``main_path`` imports that script as
    the main module.  ``on_error`` as for ``set_forkserver_preload``: here
    ``'warn'`` warns in the caller and ``'fail'`` raises the error.
    """
    prep: dict[str, Any] = {}
    if sys_path is not None:
        prep["sys_path"] = sys_path
    if main_path is not None:
        prep["init_main_from_path"] = main_path
    _preload(preload, prep, on_error)


def _preload_failed(on_error: str, what: str, exc: BaseException) -> None:
    """Act on a failed preload (called from the ``except`` clause, so that ``'fail'`` re-raises it)."""
    if on_error == "fail":
        raise  # noqa: PLE0704 - re-raises the exception being handled
    if on_error == "warn":
        import warnings

        # Under -W error this is an error, as every warning is.
        warnings.warn(f"Failed to preload {what}: {exc}", ImportWarning, stacklevel=3)


def _preload(modules: Sequence[str], prep: dict[str, Any], on_error: str = "ignore") -> None:
    if prep.get("sys_path") is not None:
        sys.path[:] = prep["sys_path"]
    if prep.get("sys_argv") is not None:
        sys.argv[:] = prep["sys_argv"]
    if prep.get("dir"):
        try:
            os.chdir(prep["dir"])
        except OSError:
            pass
    main_origin = {k: v for k, v in prep.items() if k.startswith("init_main_from")}
    if "__main__" in modules and main_origin:
        # Importing the main module here means each child starts with it
        # already imported; the guard flag turns an unguarded main module into
        # the usual clear RuntimeError instead of a fork bomb.
        process.current_process()._inheriting = True  # type: ignore[attr-defined]
        try:
            spawn.prepare(main_origin)
        except Exception as exc:
            # Running a script can raise anything, not only ImportError.
            origin = next(iter(main_origin.values()))
            _preload_failed(on_error, f"__main__ from {origin!r}", exc)
        finally:
            del process.current_process()._inheriting  # type: ignore[attr-defined]
    for name in modules:
        if name == "__main__":
            continue
        try:
            __import__(name)
        except ImportError as exc:
            _preload_failed(on_error, f"module {name!r}", exc)


def _accept_request(
    listener: socket.socket,
    authkey: bytes,
    pid_to_conn: dict[int, _socket.socket],
    closables: tuple[Any, ...],
    unused_fds: list[int],
    old_handlers: dict,
) -> None:
    conn, _ = listener.accept()
    try:
        conn.settimeout(_HANDSHAKE_TIMEOUT)
        if not _authenticate(conn, authkey):
            conn.close()
            return
        fds = reduction.recvfds(conn, MAXFDS_TO_SEND + 1)
        conn.settimeout(None)
    except (OSError, EOFError, RuntimeError, AssertionError):
        conn.close()
        return
    if len(fds) < _FIXED_FDS or len(fds) > MAXFDS_TO_SEND:
        util.close_fds(*fds)
        conn.close()
        return
    util._flush_std_streams()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            # The server's exit handlers (its preloaded modules') are not the child's.
            util._forget_inherited_atexit()
            for closable in closables:
                closable.close()
            other_conns = [c.fileno() for c in pid_to_conn.values()]
            util.close_fds(*unused_fds, *other_conns)
            conn.close()
            code = _serve_one(fds, old_handlers)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            try:
                util._run_child_atexit()
            finally:
                os._exit(code)
    util.close_fds(*fds)
    try:
        conn.sendall(SIGNED_STRUCT.pack(pid))
        pid_to_conn[pid] = conn
    except OSError:
        conn.close()


def _authenticate(conn: socket.socket, authkey: bytes) -> bool:
    import hmac

    challenge = _entropy.random_bytes(_CHALLENGE_SIZE)
    conn.sendall(challenge)
    expected = hmac.new(authkey, challenge, _DIGEST).digest()
    answer = _recv_exactly(conn, len(expected))
    return hmac.compare_digest(answer, expected)


def _serve_one(fds: list[int], old_handlers: dict) -> int:
    """In a freshly forked child of the server: become the requested process."""
    signal.set_wakeup_fd(-1)
    for sig, handler in old_handlers.items():
        signal.signal(sig, handler)
    child_r, tracker_fd, stdout_fd, stderr_fd, *inherited = fds
    os.dup2(stdout_fd, 1)
    os.dup2(stderr_fd, 2)
    util.close_fds(stdout_fd, stderr_fd)
    from . import resource_tracker

    resource_tracker._resource_tracker._fd = tracker_fd
    _forkserver._inherited_fds = inherited
    # The server's finalizers are the server's; its after-fork hooks are
    # due now.  (Not in Process._bootstrap: by then the child has imported
    # its main module and unpickled its process object, and the finalizers
    # of what it made doing so are its own.)
    util._finalizer_registry.clear()
    util._run_after_forkers()
    parent_sentinel = os.dup(child_r)
    return spawn._main(child_r, parent_sentinel)


_forkserver = ForkServer()
ensure_running = _forkserver.ensure_running
get_inherited_fds = _forkserver.get_inherited_fds
connect_to_new_process = _forkserver.connect_to_new_process
set_forkserver_preload = _forkserver.set_forkserver_preload
# util._cleanup_tests stops the server (looked up at the call: a test may put in another).
util._register_helper_stop(__name__, 0, lambda: _forkserver._stop())

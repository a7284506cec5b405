"""``BaseManager``: starts (or connects to) a server and hands out proxies.

Life cycle of a manager started with ``start()``::

    INITIAL ── start() ──> STARTED ── shutdown() / garbage collection / exit ──> SHUTDOWN
       │                      ^
       └───── connect() ──────┘   (a server someone else runs: shutdown() leaves it running)

The server process of ``start()`` watches the process that started it and
shuts down by itself when that process dies, even by SIGKILL, so a crashed
program never leaves an orphaned manager behind.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any, Callable, Optional, Sequence, TypeVar

import mp_core
from mp_core import connection, process, util
from mp_core.context import ProcessError

from ._protocol import (
    ManagerStateError,
    State,
    Token,
    check_serializer,
    connect,
    dispatch,
    hashable_address,
    listener_client,
)
from ._proxy import AutoProxy, call_control, forget_address, register_proxytype
from ._server import Server

__all__ = ["BaseManager"]

_M = TypeVar("_M", bound="BaseManager")  # ``with SyncManager() as manager`` is a SyncManager


class BaseManager:
    """Runs a server process holding shared objects, and makes proxies for them.

    ``address``: where the server listens (``None``: a fresh Unix socket for
    ``start()``; ``(host, port)`` for TCP, port ``0`` picks one).
    ``authkey``: bytes every client must prove it holds (default: the
    current process's ``authkey``).  ``serializer``: ``'pickle'`` (this
    library's serialization, dill where needed) or ``'xmlrpclib'``.
    ``ctx``: the context whose start method runs the server.
    ``shutdown_timeout``: seconds ``shutdown()`` waits for the server to
    exit before terminating, then killing, it.
    """

    _registry: dict[str, tuple] = {}
    _Server: type = Server

    def __init__(
        self,
        address: Any = None,
        authkey: Optional[bytes] = None,
        serializer: str = "pickle",
        ctx: Any = None,
        *,
        shutdown_timeout: float = 1.0,
    ) -> None:
        check_serializer(serializer)
        if authkey is None:
            authkey = process.current_process().authkey
        self._address = hashable_address(address)
        self._authkey = process.AuthenticationString(authkey)
        self._state = State()
        self._serializer = serializer
        self._Listener, self._Client = listener_client[serializer]
        self._ctx = ctx or mp_core.get_context()
        self._shutdown_timeout = shutdown_timeout
        self._process: Any = None
        self._finalizer: Optional[util.Finalize] = None

    # ------------------------------------------------------------ starting

    def _check_initial(self) -> None:
        state = self._state.value
        if state == State.STARTED:
            raise ProcessError("Already started server")
        if state == State.SHUTDOWN:
            raise ProcessError("Manager has shut down")
        if state != State.INITIAL:
            raise ProcessError(f"Unknown state {state!r}")

    def get_server(self) -> Server:
        """A server for this manager's registry, to run in this process with ``serve_forever()``."""
        self._check_initial()
        return self._Server(self._registry, self._address, self._authkey, self._serializer)

    def connect(self) -> None:
        """Connect to a server that is already running at ``address``.

        Raises ``AuthenticationError`` for a wrong authkey and ``OSError``
        if nothing listens there.
        """
        call_control(self._address, self._authkey, self._serializer, "dummy")
        self._state.value = State.STARTED

    def start(self, initializer: Optional[Callable[..., Any]] = None, initargs: Sequence[Any] = ()) -> None:
        """Start the server in a new process; return once it accepts connections.

        ``initializer(*initargs)`` runs in the server process first.
        Raises ``ProcessError`` if the manager was started or shut down
        before, or if the server process dies before serving.
        """
        self._check_initial()
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        address = self._address
        if address is None:
            address = connection.arbitrary_address(connection.default_family)
        reader, writer = connection.Pipe(duplex=False)
        # The target is a plain function given the server class, not the
        # manager class: a manager class defined in a script's __main__
        # would have to travel by value to a spawned server.
        self._process = self._ctx.Process(
            target=_serve_in_child,
            args=(
                self._Server,
                self._server_registry(),
                address,
                self._authkey,
                self._serializer,
                writer,
                initializer,
                tuple(initargs),
            ),
        )
        ident = ":".join(str(i) for i in self._process._identity)
        self._process.name = f"{type(self).__name__}-{ident}"
        self._process.start()
        writer.close()
        try:
            self._address = hashable_address(self._await_address(reader))
        finally:
            reader.close()
        self._state.value = State.STARTED
        self._finalizer = util.Finalize(
            self,
            type(self)._finalize_manager,
            args=(self._process, self._address, self._authkey, self._state, self._serializer, self._shutdown_timeout),
            exitpriority=0,
        )

    def _await_address(self, reader: Any) -> Any:
        proc = self._process
        connection.wait([reader, proc.sentinel])
        try:
            return reader.recv()
        except EOFError:
            proc.join(self._shutdown_timeout)
            raise ProcessError(
                f"the server process of {type(self).__name__} exited (exit code "
                f"{proc.exitcode}) before it started serving"
            ) from None

    def _server_registry(self) -> dict:
        # The server needs neither proxy types nor creation flags.
        return {typeid: entry[:3] for typeid, entry in self._registry.items()}

    @classmethod
    def _run_server(
        cls,
        registry: dict,
        address: Any,
        authkey: bytes,
        serializer: str,
        writer: Any,
        initializer: Optional[Callable[..., Any]] = None,
        initargs: Sequence[Any] = (),
    ) -> None:
        """Run this class's server in the current (new) process; the standard library's entry point."""
        _serve_in_child(cls._Server, registry, address, authkey, serializer, writer, initializer, initargs)

    # ------------------------------------------------------------ stopping

    def shutdown(self) -> None:
        """Stop the server started by ``start()`` (and wait for its process).

        Proxies made by this manager stop working.  For a manager that
        connected (``connect()``) to a server run elsewhere, only this process's
        connection is closed; the server keeps running.
        """
        if self._finalizer is not None:
            self._finalizer()
        elif self._state.value == State.STARTED:
            forget_address(self._address)

    @staticmethod
    def _finalize_manager(
        proc: Any, address: Any, authkey: bytes, state: State, serializer: str, shutdown_timeout: float
    ) -> None:
        if proc.is_alive():
            util.info("sending shutdown message to manager")
            _ask_to_shut_down(address, authkey, serializer, shutdown_timeout)
            proc.join(timeout=shutdown_timeout)
            if proc.is_alive():
                util.info("manager still alive")
                proc.terminate()
                proc.join(timeout=shutdown_timeout)
                if proc.is_alive():
                    util.info("manager still alive after terminate")
                    proc.kill()
                    proc.join()
        if proc.exitcode not in (None, 0):
            # The server died without closing its listener (SIGKILL): its
            # socket file would stay until this process exits.
            _remove_private_socket(address)
        state.value = State.SHUTDOWN
        forget_address(address)

    def join(self, timeout: Optional[float] = None) -> None:
        """Wait for the server process to exit (after ``shutdown()``)."""
        if self._process is not None:
            self._process.join(timeout)
            if not self._process.is_alive():
                self._process = None

    def __enter__(self: _M) -> _M:
        if self._state.value == State.INITIAL:
            self.start()
        if self._state.value != State.STARTED:
            raise ProcessError("Unable to start server")
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.shutdown()

    @property
    def address(self) -> Any:
        """The server's address (known once started or given)."""
        return self._address

    # ------------------------------------------------------------ objects

    def _call(self, name: str, *args: Any, **kwds: Any) -> Any:
        if self._state.value != State.STARTED:
            raise ManagerStateError(
                "manager has shut down"
                if self._state.value == State.SHUTDOWN
                else "manager has not been started (call start() or connect())"
            )
        return call_control(self._address, self._authkey, self._serializer, name, args, kwds)

    def _create(self, typeid: str, /, *args: Any, **kwds: Any) -> tuple[Token, tuple]:
        """Create a ``typeid`` object in the server; return its token and exposed methods.

        The server counts one reference for the caller, to be adopted by a proxy.
        """
        ident, exposed = self._call("create", typeid, *args, **kwds)
        return Token(typeid, self._address, ident), exposed

    def _debug_info(self) -> str:
        """The server's objects and reference counts, as text."""
        return self._call("debug_info")

    def _number_of_objects(self) -> int:
        """How many objects the server holds."""
        return self._call("number_of_objects")

    @classmethod
    def register(
        cls,
        typeid: str,
        callable: Optional[Callable[..., Any]] = None,
        proxytype: Optional[Callable[..., Any]] = None,
        exposed: Optional[Sequence[str]] = None,
        method_to_typeid: Optional[dict[str, str]] = None,
        create_method: bool = True,
    ) -> None:
        """Register a type of shared object under ``typeid`` for this manager class.

        ``callable`` makes the object in the server (``None`` on a client
        of a server run elsewhere); ``proxytype`` wraps it (default:
        ``AutoProxy``); ``exposed`` lists the method names clients may call
        (default: the proxy type's ``_exposed_``, else every public
        method); ``method_to_typeid`` maps a method to the type id of the
        shared object its result becomes; ``create_method`` adds a method
        ``typeid(*args, **kwds)`` that creates an object and returns its proxy.
        """
        if "_registry" not in cls.__dict__:
            cls._registry = cls._registry.copy()
        if proxytype is None:
            proxytype = AutoProxy
        exposed = exposed or getattr(proxytype, "_exposed_", None)
        method_to_typeid = method_to_typeid or getattr(proxytype, "_method_to_typeid_", None)
        if method_to_typeid:
            for key, value in method_to_typeid.items():
                if type(key) is not str or type(value) is not str:
                    raise TypeError(f"method_to_typeid must map str to str, not {key!r} to {value!r}")
        cls._registry[typeid] = (
            callable,
            tuple(exposed) if exposed is not None else None,
            dict(method_to_typeid) if method_to_typeid else None,
            proxytype,
        )
        register_proxytype(typeid, proxytype)
        if create_method:
            setattr(cls, typeid, _creator(typeid, proxytype))


def _creator(typeid: str, proxytype: Callable[..., Any]) -> Callable[..., Any]:
    def create(self: BaseManager, /, *args: Any, **kwds: Any) -> Any:
        util.debug("requesting creation of a shared %r object", typeid)
        token, exposed = self._create(typeid, *args, **kwds)
        try:
            proxy = proxytype(
                token, self._serializer, manager=self, authkey=self._authkey, exposed=exposed, incref=False
            )
        except BaseException:
            self._call("decref", token.id)
            raise
        proxy._adopt()
        return proxy

    create.__name__ = create.__qualname__ = typeid
    create.__doc__ = f"Create a shared {typeid!r} object in the server and return a proxy for it."
    return create


def _serve_in_child(
    server_class: type,
    registry: dict,
    address: Any,
    authkey: bytes,
    serializer: str,
    writer: Any,
    initializer: Optional[Callable[..., Any]] = None,
    initargs: Sequence[Any] = (),
) -> None:
    """The body of a manager's server process: report the address, serve, clean up."""
    # Ctrl-C goes to the whole foreground process group: the manager must
    # outlive it until its owner shuts it down.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if initializer is not None:
            initializer(*initargs)
        server = server_class(registry, address, authkey, serializer)
        server._watch_parent = True
        writer.send(server.address)
    finally:
        writer.close()
    util.info("manager serving at %r", server.address)
    server.serve_forever()
    if server.owner_gone:
        # Killed (SIGKILL, os._exit), the owner never ran the exit handler
        # that removes its temp dir; the serving socket is gone by now.
        _remove_private_socket(server.address, with_directory=True)
    # What the server's objects hold (pools, other managers' references) is
    # released by the exit handlers the process runs next.


def _ask_to_shut_down(address: Any, authkey: bytes, serializer: str, timeout: float) -> None:
    """Send ``shutdown`` on a fresh connection, giving up after ``timeout`` (a stuck server is killed)."""

    def ask() -> None:
        try:
            conn = connect(address, authkey, serializer)
            try:
                dispatch(conn, None, "shutdown")
            finally:
                conn.close()
        except Exception as exc:
            util.debug("shutdown request failed: %s", exc)

    try:
        thread = threading.Thread(target=ask, name="manager-shutdown", daemon=True)
        thread.start()
    except RuntimeError:  # no new threads at interpreter shutdown (3.12+)
        ask()
        return
    thread.join(timeout)


def _remove_private_socket(address: Any, with_directory: bool = False) -> None:
    """Remove the socket file at ``address`` if it lies in one of this library's ``pymp-*`` temp dirs.

    With ``with_directory``, that directory goes too if it is left empty
    (others of the owner's servers may still have sockets in it: the last
    one to go removes it).  An address the user chose is never touched.
    """
    if not isinstance(address, str) or not address or address[0] == "\0":
        return
    directory = os.path.dirname(address)
    if not os.path.basename(directory).startswith("pymp-"):
        return
    try:
        os.unlink(address)
    except OSError:
        pass
    if with_directory:
        try:
            os.rmdir(directory)  # fails, harmlessly, while anything else is in it
        except OSError:
            pass

"""Proxies: local stand-ins for objects that live in a manager's server.

A proxy holds a ``Token`` (type id, server address, object id) and calls
methods through ``_callmethod``: one request and one reply over the calling
thread's connection to that server (opened on first use, per thread and
per process, since a forked child must not share its parent's socket).

References: the server counts the proxies alive anywhere; a proxy's
reference is released when it is garbage collected (or at exit)::

    manager.dict()         server creates the object with one reference,
                           the new proxy adopts it         (one round trip)
    proxy pickled to       the receiver adds a reference when it unpickles;
    another process        a proxy pickled for a new child is kept alive
                           until that child has been created
    forked child           adds a reference for each proxy it inherited
    proxy collected        a fire-and-forget release, on the thread's
                           connection (queued while that connection is busy)
    unpickled inside the   counts directly in the server: no connection
    server itself          (this is how a managed list lives in a managed dict)
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Optional

from mp_core import process, util
from mp_core.context import get_spawning_popen

from ._local_servers import local_server
from ._protocol import (
    RELEASE,
    REPLY_PROXY,
    REPLY_RETURN,
    State,
    Token,
    convert_to_error,
    listener_client,
)
from ._wire import MessageStream

if TYPE_CHECKING:
    from ._server import Server

__all__ = [
    "BaseProxy",
    "RebuildProxy",
    "AutoProxy",
    "MakeProxyType",
    "call_control",
    "forwarding",
    "register_proxytype",
]


# ---------------------------------------------------------------- connections


class _Channel:
    """One thread's connection to one server, and the releases waiting to go out on it."""

    __slots__ = ("conn", "dumps", "loads", "send_bytes", "recv_bytes", "busy", "pending")

    def __init__(self, conn: Any, serializer: str) -> None:
        self.conn = conn  # owns the descriptor
        stream = MessageStream(conn, serializer)
        self.dumps = stream.encode
        self.loads = stream.decode
        self.send_bytes = stream.send_bytes
        self.recv_bytes = stream.recv_bytes
        self.busy = False
        self.pending: list[Any] = []

    def release(self, ident: Any) -> None:
        self.pending.append(ident)
        if not self.busy:
            self.flush()

    def flush(self) -> None:
        # A garbage-collection finalizer may call release() while this
        # thread is in the middle of a request on the same connection: it
        # then only queues, and the request's end flushes.
        ids, self.pending = self.pending, []
        if ids:
            self.busy = True
            try:
                self.send_bytes(self.dumps((None, RELEASE, ids, {})))
            finally:
                self.busy = False


# (address, authkey) -> per-thread channels.  The key holds the authkey so
# that a client with another key never borrows a connection authenticated
# with this one.
_address_to_local: dict[tuple[Any, bytes], util.ForkAwareLocal] = {}
_address_lock = util.ForkAwareThreadLock()


def _local_for(address: Any, authkey: bytes) -> util.ForkAwareLocal:
    key = (address, authkey)
    tls = _address_to_local.get(key)
    if tls is None:
        with _address_lock:
            tls = _address_to_local.setdefault(key, util.ForkAwareLocal())
    return tls


def _open_channel(tls: Any, address: Any, authkey: bytes, serializer: str) -> _Channel:
    conn = listener_client[serializer][1](address, authkey=authkey)
    util.debug("opened a connection to the manager at %r", address)
    chan = tls.channel = _Channel(conn, serializer)
    return chan


def _drop_channel(tls: Any, chan: _Channel) -> None:
    if getattr(tls, "channel", None) is chan:
        del tls.channel
    try:
        chan.conn.close()
    except OSError:
        pass


def forget_address(address: Any) -> None:
    """Close this thread's connections to ``address`` (its server has gone)."""
    for (known, _authkey), tls in list(_address_to_local.items()):
        chan = getattr(tls, "channel", None) if known == address else None
        if chan is not None:
            _drop_channel(tls, chan)


# The proxy whose reply is being decoded in this thread: a proxy inside that
# reply (a managed list fetched from a managed dict) takes its authkey and
# manager, which matters for a remote manager with an authkey of its own.
_decoding = threading.local()


def _roundtrip(
    tls: Any, address: Any, authkey: bytes, serializer: str, request: tuple, caller: Optional[BaseProxy] = None
) -> Any:
    try:
        chan = tls.channel
    except AttributeError:
        chan = _open_channel(tls, address, authkey, serializer)
    # Busy from here: a finalizer run by the garbage collector in this thread
    # meanwhile queues its release instead of writing in the middle.
    chan.busy = True
    try:
        payload = chan.dumps(request)
    except BaseException:
        chan.busy = False  # nothing was sent: the connection is still in step
        raise
    try:
        chan.send_bytes(payload)
        data = chan.recv_bytes()
    except BaseException as exc:
        # Interrupted or broken mid-request: the connection is out of step.
        chan.busy = False
        _drop_channel(tls, chan)
        if isinstance(exc, EOFError):
            raise EOFError(
                f"the manager at {address!r} closed the connection (has it been shut down, or did its process die?)"
            ) from exc
        raise
    chan.busy = False
    if chan.pending:
        try:
            chan.flush()
        except OSError:
            _drop_channel(tls, chan)
    previous = getattr(_decoding, "caller", None)
    _decoding.caller = caller
    try:
        return chan.loads(data)
    finally:
        _decoding.caller = previous


def call_control(
    address: Any, authkey: bytes, serializer: str, name: str, args: tuple = (), kwds: Optional[dict] = None
) -> Any:
    """Run the server's control operation ``name`` over this thread's connection."""
    request = (None, name, args, kwds or {})
    kind, result = _roundtrip(_local_for(address, authkey), address, authkey, serializer, request)
    if kind == REPLY_RETURN:
        return result
    raise convert_to_error(kind, result)


# ---------------------------------------------------------------- releasing references


def _release_remote(token: Token, authkey: bytes, state: Optional[State], tls: Any, serializer: str) -> None:
    # A finalizer: runs on garbage collection, in whatever thread, or at exit.
    if state is not None and state.value != State.STARTED:
        return
    chan = getattr(tls, "channel", None)
    try:
        if chan is None:
            chan = _open_channel(tls, token.address, authkey, serializer)
        chan.release(token.id)
    except Exception as exc:
        util.debug("could not release %r: %s", token, exc)
        if chan is not None:
            _drop_channel(tls, chan)


def _release_local(server: Server, ident: Any) -> None:
    try:
        server.decref(None, ident)
    except Exception as exc:
        util.debug("could not release object %r held in its own server: %s", ident, exc)


# popen of a child being created -> proxies pickled for it, kept alive (and
# so referenced) until the child has added its own reference.
_held_for_children: weakref.WeakKeyDictionary[Any, list[BaseProxy]] = weakref.WeakKeyDictionary()


# ---------------------------------------------------------------- proxies


class BaseProxy:
    """Base class of proxies: forwards method calls to an object held by a manager.

    ``token`` names the object; ``serializer`` is the manager's; ``authkey``
    defaults to the manager's, else the current process's.  With
    ``incref`` (the default) the new proxy adds a reference to the object;
    ``manager_owned`` proxies never count.  Subclasses list the methods
    they forward in ``_exposed_`` and call ``_callmethod``.
    """

    _exposed_: Optional[tuple] = None
    _method_to_typeid_: Optional[dict] = None
    _isauto = False
    # Kept for code written against the standard library's class attributes.
    _address_to_local = _address_to_local
    _mutex = _address_lock

    def __init__(
        self,
        token: Token,
        serializer: str,
        manager: Any = None,
        authkey: Optional[bytes] = None,
        exposed: Any = None,
        incref: bool = True,
        manager_owned: bool = False,
    ) -> None:
        self._token = token
        self._id = token.id
        self._manager = manager
        self._serializer = serializer
        self._Client = listener_client[serializer][1]
        self._owned_by_manager = manager_owned
        self._held_locally = False
        self._close: Optional[util.Finalize] = None
        self._authkey: bytes
        if authkey is not None:
            self._authkey = process.AuthenticationString(authkey)
        elif manager is not None:
            self._authkey = manager._authkey
        else:
            self._authkey = process.current_process().authkey
        self._tls = _local_for(token.address, self._authkey)
        if incref:
            self._incref()
        util.register_after_fork(self, BaseProxy._after_fork)

    # ------------------------------------------------------------ calls

    def _callmethod(self, methodname: str, args: tuple = (), kwds: dict = {}) -> Any:  # noqa: B006
        """Call ``methodname(*args, **kwds)`` on the referent; return its result or raise its error.

        A result the manager registered as a new shared object (see
        ``method_to_typeid``) comes back as a proxy for it.
        """
        kind, result = _roundtrip(
            self._tls, self._token.address, self._authkey, self._serializer, (self._id, methodname, args, kwds), self
        )
        if kind == REPLY_RETURN:
            return result
        if kind == REPLY_PROXY:
            return self._proxy_for_result(*result)
        raise convert_to_error(kind, result)

    def _getvalue(self) -> Any:
        """A copy of the referent."""
        return self._callmethod("#GETVALUE")

    def _control(self, name: str, *args: Any) -> Any:
        return call_control(self._token.address, self._authkey, self._serializer, name, args)

    def _proxy_for_result(self, typeid: str, ident: Any, exposed: Any) -> BaseProxy:
        token = Token(typeid, self._token.address, ident)
        proxytype = _proxytype_for(self._manager, typeid)
        try:
            proxy = proxytype(
                token, self._serializer, manager=self._manager, authkey=self._authkey, exposed=exposed, incref=False
            )
        except BaseException:
            self._release_now(token)
            raise
        proxy._adopt()
        return proxy

    def _release_now(self, token: Token) -> None:
        _release_remote(token, self._authkey, None, self._tls, self._serializer)

    # ------------------------------------------------------------ references

    def _incref(self) -> None:
        if self._owned_by_manager:
            util.debug("owned_by_manager skipped INCREF of %r", self._token.id)
            return
        server = local_server(self._token.address)
        if server is not None:
            self._hold_locally(server)
            return
        self._control("incref", self._id)
        self._adopt()

    def _adopt(self) -> None:
        """Take over a reference the server already counts for this proxy."""
        state = self._manager._state if self._manager is not None else None
        self._close = util.Finalize(
            self,
            _release_remote,
            args=(self._token, self._authkey, state, self._tls, self._serializer),
            exitpriority=10,
        )

    def _hold_locally(self, server: Server, counted: bool = False) -> None:
        """Count this proxy directly in ``server``, which runs in this process.

        ``counted``: the server already counts a reference for this proxy.
        """
        if not counted:
            server.incref(None, self._id)
        self._held_locally = True
        self._close = util.Finalize(self, _release_local, args=(server, self._id))

    def _decref(self) -> None:
        """Release this proxy's reference now (it is released on collection anyway)."""
        if self._close is not None:
            self._close()
            self._close = None

    def _after_fork(self) -> None:
        self._manager = None
        if self._held_locally:
            # A child of the server (a pool worker) borrows what the server holds.
            self._held_locally = False
            self._close = None
            return
        try:
            self._incref()
        except Exception as exc:
            util.info("incref failed: %s", exc)

    # ------------------------------------------------------------ pickling and display

    def __reduce__(self) -> tuple:
        kwds: dict[str, Any] = {}
        popen = get_spawning_popen()
        if popen is not None:
            kwds["authkey"] = self._authkey
            _held_for_children.setdefault(popen, []).append(self)
        if self._held_locally:
            server = local_server(self._token.address)
            if server is not None:
                # Pickled in its own server (into a reply, say): the server may
                # drop its copy as soon as the reply is out, so the receiver's
                # reference is counted now, and the receiver adopts it.
                server.incref(None, self._id)
                kwds["counted"] = True
        if self._isauto:
            kwds["exposed"] = self._exposed_
            return (RebuildProxy, (AutoProxy, self._token, self._serializer, kwds))
        cls = type(self)
        spec = cls.__dict__.get("_proxy_spec")
        maker: Any = _MadeProxyType(*spec) if spec is not None else cls
        return (RebuildProxy, (maker, self._token, self._serializer, kwds))

    def __deepcopy__(self, memo: dict) -> Any:
        return self._getvalue()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} object, typeid {self._token.typeid!r} at {id(self):#x}>"

    def __str__(self) -> str:
        """The referent's ``repr``, fetched from the server."""
        try:
            return self._callmethod("__repr__")
        except Exception:
            return repr(self)[:-1] + "; '__str__()' failed>"


def RebuildProxy(func: Callable[..., Any], token: Token, serializer: str, kwds: dict) -> Any:
    """Rebuild a pickled proxy; used by ``BaseProxy.__reduce__``.

    In the referent's own server the proxy counts its reference directly;
    elsewhere it adds one through a connection, unless the sender already
    counted it (``counted``: a proxy sent by the server itself).
    """
    counted = kwds.pop("counted", False)
    server = local_server(token.address)
    if server is not None:
        kwds.setdefault("authkey", server.authkey)
        kwds["incref"] = False
        proxy = func(token, serializer, **kwds)
        if not kwds.get("manager_owned"):
            proxy._hold_locally(server, counted)
        return proxy
    caller = getattr(_decoding, "caller", None)
    if caller is not None and caller._token.address == token.address:
        kwds.setdefault("authkey", caller._authkey)
        if caller._manager is not None:
            kwds.setdefault("manager", caller._manager)
    if counted:
        kwds["incref"] = False
        proxy = func(token, serializer, **kwds)
        proxy._adopt()
        return proxy
    kwds.setdefault("incref", True)
    return func(token, serializer, **kwds)


# ---------------------------------------------------------------- proxy types

# Names a generated forwarding method must never shadow: the proxy itself
# needs them to work at all.
_NOT_FORWARDED = frozenset(
    {
        "__getattribute__",
        "__getattr__",
        "__setattr__",
        "__delattr__",
        "__init__",
        "__new__",
        "__init_subclass__",
        "__reduce__",
        "__reduce_ex__",
        "__getstate__",
        "__setstate__",
        "__class__",
        "__del__",
        "__dict__",
        "__weakref__",
    }
)


def _forwarder(name: str) -> Callable[..., Any]:
    def method(self: BaseProxy, /, *args: Any, **kwds: Any) -> Any:
        return self._callmethod(name, args, kwds)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"Call the referent's ``{name}``."
    return method


def forwarding(cls: type) -> type:
    """Class decorator: add a forwarding method for each name of ``_exposed_`` the class lacks."""
    for name in getattr(cls, "_exposed_", None) or ():
        if name not in cls.__dict__ and name not in _NOT_FORWARDED:
            setattr(cls, name, _forwarder(name))
    return cls


_proxy_type_cache: dict[tuple, type] = {}
_proxy_type_lock = util.ForkAwareThreadLock()


def MakeProxyType(name: str, exposed: Any, _cache: dict = _proxy_type_cache) -> type:
    """A ``BaseProxy`` subclass named ``name`` that forwards the methods ``exposed``.

    Types are cached by ``(name, exposed)``; a proxy of a generated type
    pickles by that pair, so the receiver builds (or finds) the same type.
    """
    exposed = tuple(exposed)
    key = (name, exposed)
    cls = _cache.get(key)
    if cls is None:
        namespace: dict[str, Any] = {meth: _forwarder(meth) for meth in exposed if meth not in _NOT_FORWARDED}
        namespace["_exposed_"] = exposed
        namespace["_proxy_spec"] = key
        with _proxy_type_lock:
            cls = _cache.setdefault(key, type(name, (BaseProxy,), namespace))
    return cls


class _MadeProxyType:
    """Pickles a ``MakeProxyType`` class by its name and exposed methods."""

    __slots__ = ("name", "exposed")

    def __init__(self, name: str, exposed: tuple) -> None:
        self.name, self.exposed = name, exposed

    def __call__(self, *args: Any, **kwds: Any) -> Any:
        return MakeProxyType(self.name, self.exposed)(*args, **kwds)

    def __reduce__(self) -> tuple:
        return _MadeProxyType, (self.name, self.exposed)


def AutoProxy(
    token: Token,
    serializer: str,
    manager: Any = None,
    authkey: Optional[bytes] = None,
    exposed: Any = None,
    incref: bool = True,
    manager_owned: bool = False,
) -> BaseProxy:
    """A proxy forwarding the referent's public methods (asked from the server if not given)."""
    if authkey is None:
        authkey = manager._authkey if manager is not None else process.current_process().authkey
    if exposed is None:
        exposed = call_control(token.address, authkey, serializer, "get_methods", (token,))
    proxy = MakeProxyType(f"AutoProxy[{token.typeid}]", exposed)(
        token, serializer, manager=manager, authkey=authkey, incref=incref, manager_owned=manager_owned
    )
    proxy._isauto = True
    return proxy


# type id -> proxy type, from every manager class's registrations: how a
# proxy without a manager (in a child process) wraps a returned object.
_registered_proxytypes: dict[str, Callable[..., Any]] = {}


def register_proxytype(typeid: str, proxytype: Callable[..., Any]) -> None:
    _registered_proxytypes[typeid] = proxytype


def _proxytype_for(manager: Any, typeid: str) -> Callable[..., Any]:
    if manager is not None:
        entry = manager._registry.get(typeid)
        if entry is not None:
            return entry[-1]
    return _registered_proxytypes.get(typeid, AutoProxy)

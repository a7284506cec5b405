"""What travels between a manager's clients and its server, and how.

One authenticated connection per (client thread, server address) carries
every message.  A request is a 4-tuple; every request but a release gets
exactly one reply, a 2-tuple::

    client                                             server thread
    (ident, method, args, kwds)  ── call ──────────>   getattr(obj, method)(*args, **kwds)
                                 <───── (kind, value)
    (None, control, args, kwds)  ── control ───────>   Server.<control>(conn, *args, **kwds)
                                 <───── (kind, value)
    (None, '#release', ids, {})  ── no reply ──────>   decref each id

``kind`` is one of the ``REPLY_*`` codes below.  Messages are serialized by
the connection: ``mp_core.reduction`` for the ``'pickle'`` serializer (so a
lambda can be stored in a managed dict), XML-RPC for ``'xmlrpclib'``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from mp_core import connection
from mp_core.context import ProcessError

__all__ = [
    "State",
    "Token",
    "RemoteError",
    "RemoteTraceback",
    "UnexposedMethodError",
    "ManagerStateError",
    "dispatch",
    "convert_to_error",
    "public_methods",
    "all_methods",
    "listener_client",
    "connect",
    "REPLY_RETURN",
    "REPLY_ERROR",
    "REPLY_PROXY",
    "REPLY_FAILURE",
    "RELEASE",
    "STDLIB_RETURN",
    "STDLIB_ERROR",
    "STDLIB_TRACEBACK",
    "STDLIB_UNSERIALIZABLE",
]

#: The call returned; value is the result.
REPLY_RETURN = 0
#: The call raised; value is (serialized exception, formatted remote traceback).
REPLY_ERROR = 1
#: The call returned an object the server now manages; value is (typeid, ident, exposed).
REPLY_PROXY = 2
#: Something failed that cannot be sent as an exception; value is the text.
REPLY_FAILURE = 3

#: The control "method" of a fire-and-forget release of references.
RELEASE = "#release"


class State:
    """The life-cycle state of a manager, shared with its proxies' finalizers."""

    __slots__ = ("value",)
    INITIAL = 0
    STARTED = 1
    SHUTDOWN = 2

    def __init__(self) -> None:
        self.value = State.INITIAL


class Token:
    """Names one object held by a manager: its type id, the server address, its id."""

    __slots__ = ("typeid", "address", "id")

    def __init__(self, typeid: str, address: Any, id: Any) -> None:
        self.typeid, self.address, self.id = typeid, address, id

    def __getstate__(self) -> tuple:
        return (self.typeid, self.address, self.id)

    def __setstate__(self, state: tuple) -> None:
        self.typeid, self.address, self.id = state

    def __repr__(self) -> str:
        return f"{type(self).__name__}(typeid={self.typeid!r}, address={self.address!r}, id={self.id!r})"


class RemoteError(Exception):
    """An error raised in the manager's server that could not be sent as itself.

    ``args[0]`` is the server-side traceback, as text.
    """

    def __str__(self) -> str:
        rule = "-" * 75
        return f"\n{rule}\n{self.args[0]}{rule}"


class UnexposedMethodError(RemoteError, AttributeError):
    """A client asked for a method its proxy's type does not expose.

    Both a ``RemoteError`` (what the standard library raises) and an
    ``AttributeError`` (so that ``hasattr`` and ``getattr`` with a default
    work on proxies).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ManagerStateError(ProcessError, AssertionError, ValueError):
    """A manager was used before ``start()``/``connect()`` or after ``shutdown()``.

    Also an ``AssertionError`` and a ``ValueError``: what the standard
    library raises there (from an ``assert``, or from a ``None`` address).
    """


class RemoteTraceback(Exception):
    """Attached as ``__cause__`` to an exception re-raised in the caller: the server's traceback."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'

    def __reduce__(self) -> tuple:
        return RemoteTraceback, (self.text,)


def format_remote(exc: BaseException) -> str:
    """The traceback text sent with a remote exception."""
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


#: The standard library's reply kinds, by name (what its servers send and
#: what code written against its ``dispatch`` hands back): ``#ERROR`` carries
#: the exception itself, ``#TRACEBACK`` and ``#UNSERIALIZABLE`` a text.
STDLIB_RETURN = "#RETURN"
STDLIB_ERROR = "#ERROR"
STDLIB_TRACEBACK = "#TRACEBACK"
STDLIB_UNSERIALIZABLE = "#UNSERIALIZABLE"


def convert_to_error(kind: Any, result: Any) -> BaseException:
    """The exception a client raises for an error reply (``kind``, ``result``).

    ``kind`` is one of our ``REPLY_*`` codes or one of the standard
    library's reply kinds (``'#ERROR'``: ``result`` is the exception;
    ``'#TRACEBACK'``/``'#UNSERIALIZABLE'``: a text, raised as
    ``RemoteError``).  Anything else gives a ``ValueError`` naming it.
    """
    if kind == STDLIB_ERROR:
        return result if isinstance(result, BaseException) else RemoteError(f"{result!r}\n")
    if kind in (STDLIB_TRACEBACK, STDLIB_UNSERIALIZABLE):
        if not isinstance(result, str):
            return TypeError(f"reply of kind {kind!r} carries {type(result).__name__} {result!r}, not a text")
        return RemoteError(result if kind == STDLIB_TRACEBACK else f"Unserializable message: {result}\n")
    if kind == REPLY_ERROR:
        payload, text = result
        try:
            exc = connection._ForkingPickler.loads(payload)
        except Exception:
            return RemoteError(text)
        if isinstance(exc, BaseException):
            exc.__cause__ = RemoteTraceback(text)
            return exc
        return RemoteError(text)
    if kind == REPLY_FAILURE:
        return RemoteError(result)
    return ValueError(f"unrecognized reply kind {kind!r} from the manager")


def public_methods(obj: Any) -> list[str]:
    """Names of the callable attributes of ``obj`` that do not start with ``_``."""
    return [name for name in all_methods(obj) if name[0] != "_"]


def all_methods(obj: Any) -> list[str]:
    """Names of every callable attribute of ``obj``."""
    names = []
    for name in dir(obj):
        try:
            if callable(getattr(obj, name)):
                names.append(name)
        except Exception:
            continue
    return names


# ---------------------------------------------------------------- transports

#: serializer name -> (Listener, Client), as the standard library's table.
listener_client: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "pickle": (connection.Listener, connection.Client),
    "xmlrpclib": (connection.XmlListener, connection.XmlClient),
}


def check_serializer(serializer: str) -> None:
    if serializer not in listener_client:
        raise ValueError(f"serializer must be one of {sorted(listener_client)}, not {serializer!r}")


def connect(address: Any, authkey: bytes, serializer: str) -> Any:
    """An authenticated client connection to the server at ``address``."""
    return listener_client[serializer][1](address, authkey=authkey)


def loads_for(serializer: str) -> Callable[[bytes], Any]:
    """The function that decodes a raw message of ``serializer``."""
    return connection._xml_loads if serializer == "xmlrpclib" else connection._ForkingPickler.loads


def dispatch(c: Any, id: Any, methodname: str, args: tuple = (), kwds: Optional[dict] = None) -> Any:
    """Send one request on the connection ``c`` and return the result (or raise its error).

    Replies of the standard library's kinds are understood too (see
    ``convert_to_error``).  The raised exception keeps no reference to this
    call's frame locals, so that it does not live on in a reference cycle
    (what CPython's tests check with the garbage collector off).
    """
    c.send((id, methodname, args, kwds or {}))
    kind, result = c.recv()
    if kind in (REPLY_RETURN, REPLY_PROXY, STDLIB_RETURN):
        return result
    try:
        raise convert_to_error(kind, result)
    finally:
        # For '#ERROR' the result *is* the exception: held by this frame,
        # which its traceback holds, it would make a cycle.
        del result


def hashable_address(address: Any) -> Any:
    """``address`` usable as a dict key (XML-RPC turns tuples into lists)."""
    return tuple(address) if isinstance(address, list) else address

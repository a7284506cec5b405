"""The manager's server: holds shared objects and runs their methods for clients.

::

    client thread ──connect──> accepter thread ── one thread per connection ──┐
                               (at most max_pending_handshakes                 │
                                unauthenticated at once: _handshakes)          │
       authenticate (HMAC both ways) before reading anything else              │
       loop: request ──> look up object by id ──> exposed? ──> call ──> reply  │
                                                                               │
    id_to_obj:      id -> (object, exposed names, method -> typeid)  <─────────┘
    id_to_refcount: id -> proxies alive anywhere (an object goes with its last)

Every client thread owns one connection, so the server thread serving it
stands for that client thread: a managed ``RLock`` acquired twice by one
client thread is acquired twice by the same server thread.

The server stops on a ``shutdown`` request, on ``KeyboardInterrupt`` in
``serve_forever``, or (for a server started by ``BaseManager.start``) when
the process that started it dies, however it died.
"""

from __future__ import annotations

import errno
import gc
import itertools
import os
import sys
import threading
from typing import Any, Optional

from mp_core import _handshake, connection, process, reduction, util
from mp_core.context import AuthenticationError

from . import _local_servers
from ._handshakes import PendingHandshakes, shut_down_socket
from ._protocol import (
    RELEASE,
    REPLY_ERROR,
    REPLY_FAILURE,
    REPLY_PROXY,
    REPLY_RETURN,
    UnexposedMethodError,
    check_serializer,
    format_remote,
    public_methods,
)
from ._wire import MessageStream

__all__ = ["Server", "register_view_reducers"]

_ALREADY_REPLIED = object()
_NO_REFERENCE_COUNTING = sys.implementation.name != "cpython"
_NO_REPLY = object()

# accept() failures that mean "out of descriptors or kernel memory": retrying
# at once would spin; back off (and evict a stalled handshake) instead.
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_MAX_ACCEPT_BACKOFF = 1.0


def _as_list(obj: Any) -> tuple:
    return list, (list(obj),)


def register_view_reducers() -> None:
    """Send dict views (``keys()``, ``values()``, ``items()``) as lists, as the standard library does.

    Called by every server as it is made: a method of a managed dict returns
    views, which its proxy receives as lists.
    """
    for view in ("items", "keys", "values"):
        reduction.register(type(getattr({}, view)()), _as_list)


class Server:
    """Serves the objects of the types in ``registry`` at ``address``.

    ``registry`` maps a type id to ``(callable, exposed, method_to_typeid[,
    proxytype])``; ``authkey`` (bytes) authenticates every client;
    ``serializer`` is ``'pickle'`` or ``'xmlrpclib'``.  Raises ``TypeError``
    for a non-bytes authkey and ``OSError`` if ``address`` cannot be bound.
    """

    #: Control operations a client may request (``None`` as the object id).
    public: tuple[str, ...] = (
        "shutdown",
        "create",
        "accept_connection",
        "get_methods",
        "debug_info",
        "number_of_objects",
        "dummy",
        "incref",
        "decref",
    )

    #: Connections accepted but not yet authenticated, at most; further
    #: peers wait in the listen backlog.
    max_pending_handshakes: int = 64
    #: Seconds a peer has to complete the whole handshake after being
    #: accepted; ``None``: ``Listener.handshake_timeout``.
    handshake_timeout: Optional[float] = None
    #: Seconds after which a handshake in progress may be dropped to make
    #: room for a newer peer when ``max_pending_handshakes`` are waiting (or
    #: descriptors ran out); an honest client answers in milliseconds.
    eviction_age: float = 2.0

    def __init__(self, registry: dict, address: Any, authkey: bytes, serializer: str) -> None:
        check_serializer(serializer)
        if not isinstance(authkey, bytes):
            raise TypeError(f"Authkey {authkey!r} is type {type(authkey)!s}, not bytes")
        self.registry = {typeid: tuple(entry[:3]) for typeid, entry in registry.items()}
        self.authkey = process.AuthenticationString(authkey)
        self.serializer = serializer
        family = connection.address_type(address) if address else connection.default_family
        self._listener = connection.SocketListener(address or connection.arbitrary_address(family), family, backlog=128)
        #: The listening socket (closing it before ``serve_forever`` frees the address).
        self.listener = self._listener
        self.address = self._listener._address
        self.id_to_obj: dict[int, tuple[Any, frozenset, Optional[dict]]] = {}
        self.id_to_refcount: dict[int, int] = {}
        self._refcount_lock = threading.RLock()
        self._ids = itertools.count(1)
        self._stop_event = threading.Event()
        self._stop_reason = ""
        self._wake_r = self._wake_w = -1
        self._connections: set[Any] = set()
        self._connections_lock = threading.Lock()
        self._watch_parent = False
        #: Whether the server stopped because the process that started it died.
        self.owner_gone = False
        timeout = self.handshake_timeout
        self._pending = PendingHandshakes(
            self.max_pending_handshakes,
            connection.Listener.handshake_timeout if timeout is None else timeout,
            self.eviction_age,
        )
        register_view_reducers()

    # ------------------------------------------------------------ running

    def serve_forever(self) -> None:
        """Serve until a client asks for ``shutdown`` (or Ctrl-C); then release everything.

        Returns once stopped (the standard library's server exits the
        process instead; code after this call runs here).
        """
        _local_servers.add(self)
        # What the handshake needs, loaded now: the first client must not
        # wait for OpenSSL to load (and look like a stalled peer meanwhile),
        # and out of descriptors, challenges must still be made (PyPy).
        _handshake.prepare()
        # Written to when stopping, to wake the accepter.
        self._wake_r, self._wake_w = os.pipe()
        threading.Thread(target=self._accept_loop, name="manager-accepter", daemon=True).start()
        if self._watch_parent:
            threading.Thread(target=self._watch_parent_loop, name="manager-parent-watch", daemon=True).start()
        try:
            self._stop_event.wait()
        except KeyboardInterrupt:
            self._stop_reason = "interrupted"
        finally:
            self._close()

    def stop(self, reason: str = "stopped") -> None:
        """Make ``serve_forever`` return (from any thread)."""
        if not self._stop_event.is_set():
            self._stop_reason = reason
            util.info("manager server at %r stopping: %s", self.address, reason)
            self._stop_event.set()
            self._pending.close()
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass

    def _close(self) -> None:
        self._stop_event.set()
        _local_servers.discard(self)
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        self._listener.close()
        self._pending.close()
        try:
            self.on_stop()
        finally:
            with self._connections_lock:
                conns = list(self._connections)
            for conn in conns:
                _wake_reader(conn)
            with self._refcount_lock:
                objects = list(self.id_to_obj.values())
                self.id_to_obj.clear()
                self.id_to_refcount.clear()
            del objects
            util.close_fds(self._wake_r, self._wake_w)

    def on_stop(self) -> None:
        """Called once when the server stops, before its objects are released."""

    def _watch_parent_loop(self) -> None:
        parent = process.parent_process()
        if parent is None:
            return
        parent.join()
        self.owner_gone = True
        self.stop("the process that started this manager has exited")

    def _accept_loop(self) -> None:
        listening = self._listener._socket
        pending = self._pending
        backoff = 0.0
        while not self._stop_event.is_set():
            if not pending.make_room():
                return
            try:
                ready = connection.wait([listening, self._wake_r], pending.next_deadline())
            except OSError:
                return
            if self._stop_event.is_set() or self._wake_r in ready:
                return
            pending.expire()
            if not ready:
                continue
            try:
                conn = self._listener.accept()
            except OSError as exc:
                if self._stop_event.is_set():
                    return
                if exc.errno not in _OUT_OF_RESOURCES:
                    util.debug("manager: accept failed: %s", exc)
                    continue
                # The peer stays in the backlog until a descriptor frees up:
                # a stalled handshake can give one back; otherwise wait
                # (doubling, up to a second) instead of spinning on accept.
                if pending.evict_oldest():
                    backoff = 0.0
                else:
                    if not backoff:
                        util.sub_warning("manager at %r cannot accept connections: %s; retrying", self.address, exc)
                    backoff = min(max(backoff * 2, 0.01), _MAX_ACCEPT_BACKOFF)
                connection.wait([self._wake_r], backoff or 0.01)
                continue
            backoff = 0.0
            key = pending.admit(conn)
            try:
                threading.Thread(
                    target=self._handle_connection, args=(conn, key), daemon=True, name="manager-connection"
                ).start()
            except RuntimeError as exc:  # no more threads: as with descriptors, wait
                pending.finish(key)
                conn.close()
                util.sub_warning("manager at %r cannot start a thread: %s", self.address, exc)
                connection.wait([self._wake_r], _MAX_ACCEPT_BACKOFF)

    def _handle_connection(self, conn: Any, key: int) -> None:
        pending = self._pending
        try:
            connection.deliver_challenge(conn, self.authkey, timeout=pending.remaining(key))
            connection.answer_challenge(conn, self.authkey, timeout=pending.remaining(key))
        except (AuthenticationError, OSError, EOFError) as exc:
            pending.finish(key)
            util.info("manager refused a connection: %s", exc)
            conn.close()
            return
        except BaseException:
            pending.finish(key)
            conn.close()
            raise
        if not pending.finish(key):
            # Evicted just as it succeeded: its socket is already shut down.
            conn.close()
            return
        with self._connections_lock:
            if self._stop_event.is_set():
                conn.close()
                return
            self._connections.add(conn)
        try:
            self._serve(MessageStream(conn, self.serializer))
        finally:
            with self._connections_lock:
                self._connections.discard(conn)
            conn.close()

    # ------------------------------------------------------------ the request loop

    def _serve(self, conn: MessageStream) -> None:
        recv_bytes = conn.recv_bytes
        send = conn.send
        while True:
            try:
                data = recv_bytes()
            except (EOFError, OSError) as exc:
                if isinstance(exc, connection.BadMessageLength):
                    # The stream is out of step: say why, then hang up.
                    util.info("manager: closing a connection that sent a corrupt message: %s", exc)
                    try:
                        send((REPLY_FAILURE, f"the manager received a corrupt message ({exc}); closing the connection"))
                    except Exception:
                        pass
                return
            reply = self._reply_to(conn, data)
            del data
            if reply is _NO_REPLY:
                continue
            try:
                send(reply)
            except (OSError, EOFError):
                return
            except Exception as exc:
                # Serializing failed before anything was written: the
                # connection is intact, tell the caller why.
                try:
                    send((REPLY_FAILURE, f"the manager could not serialize its reply ({exc}):\n" + format_remote(exc)))
                except Exception:
                    return
            del reply

    def _reply_to(self, conn: MessageStream, data: Any) -> Any:
        """The reply to the request in ``data``; ``_NO_REPLY`` for a release.

        Whatever a request holds (a wrong shape, an unhashable id, a method
        that raises, no memory left), the client gets an error reply and
        the connection keeps serving, as the standard library replies
        ``#TRACEBACK``.
        """
        try:
            request = conn.decode(data)
        except Exception as exc:
            return (REPLY_FAILURE, "the manager could not decode a request:\n" + format_remote(exc))
        try:
            ident, name, args, kwds = request
        except Exception as exc:
            return (
                REPLY_FAILURE,
                f"a manager request is a tuple (id, method, args, kwds), not "
                f"{_describe(request)}:\n" + format_remote(exc),
            )
        try:
            if ident is None:
                if name == RELEASE:
                    self._release(args)
                    return _NO_REPLY
                reply = self._control(conn, name, args, kwds)
                return _NO_REPLY if reply is _ALREADY_REPLIED else reply
            return self._call_method(ident, name, args, kwds)
        except Exception as exc:
            return (
                REPLY_FAILURE,
                f"the manager could not handle a request for method {_describe(name)} "
                f"of object {_describe(ident)}:\n" + format_remote(exc),
            )

    def _call_method(self, ident: Any, name: Any, args: Any, kwds: Any) -> tuple:
        entry = self.id_to_obj.get(ident)
        if entry is None:
            return (REPLY_FAILURE, str(self._missing(ident)))
        obj, exposed, typeids = entry
        try:
            if name in exposed:
                result = getattr(obj, name)(*args, **kwds)
            else:
                result = self._fallback(obj, name, exposed)(*args, **kwds)
        except Exception as exc:
            return self._error_reply(exc)
        if typeids is not None and name in typeids:
            return self._proxy_reply(typeids[name], result)
        return (REPLY_RETURN, result)

    def _fallback(self, obj: Any, name: str, exposed: frozenset) -> Any:
        if name == "#GETVALUE":
            return lambda: obj
        if name == "__repr__":
            return lambda: repr(obj)
        if name == "__str__":
            return lambda: str(obj)
        raise UnexposedMethodError(
            f"method {name!r} of {type(obj).__name__!r} object is not in exposed={tuple(sorted(exposed))!r}"
        )

    def _missing(self, ident: Any) -> BaseException:
        return ReferenceError(
            f"the manager at {self.address!r} holds no object with id {ident!r} "
            f"(its last proxy was released, or the id is wrong)"
        )

    def _error_reply(self, exc: BaseException) -> tuple:
        text = format_remote(exc)
        if self.serializer == "xmlrpclib":
            return (REPLY_FAILURE, text)
        try:
            payload = connection._ForkingPickler.dumps(exc)
        except Exception:
            return (REPLY_FAILURE, text)
        return (REPLY_ERROR, (bytes(payload), text))

    def _proxy_reply(self, typeid: str, obj: Any) -> tuple:
        try:
            ident, exposed = self._register(typeid, obj)
        except Exception as exc:
            return self._error_reply(exc)
        return (REPLY_PROXY, (typeid, ident, exposed))

    def _control(self, conn: Any, name: str, args: Any, kwds: Any) -> Any:
        if name not in self.public:
            return (
                REPLY_FAILURE,
                f"{name!r} is not an operation of this manager (operations: {', '.join(self.public)})",
            )
        try:
            result = getattr(self, name)(conn, *args, **kwds)
        except Exception as exc:
            # As in the standard library, a failed control operation (a
            # creation whose arguments the type refuses, say) is a
            # RemoteError carrying the server's traceback.
            return (REPLY_FAILURE, format_remote(exc))
        if result is _ALREADY_REPLIED:
            return result
        return (REPLY_RETURN, result)

    # ------------------------------------------------------------ objects and references

    def _register(self, typeid: str, obj: Any) -> tuple[int, tuple]:
        """File ``obj`` under a new id with one reference (the caller's); return id and exposed."""
        try:
            _callable, exposed, method_to_typeid = self.registry[typeid]
        except KeyError:
            raise KeyError(f"type id {typeid!r} is not registered with this manager") from None
        names = tuple(public_methods(obj) if exposed is None else exposed)
        if method_to_typeid:
            names += tuple(m for m in method_to_typeid if m not in names)
        ident = next(self._ids)
        with self._refcount_lock:
            self.id_to_obj[ident] = (obj, frozenset(names), method_to_typeid or None)
            self.id_to_refcount[ident] = 1
        return ident, names

    def create(self, c: Any, typeid: str, /, *args: Any, **kwds: Any) -> tuple[int, tuple]:
        """Make a new object of ``typeid``; the caller holds its one reference."""
        try:
            factory = self.registry[typeid][0]
        except KeyError:
            raise KeyError(f"type id {typeid!r} is not registered with this manager") from None
        if factory is None:
            if kwds or len(args) != 1:
                raise ValueError("Without callable, must have one non-keyword argument")
            obj = args[0]
        else:
            obj = factory(*args, **kwds)
        return self._register(typeid, obj)

    def incref(self, c: Any, ident: Any) -> None:
        with self._refcount_lock:
            try:
                self.id_to_refcount[ident] += 1
            except KeyError:
                raise self._missing(ident) from None

    def decref(self, c: Any, ident: Any) -> None:
        with self._refcount_lock:
            try:
                count = self.id_to_refcount[ident] - 1
            except KeyError:
                raise self._missing(ident) from None
            if count:
                self.id_to_refcount[ident] = count
                return
            del self.id_to_refcount[ident]
            entry = self.id_to_obj.pop(ident, None)
        util.debug("manager released object %r", ident)
        # The object (and any proxy it holds, whose release comes back here)
        # goes outside the lock.
        del entry

    def _release(self, ids: Any) -> None:
        if not isinstance(ids, (list, tuple)):
            # No reply goes back for a release: log, and keep serving.
            util.info("manager: ignored a release of %s (expected a list of object ids)", _describe(ids))
            return
        for ident in ids:
            try:
                self.decref(None, ident)
            except Exception as exc:
                util.debug("manager: release of %r failed: %s", ident, exc)

    # ------------------------------------------------------------ other control operations

    def shutdown(self, c: Any) -> Any:
        """Reply, then stop serving."""
        try:
            c.send((REPLY_RETURN, None))
        finally:
            self.stop("shutdown requested")
        return _ALREADY_REPLIED

    def accept_connection(self, c: Any, name: str = "") -> None:
        """Kept for clients of the standard library's shape; every connection is served alike."""

    def get_methods(self, c: Any, token: Any) -> tuple:
        ident = getattr(token, "id", token)
        entry = self.id_to_obj.get(ident)
        if entry is None:
            raise self._missing(ident)
        return tuple(sorted(entry[1]))

    def debug_info(self, c: Any) -> str:
        with self._refcount_lock:
            items = sorted(self.id_to_refcount.items())
            lines = []
            for ident, count in items:
                obj = self.id_to_obj.get(ident, (None,))[0]
                lines.append(f"  {ident}:       refcount={count}\n    {str(obj)[:75]}")
        return "\n".join(lines)

    def number_of_objects(self, c: Any) -> int:
        if _NO_REFERENCE_COUNTING:
            # Proxies that the server's own objects held (a list inside a
            # managed dict) release their referents when they are collected:
            # on PyPy, not as soon as they are dropped.  Count what is live.
            gc.collect()
        return len(self.id_to_refcount)

    def dummy(self, c: Any) -> None:
        pass


def _describe(obj: Any) -> str:
    """``obj`` for an error message: its type and a repr bounded in length (a request may be huge)."""
    import reprlib

    try:
        text = reprlib.repr(obj)
    except Exception:
        text = "?"
    return f"{type(obj).__name__} {text}"


# Wakes a thread blocked reading ``conn``; needs no descriptor (they may have run out).
_wake_reader = shut_down_socket

"""The proxy types of ``SyncManager`` and the plain objects its server holds.

Each proxy lists the methods it forwards in ``_exposed_`` (the server
refuses any other); ``@forwarding`` writes the one-line forwarders, and
methods with local logic (``wait_for``, ``__iadd__``, properties) are
spelled out.
"""

from __future__ import annotations

import array
import collections.abc
import threading
import types
from typing import Any, Callable, Optional

from mp_core._namespace import Namespace as Namespace  # held by the server; dummy's too
from mp_sync import synchronize

from ._proxy import BaseProxy, forwarding

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import AbstractSet, Iterable, MutableMapping, MutableSequence, MutableSet

    # What type checkers see of the forwarders @forwarding writes at run time:
    # the list, dict and set proxies are registered as virtual subclasses of
    # these ABCs below, and forward every method of them.
    _ListFace = MutableSequence[Any]
    _DictFace = MutableMapping[Any, Any]
    _SetFace = MutableSet[Any]
else:
    _ListFace = _DictFace = _SetFace = object

__all__ = [
    "Namespace",
    "Value",
    "Array",
    "ServerRLock",
    "ServerSemaphore",
    "ServerBoundedSemaphore",
    "IteratorProxy",
    "AcquirerProxy",
    "ConditionProxy",
    "EventProxy",
    "BarrierProxy",
    "NamespaceProxy",
    "ValueProxy",
    "BaseListProxy",
    "ListProxy",
    "DictProxy",
    "SetProxy",
    "ArrayProxy",
    "BasePoolProxy",
    "PoolProxy",
]


# ---------------------------------------------------------------- objects held by the server


class Value:
    """A value with ``get``/``set`` (what ``SyncManager.Value`` holds); ``lock`` is ignored."""

    def __init__(self, typecode: Any, value: Any, lock: Any = True) -> None:
        self._typecode = typecode
        self._value = value

    def get(self) -> Any:
        return self._value

    def set(self, value: Any) -> None:
        self._value = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._typecode!r}, {self._value!r})"

    value = property(get, set)


def Array(typecode: str, sequence: Any, lock: Any = True) -> array.array:
    """What ``SyncManager.Array`` holds: an ``array.array``; ``lock`` is ignored."""
    return array.array(typecode, sequence)


# The locks the server holds answer locked() (Python 3.14's API, which
# AcquirerProxy forwards) on every version.  threading.Lock always has it.
_NativeRLock = type(threading.RLock())
if hasattr(_NativeRLock, "locked"):  # Python >= 3.14
    ServerRLock: Callable[[], Any] = threading.RLock
else:

    class ServerRLock(_NativeRLock):  # type: ignore[no-redef, valid-type, misc]
        """``threading.RLock`` with Python 3.14's ``locked()``: whether any thread holds it."""

        def locked(self) -> bool:
            # Before 3.14 the C lock shows its state only in its repr
            # ("<locked _thread.RLock object ...>", on PyPy too); probing with
            # acquire(False) instead would make other threads' attempts fail.
            return repr(self).startswith("<locked")


class ServerSemaphore(threading.Semaphore):
    """``threading.Semaphore`` with ``locked()``: whether an ``acquire(False)`` would fail.

    As the process-shared ``Semaphore.locked()`` of ``multiprocess``.
    """

    def locked(self) -> bool:
        with self._cond:  # type: ignore[attr-defined]
            return self._value == 0


class ServerBoundedSemaphore(threading.BoundedSemaphore):
    """``threading.BoundedSemaphore`` with ``locked()``, as ``ServerSemaphore``."""

    locked = ServerSemaphore.locked


# ---------------------------------------------------------------- proxies


class IteratorProxy(BaseProxy):
    """Proxy for an iterator or generator held by the manager."""

    _exposed_ = ("__next__", "send", "throw", "close")

    def __iter__(self) -> IteratorProxy:
        return self

    def __next__(self, *args: Any) -> Any:
        return self._callmethod("__next__", args)

    def send(self, *args: Any) -> Any:
        return self._callmethod("send", args)

    def throw(self, *args: Any) -> Any:
        return self._callmethod("throw", args)

    def close(self, *args: Any) -> Any:
        return self._callmethod("close", args)


class AcquirerProxy(BaseProxy):
    """Proxy for a lock or semaphore; usable in a ``with`` statement."""

    _exposed_: tuple[str, ...] = ("acquire", "release", "locked")

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        args = (blocking,) if timeout is None else (blocking, timeout)
        return self._callmethod("acquire", args)

    def release(self) -> None:
        return self._callmethod("release")

    def locked(self) -> bool:
        """Whether the lock is held (a semaphore: whether its value is zero); Python 3.14's API."""
        return self._callmethod("locked")

    def __enter__(self) -> bool:
        return self._callmethod("acquire")

    def __exit__(self, *exc_info: Any) -> None:
        return self._callmethod("release")


class ConditionProxy(AcquirerProxy):
    """Proxy for a ``threading.Condition``; ``wait_for`` runs its predicate locally."""

    _exposed_ = ("acquire", "release", "wait", "notify", "notify_all")

    def wait(self, timeout: Optional[float] = None) -> bool:
        return self._callmethod("wait", (timeout,))

    def notify(self, n: int = 1) -> None:
        return self._callmethod("notify", (n,))

    def notify_all(self) -> None:
        return self._callmethod("notify_all")

    # The predicate runs here, in the caller, after each remote wake-up:
    # the same loop as the process-shared Condition, over this proxy's wait().
    wait_for = synchronize.Condition.wait_for


@forwarding
class EventProxy(BaseProxy):
    """Proxy for a ``threading.Event``."""

    _exposed_ = ("is_set", "set", "clear", "wait")


class BarrierProxy(BaseProxy):
    """Proxy for a ``threading.Barrier``."""

    _exposed_ = ("__getattribute__", "abort", "reset", "wait")

    def wait(self, timeout: Optional[float] = None) -> int:
        return self._callmethod("wait", (timeout,))

    def abort(self) -> None:
        return self._callmethod("abort")

    def reset(self) -> None:
        return self._callmethod("reset")

    @property
    def parties(self) -> int:
        return self._callmethod("__getattribute__", ("parties",))

    @property
    def n_waiting(self) -> int:
        return self._callmethod("__getattribute__", ("n_waiting",))

    @property
    def broken(self) -> bool:
        return self._callmethod("__getattribute__", ("broken",))


class NamespaceProxy(BaseProxy):
    """Proxy for a ``Namespace``: public attributes are read and written in the server."""

    _exposed_ = ("__getattribute__", "__setattr__", "__delattr__")

    def __getattr__(self, key: str) -> Any:
        if key[0] == "_":
            return object.__getattribute__(self, key)
        return object.__getattribute__(self, "_callmethod")("__getattribute__", (key,))

    def __setattr__(self, key: str, value: Any) -> None:
        if key[0] == "_":
            return object.__setattr__(self, key, value)
        return object.__getattribute__(self, "_callmethod")("__setattr__", (key, value))

    def __delattr__(self, key: str) -> None:
        if key[0] == "_":
            return object.__delattr__(self, key)
        return object.__getattribute__(self, "_callmethod")("__delattr__", (key,))


class ValueProxy(BaseProxy):
    """Proxy for a ``Value``: ``get``, ``set`` and the ``value`` property."""

    _exposed_ = ("get", "set")

    def get(self) -> Any:
        return self._callmethod("get")

    def set(self, value: Any) -> None:
        return self._callmethod("set", (value,))

    value = property(get, set)

    __class_getitem__ = classmethod(types.GenericAlias)  # type: ignore[var-annotated]


@forwarding
class BaseListProxy(BaseProxy, _ListFace):
    """Proxy for a list: the list methods, forwarded (``clear`` and ``copy`` as in Python 3.14).

    ``copy()`` and ``a + b`` return plain lists.
    """

    _exposed_ = (
        "__add__",
        "__contains__",
        "__delitem__",
        "__getitem__",
        "__imul__",
        "__len__",
        "__mul__",
        "__reversed__",
        "__rmul__",
        "__setitem__",
        "append",
        "clear",
        "copy",
        "count",
        "extend",
        "index",
        "insert",
        "pop",
        "remove",
        "reverse",
        "sort",
    )


class ListProxy(BaseListProxy):
    """Proxy for a list; ``+=`` and ``*=`` change the list in the server."""

    def __iadd__(self, value: Any) -> ListProxy:
        self._callmethod("extend", (value,))
        return self

    def __imul__(self, value: Any) -> ListProxy:
        self._callmethod("__imul__", (value,))
        return self

    __class_getitem__ = classmethod(types.GenericAlias)  # type: ignore[var-annotated]


@forwarding
class DictProxy(BaseProxy, _DictFace):
    """Proxy for a dict; iterating it iterates the dict in the server.

    As in Python 3.14: ``d | other`` and ``other | d`` return plain dicts,
    ``d |= other`` updates the dict in the server, ``reversed(d)`` iterates
    over a snapshot of its keys, last first, and ``d.fromkeys(keys, value)``
    has the semantics of the class method ``dict.fromkeys``: it returns a new
    plain dict and leaves the shared one alone.
    """

    _exposed_ = (
        "__contains__",
        "__delitem__",
        "__getitem__",
        "__ior__",
        "__iter__",
        "__len__",
        "__or__",
        "__reversed__",
        "__ror__",
        "__setitem__",
        "clear",
        "copy",
        "fromkeys",
        "get",
        "items",
        "keys",
        "pop",
        "popitem",
        "setdefault",
        "update",
        "values",
    )
    _method_to_typeid_ = {"__iter__": "Iterator"}

    def __ior__(self, value: Any) -> DictProxy:
        self._callmethod("__ior__", (value,))
        return self

    def __ror__(self, value: Any) -> Any:
        # ``other | d``: a copy of ``other`` updated with the shared dict, as
        # dict.__ror__ answers -- computed here, since not every interpreter's
        # dict has __ror__ for the server to call (PyPy 3.9's has not).
        if not isinstance(value, dict):
            return NotImplemented
        merged = dict(value)
        merged.update(self._callmethod("copy"))
        return merged

    __class_getitem__ = classmethod(types.GenericAlias)  # type: ignore[var-annotated]


@forwarding
class _BaseSetProxy(BaseProxy, _SetFace):
    """Proxy for a set: the set methods and operators, forwarded (Python 3.14's ``SetProxy``).

    Operators and methods that make a new set (``s | t``, ``t - s``,
    ``s.union(t)``, ``s.copy()``...) return plain sets; comparisons
    (``s < t``...) compare with the set in the server; iterating goes over
    a snapshot.
    """

    _exposed_ = (
        "__and__",
        "__class_getitem__",
        "__contains__",
        "__ge__",
        "__gt__",
        "__iand__",
        "__ior__",
        "__isub__",
        "__iter__",
        "__ixor__",
        "__le__",
        "__len__",
        "__lt__",
        "__or__",
        "__rand__",
        "__ror__",
        "__rsub__",
        "__rxor__",
        "__sub__",
        "__xor__",
        "add",
        "clear",
        "copy",
        "difference",
        "difference_update",
        "discard",
        "intersection",
        "intersection_update",
        "isdisjoint",
        "issubset",
        "issuperset",
        "pop",
        "remove",
        "symmetric_difference",
        "symmetric_difference_update",
        "union",
        "update",
    )

    if TYPE_CHECKING:
        # The set methods beyond MutableSet's, as the forwarders answer them
        # (a new set is a plain one; MutableSet's |, &, -, ^ say only AbstractSet).
        def copy(self) -> set[Any]: ...
        def union(self, *others: Iterable[Any]) -> set[Any]: ...
        def intersection(self, *others: Iterable[Any]) -> set[Any]: ...
        def difference(self, *others: Iterable[Any]) -> set[Any]: ...
        def symmetric_difference(self, other: Iterable[Any], /) -> set[Any]: ...
        def update(self, *others: Iterable[Any]) -> None: ...
        def intersection_update(self, *others: Iterable[Any]) -> None: ...
        def difference_update(self, *others: Iterable[Any]) -> None: ...
        def symmetric_difference_update(self, other: Iterable[Any], /) -> None: ...
        def issubset(self, other: Iterable[Any], /) -> bool: ...
        def issuperset(self, other: Iterable[Any], /) -> bool: ...

    # A generic alias of the proxy type, never a call to the server.
    __class_getitem__ = classmethod(types.GenericAlias)  # type: ignore[var-annotated]


class SetProxy(_BaseSetProxy):
    """Proxy for a set; the augmented assignments (``|=``, ``&=``, ``-=``, ``^=``) change it in the server.

    Their right operand is any ``Set`` (``dict.keys()`` too, as ``MutableSet``
    promises); anything else raises ``TypeError``, as with a ``set``.
    """

    def _update_in_place(self, method: str, value: object) -> SetProxy:
        # The server's set.__ior__ takes only a set or a frozenset and answers
        # NotImplemented to anything else: another Set travels as a set of its
        # items, and a refusal must not pass for success (returning self would
        # leave the shared set silently unchanged).
        if isinstance(value, collections.abc.Set) and not isinstance(value, (set, frozenset)):
            value = set(value)
        if self._callmethod(method, (value,)) is NotImplemented:
            return NotImplemented
        return self

    # |= and ^= answer the proxy itself where | and ^ answer a set of a wider
    # element type; mypy calls that incompatible, as for typeshed's own set.
    def __ior__(self, value: AbstractSet[Any]) -> SetProxy:  # type: ignore[misc]
        return self._update_in_place("__ior__", value)

    def __iand__(self, value: AbstractSet[Any]) -> SetProxy:
        return self._update_in_place("__iand__", value)

    def __ixor__(self, value: AbstractSet[Any]) -> SetProxy:  # type: ignore[misc]
        return self._update_in_place("__ixor__", value)

    def __isub__(self, value: AbstractSet[Any]) -> SetProxy:
        return self._update_in_place("__isub__", value)


# As the types they stand for (Python 3.14): isinstance(proxy, MutableMapping)...
if not TYPE_CHECKING:  # type checkers see them as subclasses already (_ListFace, _DictFace, _SetFace)
    collections.abc.MutableSequence.register(BaseListProxy)
    collections.abc.MutableMapping.register(DictProxy)
    collections.abc.MutableSet.register(_BaseSetProxy)


@forwarding
class ArrayProxy(BaseProxy):
    """Proxy for an ``array.array``."""

    _exposed_ = ("__len__", "__getitem__", "__setitem__")


@forwarding
class BasePoolProxy(BaseProxy):
    """Proxy for a process pool held by the manager."""

    _exposed_ = (
        "apply",
        "apply_async",
        "close",
        "imap",
        "imap_unordered",
        "join",
        "map",
        "map_async",
        "starmap",
        "starmap_async",
        "terminate",
    )
    _method_to_typeid_ = {
        "apply_async": "AsyncResult",
        "map_async": "AsyncResult",
        "starmap_async": "AsyncResult",
        "imap": "Iterator",
        "imap_unordered": "Iterator",
    }


class PoolProxy(BasePoolProxy):
    """Proxy for a process pool; leaving a ``with`` block terminates the pool."""

    def __enter__(self) -> PoolProxy:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._callmethod("terminate")

"""The manager API of Python 3.14 on every version: set(), list/dict additions, locked(), ABCs.

Each test has a child (of every start method) use the proxies and report
what it saw through a pipe; the parent checks the report and the state
left in the server.
"""

from __future__ import annotations

import collections.abc
import traceback

import pytest

from mp_managers.managers import (
    AcquirerProxy,
    BaseProxy,
    DictProxy,
    ListProxy,
    RemoteError,
    SetProxy,
    SyncManager,
)

pytestmark = pytest.mark.timeout(120)


def run_in_child(ctx, target, *args):
    """Run ``target(*args)`` in a child of ``ctx``; return what it returned (its error re-raised here)."""
    reader, writer = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_report, args=(writer, target, *args))
    proc.start()
    writer.close()
    try:
        assert reader.poll(60), "the child sent no report"
        ok, value = reader.recv()
    finally:
        proc.join(30)
        reader.close()
    assert proc.exitcode == 0
    if not ok:
        raise AssertionError(f"in the child:\n{value}")
    return value


def _report(conn, target, *args):
    try:
        conn.send((True, target(*args)))
    except BaseException:
        conn.send((False, traceback.format_exc()))
    conn.close()


# ---------------------------------------------------------------- list


def use_list(lst):
    seen = {"copy": lst.copy(), "copy_type": type(lst.copy())}
    lst += [7]
    seen["after_iadd"] = (type(lst).__name__, list(lst))
    lst.clear()
    seen["len_after_clear"] = len(lst)
    lst.extend([3, 1, 2])
    return seen


def test_list_proxy_clear_and_copy(manager, ctx):
    lst = manager.list([5, 6])
    seen = run_in_child(ctx, use_list, lst)
    assert seen["copy"] == [5, 6] and seen["copy_type"] is list  # a plain list, not a proxy
    assert seen["after_iadd"] == ("ListProxy", [5, 6, 7])
    assert seen["len_after_clear"] == 0
    assert lst[:] == [3, 1, 2]
    copied = lst.copy()
    copied.append(99)  # a copy: the shared list is unchanged
    assert lst[:] == [3, 1, 2]


# ---------------------------------------------------------------- dict


def use_dict(d):
    seen = {}
    d |= {"bar": 6}
    seen["after_ior"] = (type(d).__name__, dict(d))
    backwards = reversed(d)
    # A plain iterator over a snapshot (its type is the interpreter's: list_iterator
    # on CPython), not a proxy of one.
    seen["reversed"] = (
        isinstance(backwards, collections.abc.Iterator) and not isinstance(backwards, BaseProxy),
        list(backwards),
    )
    seen["ror"] = {"bar": 7, "baz": 7} | d
    seen["or"] = d | {"bar": 7, "baz": 7}
    seen["fromkeys"] = d.fromkeys(["x", "y"], 0)
    seen["fromkeys_default"] = d.fromkeys("ab")
    seen["unchanged"] = dict(d)
    return seen


def test_dict_proxy_union_reversed_and_fromkeys(manager, ctx):
    d = manager.dict(foo=5)
    seen = run_in_child(ctx, use_dict, d)
    assert seen["after_ior"] == ("DictProxy", {"foo": 5, "bar": 6})  # |= returns the proxy itself
    assert seen["reversed"] == (True, ["bar", "foo"])
    assert seen["ror"] == {"foo": 5, "bar": 6, "baz": 7} and type(seen["ror"]) is dict
    assert seen["or"] == {"foo": 5, "bar": 7, "baz": 7} and type(seen["or"]) is dict
    # dict.fromkeys semantics: a new plain dict; the shared dict is left alone.
    assert seen["fromkeys"] == {"x": 0, "y": 0} and type(seen["fromkeys"]) is dict
    assert seen["fromkeys_default"] == {"a": None, "b": None}
    assert seen["unchanged"] == {"foo": 5, "bar": 6}
    assert dict(d) == {"foo": 5, "bar": 6}


# ---------------------------------------------------------------- set


def use_set_operators(s):
    seen = {}
    s.update(["a", "b", "c"])
    seen["len"], seen["contains"] = len(s), ("a" in s, "d" in s)
    seen["or"], seen["ror"] = s | {"d"}, {"d"} | s
    seen["sub"], seen["rsub"] = s - {"a"}, {"a", "z"} - s
    seen["xor"], seen["rxor"] = s ^ {"c", "d"}, {"c", "d"} ^ s
    seen["and"], seen["rand"] = s & {"b", "z"}, {"b", "z"} & s
    s |= {"d"}
    seen["ior"] = (type(s).__name__, set(s))
    s -= {"a"}
    seen["isub"] = set(s)
    s ^= {"b", "e"}
    seen["ixor"] = set(s)
    s &= {"c", "e", "q"}
    seen["iand"] = (type(s).__name__, set(s))
    return seen


class _Letters(collections.abc.Set):
    """A ``Set`` that is not a ``set``: what ``MutableSet``'s in-place operators accept."""

    def __init__(self, letters):
        self._letters = frozenset(letters)

    def __contains__(self, item):
        return item in self._letters

    def __iter__(self):
        return iter(self._letters)

    def __len__(self):
        return len(self._letters)


def test_set_proxy_in_place_operators_take_any_set_and_refuse_the_rest(manager):
    s = manager.set(["a", "b"])
    s |= {"c": 1, "d": 2}.keys()
    s -= _Letters("a")
    s ^= _Letters("de")
    s &= {"b": 0, "e": 0}.keys()
    assert type(s) is SetProxy and set(s) == {"b", "e"}
    for update in ("s |= ['z']", "s &= ['b']", "s -= ['b']", "s ^= ['z']", "s |= 'z'"):
        scope = {"s": s}
        with pytest.raises(TypeError, match=r"unsupported operand type\(s\) for .=: 'SetProxy' and '(list|str)'"):
            exec(update, scope)
        assert scope["s"] is s
    assert set(s) == {"b", "e"}


def use_set_methods(s):
    seen = {}
    s.add("a")
    s.update(["b", "c"])
    seen["copy"] = (type(s.copy()).__name__, s.copy())
    s.remove("a")
    try:
        s.remove("a")
    except KeyError as exc:
        seen["remove_missing"] = repr(exc)
    s.discard("a")  # no error
    seen["pop"] = s.pop() in {"b", "c"}
    s.clear()
    s.update(["a", "b", "c"])
    seen["union"] = s.union({"d"})
    seen["intersection"] = s.intersection({"b", "c", "d"})
    seen["difference"] = s.difference({"a"})
    seen["symmetric_difference"] = s.symmetric_difference({"c", "d"})
    seen["isdisjoint"] = (s.isdisjoint({"x"}), s.isdisjoint({"a"}))
    seen["issubset"] = (s.issubset({"a", "b", "c", "d"}), s.issubset({"a"}))
    seen["issuperset"] = (s.issuperset({"a"}), s.issuperset({"z"}))
    seen["compare"] = (s < {"a", "b", "c", "d"}, s <= {"a", "b", "c"}, s > {"a"}, s >= {"a", "b", "c"}, s < {"a"})
    s.intersection_update({"a", "b", "z"})
    s.difference_update({"a"})
    s.symmetric_difference_update({"q"})
    seen["final"] = set(s)
    return seen


def test_set_proxy_operators(manager, ctx):
    s = manager.set()
    assert isinstance(s, SetProxy)
    seen = run_in_child(ctx, use_set_operators, s)
    assert seen["len"] == 3 and seen["contains"] == (True, False)
    assert seen["or"] == seen["ror"] == {"a", "b", "c", "d"} and type(seen["or"]) is set
    assert seen["sub"] == {"b", "c"} and seen["rsub"] == {"z"}
    assert seen["xor"] == seen["rxor"] == {"a", "b", "d"}
    assert seen["and"] == seen["rand"] == {"b"}
    assert seen["ior"] == ("SetProxy", {"a", "b", "c", "d"})
    assert seen["isub"] == {"b", "c", "d"}
    assert seen["ixor"] == {"c", "d", "e"}
    assert seen["iand"] == ("SetProxy", {"c", "e"})
    assert set(s) == {"c", "e"} and len(s) == 2


def test_set_proxy_methods(manager, ctx):
    s = manager.set()
    seen = run_in_child(ctx, use_set_methods, s)
    assert seen["copy"] == ("set", {"a", "b", "c"})
    assert seen["remove_missing"] == "KeyError('a')"
    assert seen["pop"] is True
    assert seen["union"] == {"a", "b", "c", "d"}
    assert seen["intersection"] == {"b", "c"}
    assert seen["difference"] == {"b", "c"}
    assert seen["symmetric_difference"] == {"a", "b", "d"}
    assert seen["isdisjoint"] == (True, False)
    assert seen["issubset"] == (True, False)
    assert seen["issuperset"] == (True, False)
    assert seen["compare"] == (True, True, True, True, False)
    assert seen["final"] == {"b", "q"} == set(s)


def test_set_is_created_from_any_iterable_and_has_every_set_method(manager):
    assert set(manager.set({"a", "b"})) == {"a", "b"}
    assert set(manager.set(["a", "b", "a"])) == {"a", "b"}
    assert set(manager.set({"a": 1, "b": 2})) == {"a", "b"}
    assert set(manager.set()) == set()
    with pytest.raises(RemoteError, match="not iterable"):
        manager.set(1234)
    proxy = manager.set()
    wanted = {
        name
        for name in dir(set)
        if not name.startswith("_")
        or name
        in {
            "__and__",
            "__contains__",
            "__iand__",
            "__ior__",
            "__isub__",
            "__iter__",
            "__ixor__",
            "__len__",
            "__or__",
            "__rand__",
            "__ror__",
            "__rsub__",
            "__rxor__",
            "__sub__",
            "__xor__",
            "__ge__",
            "__gt__",
            "__le__",
            "__lt__",
            "__class_getitem__",
        }
    }
    assert wanted <= set(dir(proxy))
    assert SyncManager.set.__name__ == "set"


# ---------------------------------------------------------------- ABCs and generics


def test_proxies_are_registered_with_the_collections_abcs(manager):
    lst, d, s = manager.list(), manager.dict(), manager.set()
    assert isinstance(lst, collections.abc.MutableSequence)
    assert isinstance(d, collections.abc.MutableMapping)
    assert isinstance(s, collections.abc.MutableSet)
    assert not isinstance(s, collections.abc.Mapping)
    for name in (
        "__contains__",
        "__delitem__",
        "__getitem__",
        "__iadd__",
        "__len__",
        "__reversed__",
        "__setitem__",
        "append",
        "clear",
        "count",
        "extend",
        "index",
        "insert",
        "pop",
        "remove",
        "reverse",
    ):
        assert callable(getattr(lst, name)), name
    assert SetProxy[int].__origin__ is SetProxy
    assert DictProxy[str, int].__args__ == (str, int)
    assert ListProxy[int].__origin__ is ListProxy


# ---------------------------------------------------------------- locked()


def hold_until_told(lock, times, held, done):
    for _ in range(times):
        lock.acquire()
    held.set()
    done.wait(60)
    for _ in range(times):
        lock.release()


@pytest.mark.parametrize("typeid, times", [("Lock", 1), ("RLock", 2), ("Semaphore", 2), ("BoundedSemaphore", 2)])
def test_acquirer_proxy_locked(manager, ctx, typeid, times):
    # Python 3.14's AcquirerProxy.locked(), on every version; for a semaphore:
    # whether its value is zero (as the process-shared Semaphore.locked()).
    args = (times,) if "Semaphore" in typeid else ()
    lock = getattr(manager, typeid)(*args)
    assert isinstance(lock, AcquirerProxy)
    assert lock.locked() is False
    held, done = manager.Event(), manager.Event()
    proc = ctx.Process(target=hold_until_told, args=(lock, times, held, done))
    proc.start()
    try:
        assert held.wait(60)
        assert lock.locked() is True  # held by another process
        assert lock.acquire(False) is False  # and locked() took nothing from it
    finally:
        done.set()
        proc.join(30)
    assert proc.exitcode == 0
    assert lock.locked() is False
    with lock:
        assert lock.locked() is (times == 1 or typeid == "RLock")
    assert lock.locked() is False

"""mp_core._payload_cache: a main-module function's payload is reused only while nothing it carries can have changed."""

from __future__ import annotations

import gc
import textwrap
import weakref

from mp_core import _payload_cache, reduction


def main_namespace(source: str) -> dict:
    """Run ``source`` as if it were the main module; its namespace."""
    namespace: dict = {"__name__": "__main__"}
    exec(textwrap.dedent(source), namespace)
    return namespace


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def make(self) -> object:
        self.calls += 1
        return object()


def test_the_same_unchanged_function_is_serialized_once():
    ns = main_namespace(
        """
        import os
        LIMIT = 3
        NAMES = ("a", "b", frozenset({1, 2}))
        def helper(x):
            return x + LIMIT
        f = lambda x, y=(1, "two"): helper(x) + len(NAMES) + len(os.sep)
        """
    )
    counter = Counter()
    first = _payload_cache.cached_payload(ns["f"], "settings", counter.make)
    assert _payload_cache.cached_payload(ns["f"], "settings", counter.make) is first
    assert counter.calls == 1
    # Other settings (protocol, serializer, dill's): made anew.
    assert _payload_cache.cached_payload(ns["f"], "other", counter.make) is not first
    assert counter.calls == 2


def test_any_rebinding_makes_it_anew():
    ns = main_namespace(
        """
        LIMIT = 3
        def helper(x):
            return x + LIMIT
        def outer():
            step = 1
            def f(x, y=2):
                return helper(x) + step + y
            def bump():
                nonlocal step
                step += 1
            return f, bump
        f, bump = outer()
        """
    )
    f, counter = ns["f"], Counter()
    payloads = [_payload_cache.cached_payload(f, None, counter.make)]
    for change in (
        lambda: ns.__setitem__("LIMIT", 4),  # a global of a main-module helper it uses
        ns["bump"],  # a closure cell
        lambda: setattr(f, "__defaults__", (5,)),  # its defaults
        lambda: ns.__setitem__("helper", lambda x: x),  # the helper itself
    ):
        change()
        payloads.append(_payload_cache.cached_payload(f, None, counter.make))
        payloads.append(_payload_cache.cached_payload(f, None, counter.make))  # unchanged again: reused
    assert counter.calls == 5
    assert [payloads[0], *payloads[1::2]] == list(dict.fromkeys(payloads))  # each change: a new payload, then kept


def test_what_may_change_in_place_is_never_reused():
    ns = main_namespace(
        """
        CONFIG = {"x": 1}
        ITEMS = [1, 2]
        class Box:
            pass
        uses_dict = lambda: CONFIG["x"]
        uses_list = lambda: ITEMS[0]
        uses_class = lambda: Box()
        def with_attribute():
            return 1
        with_attribute.note = "mutable"
        def with_kwdefaults(*, k=1):
            return k
        """
    )
    for name in ("uses_dict", "uses_list", "uses_class", "with_attribute", "with_kwdefaults"):
        counter = Counter()
        _payload_cache.cached_payload(ns[name], None, counter.make)
        _payload_cache.cached_payload(ns[name], None, counter.make)
        assert counter.calls == 2, name


def test_the_cache_does_not_keep_the_function_alive():
    ns = main_namespace("f = lambda: 1")
    f = ns.pop("f")
    _payload_cache.cached_payload(f, None, Counter().make)
    alive = weakref.ref(f)
    del f, ns
    gc.collect()
    assert alive() is None


def test_reduction_reuses_a_lambdas_payload_and_it_still_loads():
    ns = main_namespace("K = 5\nf = lambda x: x * K")
    f = ns["f"]
    first = bytes(reduction.dumps(f))
    second = bytes(reduction.dumps(f))
    assert first == second
    g = reduction.loads(first)
    assert g(2) == 10
    ns["K"] = 6
    assert bytes(reduction.dumps(f)) != first

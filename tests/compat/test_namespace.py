"""``Namespace``: one class behind ``multiprocess.managers`` and ``multiprocess.dummy``.

The standard library has two identical ones; ours is ``mp_core._namespace.Namespace``,
re-exported by both, and a pickled one names that module.  It must behave as
the stdlib's (keywords in, public attributes in the repr) and travel between
processes: through a queue, and into a manager's server and back.
"""

from __future__ import annotations

import pickle

import pytest

import mp_core._namespace
import multiprocess.dummy
import multiprocess.managers

pytestmark = pytest.mark.timeout(120)

Namespace = multiprocess.managers.Namespace


def test_managers_and_dummy_share_the_class_that_mp_core_holds():
    assert multiprocess.dummy.Namespace is Namespace is mp_core._namespace.Namespace
    assert (Namespace.__module__, Namespace.__qualname__) == ("mp_core._namespace", "Namespace")
    assert multiprocess.dummy.Manager().Namespace is Namespace


def test_keywords_become_attributes_and_the_repr_lists_the_public_ones_sorted():
    ns = Namespace(b=1, a=[2], _hidden=3, self=4)
    ns.c = "x"
    assert (ns.a, ns.b, ns._hidden, ns.self) == ([2], 1, 3, 4)
    assert repr(ns) == "Namespace(a=[2], b=1, c='x', self=4)"
    assert repr(Namespace()) == "Namespace()"
    with pytest.raises(TypeError):
        Namespace(1)


def test_a_pickled_namespace_names_mp_core_and_comes_back_equal():
    ns = Namespace(a=1, _b=2)
    data = pickle.dumps(ns)
    assert b"mp_core._namespace" in data
    copy = pickle.loads(data)
    assert type(copy) is Namespace and vars(copy) == {"a": 1, "_b": 2}


def _mark_and_return(inbox, outbox):
    ns = inbox.get(timeout=60)
    ns.seen_in_child = type(ns).__module__
    outbox.put(ns)


def test_a_namespace_travels_through_queues_to_a_child_and_back(ctx, start):
    inbox, outbox = ctx.Queue(), ctx.Queue()
    try:
        proc = start(_mark_and_return, inbox, outbox)
        inbox.put(Namespace(a=1))
        back = outbox.get(timeout=60)
        proc.join(60)
        assert proc.exitcode == 0
        assert type(back) is Namespace and vars(back) == {"a": 1, "seen_in_child": "mp_core._namespace"}
    finally:
        for queue in (inbox, outbox):
            queue.close()
            queue.join_thread()


def test_a_namespace_is_stored_in_a_managers_server_and_returned(ctx):
    with multiprocess.managers.SyncManager(ctx=ctx) as manager:
        shared = manager.dict()
        shared["ns"] = Namespace(a=1)
        back = shared["ns"]
        assert type(back) is Namespace and vars(back) == {"a": 1}
        proxy = manager.Namespace(x=1)
        proxy.y = 2
        assert (proxy.x, proxy.y) == (1, 2)
        held = manager.list([Namespace(z=3)])[0]
        assert type(held) is Namespace and repr(held) == "Namespace(z=3)"

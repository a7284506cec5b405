"""sharedctypes and its heap: shared values and arrays, with and without locks, under contention."""

from __future__ import annotations

import ctypes
import gc
import pickle

import pytest

from mp_core import reduction
from mp_managers import heap, sharedctypes
from mp_managers.sharedctypes import (
    Array,
    RawArray,
    RawValue,
    Synchronized,
    SynchronizedArray,
    SynchronizedString,
    Value,
    copy,
    synchronized,
)

pytestmark = pytest.mark.timeout(120)

WORKERS = 3
INCREMENTS = 300


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_double), ("y", ctypes.c_double)]


def add_with_lock(value, array, n):
    for _ in range(n):
        with value.get_lock():
            value.value += 1
        with array:
            array[0] += 1
            array[1] -= 2


def add_without_lock(value, array, n):
    for _ in range(n):
        value.value += 1
        array[0] += 1


def write_everything(values, point, points, text, raw):
    for typecode, shared in values.items():
        shared.value = {"c": b"z", "u": "\u20ac", "f": 2.5, "d": -1.25}.get(typecode, 42)
    point.x, point.y = 3.0, 4.0
    points[1] = Point(5.0, 6.0)
    text.value = b"bye"
    raw[:] = [7, 8, 9]


# ---------------------------------------------------------------- tests


def test_value_and_array_with_locks_give_exact_totals(ctx, children):
    value = ctx.Value("i", 0)
    array = ctx.Array("l", [0, 0])
    assert isinstance(value, Synchronized) and isinstance(array, SynchronizedArray)
    codes = children.run(add_with_lock, [(value, array, INCREMENTS)] * WORKERS)
    assert codes == [0] * WORKERS
    assert value.value == WORKERS * INCREMENTS
    assert array[:] == [WORKERS * INCREMENTS, -2 * WORKERS * INCREMENTS]


def test_value_and_array_without_locks_are_shared_but_racy(ctx, children):
    value = ctx.Value("i", 0, lock=False)
    array = ctx.Array("i", 1, lock=False)
    assert type(value) is ctypes.c_int and isinstance(array, ctypes.Array)
    codes = children.run(add_without_lock, [(value, array, INCREMENTS)] * WORKERS)
    assert codes == [0] * WORKERS
    # Every child's writes reach the parent; concurrent += may lose some.
    assert INCREMENTS <= value.value <= WORKERS * INCREMENTS
    assert INCREMENTS <= array[0] <= WORKERS * INCREMENTS


def test_typecodes_structures_and_strings_reach_children(ctx, children):
    typecodes = "cubBhHiIlLqQfd"
    values = {code: ctx.Value(code) for code in typecodes}
    point = ctx.Value(Point, 1.0, 2.0)
    points = ctx.Array(Point, [(0.0, 0.0), (1.0, 1.0)])
    text = ctx.Array("c", b"hello")
    raw = ctx.RawArray("i", 3)
    assert isinstance(text, SynchronizedString) and text.value == b"hello" and text.raw == b"hello"
    assert type(point).__name__ == "SynchronizedPoint" and (point.x, point.y) == (1.0, 2.0)
    assert children.run(write_everything, [(values, point, points, text, raw)]) == [0]
    expected = {"c": b"z", "u": "\u20ac", "f": 2.5, "d": -1.25}
    assert {code: v.value for code, v in values.items()} == {code: expected.get(code, 42) for code in typecodes}
    assert (point.x, point.y) == (3.0, 4.0)
    assert (points[1].x, points[1].y) == (5.0, 6.0)
    assert text.value == b"bye"
    assert raw[:] == [7, 8, 9]


def test_raw_objects_copy_and_synchronized(ctx):
    raw = RawValue("d", 1.5)
    assert raw.value == 1.5
    zeros = RawArray(ctypes.c_int, 4)
    assert zeros[:] == [0, 0, 0, 0]
    filled = RawArray("i", range(5))
    assert filled[:] == [0, 1, 2, 3, 4] and len(filled) == 5
    duplicate = copy(filled)
    duplicate[0] = 99
    assert filled[0] == 0 and duplicate[:] == [99, 1, 2, 3, 4]
    lock = ctx.Lock()
    wrapped = synchronized(raw, lock)
    assert wrapped.get_lock() is lock and wrapped.get_obj() is raw
    assert repr(wrapped) == "<Synchronized wrapper for c_double(1.5)>"
    with pytest.raises(AssertionError):
        synchronized(wrapped)
    own = Value("i", 7, lock=lock, ctx=ctx)
    assert own.get_lock() is lock and own.value == 7
    with pytest.raises(AttributeError):
        Value("i", lock="not a lock")
    assert Array("i", [1, 2], lock=False)[:] == [1, 2]
    assert repr(Array("i", 2, ctx=ctx)).startswith("<SynchronizedArray wrapper for <")


def test_pickling_only_while_spawning(ctx):
    shared = [RawValue("i", 1), RawArray("i", 2), Value("i", ctx=ctx), Array("c", b"ab", ctx=ctx)]
    for obj in shared:
        with pytest.raises(RuntimeError, match="inheritance"):
            reduction.dumps(obj)
    with pytest.raises(RuntimeError, match="inheritance"):
        pickle.dumps(heap.BufferWrapper(8)._state[0].arena)


def test_heap_frees_blocks_and_does_not_grow_without_bound():
    wrapper_heap = heap.BufferWrapper._heap
    gc.collect()
    for _ in range(5):
        batch = [sharedctypes.RawArray("b", 1000) for _ in range(1000)]
        del batch
        gc.collect()
    settled = sum(wrapper_heap.arena_sizes())
    for _ in range(20):
        batch = [sharedctypes.RawArray("b", 1000) for _ in range(1000)]
        del batch
        gc.collect()
    assert sum(wrapper_heap.arena_sizes()) <= settled
    assert len(wrapper_heap.arena_sizes()) <= 3


def test_heap_best_fit_and_merging():
    h = heap.Heap()
    blocks = [h.malloc(100) for _ in range(10)]
    assert all(b.stop - b.start == 112 for b in blocks)  # rounded to the alignment
    assert len({b.arena.serial for b in blocks}) == 1
    for b in blocks[2:8]:
        h.free(b)
    big = h.malloc(6 * 112)  # fits in the merged hole exactly
    assert big.start == blocks[2].start
    for b in blocks[:2] + blocks[8:] + [big]:
        h.free(b)
    assert h._by_size == [(h._arenas[0].size, 0, 0)]  # one free block: the whole arena
    assert h._n_mallocs == h._n_frees == 11 and not h._allocated_blocks
    with pytest.raises(ValueError):
        h.malloc(-1)
    huge = h.malloc(heap._MAX_ARENA + 1)
    assert huge.arena.size >= heap._MAX_ARENA + 1
    h.free(huge)


@pytest.mark.skipif(not hasattr(gc, "set_threshold"), reason="this collector has no threshold to set (PyPy)")
def test_blocks_freed_by_the_garbage_collector_inside_malloc():
    """A free run by the garbage collector while malloc holds the heap's lock must not deadlock."""
    thresholds = gc.get_threshold()
    gc.set_threshold(10)
    try:
        for _ in range(3000):
            a = heap.BufferWrapper(1)
            b = heap.BufferWrapper(1)
            a.buddy, b.buddy = b, a  # cycles: only the collector frees them
    finally:
        gc.set_threshold(*thresholds)
    del a, b
    gc.collect()
    heap.BufferWrapper(1)  # processes the frees left pending
    assert not heap.BufferWrapper._heap._pending

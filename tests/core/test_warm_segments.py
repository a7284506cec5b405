"""Warm segments (mp_core._segments): a sender reuses the segments its receivers let go of, never one in use.

The buffers are memoryviews of 512 KiB (above the tests' 256 KiB threshold):
they travel out of band and arrive as views on shared memory on every
interpreter (NumPy arrays stay in band on PyPy).  Every test's leak check
(tests/conftest.py) proves that /dev/shm is back to its baseline once the
objects are gone and this process's warm segments are dropped.
"""

from __future__ import annotations

import os
import sys
import threading

import pytest

import mp_core
from mp_core import _segments, reduction

from ..oob_support import SIZE, digest, threshold, use_threshold  # noqa: F401 (threshold: an autouse fixture)
from ..support import collect_garbage, shm_entries

pytestmark = pytest.mark.timeout(90)

SERIALIZER = reduction.Serializer(oob_threshold=SIZE // 2)
#: A view that comes back to its sender is a lease on the sender's own mapping (CPython; see mp_core._segments).
LEASES = _segments._LEASES


@pytest.fixture(autouse=True)
def warm_default():
    """Each test starts with no warm segment and this process's default limit, and ends the same way."""
    _segments.drop_warm()
    _segments.set_warm_limit(None)
    yield
    _segments.set_warm_limit(None)
    _segments.drop_warm()


def buffer(fill: int | None = None) -> memoryview:
    data = os.urandom(SIZE) if fill is None else bytes([fill]) * SIZE
    return memoryview(bytearray(data))


def warm_anchors() -> list[str]:
    return [entry.anchor for entry in _segments._warm]


def our_names() -> set[str]:
    return {name for name in shm_entries() if "oob_" in name}


# ---------------------------------------------------------------- in one process


def test_the_main_process_keeps_warm_segments_and_reuses_them():
    assert _segments.warm_limit() == _segments.DEFAULT_WARM_LIMIT
    first = buffer()
    back = reduction.loads(SERIALIZER.dumps(first, oob=True))
    assert digest(back) == digest(first)
    (anchor,) = warm_anchors()
    # The view that came back is a lease on our own mapping (or a mapping of its own): the segment is in use.
    assert isinstance(_segments.segment_of(back), _segments._Warm if LEASES else _segments.SegmentMap)
    second = buffer()
    kept = reduction.loads(SERIALIZER.dumps(second, oob=True))
    assert len(warm_anchors()) == 2  # the first was still in use: a second segment
    assert digest(back) == digest(first) and digest(kept) == digest(second)
    del back
    collect_garbage()  # (PyPy ends a lease at a collection)
    third = buffer()
    again = reduction.loads(SERIALIZER.dumps(third, oob=True))
    assert anchor in warm_anchors() and len(warm_anchors()) == 2  # the first segment, reused
    assert _segments.segment_of(again).anchor == anchor
    assert digest(again) == digest(third) and digest(kept) == digest(second)


def test_a_segment_is_only_reused_for_a_buffer_it_fits_without_waste():
    small = reduction.loads(SERIALIZER.dumps(buffer(), oob=True))
    del small
    collect_garbage()
    (anchor,) = warm_anchors()
    large = memoryview(bytearray(os.urandom(3 * SIZE)))
    back = reduction.loads(SERIALIZER.dumps(large, oob=True))
    assert _segments.segment_of(back).anchor != anchor  # too small for it: a new one
    del back
    collect_garbage()
    tiny = memoryview(bytearray(os.urandom(SIZE // 2 - 1 + SIZE // 2 // 2)))  # (3/4 SIZE: fits the first)
    back = reduction.loads(SERIALIZER.dumps(tiny, oob=True))
    assert _segments.segment_of(back).anchor == anchor
    assert digest(back) == digest(tiny)


def test_warm_segments_are_bounded_in_bytes_and_in_number():
    _segments.set_warm_limit(3 * SIZE)
    held = [reduction.loads(SERIALIZER.dumps(buffer(), oob=True)) for _ in range(6)]
    assert len(warm_anchors()) <= 3
    assert sum(entry.size for entry in _segments._warm) <= 3 * SIZE
    # The segments pushed out are still held here: they are not reused, and their data is intact.
    assert len({_segments.segment_of(view).anchor for view in held}) == 6
    _segments.set_warm_limit(100 * SIZE)
    more = [reduction.loads(SERIALIZER.dumps(buffer(), oob=True)) for _ in range(6)]
    assert len(warm_anchors()) == _segments.WARM_SEGMENTS
    del held, more
    collect_garbage()
    _segments.drop_warm()
    assert not our_names()


def test_oob_cache_sets_the_limit_and_zero_frees_what_is_kept():
    back = reduction.loads(SERIALIZER.dumps(buffer(), oob=True))
    del back
    collect_garbage()
    assert len(our_names()) == 1  # kept warm
    reduction.configure(oob_cache=0)
    assert _segments.warm_limit() == 0
    assert not our_names() and not warm_anchors()
    back = reduction.loads(SERIALIZER.dumps(buffer(), oob=True))
    del back
    collect_garbage()
    assert not our_names()  # freed with its last user
    reduction.configure(oob_cache=None)
    assert _segments.warm_limit() == _segments.DEFAULT_WARM_LIMIT
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="oob_cache must be a number of bytes"):
            reduction.configure(oob_cache=bad)


def test_threads_never_write_into_the_same_segment():
    errors: list[str] = []
    barrier = threading.Barrier(4)

    def sender(index: int) -> None:
        barrier.wait(30)
        for round_ in range(25):
            sent = buffer(fill=(index * 25 + round_) % 256)
            back = reduction.loads(SERIALIZER.dumps(sent, oob=True))
            if digest(back) != digest(sent):
                errors.append(f"thread {index}, round {round_}")

    threads = [threading.Thread(target=sender, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert len(warm_anchors()) <= _segments.WARM_SEGMENTS


# ---------------------------------------------------------------- across processes


def keep_and_compare(conn) -> None:
    """Receive a buffer and keep it; after the next one, report both digests; until None."""
    use_threshold(carrier="names")
    kept = conn.recv()
    conn.send(("kept", digest(kept)))
    while True:
        obj = conn.recv()
        if obj is None:
            return
        conn.send((digest(obj), digest(kept), _segments.segment_of(obj).anchor != _segments.segment_of(kept).anchor))


def test_a_segment_another_process_still_maps_is_never_reused(start):
    use_threshold(carrier="names")  # (memory files: tests/core/test_zerocopy_memfd.py)
    parent, child = mp_core.Pipe()
    proc = start(keep_and_compare, child)
    child.close()
    first = buffer()
    parent.send(first)
    assert parent.recv() == ("kept", digest(first))
    for _ in range(3):
        later = buffer()
        parent.send(later)
        assert parent.recv() == (digest(later), digest(first), True)
    parent.send(None)
    proc.join(30)
    assert proc.exitcode == 0


def drop_each(conn) -> None:
    """Receive buffers, report their digests and drop them; until None."""
    use_threshold(carrier="names")
    while True:
        obj = conn.recv()
        if obj is None:
            return
        conn.send(digest(obj))
        del obj
        if sys.implementation.name != "cpython":
            collect_garbage()  # (PyPy lets go of a mapping at a collection)


def test_a_stream_reuses_the_segments_its_receiver_let_go(start):
    use_threshold(carrier="names")
    parent, child = mp_core.Pipe()
    proc = start(drop_each, child)
    child.close()
    for _ in range(40):
        sent = buffer()
        parent.send(sent)
        assert parent.recv() == digest(sent)
        # The receiver reported before it let go: at most one more segment than the one it holds.
        assert len(warm_anchors()) <= 2
    parent.send(None)
    proc.join(30)
    assert proc.exitcode == 0


def identity(obj):
    return obj


def test_an_array_returned_by_reference_is_a_lease_that_keeps_its_segment(ctx):
    with ctx.Pool(1, initializer=use_threshold) as pool:
        first = buffer()
        back = pool.apply(identity, (first,))
        assert isinstance(_segments.segment_of(back), _segments._Warm if LEASES else _segments.SegmentMap)
        assert digest(back) == digest(first)
        for _ in range(3):
            later = buffer()
            assert digest(pool.apply(identity, (later,))) == digest(later)
            assert digest(back) == digest(first)  # its segment was not written into
        pool.close()
        pool.join()


def report_limit():
    return _segments.warm_limit()


def test_the_processes_a_program_starts_keep_no_warm_segments_by_default(ctx):
    with ctx.Pool(1) as pool:
        assert pool.apply(report_limit) == 0
        pool.close()
        pool.join()
    assert _segments.warm_limit() == _segments.DEFAULT_WARM_LIMIT


def cache_and_threshold() -> None:
    use_threshold()
    reduction.configure(oob_cache=8 * SIZE)


def make(fill: int) -> memoryview:
    return buffer(fill)


def check_inherited(view, expected: str, go, conn) -> None:
    go.wait(60)
    conn.send(digest(view))


def test_a_forked_child_keeps_its_inherited_view_when_the_parent_lets_go(start_method):
    """A worker that keeps warm segments must not reuse one a forked child still sees through the parent's view."""
    ctx = mp_core.get_context(start_method)
    fork = mp_core.get_context("fork")
    with ctx.Pool(1, initializer=cache_and_threshold) as pool:
        received = pool.apply(make, (1,))  # a view on the worker's warm segment
        expected = digest(received)
        go = fork.Event()
        reader, writer = fork.Pipe(duplex=False)
        child = fork.Process(target=check_inherited, args=(received, expected, go, writer))
        child.start()
        writer.close()
        try:
            del received
            collect_garbage()
            # The worker's next result of the same size would go into that segment if no one held it.
            assert digest(pool.apply(make, (2,))) == digest(buffer(2))
        finally:
            go.set()
        assert reader.recv() == expected
        child.join(30)
        assert child.exitcode == 0
        pool.close()
        pool.join()


def test_a_forked_child_keeps_its_inherited_lease_when_the_parent_reuses_the_segment(ctx):
    fork = mp_core.get_context("fork")
    with ctx.Pool(1, initializer=use_threshold) as pool:
        first = buffer()
        back = pool.apply(identity, (first,))  # a lease on our own warm segment
        (anchor,) = warm_anchors()
        go = fork.Event()
        reader, writer = fork.Pipe(duplex=False)
        child = fork.Process(target=check_inherited, args=(back, digest(first), go, writer))
        child.start()
        writer.close()
        try:
            del back
            collect_garbage()
            later = buffer()
            again = pool.apply(identity, (later,))
            assert digest(again) == digest(later)
            assert _segments.segment_of(again).anchor != anchor  # the child holds the first one
        finally:
            go.set()
        assert reader.recv() == digest(first)
        child.join(30)
        assert child.exitcode == 0
        pool.close()
        pool.join()


def send_three_and_exit(queue) -> None:
    cache_and_threshold()
    for fill in range(3):
        queue.put(buffer(fill))


def test_a_process_that_ends_leaves_its_warm_segments_to_no_one(ctx):
    queue = ctx.Queue()
    proc = ctx.Process(target=send_three_and_exit, args=(queue,))
    proc.start()
    got = [queue.get(timeout=60) for _ in range(3)]
    proc.join(30)
    assert proc.exitcode == 0
    assert [digest(view) for view in got] == [digest(buffer(fill)) for fill in range(3)]
    del got
    collect_garbage()
    _segments.drop_warm()
    assert not our_names()
    queue.close()
    queue.join_thread()

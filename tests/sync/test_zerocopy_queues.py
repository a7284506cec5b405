"""Large buffers through Queue, JoinableQueue and SimpleQueue: out of band, bounded, nothing left.

The buffers are 512 KiB, above a threshold of 256 KiB set in every process
of the test; each test's leak check (tests/conftest.py) proves /dev/shm is
back to its baseline.
"""

from __future__ import annotations

import os
import queue

import pytest

from mp_core import _segments
from mp_core.reduction import Serializer
from mp_sync.queues import Queue

from ..oob_support import ARRAYS_OUT_OF_BAND, SIZE, THRESHOLD, digest, threshold, use_threshold  # noqa: F401 (threshold: an autouse fixture)
from ..support import SHARED_MEMORY_PREFIX

pytestmark = pytest.mark.timeout(90)


def relay(inbox, outbox) -> None:
    """Get objects and put back (digest, is it a view on shared memory, the object); until None."""
    use_threshold()
    while True:
        obj = inbox.get()
        if obj is None:
            break
        if type(obj).__module__ == "numpy":
            import numpy

            seen = digest(numpy.ascontiguousarray(obj))
        else:
            seen = digest(obj)
        outbox.put((seen, _segments.segment_of(obj) is not None, obj))
        if hasattr(inbox, "task_done"):
            inbox.task_done()


def make_queues(ctx, kind):
    """The queue under test, and a Queue back (whose get has a timeout)."""
    return getattr(ctx, kind)(), ctx.Queue()


@pytest.mark.parametrize("kind", ["Queue", "JoinableQueue", "SimpleQueue"])
def test_round_trip_through_queues(ctx, start, kind):
    numpy = pytest.importorskip("numpy") if kind == "Queue" else None
    inbox, outbox = make_queues(ctx, kind)
    proc = start(relay, inbox, outbox)
    data = os.urandom(SIZE)
    objects = [data, bytearray(data), memoryview(bytearray(data)).cast("q")]
    if numpy is not None:
        objects.append(numpy.frombuffer(data, numpy.int16).reshape(512, 512).T)  # Fortran-ordered
    for obj in objects:
        inbox.put(obj)
        seen, shared, back = outbox.get(timeout=60)
        assert seen == digest(data if type(obj).__module__ != "numpy" else numpy.ascontiguousarray(obj))
        is_array = numpy is not None and type(obj) is numpy.ndarray
        assert shared == (type(obj) not in (bytes, bytearray) and (ARRAYS_OUT_OF_BAND or not is_array))
        assert type(back) is type(obj)
        if numpy is not None and type(obj) is numpy.ndarray:
            assert numpy.array_equal(back, obj) and back.flags.f_contiguous
            assert (_segments.segment_of(back) is not None) == ARRAYS_OUT_OF_BAND
    if kind == "JoinableQueue":
        inbox.join()
    inbox.put(None)
    proc.join(30)
    assert proc.exitcode == 0


def test_per_queue_serializer_keeps_buffers_in_band(ctx, start):
    in_band = Serializer(oob_threshold=None)
    inbox, outbox = Queue(ctx=ctx, serializer=in_band), Queue(ctx=ctx, serializer=in_band)
    proc = start(relay, inbox, outbox)
    data = bytearray(os.urandom(SIZE))
    inbox.put(memoryview(data))
    seen, shared, back = outbox.get(timeout=60)
    assert (seen, shared, bytes(back)) == (digest(data), False, bytes(data))
    inbox.put(None)
    proc.join(30)


@pytest.mark.parametrize("kind", ["Queue", "JoinableQueue", "SimpleQueue"])
def test_the_context_passes_a_queue_its_serializer(ctx, start, kind):
    in_band = Serializer(oob_threshold=None)
    inbox = getattr(ctx, kind)(serializer=in_band)
    outbox = ctx.Queue(serializer=in_band)
    assert inbox._serializer is in_band
    proc = start(relay, inbox, outbox)
    data = bytearray(os.urandom(SIZE))
    inbox.put(memoryview(data))
    seen, shared, back = outbox.get(timeout=60)
    assert (seen, shared, bytes(back)) == (digest(data), False, bytes(data))  # in band both ways
    if kind == "JoinableQueue":
        inbox.join()
    inbox.put(None)
    proc.join(30)
    assert proc.exitcode == 0


def test_a_put_that_times_out_frees_its_segments(ctx):
    box = ctx.Queue(maxsize=1)
    box.put(b"1")
    with pytest.raises(queue.Full):
        box.put(os.urandom(SIZE), timeout=0.01)
    assert box.get(timeout=30) == b"1"
    box.close()
    box.join_thread()


def produce(box, count, in_flight_limit) -> None:
    use_threshold(in_flight_limit)
    for index in range(count):
        box.put(bytes([index]) * SIZE)
    box.put(None)
    box.close()
    box.join_thread()


def ours_in_dev_shm() -> int:
    prefix = SHARED_MEMORY_PREFIX[1:]
    return sum(1 for name in os.listdir("/dev/shm") if name.startswith(prefix) and "oob_" in name)


def test_a_stream_keeps_dev_shm_bounded(ctx, start):
    """A producer faster than its consumer: past the in-flight limit, items go in band."""
    box = ctx.Queue()
    limit_items = 4
    proc = start(produce, box, 40, limit_items * SIZE)
    peak = 0
    got = 0
    while True:
        item = box.get(timeout=60)
        peak = max(peak, ours_in_dev_shm())
        if item is None:
            break
        assert item == bytes([got]) * SIZE
        got += 1
        del item
    proc.join(30)
    assert (got, proc.exitcode) == (40, 0)
    # Each item in flight has an anchor and a message name; one more anchor
    # may be the item just received, not yet dropped.
    assert peak <= 2 * limit_items + 1, peak

"""Large buffers as pool arguments and results, and through the executor: out of band, by reference.

The buffers are 512 KiB, above a threshold of 256 KiB set in the parent
(fixture) and in every worker (initializer); each test's leak check
(tests/conftest.py) proves /dev/shm is back to its baseline once the pool
is gone.
"""

from __future__ import annotations

import os

import pytest

from mp_core import _segments
from mp_core.reduction import Serializer

from ..oob_support import ARRAYS_OUT_OF_BAND, SIZE, THRESHOLD, digest, threshold, use_threshold  # noqa: F401 (threshold: an autouse fixture)

pytestmark = pytest.mark.timeout(90)


def inspect(obj):
    """In the worker: (digest, is it a view on shared memory), and the object itself back."""
    contiguous = obj
    if type(obj).__module__ == "numpy":
        import numpy

        contiguous = numpy.ascontiguousarray(obj)
    return digest(contiguous), _segments.segment_of(obj) is not None, obj


def fresh_bytes(seed: int) -> bytes:
    return bytes([seed]) * SIZE


def test_arguments_and_results(make_pool):
    pool = make_pool(1, initializer=use_threshold)
    data = os.urandom(SIZE)
    view = memoryview(bytearray(data)).cast("f")
    seen, shared, back = pool.apply(inspect, (view,))
    assert (seen, shared) == (digest(data), True)
    assert back.format == "f" and digest(back) == digest(data)
    assert _segments.segment_of(back) is not None  # the worker's view, returned by reference
    assert pool.apply(inspect, (data,))[:2] == (digest(data), False)
    assert pool.map(fresh_bytes, range(3)) == [fresh_bytes(i) for i in range(3)]
    assert list(pool.imap(fresh_bytes, range(2), chunksize=1)) == [fresh_bytes(0), fresh_bytes(1)]
    close(pool)


def close(pool) -> None:
    """Let the workers exit on their own: each lets go of the segments it still holds.

    (A worker killed by ``terminate()`` while it holds the last view of a
    segment leaves its name to the resource tracker, which removes it when
    the program ends: later than the leak check after each test.)
    """
    pool.close()
    pool.join()


def test_arrays(make_pool):
    numpy = pytest.importorskip("numpy")
    pool = make_pool(2, initializer=use_threshold)
    rng = numpy.random.default_rng(3)
    arrays = [rng.random((256, 256)), numpy.asfortranarray(rng.random((256, 256))), rng.random(10)]
    results = pool.map(inspect, arrays, chunksize=1)
    for array, (seen, shared, back) in zip(arrays, results):
        assert seen == digest(numpy.ascontiguousarray(array))
        assert shared == (array.nbytes >= THRESHOLD and ARRAYS_OUT_OF_BAND)
        assert numpy.array_equal(back, array) and back.flags.f_contiguous == array.flags.f_contiguous
        assert (_segments.segment_of(back) is not None) == shared
    close(pool)


def test_a_pool_serializer_keeps_buffers_in_band(make_pool):
    pool = make_pool(1, initializer=use_threshold, serializer=Serializer(oob_threshold=None))
    data = bytearray(os.urandom(SIZE))
    seen, shared, back = pool.apply(inspect, (memoryview(data),))
    assert (seen, shared, bytes(back)) == (digest(data), False, bytes(data))
    close(pool)


def test_executor(make_executor):
    executor = make_executor(1, initializer=use_threshold)
    data = bytearray(os.urandom(SIZE))
    seen, shared, back = executor.submit(inspect, memoryview(data)).result(timeout=60)
    assert (seen, shared, bytes(back)) == (digest(data), True, bytes(data))
    assert list(executor.map(fresh_bytes, range(2))) == [fresh_bytes(0), fresh_bytes(1)]
    executor.shutdown()


def test_a_call_cancelled_before_it_was_sent_frees_its_shared_memory(make_pool, gate):
    from . import helpers

    pool = make_pool(1, **gate.pool_args)
    blocker = pool.apply_async(helpers.gated)
    gate.wait_started()
    waiting = pool.apply_async(len, (os.urandom(SIZE),))
    assert [name for name in os.listdir("/dev/shm") if "oob_" in name]  # its arguments, in shared memory
    assert waiting.cancel() is True
    gate.open()
    blocker.get(60)
    pool.close()
    pool.join()
    # The leak check (tests/conftest.py) sees /dev/shm back to its baseline.

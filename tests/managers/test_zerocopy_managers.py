"""Large buffers through manager calls, and arrays made in shared memory (``shared_memory.ndarray``).

The buffers are 512 KiB, above a threshold of 256 KiB set in the test
process (fixture) and in the manager's server (initializer); each test's
leak check (tests/conftest.py) proves /dev/shm is back to its baseline.
"""

from __future__ import annotations

import os

import pytest

from mp_core import _segments
from mp_managers.managers import SyncManager
from mp_managers.shared_memory import ndarray

from ..oob_support import ARRAYS_OUT_OF_BAND, SIZE, THRESHOLD, digest, threshold, use_threshold  # noqa: F401 (threshold: an autouse fixture)

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def manager(ctx):
    m = SyncManager(ctx=ctx)
    m.start(initializer=use_threshold)
    yield m
    m.shutdown()


def test_dict_values(manager):
    shared = manager.dict()
    data = os.urandom(SIZE)
    view = memoryview(bytearray(data)).cast("d")
    shared["bytes"] = data
    shared["view"] = view
    assert shared["bytes"] == data
    back = shared["view"]
    assert back.format == "d" and digest(back) == digest(data)
    assert _segments.segment_of(back) is not None  # the server's view, by reference
    numpy = pytest.importorskip("numpy")
    array = numpy.asfortranarray(numpy.arange(SIZE // 8, dtype=numpy.float64).reshape(256, 256))
    shared["array"] = array
    back = shared["array"]
    assert numpy.array_equal(back, array) and back.flags.f_contiguous
    assert (_segments.segment_of(back) is not None) == ARRAYS_OUT_OF_BAND
    del shared["array"], shared["view"]


def fill(array, value) -> None:
    array[:] = value


@pytest.mark.skipif(not ARRAYS_OUT_OF_BAND, reason="PyPy sends NumPy arrays in band")
def test_shared_ndarray_is_the_same_memory_in_a_child(ctx, start):
    numpy = pytest.importorskip("numpy")
    array = ndarray((256, 256), "float64")
    assert _segments.segment_of(array) is not None
    proc = start(fill, array, 4.0)  # by reference, even as process arguments under spawn
    proc.join(30)
    assert proc.exitcode == 0
    assert float(array.sum()) == 4.0 * array.size
    half = array[128:]
    half[:] = 1.0
    del array
    assert float(half.sum()) == half.size  # a view keeps the segment alive
    assert numpy.shares_memory(half, half.base)


@pytest.mark.skipif(not ARRAYS_OUT_OF_BAND, reason="PyPy sends NumPy arrays in band")
def test_shared_ndarray_travels_by_reference(manager, monkeypatch):
    pytest.importorskip("numpy")
    array = ndarray((256, 256), "float64")
    shared = manager.dict()
    monkeypatch.setattr(_segments, "store", None)  # a copy would fail in this process
    shared["a"] = array
    array[0, 0] = 5.0
    assert shared["a"][0, 0] == 5.0  # the server's array is ours
    del shared["a"]


def test_shared_ndarray_checks():
    pytest.importorskip("numpy")
    with pytest.raises(TypeError, match="cannot hold Python objects"):
        ndarray(3, object)
    empty = ndarray(0)
    assert empty.shape == (0,) and _segments.segment_of(empty) is not None
    fortran = ndarray((3, 4), "i2", order="F")
    assert fortran.flags.f_contiguous and not fortran.any()

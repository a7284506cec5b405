"""Large buffers out of band (mp_core._out_of_band, _segments), in one process.

What crosses processes, and their deaths, is tests/core/test_zerocopy_channels.py.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import sys
import warnings

import pytest

from mp_core import _out_of_band, _segments, reduction
from mp_core.reduction import MessageEncoder, Serializer

from ..support import collect_garbage, shm_entries

pytestmark = pytest.mark.timeout(60)

THRESHOLD = _out_of_band.MIN_THRESHOLD
LARGE = 2 * THRESHOLD  # out of band with THRESHOLD
SERIALIZER = Serializer(oob_threshold=THRESHOLD)

#: PyPy keeps C extensions' buffers (NumPy arrays) in band: see mp_core._out_of_band.
ARRAYS_OUT_OF_BAND = sys.implementation.name != "pypy"


def digest(data) -> str:
    return hashlib.sha256(memoryview(data).cast("B")).hexdigest()


def round_trip(obj, serializer=SERIALIZER):
    message = serializer.dumps(obj, oob=True)
    return len(message), reduction.loads(message)


@pytest.fixture(autouse=True)
def no_warm_segments():
    """The strict lifetime (a segment goes with its last user): warm segments are tests/core/test_warm_segments.py."""
    before = _segments.warm_limit()
    _segments.set_warm_limit(0)
    yield
    _segments.set_warm_limit(before)


def segment_names() -> set[str]:
    return {name for name in shm_entries() if "oob_" in name}


# ---------------------------------------------------------------- bytes-likes (no NumPy needed)


@pytest.mark.parametrize("kind", [bytes, bytearray])
def test_bytes_like_travel_out_of_band_and_arrive_equal(kind):
    data = kind(os.urandom(LARGE))
    size, back = round_trip(data)
    assert size < 1024  # the envelope, not the bytes
    assert type(back) is kind
    assert digest(back) == digest(data)
    collect_garbage()  # PyPy frees a mapping at a collection
    assert not segment_names()  # bytes and bytearray own their memory: copied out, segment gone


def test_memoryview_arrives_as_a_view_on_shared_memory_with_format_and_shape():
    data = bytearray(os.urandom(LARGE))
    view = memoryview(data).cast("d", (LARGE // 64, 8))
    size, back = round_trip(view)
    assert size < 1024
    assert type(back) is memoryview
    assert (back.format, back.shape, back.readonly) == ("d", (LARGE // 64, 8), False)
    assert back.tobytes() == view.tobytes()
    assert _segments.segment_of(back) is not None
    assert len(segment_names()) == 1
    del back
    collect_garbage()
    assert not segment_names()


def test_small_and_read_only_memoryviews():
    _size, back = round_trip(memoryview(b"abc"))
    assert (bytes(back), back.readonly) == (b"abc", True)
    _size, back = round_trip(memoryview(bytes(LARGE)))
    assert back.readonly and back.nbytes == LARGE


def test_messages_without_large_buffers_are_byte_identical_to_plain_pickles():
    for obj in [(1, 2.5, "abcd"), b"x" * (THRESHOLD - 1), {"k": bytearray(1000)}, list(range(50000))]:
        assert bytes(SERIALIZER.dumps(obj, oob=True)) == bytes(SERIALIZER.dumps(obj))
    encode = MessageEncoder(SERIALIZER)
    assert encode((1, "x")) == bytes(SERIALIZER.dumps((1, "x")))


def test_several_buffers_keep_their_order_and_sharing():
    first, second = os.urandom(LARGE), bytearray(os.urandom(LARGE + 8))
    obj = [first, {"b": second, "again": first}, b"small", second]
    _size, back = round_trip(obj)
    assert back[0] == first and back[1]["b"] == second and back[2] == b"small" and back[3] == second
    assert back[1]["again"] is back[0] and back[3] is back[1]["b"]


def test_off_switches_keep_everything_in_band():
    data = os.urandom(LARGE)
    assert len(Serializer(oob_threshold=None).dumps(data, oob=True)) > LARGE
    assert len(SERIALIZER.dumps(data)) > LARGE  # oob=False: a self-contained pickle
    assert len(SERIALIZER.replace(mode="dill").dumps(data, oob=True)) > LARGE
    assert len(SERIALIZER.replace(protocol=4).dumps(data, oob=True)) > LARGE
    collect_garbage()  # PyPy frees a mapping at a collection
    assert not segment_names()


def test_configure_sets_the_process_wide_threshold():
    before = reduction.get_serializer()
    try:
        assert reduction.configure(oob=False).oob_threshold is None
        assert reduction.configure(oob=True).oob_threshold == _out_of_band.DEFAULT_THRESHOLD
        assert reduction.configure(oob_threshold=THRESHOLD).oob_threshold == THRESHOLD
        message = reduction.dumps(os.urandom(LARGE), oob=True)
        assert len(message) < 1024
        reduction.discard(message)
        with pytest.raises(TypeError, match="not both"):
            reduction.configure(oob=True, oob_threshold=THRESHOLD)
    finally:
        reduction.configure(oob_threshold=before.oob_threshold)


@pytest.mark.parametrize("bad", [0, 1024, THRESHOLD - 1, "1M", True, 1.5e6])
def test_threshold_is_checked(bad):
    with pytest.raises(ValueError, match="oob_threshold must be None or an int >= 262144"):
        Serializer(oob_threshold=bad)


def test_a_message_is_received_once():
    message = SERIALIZER.dumps(os.urandom(LARGE), oob=True)
    reduction.loads(message)
    with pytest.raises(_segments.SegmentLost, match="can be received once"):
        reduction.loads(message)


def test_discard_frees_a_message_never_received():
    message = SERIALIZER.dumps([os.urandom(LARGE), bytearray(LARGE)], oob=True)
    assert len(segment_names()) == 4  # two anchors, two message names
    reduction.discard(message)
    collect_garbage()  # PyPy frees a mapping at a collection
    assert not segment_names()
    reduction.discard(SERIALIZER.dumps((1, 2), oob=True))  # nothing to free: no error


def test_full_dev_shm_falls_back_in_band_with_a_warning(monkeypatch):
    def full(fd, view):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_segments, "_write_all", full)
    monkeypatch.setattr(_segments, "_warned_in_band", False)
    data = bytearray(os.urandom(LARGE))
    with pytest.warns(RuntimeWarning, match=r"sent in band .* /dev/shm is full"):
        message = SERIALIZER.dumps(data, oob=True)
    assert len(message) > LARGE
    assert reduction.loads(message) == data
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process
        assert reduction.loads(SERIALIZER.dumps(data, oob=True)) == data
    collect_garbage()  # PyPy frees a mapping at a collection
    assert not segment_names()


def test_the_in_flight_limit_sends_in_band_past_it(monkeypatch):
    monkeypatch.setattr(_segments, "_in_flight_limit", LARGE * 2)
    messages = [SERIALIZER.dumps(os.urandom(LARGE), oob=True) for _ in range(3)]
    assert [len(m) < 1024 for m in messages] == [True, True, False]
    reduction.loads(messages[0])  # received: its bytes no longer count
    assert len(SERIALIZER.dumps(b"", oob=True)) < 1024
    fourth = SERIALIZER.dumps(os.urandom(LARGE), oob=True)
    assert len(fourth) < 1024
    for message in (messages[1], fourth):
        reduction.loads(message)
    collect_garbage()  # PyPy frees a mapping at a collection
    assert not segment_names()
    with pytest.raises(ValueError):
        _segments.set_in_flight_limit(-1)


def test_the_pickle_stream_inside_an_envelope_is_plain_protocol_5():
    message = SERIALIZER.dumps(os.urandom(LARGE), oob=True)
    assert bytes(message[:2]) == b"\x80\x05"
    reduction.discard(message)
    with pytest.raises(pickle.UnpicklingError, match="pickle stream refers to out-of-band data"):
        # what the stdlib's loads would say of the inner stream alone
        pickle.loads(pickle.dumps(pickle.PickleBuffer(bytearray(LARGE)), 5, buffer_callback=lambda b: False))


# ---------------------------------------------------------------- NumPy


@pytest.fixture
def numpy():
    return pytest.importorskip("numpy")


def arrays(numpy):
    rng = numpy.random.default_rng(7)
    square = rng.random((256, 256))  # 512 KiB
    return {
        "C": square,
        "F": numpy.asfortranarray(square),
        "strided": rng.random((512, 256))[::2],
        "int32": rng.integers(0, 1000, LARGE // 4, dtype=numpy.int32),
        "0-d": numpy.array(3.5),
        "small": numpy.arange(10),
    }


@pytest.mark.parametrize("name", ["C", "F", "strided", "int32", "0-d", "small"])
def test_arrays_round_trip(numpy, name):
    array = arrays(numpy)[name]
    _size, back = round_trip(array)
    assert back.dtype == array.dtype and back.shape == array.shape
    assert back.flags.f_contiguous == array.flags.f_contiguous
    assert digest(numpy.ascontiguousarray(back)) == digest(numpy.ascontiguousarray(array))
    assert back.flags.writeable


@pytest.mark.skipif(not ARRAYS_OUT_OF_BAND, reason="PyPy sends NumPy arrays in band")
def test_a_large_array_is_a_view_on_shared_memory(numpy):
    array = arrays(numpy)["C"]
    size, back = round_trip(array)
    assert size < 1024
    segment = _segments.segment_of(back)
    assert isinstance(segment, _segments.SegmentMap)
    assert len(segment) == array.nbytes
    back[0, 0] = -1.0  # writable, and only the receiver's copy changes
    assert array[0, 0] != -1.0
    del back, segment
    collect_garbage()
    assert not segment_names()


def test_object_dtype_stays_in_band(numpy):
    objects = numpy.array([("x", i) for i in range(THRESHOLD // 8)], dtype=object)
    size, back = round_trip(objects)
    assert size > THRESHOLD // 8
    assert back.dtype == object and back[5, 1] == 5


@pytest.mark.skipif(not ARRAYS_OUT_OF_BAND, reason="PyPy sends NumPy arrays in band")
def test_message_encoder_sends_out_of_band(numpy):
    encode = MessageEncoder(SERIALIZER)
    array = arrays(numpy)["C"]
    for _ in range(2):  # the kept pickler and collector start clean each time
        message = encode({"value": array})
        assert len(message) < 1024
        assert numpy.array_equal(reduction.loads(message)["value"], array)
    collect_garbage()  # PyPy frees a mapping at a collection
    assert not segment_names()

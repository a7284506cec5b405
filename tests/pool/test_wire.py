"""The pool's wire: frames built as buffer lists, and the reader that splits a byte stream."""

from __future__ import annotations

import io
import os
import pickle
import struct
import threading

import pytest

from mp_core import reduction
from mp_core._framing import READ_SIZE, FrameReader
from mp_pool import _wire

pytestmark = pytest.mark.timeout(60)


def _joined(parts):
    return b"".join(bytes(p) for p in parts)


def _payload_of(parts):
    data = _joined(parts)
    size = struct.unpack_from("!i", data)[0]
    assert size == len(data) - 4
    return data[4:]


def test_task_frame_is_a_size_header_then_the_task_head_then_the_pickle():
    parts = _wire.task_frame(_wire.MAP, 7, 3, [1, "two", 3.0], True)
    payload = _payload_of(parts)
    assert _wire.TASK_HEAD.unpack_from(payload) == (_wire.MAP, 7, 3)
    assert pickle.loads(payload[_wire.TASK_HEAD.size :]) == [1, "two", 3.0]
    assert _wire.frame_size(parts) == len(_joined(parts))


def test_a_short_frame_is_one_buffer_and_a_longer_one_keeps_its_pickle_apart():
    short = _wire.task_frame(_wire.MAP, 7, 3, [1], True)
    assert len(short) == 1 and len(short[0]) <= _wire.JOIN_BELOW
    longer = _wire.task_frame(_wire.MAP, 7, 3, [b"x" * _wire.JOIN_BELOW], True)
    # Size header and head, then the pickle: one part (CPython) or the pickler's pieces (PyPy's).
    assert len(longer) >= 2 and len(longer[0]) == 4 + _wire.HEAD_SIZE
    for parts, body in ((short, [1]), (longer, [b"x" * _wire.JOIN_BELOW])):
        payload = _payload_of(parts)
        assert _wire.TASK_HEAD.unpack_from(payload) == (_wire.MAP, 7, 3)
        assert pickle.loads(payload[_wire.HEAD_SIZE :]) == body
    assert _wire.task_frame(_wire.STOP, 0, 0) == _wire.STOP_FRAME


def test_a_large_body_is_kept_in_the_pickler_s_blocks_not_copied_into_one():
    body = [2**40 + i for i in range(40_000)]
    parts = _wire.result_frame(5, _wire.OK, 0.5, body)
    assert len(parts) > 2  # the header and several pickle frames
    payload = _payload_of(parts)
    assert _wire.RESULT_HEAD.unpack_from(payload) == (5, _wire.OK, 0.5)
    assert pickle.loads(payload[_wire.RESULT_HEAD.size :]) == body


def test_a_mutable_buffer_is_frozen_when_the_frame_is_built():
    data = bytearray(b"a" * 300_000)
    parts = _wire.task_frame(_wire.CALL, 1, 1, (len, (data,), {}), True)
    data[:] = b"b" * len(data)
    func, args, kwds = pickle.loads(_payload_of(parts)[_wire.TASK_HEAD.size :])
    assert args[0] == b"a" * 300_000


class NeedsDill:
    """Refused by the C pickler (its reducer raises a pickling error), carried by dill."""

    def __init__(self):
        self.lock = threading.Lock()
        self.value = 42


def test_the_dill_fallback_rewinds_the_frame_and_starts_over():
    frame = _wire.Frame(b"head")
    frame.write(b"x" * 70_000)
    frame.write(b"y" * 10)
    assert frame.tell() == 70_014
    frame.seek(30)
    frame.truncate()
    assert frame.size == 30 and _joined(frame.parts) == b"head" + b"x" * 26
    frame.write(b"z")
    assert _joined(frame.parts) == b"head" + b"x" * 26 + b"z"
    with pytest.raises(io.UnsupportedOperation, match="only seeks back to an absolute position"):
        frame.seek(1000)


def test_a_frame_written_after_a_failed_first_attempt_is_whole():
    obj = {"value": 42, "fn": lambda x: x + 1}
    parts = _wire.task_frame(_wire.FUNC, 0, 9, obj, True, reduction.Serializer())
    loaded = pickle.loads(_payload_of(parts)[_wire.TASK_HEAD.size :])
    assert loaded["value"] == 42 and loaded["fn"](1) == 2


def _frames_stream(sizes):
    frames = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    stream = b"".join(struct.pack("!i", len(f)) + f for f in frames)
    return frames, stream


@pytest.mark.parametrize("cut", [1, 3, 4, 5, 1000, 65536, READ_SIZE - 2, READ_SIZE + 7])
def test_reader_splits_frames_cut_anywhere(cut):
    sizes = [0, 5, 100, 70_000, 3, READ_SIZE + 100, 2, 1_000_000, 9]
    frames, stream = _frames_stream(sizes)
    r, w = os.pipe()
    os.set_blocking(r, False)
    reader = FrameReader(r)
    out = []
    try:
        for start in range(0, len(stream), cut):
            piece = stream[start : start + cut]
            done = 0
            while done < len(piece):
                done += os.write(w, piece[done : done + 60_000])
                out.extend(bytes(f) for f in reader.read_available())
        os.close(w)
        w = -1
        while not reader.eof:
            out.extend(bytes(f) for f in reader.read_available())
    finally:
        if w != -1:
            os.close(w)
        os.close(r)
    assert out == frames


def test_reader_understands_the_long_header_and_blocking_reads():
    body = b"long header frame"
    stream = struct.pack("!i", -1) + struct.pack("!Q", len(body)) + body + struct.pack("!i", 2) + b"ok"
    r, w = os.pipe()
    try:
        os.write(w, stream[:6])

        def rest():
            import time

            time.sleep(0.05)
            os.write(w, stream[6:])
            os.close(w)

        t = threading.Thread(target=rest)
        t.start()
        reader = FrameReader(r)
        assert bytes(reader.next_frame()) == body
        assert bytes(reader.next_frame()) == b"ok"
        with pytest.raises(EOFError):
            reader.next_frame()
        t.join(10)
    finally:
        os.close(r)

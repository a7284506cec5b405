"""mp_core._framing: the wire format's header at its boundaries, the writers and the read-ahead reader.

The header must be the standard library's byte for byte (either end of a
pipe may be a stdlib ``Connection``): the writer is checked against the
stdlib's own writer at the sizes where the short form ends and the long
one begins.  Payloads of 2 GiB cannot be moved in a test; the header alone
is compared, and the readers are fed long headers for small payloads
(which the stdlib's readers accept too).
"""

from __future__ import annotations

import multiprocessing.connection as stdlib_connection
import os
import struct
import threading
from typing import Any

import pytest

from mp_core import _framing
from mp_core._framing import (
    LONG_FOLLOWS,
    MAX_SHORT_SIZE,
    BadMessageLength,
    FrameReader,
    Outbox,
    long_size,
    message_header,
    short_size,
    write_message,
)
from mp_core.connection import Pipe

pytestmark = pytest.mark.timeout(60)

BOUNDARY_SIZES = [0, 1, 16 * 1024, 16 * 1024 + 1, 64 * 1024, 64 * 1024 + 1, 2**31 - 2, 2**31 - 1, 2**31, 2**32 + 5]


class _Sized:
    """Stands in for a payload of ``n`` bytes where only its length is looked at."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def stdlib_header(size: int) -> bytes:
    """The bytes the stdlib's ``Connection`` writes in front of a payload of ``size`` (> 16 KiB) bytes."""
    written: list[Any] = []

    class Recording(stdlib_connection.Connection):
        def _send(self, buf: Any, write: Any = None) -> None:
            written.append(buf)

    r, w = os.pipe()
    try:
        Recording(w, readable=False)._send_bytes(_Sized(size))
    finally:
        os.close(r)
    # The header in one or two writes, then the payload in its own.
    return b"".join(bytes(part) for part in written if not isinstance(part, _Sized))


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
def test_the_header_is_the_standard_librarys_at_every_boundary(size):
    if size <= 16384:
        # The stdlib joins a small payload to its header: compare with a real one.
        payload = b"p" * size
        r, w = os.pipe()
        try:
            stdlib_connection.Connection(w, readable=False).send_bytes(payload)
            theirs = os.read(r, 4 + size)[:4]
        finally:
            os.close(r)
    else:
        theirs = stdlib_header(size)
    assert message_header(size) == theirs
    assert len(theirs) == (4 if size <= MAX_SHORT_SIZE else 12)


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
def test_a_header_decodes_to_its_size(size):
    header = message_header(size)
    first = short_size(header)
    if size <= MAX_SHORT_SIZE:
        assert first == size
    else:
        assert first == LONG_FOLLOWS and long_size(header, 4) == size


def test_the_short_form_ends_exactly_at_2_to_the_31_minus_1():
    assert message_header(2**31 - 1) == b"\x7f\xff\xff\xff"
    assert message_header(2**31) == b"\xff\xff\xff\xff" + b"\x00\x00\x00\x00\x80\x00\x00\x00"


@pytest.mark.parametrize(
    "header, message",
    [
        (struct.pack("!i", -2), "malformed message header (size -2; only -1 marks a long header)"),
        (struct.pack("!i", -(2**31)), "malformed message header (size -2147483648"),
    ],
)
def test_a_negative_size_other_than_the_long_marker_is_refused(header, message):
    with pytest.raises(BadMessageLength) as caught:
        short_size(header)
    assert message in str(caught.value)


def test_a_long_size_beyond_one_buffer_is_refused():
    with pytest.raises(BadMessageLength, match="was announced"):
        long_size(struct.pack("!Q", 2**64 - 1))


# ---------------------------------------------------------------- readers meet the long form


def long_frame(payload: bytes) -> bytes:
    return struct.pack("!i", -1) + struct.pack("!Q", len(payload)) + payload


@pytest.mark.parametrize("duplex", [True, False], ids=["socket", "pipe"])
def test_readers_accept_a_long_header_for_a_small_payload(duplex):
    reader, writer = Pipe(duplex)
    try:
        os.write(writer.fileno(), long_frame(b"small") + message_header(2) + b"ok")
        assert reader.recv_bytes() == b"small"
        assert reader.recv_bytes() == b"ok"
    finally:
        reader.close()
        writer.close()
    r, w = os.pipe()
    try:
        os.write(w, long_frame(b"small") + message_header(2) + b"ok")
        frames = FrameReader(r)
        assert bytes(frames.next_frame()) == b"small"
        assert bytes(frames.next_frame()) == b"ok"
    finally:
        os.close(r)
        os.close(w)


def test_the_stdlib_reads_what_write_message_writes_and_the_other_way_round():
    sizes = [0, 5, 16 * 1024, 16 * 1024 + 1, 64 * 1024 + 1, 300_000]
    for size in sizes:
        payload = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
        reader, writer = Pipe(duplex=True)
        theirs = stdlib_connection.Connection(os.dup(reader.fileno()))
        reader.close()
        try:
            sender = threading.Thread(target=write_message, args=(writer.fileno(), payload))
            sender.start()
            assert theirs.recv_bytes() == payload
            sender.join(30)
            sender = threading.Thread(target=theirs.send_bytes, args=(payload,))
            sender.start()
            assert bytes(FrameReader(writer.fileno()).next_frame()) == payload
            sender.join(30)
        finally:
            theirs.close()
            writer.close()


# ---------------------------------------------------------------- FrameReader: partial reads, end of file


def test_a_frame_trickling_in_byte_by_byte_arrives_whole():
    stream = long_frame(b"long form") + message_header(3) + b"abc"
    r, w = os.pipe()
    os.set_blocking(r, False)
    try:
        reader = FrameReader(r)
        got = []
        for byte in stream:
            os.write(w, bytes([byte]))
            got.extend(bytes(frame) for frame in reader.read_available())
        assert got == [b"long form", b"abc"]
        assert not reader.eof
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize(
    "tail",
    [
        b"\x00\x00",
        struct.pack("!i", -1) + b"\x00\x00",
        message_header(10) + b"cut",
        message_header(1 << 20) + b"x" * 1000,
    ],
    ids=["in the short header", "in the long header", "in a small payload", "in a large payload"],
)
def test_end_of_file_mid_frame_is_named_after_the_frames_before_it(tail):
    r, w = os.pipe()
    try:
        os.write(w, message_header(5) + b"whole" + tail)
        os.close(w)
        w = -1
        reader = FrameReader(r)
        assert bytes(reader.next_frame()) == b"whole"
        with pytest.raises(EOFError, match="got end of file during message"):
            reader.next_frame()
    finally:
        os.close(r)
        if w != -1:
            os.close(w)


def test_end_of_file_between_frames_is_a_plain_eof_error():
    r, w = os.pipe()
    try:
        os.write(w, message_header(5) + b"whole")
        os.close(w)
        w = -1
        reader = FrameReader(r)
        assert bytes(reader.next_frame()) == b"whole"
        with pytest.raises(EOFError) as caught:
            reader.next_frame()
        assert str(caught.value) == ""
    finally:
        os.close(r)
        if w != -1:
            os.close(w)


def test_a_small_read_size_still_delivers_every_frame():
    payloads = [b"a" * n for n in (0, 3, 10, 40, 7)]
    r, w = os.pipe()
    try:
        os.write(w, b"".join(message_header(len(p)) + p for p in payloads))
        os.close(w)
        w = -1
        reader = FrameReader(r, read_size=8)
        assert [bytes(reader.next_frame()) for _ in payloads] == payloads
        with pytest.raises(EOFError):
            reader.next_frame()
    finally:
        os.close(r)
        if w != -1:
            os.close(w)


def test_one_whole_frame_per_read_and_frames_split_across_reads_interleave_in_order():
    # The first and third reads bring exactly one frame (the request/reply
    # fast path); the second brings a frame and a half, the fourth the rest
    # and a bad header, which only the next call reports.
    r, w = os.pipe()
    try:
        reader = FrameReader(r)
        os.write(w, message_header(3) + b"one")
        assert bytes(reader.next_frame()) == b"one"
        os.write(w, message_header(3) + b"two" + message_header(5) + b"thr")
        assert bytes(reader.next_frame()) == b"two"
        os.write(w, b"ee" + message_header(0))
        assert bytes(reader.next_frame()) == b"three"
        assert bytes(reader.next_frame()) == b""
        os.write(w, message_header(4) + b"four")
        assert bytes(reader.next_frame()) == b"four"
        os.write(w, struct.pack("!i", -7))
        with pytest.raises(BadMessageLength):
            reader.next_frame()
        with pytest.raises(BadMessageLength):
            reader.next_frame()
    finally:
        os.close(r)
        os.close(w)


# ---------------------------------------------------------------- write_message: partial writes


@pytest.mark.parametrize("size", [0, 1, 16 * 1024, 16 * 1024 + 1, 64 * 1024, 64 * 1024 + 1, 3 << 20])
def test_write_message_writes_every_byte_through_a_full_pipe(size):
    payload = bytes(range(256)) * (size // 256) + b"q" * (size % 256)
    r, w = os.pipe()
    received = bytearray()

    def drain() -> None:
        while True:
            chunk = os.read(r, 1 << 16)
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        write_message(w, payload)
        write_message(w, memoryview(b"after"))
    finally:
        os.close(w)
        reader.join(30)
        os.close(r)
    assert bytes(received) == message_header(size) + payload + message_header(5) + b"after"


# ---------------------------------------------------------------- Outbox: EAGAIN


def test_the_outbox_keeps_what_a_full_pipe_refuses_and_writes_it_later_in_order():
    r, w = os.pipe()
    os.set_blocking(w, False)
    try:
        outbox = Outbox(w)
        frames = [[message_header(n), bytes([i]) * n] for i, n in enumerate([10, 200_000, 3, 500_000, 0, 7])]
        for frame in frames:
            outbox.put(frame)
        expected = b"".join(b"".join(frame) for frame in frames)
        assert len(outbox) == len(expected)
        received = bytearray()
        assert outbox.flush() is False  # more than a pipe holds: EAGAIN ends the flush, nothing raised
        assert outbox and len(outbox) < len(expected)
        while True:
            received.extend(os.read(r, 1 << 20))
            if outbox.flush():
                break
        assert not outbox and len(outbox) == 0
        os.close(w)
        w = -1
        while True:
            chunk = os.read(r, 1 << 20)
            if not chunk:
                break
            received.extend(chunk)
        assert bytes(received) == expected
    finally:
        os.close(r)
        if w != -1:
            os.close(w)


def test_the_outbox_raises_when_the_reader_is_gone_and_keeps_what_is_unwritten():
    r, w = os.pipe()
    os.set_blocking(w, False)
    try:
        os.close(r)
        outbox = Outbox(w)
        outbox.put([message_header(3), b"abc"])
        with pytest.raises(BrokenPipeError):
            outbox.flush()
        assert len(outbox) == 7
        outbox.clear()
        assert not outbox and outbox.flush() is True
    finally:
        os.close(w)


def test_the_module_states_the_format():
    doc = _framing.__doc__ or ""
    assert "MAX_SHORT_SIZE" in doc and "uint64" in doc and "int32" in doc

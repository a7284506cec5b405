"""Size headers: absurd or malformed ones are clear errors, and big ones commit no memory before the bytes come.

Both readers of the wire format are checked: ``Connection`` (one message
per ``recv_bytes``) and ``FrameReader`` (read-ahead, for pool workers and
manager streams).
"""

from __future__ import annotations

import os
import struct
import sys
import threading

import pytest

from mp_core.connection import BadMessageLength, FrameReader, PayloadBuffer, Pipe

from ..support import collect_garbage

pytestmark = pytest.mark.timeout(60)

LONG = struct.pack("!i", -1)
GiB = 1 << 30


def rss_mib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20


REFUSED = {
    "negative size": (struct.pack("!i", -3), "malformed message header (size -3; only -1 marks a long header)"),
    "most negative size": (struct.pack("!i", -(2**31)), "malformed message header"),
    "long size past 2**63": (LONG + struct.pack("!Q", 2**64 - 1), f"at most {sys.maxsize}"),
    "long size of 2**62": (LONG + struct.pack("!Q", 2**62), "which cannot be allocated"),
}


@pytest.mark.parametrize("duplex", [True, False], ids=["socket", "pipe"])
@pytest.mark.parametrize("case", list(REFUSED))
def test_connection_refuses_absurd_and_malformed_sizes(duplex, case):
    header, message = REFUSED[case]
    reader, writer = Pipe(duplex)
    try:
        os.write(writer.fileno(), header + b"payload")
        with pytest.raises(BadMessageLength, match=message.replace("(", r"\(").replace(")", r"\)")):
            reader.recv_bytes()
        # The stream is out of step: no further message can be read from it.
        with pytest.raises(OSError):
            reader.recv_bytes()
    finally:
        reader.close()
        writer.close()


def test_the_descriptor_marker_is_refused_where_no_descriptors_can_come():
    """-2 announces a frame carrying descriptors between two ``Pipe()`` ends; an OS pipe refuses it."""
    reader, writer = Pipe(duplex=False)
    try:
        os.write(writer.fileno(), struct.pack("!i", -2) + struct.pack("!Q", 7) + b"payload")
        with pytest.raises(BadMessageLength, match=r"malformed message header \(size -2;"):
            reader.recv_bytes()
    finally:
        reader.close()
        writer.close()


def test_the_descriptor_marker_between_pipe_ends_announces_a_long_size():
    ours, theirs = Pipe()
    try:
        os.write(ours.fileno(), struct.pack("!i", -2) + struct.pack("!Q", 7) + b"payload")
        assert theirs.recv_bytes() == b"payload"  # (no descriptors came: none to close)
        os.write(ours.fileno(), struct.pack("!i", -2) + struct.pack("!Q", 2**64 - 1))
        with pytest.raises(BadMessageLength, match=f"at most {sys.maxsize}"):
            theirs.recv_bytes()
    finally:
        ours.close()
        theirs.close()


@pytest.mark.parametrize("duplex", [True, False], ids=["socket", "pipe"])
def test_a_bare_gigabyte_header_commits_no_memory(duplex):
    reader, writer = Pipe(duplex)
    outcome = {}

    def receive():
        try:
            reader.recv_bytes()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            outcome["error"] = exc

    before = rss_mib()
    os.write(writer.fileno(), LONG + struct.pack("!Q", 4 * GiB) + b"x" * 1000)
    thread = threading.Thread(target=receive)
    thread.start()
    thread.join(0.5)  # the reader waits for the rest: the buffer is there, untouched
    grown = rss_mib() - before
    writer.close()
    thread.join(30)
    reader.close()
    assert grown < 64, f"{grown} MiB committed for a bare header"
    assert isinstance(outcome["error"], OSError)
    assert "end of file during message" in str(outcome["error"])


def test_payload_buffer_is_filled_in_place_and_taken_without_a_copy():
    buffer = PayloadBuffer(5)
    buffer.view[:] = b"hello"
    data = buffer.take()
    assert data == b"hello" and type(data) is bytes
    with pytest.raises(BadMessageLength, match="a message of 4611686018427387904 bytes"):
        PayloadBuffer(2**62)


def test_a_payload_buffer_commits_memory_only_as_it_is_written():
    before = rss_mib()
    buffer = PayloadBuffer(4 * GiB)
    buffer.view[: 1 << 20] = b"x" * (1 << 20)
    grown = rss_mib() - before
    del buffer
    assert grown < 64, f"{grown} MiB committed for a 4 GiB buffer holding 1 MiB"


def test_a_payload_buffer_dropped_in_a_reference_cycle_is_collected_silently():
    class Owner:
        pass

    reported = []
    hook = sys.unraisablehook
    sys.unraisablehook = reported.append
    try:
        for _ in range(5):
            owner = Owner()
            owner.buffer = PayloadBuffer(1 << 20)
            owner.buffer.view[:3] = b"abc"
            owner.self = owner
            del owner
        collect_garbage()
    finally:
        sys.unraisablehook = hook
    assert [(r.exc_type, str(r.exc_value)) for r in reported] == []


# ---------------------------------------------------------------- FrameReader


def frames(*payloads: bytes) -> bytes:
    return b"".join(struct.pack("!i", len(p)) + p for p in payloads)


@pytest.mark.parametrize("case", list(REFUSED))
@pytest.mark.parametrize("blocking", [True, False])
def test_frame_reader_delivers_what_came_before_a_bad_header_then_stops(case, blocking):
    header, message = REFUSED[case]
    r, w = os.pipe()
    try:
        os.write(w, frames(b"first", b"second") + header + frames(b"never"))
        os.close(w)
        w = -1
        reader = FrameReader(r)
        if blocking:
            assert bytes(reader.next_frame()) == b"first"
            assert bytes(reader.next_frame()) == b"second"
            with pytest.raises(BadMessageLength, match=message.replace("(", r"\(").replace(")", r"\)")):
                reader.next_frame()
            with pytest.raises(BadMessageLength):
                reader.next_frame()  # for good
        else:
            os.set_blocking(r, False)
            assert [bytes(f) for f in reader.read_available()] == [b"first", b"second"]
            assert reader.eof and isinstance(reader.error, BadMessageLength)
            assert message.split(" (")[0] in str(reader.error)
            assert reader.read_available() == []
    finally:
        os.close(r)
        if w != -1:
            os.close(w)


def test_frame_reader_commits_no_memory_for_a_bare_big_header():
    r, w = os.pipe()
    os.set_blocking(r, False)
    try:
        reader = FrameReader(r)
        before = rss_mib()
        os.write(w, struct.pack("!i", 512 << 20) + b"a few bytes")
        assert reader.read_available() == []
        assert rss_mib() - before < 64
        assert reader.pending_head(5) == b"a few"
        assert reader.pending_head(50) is None  # not there yet
        os.write(w, b" more")
        assert reader.read_available() == []
        assert reader.pending_head(16) == b"a few bytes more"
        assert rss_mib() - before < 64
    finally:
        os.close(r)
        os.close(w)


def test_frame_reader_completes_a_cut_frame_as_bytes():
    r, w = os.pipe()
    try:
        body = bytes(range(256)) * 4096  # 1 MiB: more than one read
        os.write(w, frames(b"a")[:3])
        reader = FrameReader(r)
        done = threading.Event()

        def rest():
            data = frames(b"a")[3:] + frames(body, b"z")
            view = memoryview(data)
            while view:
                view = view[os.write(w, view) :]
            done.set()

        thread = threading.Thread(target=rest)
        thread.start()
        assert bytes(reader.next_frame()) == b"a"
        got = reader.next_frame()
        assert got == body and type(got) is bytes
        assert bytes(reader.next_frame()) == b"z"
        thread.join(30)
    finally:
        os.close(r)
        os.close(w)

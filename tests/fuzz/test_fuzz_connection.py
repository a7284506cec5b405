"""Fuzzing the framing: ``Connection.recv_bytes``/``recv_bytes_into`` and ``FrameReader`` on random streams.

Property, for any stream (valid frames, truncated, bytes flipped, garbage
or absurd headers inserted, or plain junk), sent and then closed: the reader
returns the frames of an intact stream exactly, and otherwise ends with a
clear error (``EOFError``, ``BadMessageLength``, ``OSError`` for a message
cut short, ``BufferTooShort``), within a deadline, with no memory committed
beyond what arrived.
"""

from __future__ import annotations

import os
import select
import threading
import time

from hypothesis import given
from hypothesis import strategies as st

from mp_core import BufferTooShort
from mp_core.connection import BadMessageLength, FrameReader, Pipe

from ._streams import MemoryWatch, build, streams

DEADLINE = 30.0
# What a case may commit at its peak (its streams are at most a few MiB; a
# size header it believed could announce gigabytes).
MEMORY_BOUND_MIB = 128

CLEAR_ERRORS = (EOFError, BadMessageLength, BufferTooShort, OSError)


def feed(fd: int, data: bytes) -> threading.Thread:
    """Write ``data`` to ``fd`` in a thread, then close it."""

    def write() -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            pass  # the reader gave up (closed its end): fine
        finally:
            os.close(fd)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def read_all(receive) -> tuple[list[bytes], BaseException]:
    """Call ``receive()`` until it raises; return what it gave and the error, within the deadline."""
    got: list[bytes] = []
    outcome: dict = {}

    def run() -> None:
        try:
            while True:
                got.append(bytes(receive()))
        except BaseException as exc:  # noqa: BLE001 - judged by the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(DEADLINE)
    assert not thread.is_alive(), "the reader hung on a closed stream"
    return got, outcome["error"]


def check(
    expected: list[bytes], intact: bool, got: list[bytes], error: BaseException, clean_end, memory: MemoryWatch
) -> None:
    assert isinstance(error, CLEAR_ERRORS), f"unclear error {error!r}"
    if intact:
        assert got == expected
        assert isinstance(error, clean_end), f"{error!r} at the end of an intact stream"
    assert memory.grown_mib() < MEMORY_BOUND_MIB


@given(streams(), st.sampled_from(["socket", "pipe"]), st.sampled_from(["recv_bytes", "recv_bytes_into"]))
def test_connection_reads_any_stream_to_a_clear_end(stream, kind, method):
    expected, data, intact = build(stream)
    memory = MemoryWatch()
    reader, writer = Pipe(duplex=kind == "socket")
    try:
        feeder = feed(os.dup(writer.fileno()), data)
        writer.close()
        if method == "recv_bytes":
            got, error = read_all(reader.recv_bytes)
        else:
            buffer = bytearray(700 * 1024)

            def receive():
                size = reader.recv_bytes_into(buffer)
                return buffer[:size]

            got, error = read_all(receive)
        if not isinstance(error, EOFError) or not intact:
            reader.close()  # unblocks a feeder stuck on a full pipe
        feeder.join(DEADLINE)
        check(expected, intact, got, error, EOFError, memory)
    finally:
        reader.close()
        writer.close()


@given(streams(), st.booleans())
def test_frame_reader_reads_any_stream_to_a_clear_end(stream, blocking):
    expected, data, intact = build(stream)
    memory = MemoryWatch()
    r, w = os.pipe()
    try:
        feeder = feed(w, data)
        reader = FrameReader(r)
        if blocking:
            got, error = read_all(reader.next_frame)
        else:
            os.set_blocking(r, False)
            got = []
            deadline = time.monotonic() + DEADLINE
            while not reader.eof:
                assert time.monotonic() < deadline, "the reader hung on a closed stream"
                select.select([r], [], [], 1.0)
                got.extend(bytes(frame) for frame in reader.read_available())
            error = reader.error or EOFError()
        os.close(r)
        r = -1
        feeder.join(DEADLINE)
        check(expected, intact, got, error, EOFError, memory)
        if reader.error is not None:
            assert "message" in str(reader.error)
    finally:
        if r != -1:
            os.close(r)

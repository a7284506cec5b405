"""mp_core._io: writing buffer lists and reading into buffers, with and without writev/readv.

PyPy 3.9 has neither ``os.writev`` nor ``os.readv``; ``mp_core._io`` picks
its fallbacks at import.  The ``vector_io`` fixture runs each test with
what this interpreter chose and again with the fallbacks forced, so that
CPython's runs cover the path PyPy takes.  The end-to-end tests force the
fallbacks on both ends: in the children too (a process target, a pool
initializer, a manager initializer), under every start method.
"""

from __future__ import annotations

import array
import fcntl
import os
import threading
from collections import deque
from typing import Any, Iterator

import pytest

from mp_core import _io
from mp_core.connection import Pipe

pytestmark = pytest.mark.timeout(60)


def force_no_vector_io() -> None:
    """Make this process an interpreter without writev/readv: the fallbacks chosen, the functions gone.

    With ``os.writev``/``os.readv`` removed, library code that calls them
    on its own (instead of through ``mp_core._io``) fails here as it would
    on PyPy.
    """
    _io._write_head = _io._write_head_joined
    _io.readinto = _io._readinto_file
    for name in ("writev", "readv"):
        if hasattr(os, name):
            delattr(os, name)


@pytest.fixture
def without_vector_io(monkeypatch: pytest.MonkeyPatch) -> None:
    """``force_no_vector_io`` in this process for the test (restored after it)."""
    monkeypatch.setattr(_io, "_write_head", _io._write_head_joined)
    monkeypatch.setattr(_io, "readinto", _io._readinto_file)
    monkeypatch.delattr(os, "writev", raising=False)
    monkeypatch.delattr(os, "readv", raising=False)


@pytest.fixture(params=["chosen", "without-writev-readv"])
def vector_io(request: pytest.FixtureRequest) -> str:
    """The interpreter's own choice, then the fallbacks forced."""
    if request.param != "chosen":
        request.getfixturevalue("without_vector_io")
    return request.param


class Drain:
    """Reads a pipe to its end in a thread and keeps every byte."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.data = bytearray()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        while True:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return
            self.data.extend(chunk)

    def finish(self) -> bytes:
        self.thread.join(30)
        assert not self.thread.is_alive()
        return bytes(self.data)


@pytest.fixture
def write_sizes(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[list[int], list[int]]]:
    """``(descriptors, sizes)``: the size of every ``os.write`` to a descriptor listed in ``descriptors``."""
    watched: list[int] = []
    sizes: list[int] = []
    real_write = os.write

    def spy(fd: int, data: Any) -> int:
        written = real_write(fd, data)
        if fd in watched:
            sizes.append(written)
        return written

    monkeypatch.setattr(os, "write", spy)
    yield watched, sizes


def test_the_way_is_chosen_at_import_from_what_the_interpreter_has():
    assert _io.HAVE_WRITEV == hasattr(os, "writev")
    assert _io.HAVE_READV == hasattr(os, "readv")
    assert _io._write_head is (_io._write_head_writev if hasattr(os, "writev") else _io._write_head_joined)
    if hasattr(os, "readv"):
        assert _io.readinto is _io._readinto_readv
    elif not hasattr(os, "readinto"):
        assert _io.readinto is _io._readinto_file


def test_write_buffers_writes_every_byte_in_order_while_the_pipe_fills(vector_io):
    r, w = os.pipe()
    parts = (
        [
            b"a" * 10,
            b"",
            b"b" * 200_000,
            memoryview(b"c" * 70_000),
            array.array("i", range(1000)),
            bytearray(b"e" * 5000),
        ]
        + [b"d"] * 200
        + [memoryview(b"f" * 300_000)[1:]]
    )
    drain = Drain(r)
    try:
        _io.write_buffers(w, parts)
    finally:
        os.close(w)
        got = drain.finish()
        os.close(r)
    assert got == b"".join(bytes(p) for p in parts)


def test_without_writev_small_buffers_are_joined_and_large_ones_written_alone(without_vector_io, write_sizes):
    watched, sizes = write_sizes
    r, w = os.pipe()
    watched.append(w)
    drain = Drain(r)
    limit = _io.JOIN_LIMIT
    try:
        _io.write_buffers(w, [b"h" * 4, b"a" * 100, b"b" * 200])
        assert sizes == [304]  # a small frame: one write
        sizes.clear()
        _io.write_buffers(w, [b"h" * 4, b"x" * 200_000, b"t" * 10, b"u" * 10])
        assert sizes == [4, 200_000, 20]  # the large payload is never copied
        sizes.clear()
        _io.write_buffers(w, [b"k" * 4096] * 30)  # joined up to the limit, no further
        assert sizes == [limit, 30 * 4096 - limit]
        sizes.clear()
        _io.write_buffers(w, [b"m" * limit, b"n"])
        assert sizes == [limit, 1]
    finally:
        os.close(w)
        got = drain.finish()
        os.close(r)
    assert got == (
        b"h" * 4
        + b"a" * 100
        + b"b" * 200
        + b"h" * 4
        + b"x" * 200_000
        + b"t" * 10
        + b"u" * 10
        + b"k" * 4096 * 30
        + b"m" * limit
        + b"n"
    )


def test_write_available_stops_when_the_pipe_is_full_and_resumes_where_it_stopped(vector_io):
    r, w = os.pipe()
    os.set_blocking(w, False)
    frames = [bytes([i % 251]) * size for i, size in enumerate([3, 70_000, 17, 300_000, 1, 90_000] * 4)]
    expected = b"".join(frames)
    outbox: deque[Any] = deque(frames)
    got = bytearray()
    try:
        rounds = 0
        while not _io.write_available(w, outbox):
            rounds += 1
            # What is still queued is exactly what the pipe did not take.
            assert b"".join(bytes(b) for b in outbox) == expected[len(got) + _pipe_level(r) :]
            got.extend(_read_all_available(r))
        got.extend(_read_all_available(r))
    finally:
        os.close(w)
        os.close(r)
    assert rounds > 0  # the pipe (64 KiB .. 1 MiB) filled up at least once
    assert not outbox
    assert bytes(got) == expected


def _pipe_level(fd: int) -> int:
    import termios

    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), "little")


def _read_all_available(fd: int) -> bytes:
    data = bytearray()
    os.set_blocking(fd, False)
    try:
        while True:
            data.extend(os.read(fd, 1 << 20))
    except BlockingIOError:
        pass
    finally:
        os.set_blocking(fd, True)
    return bytes(data)


def test_write_available_raises_when_the_reader_is_gone(vector_io):
    r, w = os.pipe()
    os.set_blocking(w, False)
    os.close(r)
    outbox: deque[Any] = deque([b"x" * 10, b"y" * 100_000])
    try:
        with pytest.raises(BrokenPipeError):
            _io.write_available(w, outbox)
    finally:
        os.close(w)
    assert len(outbox) == 2  # nothing was taken


def test_readinto_fills_the_view_in_place_and_reports_end_of_file(vector_io):
    r, w = os.pipe()
    try:
        os.write(w, b"0123456789")
        buf = bytearray(b"-" * 16)
        view = memoryview(buf)
        assert _io.readinto(r, view[2:6]) == 4
        assert _io.readinto(r, view[6:]) == 6
        assert bytes(buf) == b"--0123456789----"
        os.set_blocking(r, False)
        with pytest.raises(BlockingIOError):
            _io.readinto(r, view)
        os.close(w)
        w = -1
        assert _io.readinto(r, view) == 0
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_readinto_fills_a_slice_of_the_byte_view_of_an_array(vector_io):
    # PyPy's FileIO.readinto and socket.recv_into refuse such a view (a slice
    # of a cast memoryview) as a writable buffer.
    r, w = os.pipe()
    try:
        ints = array.array("i", [0] * 4)
        os.write(w, array.array("i", [7, 8]).tobytes())
        assert _io.readinto(r, memoryview(ints).cast("B")[ints.itemsize : 3 * ints.itemsize]) == 2 * ints.itemsize
        assert list(ints) == [0, 7, 8, 0]
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("duplex", [False, True], ids=["os-pipe", "socketpair"])
def test_a_large_message_lands_in_the_middle_of_an_array(vector_io, duplex):
    reader, writer = Pipe(duplex)
    values = array.array("d", range(100_000))
    sending = threading.Thread(target=writer.send_bytes, args=(values,))
    sending.start()
    try:
        target = array.array("d", [-1.0] * 100_002)
        assert reader.recv_bytes_into(target, target.itemsize) == len(values) * values.itemsize
        assert target[0] == -1.0 and target[-1] == -1.0 and target[1:-1] == values
    finally:
        sending.join(30)
        reader.close()
        writer.close()


# ---------------------------------------------------------------- end to end

SIZES = [0, 10, 20_000, 70_000, 3_000_000]


def echo_without_vector_io(reader, writer):
    force_no_vector_io()
    with reader, writer:
        while True:
            data = reader.recv_bytes()
            if not data:
                return
            writer.send_bytes(data)


@pytest.mark.parametrize("duplex", [False, True], ids=["os-pipe", "socketpair"])
def test_connection_messages_of_every_size_without_writev_readv(without_vector_io, start, duplex):
    to_child_r, to_child_w = Pipe(duplex)
    from_child_r, from_child_w = Pipe(duplex)
    proc = start(echo_without_vector_io, to_child_r, from_child_w)
    to_child_r.close()
    from_child_w.close()
    try:
        for size in SIZES[1:]:
            payload = os.urandom(size)
            to_child_w.send_bytes(payload)
            assert from_child_r.recv_bytes() == payload
            buf = bytearray(size + 3)
            to_child_w.send_bytes(payload)
            assert from_child_r.recv_bytes_into(buf, 3) == size
            assert bytes(buf[3:]) == payload
        to_child_w.send_bytes(b"")
        proc.join(30)
        assert proc.exitcode == 0
    finally:
        to_child_w.close()
        from_child_r.close()


def _echo(data: bytes) -> bytes:
    return data


def test_a_pool_moves_small_and_large_tasks_without_writev_readv(vector_io, ctx):
    from mp_pool import Pool

    with Pool(2, initializer=force_no_vector_io, context=ctx) as pool:
        small = pool.map(_echo, [bytes([i]) * i for i in range(200)], chunksize=3)
        assert small == [bytes([i]) * i for i in range(200)]
        large = [os.urandom(size) for size in (70_000, 400_000, 1_500_000)]
        assert pool.map(_echo, large, chunksize=1) == large
        assert pool.apply(_echo, (large[1],)) == large[1]
        pool.close()
        pool.join()


def test_a_manager_round_trips_small_and_large_values_without_writev_readv(vector_io, ctx):
    from mp_managers.managers import SyncManager

    manager = SyncManager(ctx=ctx)
    manager.start(force_no_vector_io)
    try:
        shared = manager.dict()
        for size in SIZES:
            value = os.urandom(size)
            shared[size] = value
            assert shared[size] == value
        assert sorted(shared.keys()) == SIZES
    finally:
        manager.shutdown()

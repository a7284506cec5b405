"""Connection and Pipe: every method and error, with a child on the other end."""

from __future__ import annotations

import array
import fcntl
import os
import pickle
import struct
import sys
import threading
import zlib

import pytest

import mp_core
from mp_core import connection
from mp_core.connection import Connection, Pipe

pytestmark = pytest.mark.timeout(60)


# ---------------------------------------------------------------- children


def echo_objects(conn):
    """Send back every object received, until None (or EOF)."""
    with conn:
        while True:
            try:
                obj = conn.recv()
            except EOFError:
                return
            if obj is None:
                return
            conn.send(obj)


def echo_bytes(reader, writer):
    """Send back every message received on ``reader`` through ``writer``, until b'' (or EOF)."""
    with reader, writer:
        while True:
            try:
                data = reader.recv_bytes()
            except EOFError:
                return
            if not data:
                return
            writer.send_bytes(data)


def send_then_exit(conn, items):
    for item in items:
        conn.send_bytes(item)
    conn.close()


def wait_for_go_then_send(conn, payload):
    conn.recv_bytes()
    conn.send_bytes(payload)
    conn.close()


def write_raw(conn, raw):
    os.write(conn.fileno(), raw)
    conn.close()


def recv_into_and_echo(conn, size):
    """Receive ``size`` bytes into a preallocated buffer and send them back."""
    buf = bytearray(size)
    with conn:
        n = conn.recv_bytes_into(buf)
        conn.send(n)
        conn.send_bytes(buf)


def serve_many(conns):
    """Answer every connection of ``conns`` (watched with wait) until each sent None."""
    live = list(conns)
    while live:
        for conn in connection.wait(live):
            msg = conn.recv()
            if msg is None:
                live.remove(conn)
                conn.close()
            else:
                conn.send(("echo", msg))


class Unpicklable:
    def __reduce__(self):
        raise TypeError("refuses on purpose")


# ---------------------------------------------------------------- objects


@pytest.mark.parametrize("duplex", [True, False])
def test_send_and_recv_objects(ctx, start, duplex):
    if duplex:
        ours, theirs = Pipe()
        proc = start(echo_objects, theirs)
        theirs.close()
        to_child = from_child = ours
    else:
        # A pair of one-way pipes; the child echoes the raw messages.
        from_child, to_parent = Pipe(duplex=False)
        child_reader, to_child = Pipe(duplex=False)
        proc = start(echo_bytes, child_reader, to_parent)
        child_reader.close()
        to_parent.close()
    items = [1, "two", 3.0, (4, [5]), {"six": b"\x00" * 7}, list(range(10_000)), lambda x: x * 2]
    for item in items:
        to_child.send(item)
        got = from_child.recv()
        if callable(item):
            assert got(21) == 42
        else:
            assert got == item
    if duplex:
        ours.send(None)
    else:
        to_child.send_bytes(b"")
    proc.join(30)
    assert proc.exitcode == 0
    to_child.close()
    from_child.close()


def test_send_error_leaves_the_connection_usable(ctx, start):
    ours, theirs = Pipe()
    proc = start(echo_objects, theirs)
    theirs.close()
    with pytest.raises(TypeError, match="refuses on purpose"):
        ours.send(Unpicklable())
    with pytest.raises(TypeError, match="generator"):
        ours.send(x for x in range(3))
    ours.send("still fine")
    assert ours.recv() == "still fine"
    ours.send(None)
    proc.join(30)
    assert proc.exitcode == 0
    ours.close()


# ---------------------------------------------------------------- bytes

SIZES = [0, 1, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 64 * 1024, 64 * 1024 + 1, 3 * 1024 * 1024 + 7]


@pytest.mark.parametrize("duplex", [True, False])
def test_send_bytes_and_recv_bytes_of_every_size(ctx, start, duplex):
    if duplex:
        ours, theirs = Pipe()
        proc = start(echo_bytes, theirs, theirs)
        theirs.close()
        sender = receiver = ours
    else:
        receiver, to_parent = Pipe(duplex=False)
        child_reader, sender = Pipe(duplex=False)
        proc = start(echo_bytes, child_reader, to_parent)
        child_reader.close()
        to_parent.close()
    for size in SIZES:
        data = os.urandom(size) if size else b"x"
        # Send from another thread: a message bigger than the pipe buffers
        # would otherwise block until the echo is read.
        sending = threading.Thread(target=sender.send_bytes, args=(data,))
        sending.start()
        got = receiver.recv_bytes()
        sending.join()
        assert type(got) is bytes
        assert got == data
    sender.send_bytes(b"")
    proc.join(30)
    assert proc.exitcode == 0
    sender.close()
    receiver.close()


def test_send_bytes_offset_size_and_buffer_types(ctx, start):
    ours, theirs = Pipe()
    proc = start(echo_bytes, theirs, theirs)
    theirs.close()
    data = b"0123456789"
    cases = [
        ((data,), data),
        ((data, 2), data[2:]),
        ((data, 2, 5), data[2:7]),
        ((data, 0, 0), None),  # an empty message would stop the echo: checked below
        ((data, 10), None),
        ((bytearray(data), 3, 2), b"34"),
        ((memoryview(data)[1:], 1, 3), data[2:5]),
    ]
    for args, expected in cases:
        if expected is None:
            continue
        ours.send_bytes(*args)
        assert ours.recv_bytes() == expected
    ints = array.array("i", [1, 2, 3, 4])
    ours.send_bytes(ints)  # offset and size count bytes
    assert ours.recv_bytes() == ints.tobytes()
    ours.send_bytes(ints, ints.itemsize, 2 * ints.itemsize)
    assert ours.recv_bytes() == ints.tobytes()[ints.itemsize : 3 * ints.itemsize]
    two_d = memoryview(bytes(range(12))).cast("B", (3, 4))
    ours.send_bytes(two_d)
    assert ours.recv_bytes() == bytes(range(12))
    ours.send_bytes(b"")
    proc.join(30)
    assert proc.exitcode == 0
    ours.close()


def test_send_bytes_rejects_bad_offsets_and_sizes(ctx, start):
    ours, theirs = Pipe()
    proc = start(echo_bytes, theirs, theirs)
    theirs.close()
    data = b"0123456789"
    for args, message in [
        ((-1,), "offset is negative"),
        ((11,), "buffer length < offset"),
        ((0, -1), "size is negative"),
        ((5, 6), "buffer length < offset \\+ size"),
        ((0, 11), "buffer length < offset \\+ size"),
    ]:
        with pytest.raises(ValueError, match=message):
            ours.send_bytes(data, *args)
    with pytest.raises(TypeError):
        ours.send_bytes(memoryview(data)[::2])  # not contiguous
    with pytest.raises(TypeError):
        ours.send_bytes("text")
    # Nothing was sent by the failed calls: the stream is intact.
    ours.send_bytes(b"after")
    assert ours.recv_bytes() == b"after"
    ours.send_bytes(b"")
    proc.join(30)
    assert proc.exitcode == 0
    ours.close()


def test_recv_bytes_into(ctx, start):
    ours, theirs = Pipe()
    proc = start(echo_bytes, theirs, theirs)
    theirs.close()
    buf = bytearray(20)
    ours.send_bytes(b"hello")
    assert ours.recv_bytes_into(buf) == 5
    assert buf[:5] == b"hello"
    ours.send_bytes(b"world")
    assert ours.recv_bytes_into(buf, 10) == 5
    assert buf[10:15] == b"world"
    assert buf[5:10] == bytes(5)
    ints = array.array("i", [0] * 4)
    ours.send_bytes(struct.pack("=ii", 7, 8))
    assert ours.recv_bytes_into(ints, ints.itemsize) == 2 * ints.itemsize  # offset in bytes
    assert list(ints) == [0, 7, 8, 0]
    # A message bigger than the room left: consumed, and carried whole by the error.
    message = os.urandom(200_000)
    sending = threading.Thread(target=ours.send_bytes, args=(message,))
    sending.start()
    with pytest.raises(mp_core.BufferTooShort) as excinfo:
        ours.recv_bytes_into(buf, 15)
    sending.join()
    assert excinfo.value.args[0] == message
    assert isinstance(excinfo.value, mp_core.ProcessError)
    ours.send_bytes(b"next")  # the connection is still in step
    assert ours.recv_bytes() == b"next"
    with pytest.raises(ValueError, match="negative offset"):
        ours.recv_bytes_into(buf, -1)
    with pytest.raises(ValueError, match="offset too large"):
        ours.recv_bytes_into(buf, 21)
    with pytest.raises(TypeError):
        ours.recv_bytes_into(b"read-only")
    ours.send_bytes(b"")
    proc.join(30)
    assert proc.exitcode == 0
    ours.close()


def test_recv_bytes_maxlength(ctx, start):
    ours, theirs = Pipe()
    proc = start(echo_bytes, theirs, theirs)
    theirs.close()
    with pytest.raises(ValueError, match="negative maxlength"):
        ours.recv_bytes(-1)
    ours.send_bytes(b"12345")
    assert ours.recv_bytes(5) == b"12345"
    ours.send_bytes(b"123456")
    with pytest.raises(OSError, match="bad message length"):
        ours.recv_bytes(5)
    # The rest of that message was not read: receiving is over, sending is not.
    assert not ours.readable
    with pytest.raises(OSError, match="write-only"):
        ours.recv_bytes()
    ours.send_bytes(b"")
    proc.join(30)
    assert proc.exitcode == 0
    ours.close()


def test_maxlength_on_a_read_only_connection_closes_it(ctx, start):
    reader, writer = Pipe(duplex=False)
    proc = start(send_then_exit, writer, [b"too long for the limit"])
    writer.close()
    with pytest.raises(OSError, match="bad message length"):
        reader.recv_bytes(3)
    assert reader.closed
    proc.join(30)
    assert proc.exitcode == 0


# ---------------------------------------------------------------- poll, EOF, close


def test_poll(ctx, start):
    ours, theirs = Pipe()
    proc = start(wait_for_go_then_send, theirs, b"payload")
    theirs.close()
    assert ours.poll() is False
    assert ours.poll(0.1) is False
    assert ours.poll(-1) is False
    ours.send_bytes(b"go")
    assert ours.poll(None) is True
    assert ours.poll() is True  # polling does not consume
    assert ours.recv_bytes() == b"payload"
    proc.join(30)
    # The child exited: end of file is "ready" too, and recv then raises EOFError.
    assert ours.poll(10) is True
    with pytest.raises(EOFError):
        ours.recv_bytes()
    with pytest.raises(EOFError):
        ours.recv()
    ours.close()


@pytest.mark.parametrize("duplex", [True, False])
def test_eof_after_the_last_message(ctx, start, duplex):
    reader, writer = Pipe(duplex)
    proc = start(send_then_exit, writer, [b"a", b"bb"])
    writer.close()
    assert reader.recv_bytes() == b"a"
    assert reader.recv_bytes() == b"bb"
    with pytest.raises(EOFError):
        reader.recv_bytes()
    buf = bytearray(4)
    with pytest.raises(EOFError):
        reader.recv_bytes_into(buf)
    proc.join(30)
    assert proc.exitcode == 0
    reader.close()


def test_eof_in_the_middle_of_a_message(ctx, start):
    reader, writer = Pipe()
    proc = start(write_raw, writer, struct.pack("!i", 100) + b"only ten b")
    writer.close()
    with pytest.raises(OSError, match="end of file during message"):
        reader.recv_bytes()
    proc.join(30)
    reader.close()


@pytest.mark.parametrize("duplex", [True, False])
def test_eof_in_the_middle_of_a_large_message(ctx, start, duplex):
    # Above 64 KiB a socket is read with one recv(MSG_WAITALL), which comes
    # back short at end of file: still an OSError, never a truncated message.
    reader, writer = Pipe(duplex)
    proc = start(write_raw, writer, struct.pack("!i", 1 << 20) + b"x" * 100_000)
    writer.close()
    with pytest.raises(OSError, match="end of file during message"):
        reader.recv_bytes()
    proc.join(30)
    reader.close()


def drip_large_message(conn, size, pieces):
    """Write one framed message of ``size`` bytes in ``pieces`` writes with pauses between."""
    import time

    payload = bytes(range(256)) * (size // 256)
    os.write(conn.fileno(), struct.pack("!i", size))
    step = -(-size // pieces)
    for start in range(0, size, step):
        os.write(conn.fileno(), payload[start : start + step])
        time.sleep(0.02)
    conn.close()


@pytest.mark.parametrize("duplex", [True, False])
@pytest.mark.parametrize("into", [False, True])
def test_a_large_message_arriving_in_pieces(ctx, start, duplex, into):
    size = 512 * 1024
    reader, writer = Pipe(duplex)
    proc = start(drip_large_message, writer, size, 7)
    writer.close()
    expected = bytes(range(256)) * (size // 256)
    if into:
        buf = bytearray(size + 10)
        assert reader.recv_bytes_into(buf, 10) == size
        assert buf[10:] == expected
    else:
        assert reader.recv_bytes() == expected
    proc.join(30)
    assert proc.exitcode == 0
    reader.close()


def test_a_default_socket_timeout_leaves_the_descriptor_blocking(ctx, start):
    # Wrapping the descriptor in a socket object while socket.setdefaulttimeout()
    # is in force would switch it (shared with the child) to non-blocking.
    import socket

    reader, writer = Pipe()
    payload = os.urandom(300_000)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(5.0)
    try:
        proc = start(send_then_exit, writer, [payload, payload])
        writer.close()
        assert reader.recv_bytes() == payload
        buf = bytearray(len(payload))
        assert reader.recv_bytes_into(buf) == len(payload) and buf == payload
        assert os.get_blocking(reader.fileno())
    finally:
        socket.setdefaulttimeout(previous)
    proc.join(30)
    assert proc.exitcode == 0
    reader.close()


def test_large_messages_start_aligned_in_a_write_of_their_own():
    # The header of a message above 64 KiB is written on its own, so the
    # payload starts at the beginning of the kernel's buffers.
    reader, writer = Pipe(duplex=False)
    sizes = []
    real_write = os.write

    def spy(fd, data):
        if fd == writer.fileno():  # other threads of the test process may write elsewhere
            sizes.append(len(data))
        return real_write(fd, data)

    try:
        os.write = spy
        writer.send_bytes(b"s" * 100)
        writer.send_bytes(b"m" * 20_000)
        os.write = real_write
        assert reader.recv_bytes() == b"s" * 100
        assert reader.recv_bytes() == b"m" * 20_000
        sizes.clear()
        t = threading.Thread(target=writer.send_bytes, args=(b"L" * 200_000,))
        os.write = spy
        t.start()
        assert reader.recv_bytes() == b"L" * 200_000
        t.join(30)
    finally:
        os.write = real_write
        reader.close()
        writer.close()
    assert sizes[0] == 4 and sum(sizes[1:]) == 200_000


def test_socket_pipes_get_larger_buffers():
    import socket

    from mp_core import _connection

    a, b = Pipe()
    try:
        for conn in (a, b):
            sock = socket.socket(fileno=conn.fileno())
            try:
                got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            finally:
                sock.detach()
            limit = (
                int(open("/proc/sys/net/core/wmem_max").read()) if os.path.exists("/proc/sys/net/core/wmem_max") else 0
            )
            # Linux doubles the request (for bookkeeping) and caps it at wmem_max.
            assert got >= min(_connection._SOCKET_BUFFER_SIZE, limit)
    finally:
        a.close()
        b.close()


def test_write_buffers_writes_every_buffer_in_order_even_when_the_pipe_fills():
    r, w = os.pipe()
    parts = [b"a" * 10, b"", b"b" * 200_000, memoryview(b"c" * 70_000), array.array("i", range(1000))] + [b"d"] * 100
    got = bytearray()

    def drain():
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                return
            got.extend(chunk)

    t = threading.Thread(target=drain)
    t.start()
    try:
        connection.write_buffers(w, parts)
    finally:
        os.close(w)
        t.join(30)
        os.close(r)
    assert bytes(got) == b"".join(bytes(p) for p in parts)


def test_malformed_header(ctx, start):
    reader, writer = Pipe()
    proc = start(write_raw, writer, struct.pack("!i", -5) + b"junk")
    writer.close()
    with pytest.raises(OSError, match="malformed message header"):
        reader.recv_bytes()
    assert not reader.readable
    proc.join(30)
    reader.close()


def test_long_header_format_is_understood(ctx, start):
    # Messages of 2 GiB and more use [-1][8-byte size]; any size may use it.
    reader, writer = Pipe()
    payload = b"long-format message"
    proc = start(write_raw, writer, struct.pack("!i", -1) + struct.pack("!Q", len(payload)) + payload)
    writer.close()
    assert reader.recv_bytes() == payload
    proc.join(30)
    reader.close()


def test_closed_connection_raises_oserror(ctx, start):
    ours, theirs = Pipe()
    proc = start(echo_objects, theirs)
    theirs.close()
    fd = ours.fileno()
    assert isinstance(fd, int) and fd >= 0
    assert not ours.closed
    ours.send(None)  # (a forked child holds a copy of our end too: no EOF for it)
    with ours as same:
        assert same is ours
    assert ours.closed
    ours.close()  # idempotent
    for call in (
        ours.fileno,
        lambda: ours.send(1),
        lambda: ours.send_bytes(b"x"),
        ours.recv,
        ours.recv_bytes,
        lambda: ours.recv_bytes_into(bytearray(1)),
        ours.poll,
    ):
        with pytest.raises(OSError, match="handle is closed"):
            call()
    proc.join(30)
    assert proc.exitcode == 0


def test_one_way_pipe_flags(ctx, start):
    reader, writer = Pipe(duplex=False)
    assert (reader.readable, reader.writable) == (True, False)
    assert (writer.readable, writer.writable) == (False, True)
    with pytest.raises(OSError, match="read-only"):
        reader.send_bytes(b"x")
    with pytest.raises(OSError, match="read-only"):
        reader.send(1)
    with pytest.raises(OSError, match="write-only"):
        writer.recv_bytes()
    with pytest.raises(OSError, match="write-only"):
        writer.poll()
    proc = start(send_then_exit, writer, [b"one way"])
    writer.close()
    assert reader.recv_bytes() == b"one way"
    proc.join(30)
    reader.close()


def test_connection_constructor_checks():
    with pytest.raises(ValueError, match="invalid handle"):
        Connection(-1)
    with pytest.raises(ValueError, match="at least one"):
        Connection(0, readable=False, writable=False)


def test_connections_are_picklable_only_to_processes():
    ours, theirs = Pipe()
    try:
        # Pickling outside of process creation goes through the resource
        # sharer; rebuilding it here gives a second, working handle.
        copy = pickle.loads(mp_core.reduction.dumps(theirs))
        try:
            assert copy.fileno() != theirs.fileno()
            assert (copy.readable, copy.writable) == (True, True)
            ours.send_bytes(b"through the copy")
            assert copy.recv_bytes() == b"through the copy"
        finally:
            copy.close()
    finally:
        ours.close()
        theirs.close()
        mp_core.resource_sharer.stop(timeout=10)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="F_SETPIPE_SZ is Linux-only")
def test_one_way_pipes_get_a_larger_buffer_within_a_budget():
    from mp_core import _connection

    pairs = [Pipe(duplex=False) for _ in range(_connection._MAX_ENLARGED_PIPES + 4)]
    try:
        sizes = [fcntl.fcntl(w.fileno(), 1032) for _r, w in pairs]  # F_GETPIPE_SZ
        assert sizes.count(_connection._PIPE_BUFFER_SIZE) <= _connection._MAX_ENLARGED_PIPES
        assert sizes[0] == _connection._PIPE_BUFFER_SIZE or _connection._enlarged_pipes == 0
    finally:
        for r, w in pairs:
            r.close()
            w.close()
    r, w = Pipe(duplex=False)
    try:
        # Closing the readers gave the budget back.
        assert fcntl.fcntl(w.fileno(), 1032) == _connection._PIPE_BUFFER_SIZE
    finally:
        r.close()
        w.close()


# ---------------------------------------------------------------- many pipes


def test_many_concurrent_pipes(ctx, start):
    children, per_child = 4, 8
    ours_all, procs = [], []
    for _ in range(children):
        pairs = [Pipe() for _ in range(per_child)]
        procs.append(start(serve_many, [theirs for _ours, theirs in pairs]))
        for ours, theirs in pairs:
            theirs.close()
            ours_all.append(ours)
    rounds = 20
    for i in range(rounds):
        for n, conn in enumerate(ours_all):
            conn.send((i, n))
        pending = set(ours_all)
        while pending:
            for conn in connection.wait(list(pending), timeout=30):
                tag, (got_i, got_n) = conn.recv()
                assert tag == "echo" and got_i == i and ours_all[got_n] is conn
                pending.discard(conn)
    for conn in ours_all:
        # Not just close(): forked children hold copies of each other's ends.
        conn.send(None)
        conn.close()
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0


# ---------------------------------------------------------------- over 2 GiB


def _mem_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(_mem_available() < 8 * 2**30, reason="needs 8 GiB of available memory")
def test_over_two_gib_round_trip(ctx, start):
    # Over 2 GiB (2**31 - 1): the long header format.  Not much over: the
    # parent's buffer, the child's and the echo's are all this big, and CI
    # runs several suites side by side.
    size = 2 * 2**30 + 12345
    # The child first, so that a forked one does not share the big buffers.
    ours, theirs = Pipe()
    proc = start(recv_into_and_echo, theirs, size)
    theirs.close()
    data = bytearray(size)
    step = 64 * 2**20
    for i, pos in enumerate(range(0, size, step)):
        data[pos : pos + 16] = i.to_bytes(16, "big")
    data[-8:] = b"the tail"
    checksum = zlib.crc32(data)
    ours.send_bytes(data)
    del data
    assert ours.recv() == size
    back = bytearray(size)
    assert ours.recv_bytes_into(back) == size
    assert back[-8:] == b"the tail"
    assert zlib.crc32(back) == checksum
    del back
    proc.join(60)
    assert proc.exitcode == 0
    ours.close()

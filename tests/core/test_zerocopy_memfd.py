"""Large buffers through ``Pipe()`` as memory files whose descriptors travel with the message.

What the named segments of the other channels need a resource tracker for,
the kernel does here: these tests check that nothing ever appears in
/dev/shm, that a received buffer is a view on the memory file (and one sent
on travels by reference), that a killed sender's message still arrives
whole and a killed receiver's files are free again, that the creator never
writes into a file a receiver (or its forked child) still maps, and the
ways out: ``recv_bytes``, the in-flight bound, too many buffers for one
message, a kernel that refuses, ``oob_descriptors=False``.
"""

from __future__ import annotations

import os
import signal
import sys
import warnings

import pytest

import mp_core
from mp_core import _fd_segments, _segments, reduction

from ..oob_support import SIZE, digest, threshold, use_threshold  # noqa: F401 (threshold: an autouse fixture)
from ..support import collect_garbage, shm_entries

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(not _fd_segments.AVAILABLE, reason="memory files (memfd_create) and /proc are Linux's"),
]


def buffer(seed: int = 0) -> memoryview:
    """A writable buffer of ``SIZE`` bytes (above the tests' threshold) whose bytes depend on ``seed``."""
    return memoryview(bytearray(bytes([seed % 251]) * 7 + os.urandom(SIZE - 7)))


def kind(obj) -> str | None:
    segment = _segments.segment_of(obj)
    return None if segment is None else type(segment).__name__


#: What a view on a named segment is a view on: a segment mapped on receipt, or, in the
#: process that created it, that process's own warm segment (a lease).
NAMED = ("SegmentMap", "_Warm")


def shm_names() -> set[str]:
    """This session's names in /dev/shm (other programs' come and go as they like)."""
    return shm_entries()


def inode(obj) -> int:
    return os.fstat(_segments.segment_of(obj).fd).st_ino


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True)
def no_warm_files():
    """Each test starts and ends without warm memory files (the leak check looks at descriptors too)."""
    _fd_segments.drop_warm()
    yield
    _fd_segments.drop_warm()


# ---------------------------------------------------------------- across processes


def hold_and_report(conn) -> None:
    """Receive a buffer, report what it is a view on, send it back (by reference), then read through it."""
    use_threshold()
    received = conn.recv()
    conn.send((kind(received), digest(received)))
    conn.send(received)
    assert conn.recv() == "written"
    conn.send(bytes(received[:8]))
    assert conn.recv() is None


def test_a_buffer_arrives_as_a_view_on_a_memory_file_and_goes_back_by_reference(start):
    before = shm_names()
    parent, child = mp_core.Pipe()
    proc = start(hold_and_report, child)
    child.close()
    sent = buffer(1)
    parent.send(sent)
    assert parent.recv() == ("FdSegmentMap", digest(sent))
    back = parent.recv()
    assert kind(back) == "FdSegmentMap" and digest(back) == digest(sent)
    assert shm_names() <= before  # nothing named, ever
    # The child's view and ours are the same memory: what we write, it reads.
    back[:8] = b"written!"
    parent.send("written")
    assert parent.recv() == b"written!"
    parent.send(None)
    proc.join(30)
    assert proc.exitcode == 0


def send_then_die(conn) -> None:
    use_threshold()
    conn.send(memoryview(bytearray(b"last words" * (SIZE // 10))))
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_message_sent_by_a_process_killed_right_after_arrives_whole(start):
    parent, child = mp_core.Pipe()
    proc = start(send_then_die, child)
    child.close()
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    received = parent.recv()  # the descriptor in flight kept the file
    assert kind(received) == "FdSegmentMap"
    assert digest(received) == digest(b"last words" * (SIZE // 10))


def hold_until_killed(conn, read: bool) -> None:
    use_threshold()
    if read:
        received = conn.recv()
        conn.send(digest(received))
    else:
        conn.send("not reading")
    signal.pause()  # until killed (the message sent meanwhile stays unread)


@pytest.mark.parametrize("read", [True, False], ids=["holding-a-view", "message-unread"])
def test_a_killed_receiver_leaves_the_memory_file_free_for_reuse(start, read):
    parent, child = mp_core.Pipe()
    proc = start(hold_until_killed, child, read)
    child.close()
    sent = buffer(2)
    parent.send(sent)
    if read:
        assert parent.recv() == digest(sent)
    else:
        assert parent.recv() == "not reading"
    [warm] = _fd_segments._warm
    assert not warm.idle()  # mapped by the child, or in flight to it
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    parent.close()  # (our end, and with it what was in flight to the child)
    assert warm.idle()  # the kernel dropped the child's references


def keep_through_a_fork(conn) -> None:
    """Receive ``kept``; fork a grandchild that keeps it; drop ours; receive more; report the grandchild's digest."""
    use_threshold()
    kept = conn.recv()
    go_r, go_w = os.pipe()
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the grandchild: it holds the view only through the inherited mapping
        try:
            os.read(go_r, 1)
            os.write(report_w, digest(kept).encode())
        finally:
            os._exit(0)
    del kept
    collect_garbage()
    conn.send("dropped")
    while True:
        obj = conn.recv()
        if obj is None:
            break
        conn.send(digest(obj))
        del obj
        collect_garbage()
    os.write(go_w, b"!")
    reported = os.read(report_r, 64).decode()
    os.waitpid(pid, 0)
    conn.send(reported)


def test_a_file_a_forked_child_still_maps_is_never_written_again(start):
    parent, child = mp_core.Pipe()
    proc = start(keep_through_a_fork, child)
    child.close()
    first = buffer(3)
    parent.send(first)
    assert parent.recv() == "dropped"
    for seed in range(4, 8):
        later = buffer(seed)
        parent.send(later)
        assert parent.recv() == digest(later)
    parent.send(None)
    assert parent.recv() == digest(first)  # the grandchild's view is intact
    proc.join(30)
    assert proc.exitcode == 0


# ---------------------------------------------------------------- in one process


def test_a_file_is_reused_once_its_receiver_let_go_and_never_before():
    ours, theirs = mp_core.Pipe()
    try:
        first = buffer(1)
        ours.send(first)
        kept = theirs.recv()
        ours.send(buffer(2))
        second = theirs.recv()
        assert inode(second) != inode(kept)  # the first is still mapped
        assert digest(kept) == digest(first)
        second_inode = inode(second)
        del second
        collect_garbage()
        third = buffer(3)
        ours.send(third)
        received = theirs.recv()
        assert inode(received) == second_inode and digest(received) == digest(third)
        assert digest(kept) == digest(first)
    finally:
        ours.close()
        theirs.close()


def test_recv_bytes_leaves_the_descriptors_to_the_kernel():
    ours, theirs = mp_core.Pipe()
    try:
        for seed in range(2):  # warm the file and its mapping up: their descriptors are ours to keep
            ours.send(buffer(seed))
            received = theirs.recv()
            del received
            collect_garbage()
        before = open_descriptors()
        ours.send(buffer(2))
        data = theirs.recv_bytes()
        assert open_descriptors() == before
        with pytest.raises(_segments.SegmentLost, match="did not arrive with its message"):
            reduction.loads(data)
        assert open_descriptors() == before
        ours.send("still in step")
        assert theirs.recv() == "still in step"
    finally:
        ours.close()
        theirs.close()


def test_many_round_trips_leave_no_descriptor_open():
    ours, theirs = mp_core.Pipe()
    try:
        before = open_descriptors()
        for seed in range(20):
            ours.send([buffer(seed), b"small", buffer(seed + 1)])
            received = theirs.recv()
            theirs.send(received)  # back by reference
            back = ours.recv()
            assert [kind(part) for part in back] == ["FdSegmentMap", None, "FdSegmentMap"]
            del received, back
            collect_garbage()
        _fd_segments.drop_warm()
        assert open_descriptors() == before
    finally:
        ours.close()
        theirs.close()


def test_past_the_in_flight_bound_buffers_take_named_segments_until_the_receiver_has_read():
    ours, theirs = mp_core.Pipe()
    use_threshold(in_flight_limit=SIZE)
    try:
        sent = [buffer(seed) for seed in range(3)]
        ours.send(sent[0])  # a memory file: the whole bound
        ours.send(sent[1])  # past it, unread: a named segment (within the named bound)
        first, second = theirs.recv(), theirs.recv()
        assert kind(first) == "FdSegmentMap" and kind(second) in NAMED
        ours.send(sent[2])  # everything was read: memory files again
        third = theirs.recv()
        assert kind(third) == "FdSegmentMap"
        assert [digest(x) for x in (first, second, third)] == [digest(x) for x in sent]
        del first, second, third
        collect_garbage()
    finally:
        ours.close()
        theirs.close()


def test_buffers_beyond_the_descriptors_of_one_message_take_named_segments(monkeypatch):
    monkeypatch.setattr(_fd_segments, "MAX_DESCRIPTORS", 2)
    ours, theirs = mp_core.Pipe()
    try:
        sent = [buffer(seed) for seed in range(3)]
        ours.send(sent)
        received = theirs.recv()
        assert [kind(x) for x in received[:2]] == ["FdSegmentMap", "FdSegmentMap"] and kind(received[2]) in NAMED
        assert [digest(x) for x in received] == [digest(x) for x in sent]
        del received
        collect_garbage()
    finally:
        ours.close()
        theirs.close()


def test_a_kernel_that_refuses_memory_files_gets_named_segments_with_one_warning(monkeypatch):
    def refuse(*args):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(os, "memfd_create", refuse)
    monkeypatch.setattr(_fd_segments, "_warned", False)
    ours, theirs = mp_core.Pipe()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for seed in range(2):
                ours.send(buffer(seed))
                received = theirs.recv()
                assert kind(received) in NAMED
                del received
                collect_garbage()
        messages = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
        assert len(messages) == 1 and "could not go through a memory file" in messages[0]
        assert "Too many open files" in messages[0]
    finally:
        ours.close()
        theirs.close()


def test_oob_descriptors_false_sends_named_segments_and_a_bad_value_is_refused():
    ours, theirs = mp_core.Pipe()
    try:
        reduction.configure(oob_descriptors=False)
        ours.send(buffer(1))
        received = theirs.recv()
        assert kind(received) in NAMED
        del received
        reduction.configure(oob_descriptors=True)
        ours.send(buffer(2))
        received = theirs.recv()
        assert kind(received) == "FdSegmentMap"
        del received
        collect_garbage()
        with pytest.raises(ValueError, match="oob_descriptors must be True or False, not 1"):
            reduction.configure(oob_descriptors=1)  # type: ignore[arg-type]
    finally:
        reduction.configure(oob_descriptors=True)
        ours.close()
        theirs.close()


def test_a_one_way_pipe_and_a_received_file_sent_on_through_it_use_named_segments():
    ours, theirs = mp_core.Pipe()
    reader, writer = mp_core.Pipe(duplex=False)
    try:
        ours.send(buffer(1))
        received = theirs.recv()
        assert kind(received) == "FdSegmentMap"
        writer.send(received)  # no descriptors through an OS pipe: copied into a named segment
        copied = reader.recv()
        assert kind(copied) in NAMED and digest(copied) == digest(received)
        del received, copied
        collect_garbage()
    finally:
        for conn in (ours, theirs, reader, writer):
            conn.close()


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="NumPy arrays travel in band on PyPy")
def test_a_numpy_array_sent_on_by_reference_shares_its_memory():
    numpy = pytest.importorskip("numpy")
    ours, theirs = mp_core.Pipe()
    try:
        ours.send(numpy.arange(SIZE // 8, dtype=numpy.float64))
        received = theirs.recv()
        theirs.send(received[SIZE // 16 :])  # a slice: the same file, at an offset
        back = ours.recv()
        assert kind(back) == "FdSegmentMap" and inode(back) == inode(received)
        back[0] = -1.0
        assert received[SIZE // 16] == -1.0
        del received, back
        collect_garbage()
    finally:
        ours.close()
        theirs.close()


def test_descriptors_the_kernel_will_not_take_in_flight_leave_the_message_to_named_segments(monkeypatch):
    import errno
    import socket

    def refuse(self, *args):
        raise OSError(errno.ETOOMANYREFS, "Too many references")

    monkeypatch.setattr(socket.socket, "sendmsg", refuse)
    ours, theirs = mp_core.Pipe()
    try:
        sent = buffer(1)
        ours.send([sent, "and the rest"])
        received = theirs.recv()
        assert kind(received[0]) in NAMED and digest(received[0]) == digest(sent)
        assert received[1] == "and the rest"
        ours.send("in step")
        assert theirs.recv() == "in step"
        [warm] = _fd_segments._warm
        assert warm.idle()  # the refused message's description is closed
        del received
        collect_garbage()
    finally:
        ours.close()
        theirs.close()


def test_warm_files_stay_within_the_cache_limit_and_go_with_it():
    ours, theirs = mp_core.Pipe()
    reduction.configure(oob_cache=2 * SIZE)
    try:
        sent = [buffer(seed) for seed in range(4)]
        kept = []
        for data in sent:
            ours.send(data)
            kept.append(theirs.recv())  # each still mapped: no file can be reused
        assert [entry.size for entry in _fd_segments._warm] == [SIZE, SIZE]  # the two most recent
        reduction.configure(oob_cache=0)
        assert _fd_segments._warm == []
        assert [digest(x) for x in kept] == [digest(x) for x in sent]  # closing ours took nothing from theirs
        del kept
        collect_garbage()
    finally:
        reduction.configure(oob_cache=None)
        ours.close()
        theirs.close()

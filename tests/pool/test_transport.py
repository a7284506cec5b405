"""mp_pool._transport: a worker's channel driven by the manager's poll, over real pipes, without processes."""

from __future__ import annotations

import os
import threading

import pytest

from mp_core._framing import FrameReader, message_header
from mp_core.connection import Pipe
from mp_pool._transport import RESULTS, SENTINEL, WAKE, Transport, WorkerChannel

pytestmark = pytest.mark.timeout(60)


class WorkerEnds:
    """The worker's ends of a channel's pipes (blocking, as in a worker)."""

    def __init__(self, results_first: bool = False) -> None:
        if results_first:
            results_r, self.results_w = Pipe(duplex=False)
            self.tasks_r, tasks_w = Pipe(duplex=False)
        else:
            self.tasks_r, tasks_w = Pipe(duplex=False)
            results_r, self.results_w = Pipe(duplex=False)
        self.channel = WorkerChannel(tasks_w, results_r)

    def close(self) -> None:
        self.tasks_r.close()
        self.results_w.close()


@pytest.fixture
def ends():
    made = WorkerEnds()
    try:
        yield made
    finally:
        made.close()
        if made.channel.tasks is not None:
            made.channel.tasks.close()
        made.channel.results.close()


def frame(payload: bytes) -> list:
    return [message_header(len(payload)), payload]


def test_the_parent_ends_are_non_blocking(ends):
    assert not os.get_blocking(ends.channel.task_fd)
    assert not os.get_blocking(ends.channel.result_fd)


def test_what_a_full_pipe_refuses_goes_out_when_poll_reports_room(ends):
    transport = Transport()
    channel = ends.channel
    big = [bytes([i]) * 1_000_000 for i in range(4)]  # more than the (enlarged) pipe holds
    for payload in big:
        channel.outbox.put(frame(payload))
    transport.flush(channel)
    assert channel.writing and channel.outbox  # watched for room, the rest kept

    received = []
    reader = threading.Thread(
        target=lambda: received.extend(bytes(FrameReader(ends.tasks_r.fileno()).next_frame()) for _ in big)
    )
    reader.start()
    while channel.outbox:
        assert transport.poll() == []  # the task pipe is the transport's own business
    reader.join(30)
    assert received == big
    assert not channel.writing


def test_results_many_per_read_then_end_of_file_stops_the_watch(ends):
    transport = Transport()
    channel = ends.channel
    owner = object()
    transport.open(channel, owner)
    os.write(ends.results_w.fileno(), b"".join(b"".join(frame(p)) for p in (b"one", b"two", b"three")))
    assert transport.poll() == [(RESULTS, owner)]
    assert [bytes(f) for f in transport.receive(channel)] == [b"one", b"two", b"three"]
    assert not channel.eof
    ends.results_w.close()
    assert transport.poll() == [(RESULTS, owner)]
    assert transport.receive(channel) == []
    assert channel.eof and channel.reader.eof
    # No longer watched: only the wake pipe answers now.
    wake_r, wake_w = os.pipe()
    try:
        transport.watch(wake_r, WAKE, None)
        os.write(wake_w, b"\0")
        assert transport.poll() == [(WAKE, None)]
    finally:
        transport.unwatch(wake_r, None)
        os.close(wake_r)
        os.close(wake_w)


def test_close_after_outbox_gives_the_worker_end_of_file_after_the_last_frame(ends):
    transport = Transport()
    channel = ends.channel
    payloads = [b"x" * 3_000_000, b"last"]  # more than the (enlarged) pipe holds
    for payload in payloads:
        channel.outbox.put(frame(payload))
    transport.close_after_outbox(channel)
    assert channel.closing and channel.tasks is not None  # not all written yet: still open

    worker = FrameReader(ends.tasks_r.fileno())
    got = []

    def read_all() -> None:
        try:
            while True:
                got.append(bytes(worker.next_frame()))
        except EOFError as exc:
            got.append(exc)

    reader = threading.Thread(target=read_all)
    reader.start()
    while channel.tasks is not None:
        transport.poll()
    reader.join(30)
    assert got[:2] == payloads and isinstance(got[2], EOFError) and str(got[2]) == ""


def test_a_worker_gone_loses_its_outbox_without_an_error(ends):
    transport = Transport()
    channel = ends.channel
    ends.tasks_r.close()
    channel.outbox.put(frame(b"for nobody"))
    transport.flush(channel)  # EPIPE: the sentinel will report the death
    assert not channel.outbox and not channel.writing


def test_close_stops_watching_and_closes_the_parent_ends(ends):
    transport = Transport()
    channel = ends.channel
    transport.open(channel, "worker")
    channel.outbox.put(frame(b"y" * 3_000_000))
    transport.flush(channel)
    assert channel.writing
    transport.close(channel)
    assert channel.tasks is None and channel.results.closed and not channel.outbox
    sentinel_r, sentinel_w = os.pipe()
    try:
        transport.watch(sentinel_r, SENTINEL, "worker")
        os.close(sentinel_w)
        sentinel_w = -1
        assert transport.poll() == [(SENTINEL, "worker")]  # nothing else is watched any more
    finally:
        transport.unwatch(sentinel_r, "worker")
        os.close(sentinel_r)
        if sentinel_w != -1:
            os.close(sentinel_w)


def test_closing_a_channel_leaves_alone_a_newer_watch_on_a_reused_descriptor_number(ends):
    # A retiring worker's task pipe is closed early (close_after_outbox); a
    # replacement's pipe may get the same descriptor number before the old
    # channel is closed.  Closing the old channel must not unwatch it: the
    # replacement's READY and results would never be read, and its caller
    # would wait for ever.
    transport = Transport()
    old = ends.channel
    transport.open(old, "old worker")
    old_task_fd = old.task_fd
    transport.close_after_outbox(old)
    assert old.tasks is None  # closed: its number is free
    newer = WorkerEnds(results_first=True)
    try:
        replacement = newer.channel
        assert replacement.result_fd == old_task_fd  # the lowest free number goes to the next pipe's read end
        transport.open(replacement, "replacement")
        transport.close(old)
        newer.results_w.send_bytes(b"READY")
        assert transport.poll(30) == [(RESULTS, "replacement")]
        assert [bytes(f) for f in transport.receive(replacement)] == [b"READY"]
        transport.close(replacement)
    finally:
        newer.close()

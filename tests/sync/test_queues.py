"""Queue, JoinableQueue, SimpleQueue: every method and error, delivery guarantees, sharing."""

from __future__ import annotations

import gc
import os
import pickle
import queue
import threading
import time
import weakref

import pytest

from mp_core import _forksafe_threads, reduction
from mp_core.connection import Connection
from mp_sync import JoinableQueue, Queue, SimpleQueue

from ..support import collect_garbage, run_python, run_script

pytestmark = pytest.mark.timeout(120)


# ---------------------------------------------------------------- children


def produce(q, tag, count):
    """Put ``(tag, i)`` for each i, then exit at once: the feeder must flush first."""
    for i in range(count):
        q.put((tag, i))


def produce_and_count(q, tag, count, done):
    """``produce``, counting each put that returned in ``done`` (a shared int)."""
    for i in range(count):
        q.put((tag, i))
        with done.get_lock():
            done.value += 1


def consume_until_none(q, results):
    """Get until ``None``; then report everything received, in order."""
    got = []
    while True:
        item = q.get(timeout=20)
        if item is None:
            break
        got.append(item)
    results.put(got)


def work_through(q, results):
    """JoinableQueue consumer: square each number, mark it done; stop at ``None``."""
    while True:
        item = q.get(timeout=60)
        if item is None:
            q.task_done()
            return
        results.put(item * item)
        q.task_done()


def apply_and_return(tasks, results):
    func, arg = tasks.get(timeout=60)
    results.put(func(arg))
    results.put(lambda x: x * 3)


def fill_and_leave(q, nbytes, cancel):
    q.put(b"x" * nbytes)
    q.put(b"y" * nbytes)
    if cancel:
        q.cancel_join_thread()


def put_one(q, item):
    q.put(item)


class Unpicklable:
    def __reduce__(self):
        raise TypeError("Unpicklable objects refuse to be pickled")


# ---------------------------------------------------------------- one process


def test_put_get_fifo_and_the_nowait_variants(ctx):
    q = ctx.Queue()
    assert isinstance(q, Queue)
    for item in ([1, 2], "two", None, {"three": 3}):
        q.put(item)
    q.put_nowait(4.0)
    assert [q.get(timeout=30) for _ in range(4)] == [[1, 2], "two", None, {"three": 3}]
    assert q.get_nowait() == 4.0 if not q.empty() else q.get(timeout=30) == 4.0
    assert q.empty() and q.qsize() == 0
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(False)
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.1)
    assert 0.09 < time.monotonic() - t0 < 10
    q.close()
    q.join_thread()


def test_no_item_is_stranded_when_puts_race_the_feeder_going_to_sleep(ctx):
    # put() wakes the feeder only when it says it sleeps: one item at a time,
    # each put finds it about to sleep or asleep, where a lost wake-up would
    # leave the item in the buffer (and get() would time out).
    q = ctx.Queue()
    for i in range(3000):
        q.put(i)
        assert q.get(timeout=30) == i

    # Several producer threads at once, in bursts, with the consumer draining.
    def produce(base):
        for i in range(2000):
            q.put(base + i)

    threads = [threading.Thread(target=produce, args=(k * 10_000,)) for k in range(4)]
    for thread in threads:
        thread.start()
    got = [q.get(timeout=30) for _ in range(8000)]
    for thread in threads:
        thread.join()
    assert sorted(got) == sorted(k * 10_000 + i for k in range(4) for i in range(2000))
    for k in range(4):  # each producer's items in the order it put them
        assert [x for x in got if x // 10_000 == k] == [k * 10_000 + i for i in range(2000)]
    q.close()
    q.join_thread()


def test_a_put_racing_the_first_put_waits_until_the_feeder_is_fully_started(ctx, monkeypatch):
    # The first put starts the feeder thread and then registers what flushes
    # the queue at close and at exit; a put from another thread meanwhile
    # must wait for all of it, or its close() + join_thread() could return
    # with its item unsent.
    from mp_sync import queues

    entered, go = threading.Event(), threading.Event()

    class HeldFeeder(_forksafe_threads.ForkSafeThread):
        def start(self):
            entered.set()
            assert go.wait(60)
            super().start()

    monkeypatch.setattr(queues, "ForkSafeThread", HeldFeeder)
    q = ctx.Queue()
    first = threading.Thread(target=q.put, args=("first",))
    first.start()
    try:
        assert entered.wait(60)
        second = threading.Thread(target=q.put, args=("second",))
        second.start()
        second.join(0.5)
        assert second.is_alive(), "the second put returned while the feeder was still being started"
    finally:
        go.set()  # (whatever happened: the first put ends, and the queue can be closed)
    first.join(60)
    second.join(60)
    assert not first.is_alive() and not second.is_alive()
    assert sorted(q.get(timeout=30) for _ in range(2)) == ["first", "second"]
    q.close()
    q.join_thread()


def test_maxsize_full_and_qsize(ctx):
    q = ctx.Queue(2)
    assert not q.full()
    q.put("a")
    q.put("b")
    assert q.full() and q.qsize() == 2
    with pytest.raises(queue.Full):
        q.put_nowait("c")
    with pytest.raises(queue.Full):
        q.put("c", False)
    t0 = time.monotonic()
    with pytest.raises(queue.Full):
        q.put("c", timeout=0.1)
    assert 0.09 < time.monotonic() - t0 < 10
    assert q.get(timeout=30) == "a"
    assert not q.full() and q.qsize() == 1
    q.put("c", timeout=1)
    assert [q.get(timeout=30), q.get(timeout=30)] == ["b", "c"]
    assert q.qsize() == 0


def test_closed_queue_refuses_put_and_get(ctx):
    q = ctx.Queue()
    with pytest.raises(AssertionError, match="not closed"):
        q.join_thread()
    q.put(1)
    q.close()
    with pytest.raises(ValueError, match="is closed"):
        q.put(2)
    with pytest.raises(ValueError, match="is closed"):
        q.get()
    q.join_thread()  # the feeder flushed and left
    assert not q._thread.is_alive()
    q.close()  # twice is fine
    fresh = ctx.Queue()
    fresh.close()  # never used: nothing to flush
    fresh.join_thread()
    with pytest.raises(ValueError, match="is closed"):
        fresh.put_nowait(1)


@pytest.mark.parametrize("kind", ["Queue", "JoinableQueue"])
def test_a_queue_closed_before_its_first_use_still_answers_empty(ctx, kind):
    # As every standard library version (and CPython's later 3.12/3.13
    # tests) expect: close() only takes effect once the queue was used.
    unused = getattr(ctx, kind)()
    unused.close()
    unused.join_thread()
    assert unused.empty() is True
    reader_fd = unused._reader.fileno()
    os.fstat(reader_fd)  # still open while the queue lives
    del unused
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(reader_fd)  # released with the queue

    used = getattr(ctx, kind)()
    used.put("foo")
    used.close()
    used.join_thread()
    with pytest.raises(OSError, match="is closed"):
        used.empty()


def test_an_unserializable_object_raises_in_put_and_the_queue_still_works(ctx):
    q = ctx.Queue(1)
    with pytest.raises(TypeError, match="refuse to be pickled"):
        q.put(Unpicklable())
    with pytest.raises(TypeError, match="generator"):
        q.put(i for i in range(3))
    assert not q.full()  # no slot was taken by the failed puts
    q.put("fine", timeout=1)
    assert q.get(timeout=30) == "fine"
    sq = ctx.SimpleQueue()
    with pytest.raises(TypeError, match="generator"):
        sq.put(i for i in range(3))
    sq.put("fine")
    assert sq.get() == "fine"


def test_an_object_is_sent_as_it_was_when_put(ctx):
    q = ctx.Queue()
    item = [1]
    q.put(item)
    item.append(2)  # serialized in put: the change does not travel
    assert q.get(timeout=30) == [1]


def test_queues_refuse_pickling_outside_process_creation(ctx):
    for q in (ctx.Queue(), ctx.JoinableQueue(), ctx.SimpleQueue()):
        name = type(q).__name__
        with pytest.raises(RuntimeError, match=f"{name} objects should only be shared between processes"):
            pickle.dumps(q)
        with pytest.raises(RuntimeError, match=f"{name} objects should only be shared"):
            reduction.dumps(q)


def test_large_items_and_many_small_ones(ctx):
    q = ctx.Queue()
    big = bytes(range(256)) * 4096  # 1 MiB: larger than a batch
    for i in range(300):
        q.put(i)
        if i % 100 == 0:
            q.put(big)
    got = [q.get(timeout=30) for _ in range(303)]
    assert [x for x in got if not isinstance(x, bytes)] == list(range(300))
    assert [x for x in got if isinstance(x, bytes)] == [big] * 3
    q.close()
    q.join_thread()


class RecordingQueue(Queue):
    errors: list = []

    @staticmethod
    def _on_queue_feeder_error(exc, obj):
        RecordingQueue.errors.append((type(exc), bytes(obj)))


def test_a_failed_write_reaches_the_hook_and_frees_the_slot(ctx):
    RecordingQueue.errors.clear()
    q = RecordingQueue(1, ctx=ctx)
    q.put("first")
    assert q.get(timeout=30) == "first"
    q._writer.close()  # the pipe breaks under the feeder
    q.put("lost")
    deadline = time.monotonic() + 30
    while not RecordingQueue.errors and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [kind for kind, _ in RecordingQueue.errors] == [OSError]
    assert pickle.loads(RecordingQueue.errors[0][1]) == "lost"
    assert q.qsize() == 0  # the slot came back: a bounded queue does not fill up with failures


class ForgivingQueue(Queue):
    """Overrides the hook, so serialization errors reach it instead of put's caller."""

    def __init__(self, *args, **kwds):
        super().__init__(*args, **kwds)
        self.errors = []

    def _on_queue_feeder_error(self, exc, obj):
        self.errors.append((exc, obj))


def test_an_overridden_hook_receives_serialization_errors_instead_of_put(ctx):
    q = ForgivingQueue(1, ctx=ctx)
    bad = Unpicklable()
    assert q.put(bad) is None  # no exception
    assert len(q.errors) == 1
    exc, obj = q.errors[0]
    assert obj is bad
    assert isinstance(exc, TypeError) and "refuse to be pickled" in str(exc)
    del exc, obj
    q.errors.clear()  # the traceback's frames refer back to q
    assert not q.full()  # nothing queued, no slot taken
    q.put("fine", timeout=1)
    assert q.get(timeout=30) == "fine"
    assert q.empty()
    # The feeder thread does not keep a queue with a plain-method hook alive.
    ref = weakref.ref(q)
    del q
    collect_garbage()  # PyPy has no reference counting to drop it at once
    assert ref() is None


def test_a_dropped_queue_flushes_and_its_feeder_ends(ctx):
    q = ctx.Queue()
    reader = q._reader
    q.put("kept")
    feeder = q._thread
    del q
    gc.collect()
    feeder.join(30)
    assert not feeder.is_alive()
    assert reader.closed  # the feeder closed this process's ends


def test_generic_alias():
    assert Queue[int].__origin__ is Queue
    assert JoinableQueue[int].__origin__ is JoinableQueue
    assert SimpleQueue[int].__origin__ is SimpleQueue


# ---------------------------------------------------------------- JoinableQueue


def test_task_done_too_many_times(ctx):
    q = ctx.JoinableQueue()
    assert isinstance(q, JoinableQueue)
    with pytest.raises(ValueError, match=r"task_done\(\) called too many times"):
        q.task_done()
    q.put(1)
    q.put(2)
    assert q.get(timeout=30) == 1
    q.task_done()
    assert q.get(timeout=30) == 2
    q.task_done()
    q.join()  # nothing unfinished: returns at once
    with pytest.raises(ValueError, match="too many times"):
        q.task_done()


def test_join_waits_for_consumers_in_other_processes(ctx, start):
    q, results = ctx.JoinableQueue(), ctx.SimpleQueue()
    workers = [start(work_through, q, results) for _ in range(2)]
    for i in range(50):
        q.put(i)
    q.join()  # every item was taken and reported done
    assert results.empty() is False
    assert sorted(results.get() for _ in range(50)) == [i * i for i in range(50)]
    for _ in workers:
        q.put(None)
    q.join()
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0


# ---------------------------------------------------------------- SimpleQueue


def test_simple_queue_methods(ctx, start):
    q = ctx.SimpleQueue()
    assert isinstance(q, SimpleQueue)
    assert q.empty()
    q.put({"a": 1})
    assert not q.empty()
    assert q.get() == {"a": 1}
    proc = start(put_one, q, lambda x: x + 1)
    assert q.get()(1) == 2
    proc.join(30)
    q.close()
    with pytest.raises(OSError):
        q.get()
    with pytest.raises(OSError):
        q.put(1)


# ---------------------------------------------------------------- between processes


def test_no_loss_when_producers_exit_right_after_put(ctx, start):
    q = ctx.Queue()
    producers = [start(produce, q, tag, 5000) for tag in ("a", "b")]
    got = [q.get(timeout=20) for _ in range(10000)]
    for proc in producers:
        proc.join(60)
        assert proc.exitcode == 0
    for tag in ("a", "b"):
        assert [i for t, i in got if t == tag] == list(range(5000))  # all of it, in order
    assert q.empty()


def test_many_producers_and_consumers_keep_each_producers_order(ctx, start):
    q, results = ctx.Queue(), ctx.Queue()
    count = 400
    consumers = [start(consume_until_none, q, results) for _ in range(2)]
    producers = [start(produce, q, tag, count) for tag in range(3)]
    for proc in producers:
        proc.join(60)
        assert proc.exitcode == 0
    for _ in consumers:
        q.put(None)
    streams = [results.get(timeout=30) for _ in consumers]
    for proc in consumers:
        proc.join(60)
        assert proc.exitcode == 0
    assert sorted(item for stream in streams for item in stream) == sorted(
        (tag, i) for tag in range(3) for i in range(count)
    )
    for stream in streams:
        for tag in range(3):
            mine = [i for t, i in stream if t == tag]
            assert mine == sorted(mine)


def test_bounded_queue_blocks_a_producer_in_another_process(ctx, start):
    q, done = ctx.Queue(3), ctx.Value("i", 0)
    proc = start(produce_and_count, q, "p", 20, done)
    deadline = time.monotonic() + 60
    while done.value < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert q.full() and q.qsize() == 3
    # Not a synchronization: a window in which an unbounded queue would
    # let the producer's fourth put return (a loaded machine only narrows it).
    time.sleep(0.2)
    assert done.value == 3 and proc.is_alive()  # blocked in its fourth put
    assert [q.get(timeout=30) for _ in range(20)] == [("p", i) for i in range(20)]
    proc.join(30)
    assert proc.exitcode == 0


def test_lambdas_travel_both_ways(ctx, start):
    tasks, results = ctx.Queue(), ctx.Queue()
    proc = start(apply_and_return, tasks, results)
    tasks.put((lambda x: x + 1, 41))
    assert results.get(timeout=60) == 42
    assert results.get(timeout=60)(5) == 15
    proc.join(30)
    assert proc.exitcode == 0


def test_cancel_join_thread_lets_a_process_exit_with_unread_items(ctx, start):
    q = ctx.Queue()
    # Two items larger than any pipe buffer: without cancel_join_thread the
    # child would wait forever for a reader at exit.
    proc = start(fill_and_leave, q, 4 << 20, True)
    proc.join(30)
    assert proc.exitcode == 0


def test_a_child_uses_a_queue_whose_feeder_runs_in_the_parent(ctx, start):
    q = ctx.Queue()
    q.put("from parent")  # starts this process's feeder before the child exists
    proc = start(put_one, q, "from child")
    got = {q.get(timeout=30), q.get(timeout=30)}
    assert got == {"from parent", "from child"}
    proc.join(30)
    assert proc.exitcode == 0


# ---------------------------------------------------------------- the feeder steps aside for forks
# (mp_core._forksafe_threads: the feeder thread exits before the process
# forks, leaving what it has not written in the buffer, and is started
# again after the fork.)


def step_aside_for_a_fork():
    """What a fork does to this process's ForkSafeThreads, without the fork."""
    _forksafe_threads._before_fork()
    _forksafe_threads._resume_paused()


def test_items_put_around_forks_arrive_whole_and_in_order(ctx, start):
    q = ctx.Queue()
    big = b"b" * (256 << 10)  # larger than the pipe: the feeder is mid-write at some forks
    expected = []
    children = []
    for round_ in range(3):
        for i in range(200):
            item = (round_, i, big if i % 50 == 0 else i)
            q.put(item)
            expected.append(item)
        step_aside_for_a_fork()
        children.append(start(produce, q, f"child{round_}", 50))  # a real fork under fork
    got = [q.get(timeout=60) for _ in range(len(expected) + 3 * 50)]
    assert [item for item in got if type(item[0]) is int] == expected
    for round_ in range(3):
        assert [item for item in got if item[0] == f"child{round_}"] == [(f"child{round_}", i) for i in range(50)]
    for child in children:
        child.join(30)
        assert child.exitcode == 0


def test_close_and_join_thread_wait_for_a_feeder_that_stepped_aside(ctx):
    q = ctx.Queue()
    # close() lets the feeder close this process's pipe ends once flushed:
    # read what it wrote through a copy of the read end.
    reader = Connection(os.dup(q._reader.fileno()), writable=False)
    q.put("before")
    _forksafe_threads._before_fork()
    try:
        feeder = q._thread
        assert feeder.is_alive()  # paused: it will come back
        q.put("while paused")
        q.close()
        joined = threading.Event()
        joiner = threading.Thread(target=lambda: (q.join_thread(), joined.set()))
        joiner.start()
        assert not joined.wait(0.2)  # join_thread waits for the feeder across the pause
    finally:
        _forksafe_threads._resume_paused()
    assert joined.wait(30)
    joiner.join(10)
    assert not feeder.is_alive() and q._reader.closed
    assert [pickle.loads(reader.recv_bytes()) for _ in range(2)] == ["before", "while paused"]
    reader.close()


def test_a_restarted_feeder_still_reports_failed_writes_to_the_hook(ctx):
    RecordingQueue.errors.clear()
    q = RecordingQueue(1, ctx=ctx)
    q.put("first")
    assert q.get(timeout=30) == "first"
    step_aside_for_a_fork()
    q._writer.close()  # the pipe breaks under the (restarted) feeder
    q.put("lost")
    deadline = time.monotonic() + 30
    while not RecordingQueue.errors and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [kind for kind, _ in RecordingQueue.errors] == [OSError]
    assert pickle.loads(RecordingQueue.errors[0][1]) == "lost"
    assert q.qsize() == 0


def test_cancel_join_thread_holds_across_a_pause(ctx):
    q = ctx.Queue()
    big = b"x" * (4 << 20)
    q.put(big)  # more than the pipe holds: the feeder is stuck in its write, and a fork goes ahead
    started = time.monotonic()
    step_aside_for_a_fork()
    assert time.monotonic() - started < 5
    q.cancel_join_thread()
    assert q._jointhread is None
    q.put("after")
    assert q.get(timeout=30) == big  # unblocks the feeder
    assert q.get(timeout=30) == "after"
    q.close()
    q._thread.join(30)
    assert not q._thread.is_alive()


# ---------------------------------------------------------------- __main__ programs

MAIN_CLASS_PROGRAM = """
    import sys
    import mp_core

    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

        def norm1(self):
            return abs(self.x) + abs(self.y)

    def echo(tasks, results):
        point = tasks.get(timeout=60)
        results.put((type(point).__name__, point.norm1()))
        results.put(Point(point.y, point.x))

    if __name__ == "__main__":
        ctx = mp_core.get_context(sys.argv[1])
        tasks, results = ctx.Queue(), ctx.Queue()
        proc = ctx.Process(target=echo, args=(tasks, results))
        proc.start()
        tasks.put(Point(3, -4))
        print(results.get(timeout=60))
        back = results.get(timeout=60)
        print(type(back) is Point, back.x, back.y)
        proc.join(60)
        print(proc.exitcode)
"""


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_main_class_travels_through_a_queue_from_a_script(tmp_path, method):
    out = run_script(tmp_path / "program.py", MAIN_CLASS_PROGRAM, method)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["('Point', 7)", "True -4 3", "0"]


def test_a_main_class_travels_through_a_queue_from_python_dash_c():
    # Here the child cannot import __main__ again: the class travels by value.
    out = run_python(MAIN_CLASS_PROGRAM, "spawn")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[0] == "('Point', 7)" and lines[2] == "0"
    assert lines[1].endswith("-4 3")

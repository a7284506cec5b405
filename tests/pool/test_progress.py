"""``progress=`` on the pool's maps and the executor's ``map``: counting objects, real tqdm bars, closing, failures."""

from __future__ import annotations

import io
import itertools
import sys
import threading
from typing import Any, Callable, Iterator

import pytest
import tqdm.auto

from mp_pool import PoolTerminatedError, ThreadPool
from mp_pool._progress import make_progress
from mp_pool.pool import TaskTimeoutError

from ..support import run_python
from . import helpers

pytestmark = pytest.mark.timeout(120)


class Counter:
    """A user's progress object: records every ``update(n)``; has a ``close()`` that must never be called."""

    def __init__(self) -> None:
        self.updates: list[int] = []
        self.closed = False
        self._lock = threading.Lock()

    @property
    def n(self) -> int:
        return sum(self.updates)

    def update(self, n: int) -> None:
        with self._lock:
            self.updates.append(n)

    def close(self) -> None:
        self.closed = True


class RecordingBar(tqdm.auto.tqdm):  # type: ignore[misc,valid-type]
    """The tqdm bar the pool makes, writing to a buffer and recording that it was closed."""

    made: list[RecordingBar] = []
    # No tqdm monitor thread in the test process (a thread would make later forks warn on 3.12+).
    monitor_interval = 0

    def __init__(self, *args: Any, **kwds: Any) -> None:
        kwds.setdefault("file", io.StringIO())
        self.output = kwds["file"]
        self.closed = threading.Event()
        self.closes = 0
        super().__init__(*args, **kwds)
        RecordingBar.made.append(self)

    def close(self) -> None:
        self.closes += 1
        super().close()
        self.closed.set()


@pytest.fixture
def bars(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[RecordingBar]]:
    """The bars made by ``progress=True``/a dict during the test (``tqdm.auto.tqdm`` is a ``RecordingBar``)."""
    monkeypatch.setattr(tqdm.auto, "tqdm", RecordingBar)
    RecordingBar.made = []
    yield RecordingBar.made
    RecordingBar.made = []


@pytest.fixture
def thread_pool() -> Iterator[Callable[..., ThreadPool]]:
    pools: list[ThreadPool] = []

    def make(*args: Any, **kwds: Any) -> ThreadPool:
        pool = ThreadPool(*args, **kwds)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.terminate()
        pool.join()


N = 50
SQUARES = [x * x for x in range(N)]


def run_every_method(pool: Any, chunksize: int) -> None:
    """Each map of ``pool`` over ``N`` items with a ``Counter``: every item counted once the call has returned."""

    def check(case: str, counter: Counter) -> None:
        assert counter.n == N, f"{case}: {counter.updates}"
        assert all(1 <= n <= chunksize for n in counter.updates), f"{case}: {counter.updates}"
        if chunksize == 1:
            assert counter.updates == [1] * N, case
        assert not counter.closed, f"{case}: the user's object was closed"

    counter = Counter()
    assert pool.map(helpers.square, range(N), chunksize, progress=counter) == SQUARES
    check("map", counter)

    counter = Counter()
    assert pool.starmap(helpers.add, [(x, x) for x in range(N)], chunksize, progress=counter) == [
        2 * x for x in range(N)
    ]
    check("starmap", counter)

    counter = Counter()
    seen_by_callback: list[int] = []
    result = pool.map_async(
        helpers.square,
        list(range(N)),
        chunksize,
        callback=lambda _: seen_by_callback.append(counter.n),
        progress=counter,
    )
    assert result.get(60) == SQUARES
    assert seen_by_callback == [N], "the callback ran before every item was counted"
    check("map_async", counter)

    counter = Counter()
    assert pool.starmap_async(helpers.add, zip(range(N), range(N)), chunksize, progress=counter).get(60) == [
        2 * x for x in range(N)
    ]
    check("starmap_async", counter)

    counter = Counter()
    assert list(pool.imap(helpers.square, iter(range(N)), chunksize, progress=counter)) == SQUARES
    check("imap", counter)

    counter = Counter()
    assert sorted(pool.imap_unordered(helpers.square, range(N), chunksize, progress=counter)) == SQUARES
    check("imap_unordered", counter)


# ---------------------------------------------------------------- counting


@pytest.mark.parametrize("chunksize", [1, 7])
def test_an_update_object_counts_every_item_of_every_method(make_pool, chunksize):
    run_every_method(make_pool(2), chunksize)


@pytest.mark.parametrize("chunksize", [1, 7])
def test_an_update_object_counts_every_item_on_a_thread_pool(thread_pool, chunksize):
    run_every_method(thread_pool(3), chunksize)


def test_a_failed_chunk_counts_its_items(make_pool):
    pool = make_pool(2)
    counter = Counter()
    with pytest.raises(KeyError, match="bad item 13"):
        pool.starmap(helpers.fail_on, [(x, 13) for x in range(40)], 4, progress=counter)
    # The chunks after the failing one still run (as in the standard
    # library): every item is counted once the pool has finished its work.
    pool.close()
    pool.join()
    assert counter.n == 40
    assert all(1 <= n <= 4 for n in counter.updates)


def test_failed_chunks_count_in_imap(make_pool):
    pool = make_pool(2)
    counter = Counter()
    iterator = pool.imap(helpers.raise_value_error, ["a", "b", "c"], 1, progress=counter)
    for expected in "abc":
        with pytest.raises(ValueError, match=expected):
            next(iterator)
    with pytest.raises(StopIteration):
        next(iterator)
    assert counter.updates == [1, 1, 1]


def test_a_chunk_split_by_a_task_timeout_counts_every_item(make_pool, tmp_path, bars):
    pool = make_pool(2)
    path = str(tmp_path / "log")
    counter = Counter()
    # Chunk 4-7: item 4 finishes, item 5 overruns (its worker is replaced), 6-7 run elsewhere.
    results = pool.imap(
        lambda x: helpers.record_then_sleep(x, path, 5), range(12), chunksize=4, task_timeout=1.0, progress=counter
    )
    got: list[object] = []
    for _ in range(12):
        try:
            got.append(next(results))
        except TaskTimeoutError:
            got.append("timed out")
    assert got == [x * x for x in range(5)] + ["timed out"] + [x * x for x in range(6, 12)]
    assert counter.n == 12, counter.updates
    assert sorted(pool.map(helpers.square, range(8), 4, progress=True, task_timeout=30.0)) == [x * x for x in range(8)]
    (bar,) = bars
    assert bar.closed.is_set() and bar.n == 8


def test_empty_inputs_count_nothing(make_pool, bars):
    pool = make_pool(1)
    counter = Counter()
    assert pool.map(helpers.square, [], progress=counter) == []
    assert pool.map_async(helpers.square, [], progress=counter).get(10) == []
    assert list(pool.imap(helpers.square, [], progress=counter)) == []
    assert list(pool.imap_unordered(helpers.square, iter([]), progress=counter)) == []
    assert counter.updates == []
    # A bar asked for an empty input shows 0 of 0 and is closed.
    assert pool.map(helpers.square, [], progress=True) == []
    (bar,) = bars
    assert bar.closed.is_set() and bar.total == 0 and bar.n == 0


def test_the_executor_map_counts_every_call(make_executor):
    executor = make_executor(2)
    for chunksize, buffersize in [(1, None), (7, None), (3, 2)]:
        counter = Counter()
        results = executor.map(
            helpers.add, range(N), range(N), chunksize=chunksize, buffersize=buffersize, progress=counter
        )
        assert list(results) == [2 * x for x in range(N)]
        assert counter.n == N, (chunksize, buffersize, counter.updates)
        assert all(1 <= n <= chunksize for n in counter.updates)
        assert not counter.closed


# ---------------------------------------------------------------- our bar: totals and closing


def test_our_bar_has_the_total_and_is_closed_when_the_call_returns(make_pool, bars):
    pool = make_pool(2)
    assert pool.map(helpers.square, range(N), progress=True) == SQUARES
    assert list(pool.imap(helpers.square, range(N), 3, progress={"desc": "sized"})) == SQUARES
    # An input without a length: the total is filled in once it has been read to its end.
    assert sorted(pool.imap_unordered(helpers.square, (x for x in range(N)), 4, progress={"desc": "gen"})) == SQUARES
    assert [bar.total for bar in bars] == [N, N, N]
    for bar in bars:
        assert bar.closed.is_set() and bar.closes == 1, bar.desc
        assert bar.n == N
        assert f"{N}/{N}" in bar.output.getvalue()


def test_a_dict_of_bar_arguments_is_passed_to_tqdm(make_pool, bars):
    pool = make_pool(1)
    assert pool.map(helpers.square, range(10), progress={"desc": "squaring", "unit": "task", "total": 12}) == [
        x * x for x in range(10)
    ]
    (bar,) = bars
    assert (bar.desc, bar.unit, bar.total, bar.n) == ("squaring", "task", 12, 10)  # the given total wins
    assert bar.closed.is_set()  # at the end of the job, though 12 were announced
    assert "squaring:" in bar.output.getvalue()


class _LengthRecorder:
    """A job's result that records whether the bar was closed when the input's length reached it."""

    def __init__(self, bar: RecordingBar) -> None:
        self.bar = bar
        self.closed_at_length: list[bool] = []

    def _set_length(self, count: int) -> None:
        self.closed_at_length.append(self.bar.closed.is_set())


class _DrainedSource:
    exhausted = True
    count = 10


def test_a_bar_announcing_more_items_is_closed_before_the_result_can_end(bars):
    # The race behind the dict test above (seen on PyPy under forkserver): the
    # last task finishes before the source is seen drained, so the bar closes
    # when the job is marked drained, and it must do so before the result's
    # length is set (which lets the caller's ``map`` return).
    from mp_pool._jobs import Job

    progress = make_progress({"total": 12}, 10)
    (bar,) = bars
    result = _LengthRecorder(bar)
    job = Job(0, None, "map", helpers.square, result, _DrainedSource())  # type: ignore[arg-type]
    job.progress = progress
    assert job.mark_drained() is True  # nothing outstanding: the job is done
    assert result.closed_at_length == [True]
    assert bar.closes == 1
    job.end_progress()  # (the engine retires the job afterwards: still closed once)
    assert bar.closes == 1


def test_our_bar_is_closed_after_an_error(make_pool, bars):
    pool = make_pool(2)
    with pytest.raises(KeyError):
        pool.starmap(helpers.fail_on, [(x, 3) for x in range(20)], 2, progress=True)
    (bar,) = bars
    # The chunks still running after the failure finish, and are counted; then the bar is closed.
    assert bar.closed.wait(60), "the bar was not closed after the error"
    assert bar.n == 20 and bar.closes == 1


def test_our_bar_is_closed_by_terminate_and_a_users_object_is_not(make_pool, gate, bars):
    pool = make_pool(2, **gate.pool_args)
    counter = Counter()
    ours = pool.map_async(helpers.gated, range(4), 1, progress=True)
    theirs = pool.imap(helpers.gated, range(4), progress=counter)
    gate.wait_started(2)
    pool.terminate()
    (bar,) = bars
    assert bar.closed.is_set() and bar.n == 0 and bar.total == 4
    with pytest.raises(PoolTerminatedError):
        ours.get(10)
    with pytest.raises(PoolTerminatedError):
        next(theirs)
    assert not counter.closed and counter.updates == []


def test_our_bar_is_closed_when_the_call_is_cancelled(make_pool, gate, bars):
    pool = make_pool(2, **gate.pool_args)
    counter = Counter()
    cancelled = pool.map_async(helpers.gated, range(6), 1, progress=True)
    gate.wait_started(2)
    assert cancelled.cancel(cancel_running=True)  # its two running items' workers are replaced
    (bar,) = bars
    assert bar.closed.is_set() and (bar.n, bar.total) == (0, 6)
    # imap's close() on an endless input: the bar closes at once; the user's
    # object goes on counting the items still running as they finish.
    closed = pool.imap(helpers.gated, itertools.count(), progress=True)
    theirs = pool.imap(helpers.gated, itertools.count(), progress=counter)
    gate.wait_started(2)
    closed.close()
    theirs.close()
    assert bars[1].closed.is_set() and bars[1].total is None
    gate.open(2)
    assert pool.map(helpers.square, range(5), progress=counter) == [0, 1, 4, 9, 16]
    assert not counter.closed


def test_our_bar_is_closed_when_an_executor_map_is_abandoned(make_executor, gate, bars):
    executor = make_executor(2, initializer=helpers.install_gate, initargs=(gate.started, gate.gate))
    results = executor.map(helpers.gated, range(6), progress=True)
    gate.wait_started(2)
    results.close()  # the calls not handed to a worker yet are cancelled
    # (Enough for every call: the two that ran may have finished, and the
    # next ones been handed out, before the manager thread saw the close.)
    gate.open(6)
    (bar,) = bars
    assert bar.closed.wait(60), "the bar was not closed once the running calls finished"
    assert 2 <= bar.n <= 6 and bar.total == 6  # the calls that ran count (all of them, if handed out before the close)


def test_a_users_tqdm_bar_is_advanced_and_left_open(make_pool):
    pool = make_pool(2)
    with RecordingBar(total=2 * N) as bar:
        pool.map(helpers.square, range(N), progress=bar)
        pool.map(helpers.square, range(N), 5, progress=bar)
        assert bar.n == 2 * N
        assert not bar.disable  # tqdm disables a bar when it is closed


def test_our_bar_on_a_thread_pool(thread_pool, bars):
    pool = thread_pool(3)
    assert pool.map(helpers.square, range(N), 4, progress=True) == SQUARES
    assert list(pool.imap(helpers.square, (x for x in range(N)), progress=True)) == SQUARES
    assert [(bar.n, bar.total, bar.closed.is_set()) for bar in bars] == [(N, N, True)] * 2


# ---------------------------------------------------------------- wrong arguments, missing tqdm, failing update()


@pytest.mark.parametrize("value", [5, "yes", 1.0, [1], object()])
def test_anything_else_is_a_type_error(thread_pool, value):
    pool = thread_pool(1)
    for call in (
        lambda: pool.map(helpers.square, [1], progress=value),
        lambda: pool.imap(helpers.square, [1], progress=value),
        lambda: pool.starmap_async(helpers.add, [(1, 2)], progress=value),
    ):
        with pytest.raises(
            TypeError, match=r"progress must be None, True/False, a dict of tqdm arguments or an object"
        ):
            call()
    assert pool._cache == {}  # nothing was submitted
    assert make_progress(None, 3) is None and make_progress(False, 3) is None


def test_a_bar_class_instead_of_a_bar_is_a_type_error(thread_pool):
    with pytest.raises(TypeError, match=r"not the class RecordingBar \(pass an instance, or True for a tqdm bar\)"):
        thread_pool(1).map(helpers.square, [1], progress=RecordingBar)


def test_without_tqdm_a_bar_is_an_import_error_naming_the_extra(make_pool, monkeypatch):
    pool = make_pool(1)
    # (tqdm.auto as well: a submodule already imported is found without its parent.)
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    for progress in (True, {"desc": "x"}):
        with pytest.raises(ImportError, match=r"needs tqdm, which is not installed: pip install mp-pool\[progress\]"):
            pool.map(helpers.square, [1, 2], progress=progress)
        with pytest.raises(ImportError, match=r"multiprocess\[progress\]"):
            pool.imap(helpers.square, [1, 2], progress=progress)
    assert pool._cache == {}
    # An object of the user's needs no tqdm.
    counter = Counter()
    assert pool.map(helpers.square, [1, 2], progress=counter) == [1, 4]
    assert counter.n == 2


def test_a_raising_update_is_reported_once_and_the_pool_carries_on(make_pool, capsys):
    class Broken(Counter):
        def update(self, n: int) -> None:
            super().update(n)
            raise RuntimeError("the progress display is gone")

    pool = make_pool(2)
    broken = Broken()
    assert pool.map(helpers.square, range(N), 1, progress=broken) == SQUARES
    assert broken.updates == [1]  # not called again for this job
    assert list(pool.imap(helpers.square, range(N), progress=broken)) == SQUARES
    assert pool.map(helpers.square, range(N)) == SQUARES
    err = capsys.readouterr().err
    assert err.count("Exception in update() of") == 2
    assert "RuntimeError: the progress display is gone" in err


# ---------------------------------------------------------------- the real thing, in a program of its own

PROGRAM = """
import sys
import threading
import multiprocess as mp

def square(x):
    return x * x

if __name__ == "__main__":
    method, kind = sys.argv[1:]
    progress = True if kind == "true" else {"desc": "squaring", "unit": "task"}
    with mp.get_context(method).Pool(2) as pool:
        assert pool.map(square, range(57), 5, progress=progress) == [x * x for x in range(57)]
        assert list(pool.imap(square, iter(range(23)), progress=progress)) == [x * x for x in range(23)]
    # tqdm's monitor thread, which outlives its bars, is not started for ours.
    print("ok", "tqdm" in sys.modules, [thread.name for thread in threading.enumerate() if "tqdm" in thread.name])
"""


@pytest.mark.parametrize("kind", ["true", "dict"])
def test_tqdm_writes_its_final_line_to_stderr(start_method, kind):
    done = run_python(PROGRAM, start_method, kind)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", "True", "[]"]
    # (Captured as text, tqdm's carriage returns read as line ends: every refresh is a line.)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    unit = "task" if kind == "dict" else "it"
    first = [line for line in lines if "/57 " in line]
    second = [line for line in lines if "/23 " in line or f"0{unit} " in line]
    assert lines == first + second, done.stderr  # the first bar was closed before the second started
    # Each bar's last refresh: 100% of its total (the generator's filled in once it was read to its end).
    assert "100%" in first[-1] and "57/57" in first[-1] and f"{unit}/s" in first[-1], first[-1]
    assert "100%" in second[-1] and "23/23" in second[-1], second[-1]
    if kind == "dict":
        assert all(line.startswith("squaring: ") for line in lines), lines


def test_tqdm_is_not_imported_unless_a_bar_is_asked_for():
    done = run_python(
        """
        import sys
        import multiprocess as mp, multiprocess.pool, multiprocess.futures

        class Counter:
            n = 0
            def update(self, n):
                self.n += n

        if __name__ == "__main__":
            counter = Counter()
            with mp.get_context("fork").Pool(1) as pool:
                pool.map(abs, range(-5, 5), progress=counter)
            print(counter.n, "tqdm" in sys.modules)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["10", "False"]

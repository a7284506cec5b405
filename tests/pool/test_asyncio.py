"""asyncio: pool results are awaitable and the ``imap`` iterators support ``async for``.

Every test runs on a ``Pool`` under each start method and on a
``ThreadPool``.  A task that must stay pending is gated (it waits for the
test to open the gate), so "the task has not finished" never depends on
timing; the loop side yields with ``asyncio.sleep(0)``, which only lets the
other tasks of the loop run.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import Any, Callable, Iterator

import pytest

import mp_core
from mp_pool import Pool, ThreadPool
from mp_pool._errors import RemoteTraceback

from ..support import START_METHODS
from . import helpers
from .conftest import Gate

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=[*START_METHODS, "threads"])
def kind(request: pytest.FixtureRequest) -> str:
    """Each start method in turn (a ``Pool``), then ``"threads"`` (a ``ThreadPool``)."""
    return request.param


@pytest.fixture
def make_any_pool(kind: str) -> Iterator[Callable[..., Any]]:
    """``make_any_pool(processes, ...)``: a pool of the test's kind, terminated and joined at the end."""
    pools: list[Any] = []

    def make(*args: Any, **kwds: Any) -> Any:
        if kind == "threads":
            pool: Any = ThreadPool(*args, **kwds)
        else:
            pool = Pool(*args, context=mp_core.get_context(kind), **kwds)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.terminate()
        pool.join()
    pools.clear()


@pytest.fixture
def any_gate(kind: str) -> Iterator[Gate]:
    """A ``Gate`` for the test's pool: process semaphores for a ``Pool``, thread ones for a ``ThreadPool``."""
    made = Gate(threading if kind == "threads" else mp_core.get_context(kind))
    yield made
    # A ThreadPool's initializer left the semaphores in this process's helpers.
    helpers._semaphores = None
    del made.started, made.gate, made.pool_args


async def value_of(awaitable: Any) -> Any:
    return await awaitable


async def let_the_loop_run(rounds: int = 10) -> None:
    """Yield to the loop's other tasks ``rounds`` times (each ready task runs a step each round)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def test_await_gives_the_value(make_any_pool):
    pool = make_any_pool(2)

    async def scenario():
        return (
            await pool.apply_async(helpers.add, (2, 3)),
            await pool.apply_async(helpers.add, (), {"a": 1, "b": 2}),
            await pool.map_async(helpers.square, range(10), chunksize=3),
            await pool.starmap_async(helpers.add, [(1, 2), (3, 4)]),
            await pool.map_async(helpers.square, []),
            # A lambda and a closure: under spawn and forkserver too.
            await pool.apply_async(lambda x: x + 1, (41,)),
            await pool.map_async(functools.partial(lambda k, x: k * x, 3), [1, 2]),
        )

    assert asyncio.run(scenario()) == (5, 3, [x * x for x in range(10)], [3, 7], [], 42, [3, 6])


def test_await_raises_the_tasks_error(make_any_pool, kind):
    pool = make_any_pool(2)

    async def scenario():
        with pytest.raises(ValueError, match="^nope$") as raised:
            await pool.apply_async(helpers.raise_value_error, ("nope",))
        with pytest.raises(KeyError, match="bad item 4") as mapped:
            await pool.map_async(functools.partial(helpers.fail_on, bad=4), range(8), chunksize=2)
        # The pool still works after the errors.
        return raised.value, mapped.value, await pool.apply_async(helpers.square, (4,))

    error, map_error, after = asyncio.run(scenario())
    assert after == 16
    if kind != "threads":
        # The worker's traceback, as get() gives it.
        for exc in (error, map_error):
            assert isinstance(exc.__cause__, RemoteTraceback)
            assert "Traceback (most recent call last)" in str(exc.__cause__)
        assert "raise_value_error" in str(error.__cause__)
        assert "fail_on" in str(map_error.__cause__)


def test_gather_of_100_awaited_results_keeps_the_order(make_any_pool):
    pool = make_any_pool(2)

    async def scenario():
        results = [pool.apply_async(helpers.square, (x,)) for x in range(100)]
        # The same result awaited twice, and by two tasks at once.
        shared = pool.apply_async(helpers.add, (20, 22))
        values = await asyncio.gather(*results, shared, shared)
        return values, await shared

    values, again = asyncio.run(scenario())
    assert values == [x * x for x in range(100)] + [42, 42]
    assert again == 42


def test_the_loop_runs_other_tasks_while_a_result_is_awaited(make_any_pool, any_gate):
    pool = make_any_pool(1, **any_gate.pool_args)

    async def scenario():
        result = pool.apply_async(helpers.gated, ("done",))
        awaiting = asyncio.ensure_future(value_of(result))
        ticks = 0
        # An await that blocked the loop would never let this count (the
        # gate opens only after it): the test would hit its time limit.
        while ticks < 100:
            await asyncio.sleep(0)
            ticks += 1
        assert not awaiting.done() and not result.ready()
        any_gate.wait_started()
        any_gate.open()
        return await awaiting, ticks

    assert asyncio.run(scenario()) == ("done", 100)


def test_no_thread_is_started_per_await(make_any_pool, any_gate):
    pool = make_any_pool(2, **any_gate.pool_args)
    pool.apply(helpers.square, (1,))  # every thread of the pool is up

    async def scenario():
        before = threading.active_count()
        results = [pool.apply_async(helpers.gated, (x,)) for x in range(30)]
        gathering = asyncio.ensure_future(asyncio.gather(*results))
        await let_the_loop_run()
        assert not gathering.done()
        during = threading.active_count()  # 30 awaits pending
        any_gate.open(30)
        values = await gathering
        for x in range(200):
            assert await pool.apply_async(helpers.square, (x,)) == x * x
        streamed = [value async for value in pool.imap(helpers.square, range(200))]
        return before, during, threading.active_count(), values, streamed

    before, during, after, values, streamed = asyncio.run(scenario())
    assert values == list(range(30))
    assert streamed == [x * x for x in range(200)]
    assert during == before and after == before


def test_a_ready_result_awaits_without_suspending(make_any_pool):
    # Driven by hand, with no loop at all: the first step already ends.
    pool = make_any_pool(1)
    result = pool.apply_async(helpers.square, (7,))
    assert result.get(30) == 49
    with pytest.raises(StopIteration) as stop:
        next(result.__await__())
    assert stop.value.value == 49
    failed = pool.apply_async(helpers.raise_value_error, ("early",))
    failed.wait(30)
    with pytest.raises(ValueError, match="early"):
        next(failed.__await__())
    mapped = pool.map_async(helpers.square, [5])
    mapped.wait(30)
    with pytest.raises(StopIteration) as stop:
        next(mapped.__await__())
    assert stop.value.value == [25]
    iterator = pool.imap(helpers.square, [2, 3], chunksize=2)
    assert iterator.next(timeout=30) == 4  # the whole chunk, [4, 9], is in hand
    with pytest.raises(StopIteration) as stop:
        iterator.__anext__().send(None)
    assert stop.value.value == 9
    with pytest.raises(StopIteration):
        iterator.next(timeout=30)
    with pytest.raises(StopAsyncIteration):
        iterator.__anext__().send(None)


def test_cancelling_the_awaiting_task_leaves_the_pool_working(make_any_pool, any_gate):
    pool = make_any_pool(1, **any_gate.pool_args)

    async def scenario():
        result = pool.apply_async(helpers.gated, ("late",))
        waiting = asyncio.ensure_future(value_of(result))
        await let_the_loop_run()
        assert len(result._waiters) == 1
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert result._waiters == []  # the cancelled task's waiter went with it
        # A timeout of asyncio.wait_for cancels its await the same way (the
        # gated task cannot finish before the gate opens).
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(result, 0.05)
        assert result._waiters == [] and not result.ready()
        # The pool's task was not cancelled: it runs once let through.
        any_gate.wait_started()
        any_gate.open()
        late = await result
        return late, result.get(0), await pool.apply_async(helpers.square, (6,))

    assert asyncio.run(scenario()) == ("late", "late", 36)


def test_cancelling_an_async_for_step_loses_no_item(make_any_pool, any_gate):
    pool = make_any_pool(1, **any_gate.pool_args)

    async def scenario():
        iterator = pool.imap(helpers.gated, range(3))
        step = asyncio.ensure_future(iterator.__anext__())
        await let_the_loop_run()
        step.cancel()
        with pytest.raises(asyncio.CancelledError):
            await step
        assert iterator._waiters == []
        any_gate.open(3)
        return [value async for value in iterator]

    assert asyncio.run(scenario()) == [0, 1, 2]


@pytest.mark.parametrize("chunksize", [1, 3])
def test_async_for_over_imap_and_imap_unordered(make_any_pool, chunksize):
    pool = make_any_pool(2)

    async def scenario():
        ordered = [value async for value in pool.imap(helpers.square, range(50), chunksize=chunksize)]
        unordered = [value async for value in pool.imap_unordered(helpers.square, iter(range(50)), chunksize=chunksize)]
        lazy = [value async for value in pool.imap(lambda x: -x, (x for x in range(20)), chunksize=chunksize)]
        empty = [value async for value in pool.imap(helpers.square, [], chunksize=chunksize)]
        empty_unordered = [value async for value in pool.imap_unordered(helpers.square, iter([]))]
        return ordered, unordered, lazy, empty, empty_unordered

    ordered, unordered, lazy, empty, empty_unordered = asyncio.run(scenario())
    assert ordered == [x * x for x in range(50)]
    assert sorted(unordered) == [x * x for x in range(50)] and len(unordered) == 50
    assert lazy == [-x for x in range(20)]
    assert empty == [] and empty_unordered == []


def test_async_for_raises_an_error_at_its_position_and_goes_on(make_any_pool, kind):
    pool = make_any_pool(2)

    async def scenario():
        seen = []
        iterator = pool.imap(functools.partial(helpers.fail_on, bad=3), range(6))
        with pytest.raises(KeyError, match="bad item 3") as raised:
            async for value in iterator:
                seen.append(value)
        rest = [value async for value in iterator]
        unordered = pool.imap_unordered(functools.partial(helpers.fail_on, bad=2), range(5))
        good = []
        errors = []
        while True:
            try:
                good.append(await unordered.__anext__())
            except StopAsyncIteration:
                break
            except KeyError as exc:
                errors.append(exc)
        return seen, raised.value, rest, sorted(good), errors

    seen, error, rest, good, errors = asyncio.run(scenario())
    assert seen == [0, 1, 2] and rest == [4, 5]
    assert good == [0, 1, 3, 4]
    assert [str(exc) for exc in errors] == ["'bad item 2'"]
    if kind != "threads":
        assert isinstance(error.__cause__, RemoteTraceback)


def test_awaiting_from_loops_in_other_threads(make_any_pool, any_gate):
    pool = make_any_pool(2, **any_gate.pool_args)
    shared = pool.apply_async(helpers.gated, ("shared",))
    outcomes: dict[int, Any] = {}
    about_to_wait = threading.Semaphore(0)

    async def in_thread(number):
        about_to_wait.release()
        value = await shared  # pending or ready: both must work
        squares = [x async for x in pool.imap(helpers.square, range(number + 3))]
        return value, squares, await pool.apply_async(helpers.add, (number, 100))

    def run(number):
        outcomes[number] = asyncio.run(in_thread(number))

    threads = [threading.Thread(target=run, args=(number,)) for number in range(2)]
    for thread in threads:
        thread.start()
    for _ in threads:
        assert about_to_wait.acquire(timeout=60)
    any_gate.open()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()
    assert outcomes == {
        0: ("shared", [0, 1, 4], 100),
        1: ("shared", [0, 1, 4, 9], 101),
    }


def test_a_closed_loop_at_delivery_time_does_not_disturb_the_pool(make_any_pool, any_gate, capfd):
    pool = make_any_pool(1, **any_gate.pool_args)
    result = pool.apply_async(helpers.gated, ("after",))
    iterator = pool.imap(helpers.gated, ["streamed"])
    loop = asyncio.new_event_loop()
    awaiting = loop.create_task(value_of(result))
    stepping = loop.create_task(iterator.__anext__())
    loop.run_until_complete(asyncio.sleep(0))  # both tasks start and park
    assert len(result._waiters) == 1 and len(iterator._waiters) == 1
    loop.close()
    any_gate.open(2)
    assert result.get(30) == "after"
    assert iterator.next(timeout=30) == "streamed"
    # Delivered by the same thread after the wake-ups above: they are over.
    assert pool.apply_async(helpers.square, (5,)).get(30) == 25
    assert "Exception in" not in capfd.readouterr().err
    assert not awaiting.done() and not stepping.done()

"""User code, as a type checker sees it: every ``assert_type`` must hold under mypy.

``test_user_code.py`` checks this file with mypy (0 errors) and runs it, so
that each expectation is about code that really works.  Written as a user
of ``multiprocessing`` would write it, through ``multiprocess``'s names.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import sys
from typing import TYPE_CHECKING, AbstractSet, Any, Iterator, get_origin

from typing_extensions import assert_type

import mp_core
import multiprocess as mp
import multiprocess.dummy
import multiprocess.futures
import multiprocess.managers
import multiprocess.pool
from mp_core.context import BaseContext, ForkContext, ForkServerContext, SpawnContext, SpawnProcess
from mp_managers.managers import SetProxy, SyncManager
from mp_managers.shared_memory import ShareableList, SharedMemory
from mp_pool.pool import ApplyResult, IMapIterator, MapResult, Pool, ThreadPool
from mp_sync.queues import JoinableQueue, Queue, SimpleQueue
from mp_sync.synchronize import Condition, Event, Lock, RLock, Semaphore
from multiprocess.connection import Connection
from multiprocess.process import BaseProcess


def square(x: int) -> int:
    return x * x


def add(x: int, y: int) -> int:
    return x + y


def describe(x: int) -> str:
    return f"<{x}>"


async def offload(pool: Pool) -> None:
    # Awaiting a result gives its value's type; async for gives the items'.
    value = await pool.apply_async(square, (5,))
    assert_type(value, int)
    assert_type(await pool.map_async(describe, [1, 2]), list[str])
    assert_type(await pool.starmap_async(add, [(1, 2)]), list[int])
    seen: list[int] = []
    async for item in pool.imap(square, [1, 2, 3]):
        assert_type(item, int)
        seen.append(item)
    labels = [label async for label in pool.imap_unordered(describe, [4])]
    assert_type(labels, list[str])
    assert (value, seen, labels) == (25, [1, 4, 9], ["<4>"])


class Counter:
    """A progress object of the user's: anything with ``update(n)``."""

    def __init__(self) -> None:
        self.n = 0

    def update(self, n: int) -> None:
        self.n += n


def child(conn: Connection) -> None:
    conn.send(sys.version_info[:2])
    conn.close()


def main() -> None:
    ctx = mp.get_context("spawn")
    assert_type(ctx, SpawnContext)
    assert isinstance(ctx, SpawnContext)
    assert_type(mp.get_context("fork"), ForkContext)
    assert_type(mp.get_context("forkserver"), ForkServerContext)
    assert_type(ctx.get_context("fork"), ForkContext)
    method: str = mp.get_all_start_methods()[-1]
    assert_type(mp.get_context(method), BaseContext)
    # Without a method: the concrete context in use, whose class depends on set_start_method.
    assert_type(mp.get_context(), BaseContext)
    assert_type(mp.get_context(None), BaseContext)
    assert_type(ctx.get_context(), BaseContext)
    assert_type(mp.get_start_method(), str)
    assert_type(mp.get_start_method(allow_none=True), "str | None")
    assert_type(ctx.get_start_method(), str)
    assert_type(mp.get_all_start_methods(), list[str])
    assert_type(mp.set_start_method(mp.get_start_method(), force=True), None)
    assert_type(mp.cpu_count(), int)
    assert_type(mp.current_process(), BaseProcess)

    # Processes and pipes.
    reader, writer = ctx.Pipe(duplex=False)
    assert_type(reader, Connection)
    process = ctx.Process(target=child, args=(writer,))
    assert_type(process, SpawnProcess)
    process.start()
    writer.close()
    assert reader.recv() == sys.version_info[:2]
    process.join(60)
    assert process.exitcode == 0
    reader.close()
    default_process = mp.Process(target=square, args=(3,))
    assert_type(default_process, mp.Process)
    assert_type(mp_core.Process(), mp_core.Process)
    assert_type(mp_core.get_context("fork"), ForkContext)
    assert_type(mp_core.get_start_method(), str)

    # Pools: results typed from the function's return type.
    with ctx.Pool(2) as pool:
        assert_type(pool, Pool)
        assert_type(pool.map(square, range(4)), list[int])
        assert_type(pool.map(describe, [1, 2]), list[str])
        assert_type(pool.starmap(add, [(1, 2), (3, 4)]), list[int])
        assert_type(pool.apply(add, (1, 2)), int)
        pending = pool.apply_async(square, (5,))
        assert_type(pending, ApplyResult[int])
        assert_type(pending.get(60), int)
        mapped = pool.map_async(describe, [1, 2, 3])
        assert_type(mapped, MapResult[str])
        assert_type(mapped.get(60), list[str])
        assert_type(pool.imap(square, [1, 2]), IMapIterator[int])
        assert_type(list(pool.imap_unordered(describe, [7])), list[str])
        assert pool.map(square, range(4)) == [0, 1, 4, 9]
        assert mapped.get(60) == ["<1>", "<2>", "<3>"]
        # progress=: False/None, a dict of bar arguments, or anything with update(n).
        counter = Counter()
        assert_type(pool.map(square, range(4), progress=counter), list[int])
        assert_type(pool.imap(describe, [1], progress=False), IMapIterator[str])
        added = pool.starmap_async(add, [(1, 2)], progress=counter)
        assert_type(added, MapResult[int])
        assert added.get(60) == [3] and counter.n == 5
        asyncio.run(offload(pool))
    with mp.Pool(1) as default_pool:
        assert_type(default_pool, Pool)
    with multiprocess.pool.ThreadPool(2) as threads:
        assert_type(threads, ThreadPool)
        assert threads.map(square, [3]) == [9]

    # The executor: futures and map results typed from the function.
    with multiprocess.futures.ProcessPoolExecutor(2, mp_context=ctx) as executor:
        future = executor.submit(square, 6)
        assert_type(future, concurrent.futures.Future[int])
        assert_type(executor.map(describe, [1, 2], timeout=60), Iterator[str])
        assert_type(executor.map(add, [1], [2], chunksize=1, buffersize=2), Iterator[int])
        assert_type(executor.map(square, [1], progress=None), Iterator[int])
        assert future.result(60) == 36

    # Queues and locks.
    queue = ctx.Queue()
    assert_type(queue, Queue[Any])
    typed: Queue[int] = ctx.Queue()
    typed.put(1)
    assert_type(typed.get(timeout=60), int)
    assert_type(ctx.JoinableQueue(), JoinableQueue[Any])
    simple: SimpleQueue[str] = mp.SimpleQueue()
    simple.put("x")
    assert_type(simple.get(), str)
    simple.close()
    queue.close()
    typed.close()
    assert_type(mp.Lock(), Lock)
    assert_type(mp.RLock(), RLock)
    assert_type(mp.Semaphore(2), Semaphore)
    assert_type(mp.Event(), Event)
    assert_type(mp.Condition(), Condition)
    assert get_origin(Queue[int]) is Queue  # subscripting works at run time too

    # A manager and its shared objects.
    with mp.Manager() as manager:
        assert_type(manager, SyncManager)
        shared = manager.dict()
        shared["a"] = 1
        assert_type(shared["a"], Any)
        items = manager.list([1, 2])
        items.append(3)
        assert len(items) == 3
        tags = manager.set(["a"])
        assert_type(tags, SetProxy)
        tags |= {"b", "c"}
        tags -= {"a": 0}.keys()
        assert_type(tags, SetProxy)  # the augmented assignments change the shared set in place
        union = tags | {"d"}
        assert_type(union, "AbstractSet[Any | str]")  # MutableSet's word; a plain set at run time
        assert isinstance(union, AbstractSet) and union == {"b", "c", "d"}
        assert_type(tags.union(["d"]), set[Any])
        assert_type("b" in tags, bool)
        tags.discard("c")
        assert set(tags) == {"b"} and tags.copy() == {"b"}
        value = manager.Value("i", 7)
        assert value.value == 7
        namespace = manager.Namespace(x=1)
        assert namespace.x == 1
    assert isinstance(multiprocess.managers.BaseManager(), multiprocess.managers.BaseManager)
    counter = mp.Value(ctypes.c_int, 0)
    with counter.get_lock():
        counter.value += 1

    # Shared memory.
    block = SharedMemory(create=True, size=16)
    try:
        assert_type(block.buf, memoryview)
        assert_type(block.name, str)
        block.buf[0] = 1
    finally:
        block.close()
        block.unlink()
    numbers = ShareableList([1, 2, 3])
    try:
        assert numbers[0] == 1
        assert_type(numbers.shm, SharedMemory)
    finally:
        numbers.shm.close()
        numbers.shm.unlink()

    # The thread-backed API.
    dummy_pool = multiprocess.dummy.Pool(2)
    assert_type(dummy_pool, ThreadPool)
    assert dummy_pool.map(square, [2]) == [4]
    dummy_pool.close()
    dummy_pool.join()


if TYPE_CHECKING:  # mp-dask is installed on CPython 3.10+ only: checked by mypy, not run here (tests/dask runs it)

    async def on_a_cluster() -> None:
        # multiprocess.dask.Pool: the same result types as multiprocess.Pool's.
        from multiprocess.dask import Pool as DaskPool

        with DaskPool(2) as pool:
            assert_type(pool.map(square, [1, 2]), list[int])
            assert_type(pool.apply_async(square, (3,)), ApplyResult[int])
            assert_type(pool.map_async(describe, [1]), MapResult[str])
            assert_type(pool.imap(square, [1]), IMapIterator[int])
            assert_type(await pool.apply_async(describe, (4,)), str)


if __name__ == "__main__":
    main()
    print("user code ran")

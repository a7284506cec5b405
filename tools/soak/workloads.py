"""The soak's workloads: each sets up what it uses, runs rounds of operations, and tears down.

A round checks its own results (a wrong answer raises: the soak measures a
library that works, not one that merely does not grow).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List

from . import tasks

#: How long a round may wait for a child's answer before the soak fails (a hang, not slowness).
ANSWER_TIMEOUT = 600.0


@dataclass(frozen=True)
class Workload:
    """``setup(ctx)`` returns a state; ``run(state, n)`` performs ``n`` operations; ``teardown(state)``."""

    name: str
    ops: int
    rounds: int
    setup: Callable[[Any], Any]
    run: Callable[[Any, int], None]
    teardown: Callable[[Any], None]
    what: str

    def round_sizes(self, quick: bool) -> List[int]:
        """The measured rounds' sizes (a hundredth of the operations with ``quick``)."""
        total = max(self.rounds, self.ops // 100 if quick else self.ops)
        size, extra = divmod(total, self.rounds)
        return [size + (1 if i < extra else 0) for i in range(self.rounds)]


# ---------------------------------------------------------------- pools of tasks


def _start_pool(ctx: Any) -> Any:
    return ctx.Pool(2)


def _stop_pool(pool: Any) -> None:
    pool.close()
    pool.join()


def _map_round(pool: Any, n: int) -> None:
    out = pool.map(tasks.add_one, range(n))
    if len(out) != n or out[-1] != n:
        raise AssertionError(f"Pool.map returned {len(out)} results ending {out[-1:]!r} for {n} tasks")


def _imap_unordered_round(pool: Any, n: int) -> None:
    total = 0
    count = 0
    for value in pool.imap_unordered(tasks.add_one, range(n), chunksize=1):
        total += value
        count += 1
    if count != n or total != n * (n + 1) // 2:
        raise AssertionError(f"imap_unordered returned {count} results summing to {total} for {n} tasks")


# ---------------------------------------------------------------- queues


def _queue_setup(ctx: Any, kind: str) -> Dict[str, Any]:
    messages = ctx.Queue() if kind == "Queue" else ctx.SimpleQueue()
    acks = ctx.SimpleQueue()
    consumer = ctx.Process(target=tasks.consume, args=(messages, acks), daemon=True, name=f"soak-{kind}-consumer")
    consumer.start()
    return {"messages": messages, "acks": acks, "consumer": consumer, "reader": acks._reader}


#: Messages put before waiting for the consumer to have them all.  Without
#: it the parent's backlog (Queue's buffer before its feeder thread) grows as
#: far as the race between producer and feeder takes it, and the heap it
#: peaked at stays fragmented: measured here, batches of 10,000 let RSS
#: climb by steps of ~1 MiB over 15 million messages (0.13 byte a message:
#: no object leaks), batches of 1,000 or 10 keep it flat.
BATCH = 1_000


def _queue_round(state: Dict[str, Any], n: int) -> None:
    put = state["messages"].put
    for start in range(0, n, BATCH):
        batch = min(BATCH, n - start)
        for i in range(batch):
            put(i)
        put(tasks.BATCH_END)
        # SimpleQueue.get has no timeout: wait on its pipe, so a dead consumer fails the soak.
        if not state["reader"].poll(ANSWER_TIMEOUT):
            raise AssertionError(
                f"the consumer did not answer within {ANSWER_TIMEOUT:.0f} s (alive: {state['consumer'].is_alive()})"
            )
        count = state["acks"].get()
        if count != batch:
            raise AssertionError(f"the consumer received {count} of {batch} messages")


def _queue_teardown(state: Dict[str, Any]) -> None:
    messages = state["messages"]
    messages.put(None)
    state["consumer"].join(ANSWER_TIMEOUT)
    if state["consumer"].exitcode != 0:
        raise AssertionError(f"the consumer ended with exit code {state['consumer'].exitcode}")
    messages.close()
    if hasattr(messages, "join_thread"):
        messages.join_thread()
    state["acks"].close()
    state["consumer"].close()


# ---------------------------------------------------------------- manager


def _manager_setup(ctx: Any) -> Dict[str, Any]:
    manager = ctx.Manager()
    return {"manager": manager, "dict": manager.dict()}


def _manager_round(state: Dict[str, Any], n: int) -> None:
    d = state["dict"]
    # Four kinds of operation in turn: set, get, membership, delete.
    for i in range(n):
        key = i // 4
        step = i % 4
        if step == 0:
            d[key] = i
        elif step == 1:
            if d[key] != i - 1:
                raise AssertionError(f"the manager's dict lost key {key}")
        elif step == 2:
            if key not in d:
                raise AssertionError(f"the manager's dict lost key {key}")
        else:
            del d[key]
    if len(d) > 1:
        raise AssertionError(f"the manager's dict kept {len(d)} keys")
    d.clear()


def _manager_teardown(state: Dict[str, Any]) -> None:
    del state["dict"]
    state["manager"].shutdown()


# ---------------------------------------------------------------- pools


def _pools_round(ctx: Any, n: int) -> None:
    for _ in range(n):
        pool = ctx.Pool(2)
        pool.close()
        pool.join()


def _nothing(state: Any) -> None:
    pass


WORKLOADS: List[Workload] = [
    Workload("pool.map", 1_000_000, 10, _start_pool, _map_round, _stop_pool, "tiny tasks through Pool(2).map"),
    Workload(
        "pool.imap_unord",
        1_000_000,
        10,
        _start_pool,
        _imap_unordered_round,
        _stop_pool,
        "tiny tasks through Pool(2).imap_unordered(chunksize=1)",
    ),
    Workload(
        "queue",
        1_000_000,
        10,
        lambda ctx: _queue_setup(ctx, "Queue"),
        _queue_round,
        _queue_teardown,
        "messages through a Queue to a child",
    ),
    Workload(
        "simplequeue",
        1_000_000,
        10,
        lambda ctx: _queue_setup(ctx, "SimpleQueue"),
        _queue_round,
        _queue_teardown,
        "messages through a SimpleQueue to a child",
    ),
    Workload(
        "manager.dict",
        100_000,
        10,
        _manager_setup,
        _manager_round,
        _manager_teardown,
        "set/get/contains/del on a SyncManager dict",
    ),
    Workload("pools", 10_000, 10, lambda ctx: ctx, _pools_round, _nothing, "Pool(2) created, closed and joined"),
]

BY_NAME: Dict[str, Workload] = {w.name: w for w in WORKLOADS}

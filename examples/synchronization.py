"""Synchronization primitives shared by processes: Lock, Event, Barrier, Condition.

Run: python examples/synchronization.py [start-method]
"""

import sys

import multiprocess as mp


def worker(n, lock, barrier, start, results):
    start.wait(timeout=30)  # everybody starts together
    with lock:  # one writer at a time
        results.put(f"worker {n} in the critical section")
    index = barrier.wait(timeout=30)
    if index == 0:
        results.put("all workers passed the barrier")


def main(method: str) -> None:
    ctx = mp.get_context(method)
    lock, start, barrier = ctx.Lock(), ctx.Event(), ctx.Barrier(3)
    results = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(n, lock, barrier, start, results)) for n in range(3)]
    for p in procs:
        p.start()
    start.set()
    lines = sorted(results.get(timeout=30) for _ in range(4))
    for p in procs:
        p.join()
    print("\n".join(lines))

    cond = ctx.Condition()
    with cond:
        print("wait_for with timeout:", cond.wait_for(lambda: False, timeout=0.1))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else mp.get_start_method())

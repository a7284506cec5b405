"""Self-test of an installed multiprocess: ``python -m multiprocess.tests``.

Exercises each part of the library under every available start method —
processes, pipes, queues, locks, a pool running a lambda, a manager, shared
memory — prints one line per check and a summary, and exits non-zero if
anything failed.  Meant to finish well within a minute.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Callable

import multiprocess as mp

__all__ = ["main", "CHECKS"]


def _child_sends(conn, value):
    conn.send((os.getpid(), value))
    conn.close()


def check_process(ctx) -> str:
    p = ctx.Process(target=lambda: sys.exit(3))
    p.start()
    p.join(30)
    assert p.exitcode == 3, f"exit code {p.exitcode}"
    return "lambda target, exit code 3"


def check_pipe(ctx) -> str:
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child_sends, args=(w, {"x": [1, 2, 3]}))
    p.start()
    w.close()
    pid, value = r.recv()
    p.join(30)
    assert value == {"x": [1, 2, 3]} and pid == p.pid and p.exitcode == 0
    return "object round trip through a pipe"


def check_queue(ctx) -> str:
    q = ctx.Queue()
    p = ctx.Process(target=lambda q: [q.put(i * i) for i in range(100)], args=(q,))
    p.start()
    got = [q.get(timeout=30) for _ in range(100)]
    p.join(30)
    q.close()
    q.join_thread()
    assert got == [i * i for i in range(100)] and p.exitcode == 0
    return "100 items through a Queue, in order"


def check_lock(ctx) -> str:
    lock = ctx.Lock()
    r, w = ctx.Pipe(duplex=False)
    lock.acquire()
    p = ctx.Process(target=lambda lock, w: w.send(lock.acquire(timeout=0.1)), args=(lock, w))
    p.start()
    held = r.recv()
    p.join(30)
    lock.release()
    assert held is False, "the child acquired a lock the parent held"
    return "a held Lock blocks the child"


def check_pool(ctx) -> str:
    offset = 10
    with ctx.Pool(2) as pool:
        result = pool.map(lambda x: x + offset, range(20))
    pool.join()
    assert result == [x + 10 for x in range(20)]
    return "Pool.map of a closure"


def check_manager(ctx) -> str:
    with ctx.Manager() as manager:
        shared = manager.dict()
        p = ctx.Process(target=lambda d: d.update(answer=42, f=lambda: "lambda in a dict"), args=(shared,))
        p.start()
        p.join(30)
        assert shared["answer"] == 42 and shared["f"]() == "lambda in a dict"
    return "a managed dict written by a child"


def check_shared_memory(ctx) -> str:
    counter = ctx.Value("i", 0)
    procs = [ctx.Process(target=_increment, args=(counter, 200)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert counter.value == 400, counter.value
    from multiprocess import shared_memory

    segment = shared_memory.SharedMemory(create=True, size=16)
    try:
        p = ctx.Process(target=_write_segment, args=(segment.name,))
        p.start()
        p.join(30)
        assert bytes(segment.buf[:5]) == b"hello"
    finally:
        segment.close()
        segment.unlink()
    return "Value under its lock, SharedMemory by name"


def _increment(counter, times):
    for _ in range(times):
        with counter.get_lock():
            counter.value += 1


def _write_segment(name):
    from multiprocess import shared_memory

    segment = shared_memory.SharedMemory(name=name)
    segment.buf[:5] = b"hello"
    segment.close()


CHECKS: list[tuple[str, Callable]] = [
    ("process", check_process),
    ("pipe", check_pipe),
    ("queue", check_queue),
    ("lock", check_lock),
    ("pool", check_pool),
    ("manager", check_manager),
    ("shared memory", check_shared_memory),
]


def main(argv: list[str] | None = None) -> int:
    """Run every check under every start method; return the exit status."""
    methods = (argv if argv is not None else sys.argv[1:]) or mp.get_all_start_methods()
    unknown = [m for m in methods if m not in mp.get_all_start_methods()]
    if unknown:
        print(
            f"unknown start method(s): {', '.join(unknown)}; available: {', '.join(mp.get_all_start_methods())}",
            file=sys.stderr,
        )
        return 2
    print(
        f"multiprocess {mp.__version__} self-test on Python {sys.version.split()[0]}, "
        f"start methods: {', '.join(methods)}"
    )
    failures = 0
    started = time.monotonic()
    for method in methods:
        ctx = mp.get_context(method)
        for name, check in CHECKS:
            t0 = time.monotonic()
            try:
                detail = check(ctx)
                status = "ok  "
            except Exception as exc:
                failures += 1
                status = "FAIL"
                detail = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
            print(f"  [{status}] {method:<10} {name:<14} {detail} ({time.monotonic() - t0:.2f}s)", flush=True)
    total = len(methods) * len(CHECKS)
    print(f"{total - failures} passed, {failures} failed in {time.monotonic() - started:.1f}s")
    return 1 if failures else 0

"""``managers``: ``Manager()`` start and shutdown, proxy round trips, a shared-memory ``Value``.

What is measured, in a fresh worker process per implementation and round,
under fork (the default start method here):

* **Manager() start**: ``m = ctx.Manager()`` (the server process started
  and connected), then **shutdown**: ``m.shutdown()``.  The first start
  of each worker pays for lazily imported modules and is reported apart;
  the steady-state figure is the median of the following starts;
* **round trips** through one manager: ``d[key] = i; d[key]`` on a
  ``m.dict()`` proxy and ``L.acquire(); L.release()`` on a ``m.Lock()``
  proxy, two requests each.  Every operation is timed on its own; a sample
  is the median of ``ops`` of them (after ``ops // 10`` untimed), so a
  preemption moves one operation, not the sample;
* **floor** of a round-trip row: the same two requests as raw bytes, a
  ``send`` of 64 bytes and a ``recv`` of the echo, twice, over a socket
  pair with an ``os.fork()``ed child that echoes them (what a manager's
  Unix socket costs before any library code), timed as the proxies are;
* **Value increment**: ``with v.get_lock(): v.value += 1`` on
  ``ctx.Value('i')`` (shared memory, no manager), timed over loops
  calibrated to run ~``target_time`` seconds, the garbage collector off;
  a sample is the fastest of ``BEST_OF`` such loops.

Targets: every manager round trip ≤ 1.0× the stdlib's time (issue 6) and
≤ 0.5× (issue 19); Value increment ≤ 1.05× (issue 6).  Manager start and shutdown are reported without
a target.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Dict, List

from ..report import SectionResult, Target
from ..runner import BenchContext, short_error
from ..stats import summarize_columns
from ..timing import best_of, calibrate, median_per_op
from . import Section, register

START_METHOD = "fork"
#: A Value sample is the fastest of this many loops.
BEST_OF = 5
ROUND_TRIPS = {"dict": "dict proxy: d[k] = i; d[k]", "lock": "Lock proxy: acquire() + release()"}

# ---------------------------------------------------------------- child side


def measure_lifecycle(api: Any, starts: int) -> Dict[str, Any]:
    """Child side: the first ``Manager()`` start and shutdown, then ``starts`` more of each (seconds)."""
    ctx = api.get_context(START_METHOD)
    out: Dict[str, Any] = {"start": [], "shutdown": []}
    for n in range(starts + 1):
        started = time.perf_counter()
        manager = ctx.Manager()
        started_in = time.perf_counter() - started
        try:
            manager.dict()["alive"] = True  # a request answered: the server works
        finally:
            started = time.perf_counter()
            manager.shutdown()
            shut_in = time.perf_counter() - started
        if n == 0:
            out["first_start"], out["first_shutdown"] = started_in, shut_in
        else:
            out["start"].append(started_in)
            out["shutdown"].append(shut_in)
    return out


def _value_loop(value: Any) -> Any:
    clock = time.perf_counter

    def loop(loops: int) -> float:
        started = clock()
        for _ in range(loops):
            with value.get_lock():
                value.value += 1
        return (clock() - started) / loops

    return loop


REQUEST = b"r" * 64


def raw_round_trips(ops: int, samples: int) -> List[float]:
    """``samples`` medians of ``ops`` raw two-request operations with a forked echoing child (seconds each)."""
    here, there = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            here.close()
            while True:
                data = there.recv(4096)
                if not data:
                    break
                there.sendall(data)
            code = 0
        finally:
            os._exit(code)
    there.close()
    try:
        send, recv, size = here.sendall, here.recv, len(REQUEST)

        def op() -> None:
            for _ in range(2):
                send(REQUEST)
                got = 0
                while got < size:
                    chunk = recv(4096)
                    if not chunk:
                        raise RuntimeError("the echoing child is gone")
                    got += len(chunk)

        median_per_op(op, max(1, ops // 10))
        return [median_per_op(op, ops) for _ in range(samples)]
    finally:
        here.close()
        os.waitpid(pid, 0)


def measure_ops(api: Any, ops: int, samples: int, target_time: float) -> Dict[str, Any]:
    """Child side: ``samples`` median round trips per proxy case, and ``samples`` Value increment times."""
    ctx = api.get_context(START_METHOD)
    out: Dict[str, List[float]] = {"dict": [], "lock": [], "value": []}  # and "floor"
    manager = ctx.Manager()
    try:
        shared = manager.dict()
        lock = manager.Lock()
        counter = [0]

        def dict_op() -> None:
            counter[0] += 1
            shared["key"] = counter[0]
            if shared["key"] != counter[0]:
                raise AssertionError("the dict proxy lost a write")

        def lock_op() -> None:
            lock.acquire()
            lock.release()

        cases = {"dict": dict_op, "lock": lock_op}
        for op in cases.values():
            median_per_op(op, max(1, ops // 10))
        for _ in range(samples):
            for case, op in cases.items():
                out[case].append(median_per_op(op, ops))
    finally:
        manager.shutdown()
    out["floor"] = raw_round_trips(ops, samples)

    value = ctx.Value("i", 0)
    loop = _value_loop(value)
    loops = calibrate(loop, target_time, max_loops=1 << 20)
    done = value.value
    for _ in range(samples):
        out["value"].append(best_of(loop, loops, BEST_OF))
    if value.value != done + samples * BEST_OF * loops:
        raise AssertionError(f"Value counted {value.value - done} increments, not {samples * BEST_OF * loops}")
    return {"samples": out}


MEASURES = {"lifecycle": measure_lifecycle, "ops": measure_ops}

# ---------------------------------------------------------------- parent side


def run(ctx: BenchContext) -> SectionResult:
    result = SectionResult("managers", "Manager() start and shutdown, proxy round trips, shared-memory Value")
    keys = ctx.runner.keys
    columns = [(k, k) for k in keys]

    rounds = ctx.pick(5, 2)
    ops_params = {"ops": ctx.pick(1000, 400), "samples": ctx.pick(3, 2), "target_time": 0.01}
    ctx.log("  managers: round trips, Value")
    ops_results, ops_errors = ctx.collect("managers:ops", ops_params, rounds)
    trips = result.table(
        "round trips through a manager, per operation (median); floor = the same two requests as raw 64-byte "
        "messages echoed by an os.fork()ed child over a socket pair",
        columns + [("floor", "floor")],
        name="round trips",
        ratios=[("ours", "stdlib"), ("upstream", "stdlib"), ("floor", "stdlib"), ("ours", "floor")],
    )
    floors = [s for k in keys for r in ops_results.get(k, []) for s in r["samples"].get("floor", [])]
    samples: Dict[str, Dict[str, List[float]]] = {"floor": {"floor": floors}}
    for case, label in ROUND_TRIPS.items():
        samples[case] = {k: [s for r in ops_results.get(k, []) for s in r["samples"][case]] for k in keys}
        medians, spreads = summarize_columns(dict(samples[case], floor=floors or None))
        trips.add(label, medians, [Target("stdlib", 1.0), Target("stdlib", 0.5)], spreads)
    shared = result.table("shared-memory Value, per operation (median)", columns, name="Value")
    samples["value"] = {k: [s for r in ops_results.get(k, []) for s in r["samples"]["value"]] for k in keys}
    medians, spreads = summarize_columns(samples["value"])
    shared.add("ctx.Value('i'): with v.get_lock(): v.value += 1", medians, [Target("stdlib", 1.05)], spreads)

    life_rounds = ctx.pick(4, 2)
    starts = ctx.pick(5, 3)
    ctx.log("  managers: Manager() start and shutdown")
    life_results, life_errors = ctx.collect("managers:lifecycle", {"starts": starts}, life_rounds)
    life = result.table(f"Manager() lifecycle ({START_METHOD}), median", columns, name="lifecycle")
    lifecycle: Dict[str, Dict[str, List[float]]] = {}
    for case, label in (
        ("start", "Manager() start"),
        ("shutdown", "shutdown()"),
        ("first_start", "first Manager() start of a process"),
        ("first_shutdown", "first shutdown() of a process"),
    ):
        lifecycle[case] = {
            k: [s for r in life_results.get(k, []) for s in (r[case] if isinstance(r[case], list) else [r[case]])]
            for k in keys
        }
        medians, spreads = summarize_columns(lifecycle[case])
        life.add(label, medians, spreads=spreads)

    for what, errors in (("round trips", ops_errors), ("lifecycle", life_errors)):
        for key, message in errors.items():
            result.notes.append(f"{what}/{key}: {short_error(message)}")
    result.notes.append(
        f"round trips: {ops_params['samples'] * rounds} samples per cell over {rounds} interleaved "
        f"rounds, each the median of {ops_params['ops']} operations timed one by one (two requests "
        f"per operation); Value: as many samples, each the fastest of {BEST_OF} loops of "
        f"~{ops_params['target_time'] * 1e3:.0f} ms"
    )
    result.notes.append(
        f"lifecycle: {starts * life_rounds} starts and shutdowns per implementation after the first "
        f"of each worker, over {life_rounds} interleaved rounds; first start/shutdown: "
        f"{life_rounds} samples"
    )
    result.data = {"samples": samples, "lifecycle": lifecycle}
    return result


register(
    Section("managers", "Manager() start, dict/Lock proxy round trips, shared-memory Value increment", run, issue=6)
)

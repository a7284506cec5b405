"""``start``: process start+join latency per start method.

What is measured: the wall time of ``p = ctx.Process(target=noop);
p.start(); p.join()`` for a no-op target (``tools.bench.targets.noop``, in
a module that imports nothing, so a spawned child pays only for the
library under test and for re-importing the worker as its main module), per start method
(fork, spawn, forkserver), in a fresh worker process per implementation and
round.  The first start of each worker is timed apart and left out of the
steady-state figure: it pays for lazily imported modules and, under
forkserver, for starting the fork server — reported separately as "first
start", with the server's cost estimated as first start minus the
steady-state median.

Floor: **interpreter start-up**, ``python -c pass`` of the same
interpreter started with ``posix_spawn`` and waited for, timed in the same
worker right after the spawn samples: what no spawned child can go below.

Targets: ours ≤ 1.05× the stdlib for fork and spawn (issue 2); ≤ 0.8× for
spawn (issue 19).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any, Dict, List

from ..report import SectionResult, Target
from ..runner import BenchContext, short_error
from ..stats import median_or_none, summarize_columns
from ..targets import noop
from . import Section, register

METHODS = ("fork", "spawn", "forkserver")


def _start_join(ctx: Any) -> float:
    started = time.perf_counter()
    p = ctx.Process(target=noop)
    p.start()
    p.join()
    elapsed = time.perf_counter() - started
    if p.exitcode != 0:
        raise RuntimeError(f"child exited with {p.exitcode}")
    return elapsed


def interpreter_start_up() -> float:
    """Seconds to start ``python -c pass`` (this interpreter, its flags) and wait for it to exit."""
    argv = [sys.executable, "-c", "pass"]
    spawn = getattr(os, "posix_spawn", None)
    started = time.perf_counter()
    if spawn is not None:
        pid = spawn(sys.executable, argv, os.environ)
        _, status = os.waitpid(pid, 0)
    else:  # PyPy 3.9 has no os.posix_spawn
        status = subprocess.call(argv)
    elapsed = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"python -c pass exited with status {status}")
    return elapsed


def measure_start_join(api: Any, method: str, repeats: int, floor: bool = False) -> Dict[str, Any]:
    """Child side: one untimed-in-steady-state first start, then ``repeats`` timed ones (and the floor's)."""
    ctx = api.get_context(method)
    first = _start_join(ctx)
    samples = [_start_join(ctx) for _ in range(repeats)]
    floors = [interpreter_start_up() for _ in range(repeats)] if floor else []
    return {"first": first, "samples": samples, "floor": floors}


MEASURES = {"start_join": measure_start_join}


def run(ctx: BenchContext) -> SectionResult:
    result = SectionResult("start", "process start+join latency per start method")
    keys = ctx.runner.keys
    steady = result.table(
        "start+join, steady state (median); floor = interpreter start-up (python -c pass, spawned and waited for)",
        [(k, k) for k in keys] + [("floor", "floor")],
        ratios=[("ours", "stdlib"), ("upstream", "stdlib"), ("floor", "stdlib"), ("ours", "floor")],
    )
    first = result.table(
        "first start+join of a fresh process (forkserver: includes starting the server)", [(k, k) for k in keys]
    )
    repeats = {"fork": ctx.pick(25, 10), "spawn": ctx.pick(4, 3), "forkserver": ctx.pick(10, 5)}
    rounds = ctx.pick(4, 2)
    for method in METHODS:
        ctx.log(f"  start: {method}")
        params = {"method": method, "repeats": repeats[method], "floor": method == "spawn"}
        results, errors = ctx.collect("start:start_join", params, rounds)
        samples: Dict[str, List[float]] = {k: [s for r in results.get(k, []) for s in r["samples"]] for k in keys}
        firsts: Dict[str, List[float]] = {k: [r["first"] for r in results.get(k, [])] for k in keys}
        floors = [s for k in keys for r in results.get(k, []) for s in r.get("floor", [])]
        medians, spreads = summarize_columns(dict(samples, floor=floors or None))
        targets = [Target("stdlib", 1.05)] if method in ("fork", "spawn") else []
        if method == "spawn":
            targets.append(Target("stdlib", 0.8))
        steady.add(method, medians, targets, spreads)
        first_medians = {k: median_or_none(firsts[k]) for k in keys}
        first.add(method, first_medians)
        if method == "forkserver":
            server: Dict[str, float | None] = {}
            for k in keys:
                first_k, steady_k = first_medians[k], medians.get(k)
                server[k] = first_k - steady_k if first_k is not None and steady_k is not None else None
            first.add("forkserver server start (first − steady)", server)
        for key, message in errors.items():
            result.notes.append(f"{method}/{key}: {short_error(message)}")
        result.data[method] = {"samples": samples, "first": firsts, "errors": errors}
    n = {m: repeats[m] * rounds for m in METHODS}
    result.notes.append(
        f"samples per implementation: fork {n['fork']}, spawn {n['spawn']}, "
        f"forkserver {n['forkserver']} (over {rounds} interleaved rounds); "
        f"first start: {rounds} samples; floor (spawn): as many interpreter start-ups, "
        "timed by ours' and the stdlib's workers"
    )
    return result


register(Section("start", "process start+join latency per start method (fork, spawn, forkserver)", run, issue=2))

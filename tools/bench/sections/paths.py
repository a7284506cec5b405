"""``paths``: the pool on every start method — start-up, per-task cost, memory (issue 19).

What is measured, in a fresh worker process per implementation, start
method (fork, spawn, forkserver) and round:

* **first pool**: ``ctx.Pool(2)`` created and a first ``map(add_one,
  range(10))`` returned — what a program that starts a pool pays before
  its first result, the pool's lazy imports included.  Measured in a fresh
  interpreter (``python -c``) that has imported the implementation and
  nothing else: the worker process that runs the other measurements has
  imported the harness (``subprocess``, ``tempfile``, ``signal``,
  ``threading``...), modules the standard library's pool would otherwise
  import in the timed region, and ours not.  The same measure in that
  worker is reported beside it, for information.  Under forkserver this
  includes starting the fork server;
* **memory**, right after: the resident size (``VmRSS``) of the parent
  holding a ``Pool(2)`` and of each idle worker (the median of the two);
* **warmed per-task cost**: on that pool, after untimed warm-up maps,
  ``map(add_one, 200k ints)`` with the default chunksize, ``map(add_one,
  20k ints, chunksize=1)``, and ``map(lambda, 20k ints, chunksize=1)`` (a
  lambda made afresh for every map; the stdlib cannot pickle one, so its
  column holds its figure with the named function, the baseline the
  target is judged against), each timed several times, interleaved;
* **second pool**: after the first is closed, another ``Pool(2)`` + the
  same first map, in the same process: a fork server started by the first
  pool must not be paid again.

Floors, measured in the same worker right after each warmed sample (same
process, same moment's load): C pickle ``dumps`` + ``loads`` of the map's
results, chunk by chunk, with no pool — the transfer no pool can avoid
(system calls and the workers' own work not counted).

Targets (issue 19), ratios of times to the stdlib's under the same start
method: first pool ≤ 0.8; 200k tiny tasks ≤ 0.5; chunksize=1 ≤ 0.33; the
lambda (against the stdlib's named function) ≤ 0.33.  The memory rows
have no target (no regression: ours near the stdlib's).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from typing import Any, Dict, List

from ..report import SIZE, SectionResult, Target
from ..runner import BenchContext, short_error
from ..stats import summarize_columns
from ..targets import add_one, make_lambda, worker_pid
from . import Section, register

METHODS = ("fork", "spawn", "forkserver")
WORKERS = 2
FIRST_MAP = 10
TINY_DEFAULT = 200_000
TINY_CHUNK1 = 20_000
#: Upstream is one to two orders of magnitude slower with chunksize=1: it maps a tenth of those items.
UPSTREAM_SHARES = {"chunk1": 10, "lambda": 10}
#: ``--quick``: every implementation maps 1/4 of the chunksize=1 items (upstream still 1/10)
QUICK_SHARES = {"chunk1": 4, "lambda": 4}

#: case → (label, function kind, items, chunksize); ``None``: the default chunksize.
CASES = {
    "default": (f"map(x+1), {TINY_DEFAULT // 1000}k ints, default chunksize", "named", TINY_DEFAULT, None),
    "chunk1": (f"map(x+1), {TINY_CHUNK1 // 1000}k ints, chunksize=1", "named", TINY_CHUNK1, 1),
    "lambda": (f"map(lambda), {TINY_CHUNK1 // 1000}k ints, chunksize=1", "lambda", TINY_CHUNK1, 1),
}
TARGETS = {"first": 0.8, "default": 0.5, "chunk1": 0.33, "lambda": 0.33}

# ---------------------------------------------------------------- child side


def resident_bytes(pid: int) -> int | None:
    """``VmRSS`` of process ``pid`` in bytes (``None`` where /proc is not there)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _default_chunksize(n: int) -> int:
    chunksize, extra = divmod(n, WORKERS * 4)
    return chunksize + 1 if extra else chunksize


def pickle_floor(n: int, chunksize: int | None) -> float:
    """Seconds of C pickle dumps + loads of a map's results, chunk by chunk, in this process.

    The one transfer no pool can avoid: every result travels back and the
    parent unpickles it under one GIL (the arguments may be a ``range``
    slice, which costs nothing to pickle).  Not in it: system calls, the
    workers' own work.
    """
    size = _default_chunksize(n) if chunksize is None else chunksize
    dumps, loads, protocol = pickle.dumps, pickle.loads, pickle.HIGHEST_PROTOCOL
    results = [list(range(i + 1, min(n, i + size) + 1)) for i in range(0, n, size)]
    started = time.perf_counter()
    for chunk in results:
        loads(dumps(chunk, protocol))
    return time.perf_counter() - started


#: Run with ``python -c`` (argv: implementation key, start method); prints the seconds.
_FRESH_FIRST_POOL = f"""
import sys, time
impl, method = sys.argv[1], sys.argv[2]
mp = __import__("multiprocessing" if impl == "stdlib" else "multiprocess")
from tools.bench.targets import add_one
ctx = mp.get_context(method)
started = time.perf_counter()
pool = ctx.Pool({WORKERS})
out = pool.map(add_one, range({FIRST_MAP}))
elapsed = time.perf_counter() - started
pool.close()
pool.join()
assert out == list(range(1, {FIRST_MAP} + 1)), out
print(repr(elapsed))
"""


def first_pool_in_fresh_interpreter(impl: str, method: str) -> float:
    """Seconds of ``Pool(2)`` + the first map in a new interpreter that has imported only ``impl``."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_FIRST_POOL, impl, method],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the first pool in a fresh interpreter failed: {done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def _first_pool(ctx: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    pool = ctx.Pool(WORKERS)
    try:
        out = pool.map(add_one, range(FIRST_MAP))
        elapsed = time.perf_counter() - started
    except BaseException:
        pool.terminate()
        raise
    if out != list(range(1, FIRST_MAP + 1)):
        pool.terminate()
        raise AssertionError(f"the first map returned {out!r}")
    return pool, elapsed


def _all_workers_answered(pool: Any, timeout: float = 60.0) -> set:
    seen: set = set()
    deadline = time.monotonic() + timeout
    while len(seen) < WORKERS:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(seen)} of {WORKERS} pool workers answered within {timeout:.0f} s")
        seen.update(pool.map(worker_pid, range(WORKERS), 1))
    return seen


def _timed_map(pool: Any, case: str, n: int, lambda_ok: bool) -> float:
    _label, kind, _n, chunksize = CASES[case]
    fn = make_lambda() if kind == "lambda" and lambda_ok else add_one
    data = range(n)
    started = time.perf_counter()
    out = pool.map(fn, data, chunksize)
    elapsed = time.perf_counter() - started
    if len(out) != n or out[-1] != n:
        raise AssertionError(f"{case}: {len(out)} results, the last {out[-1] if out else None!r}")
    return elapsed


def measure_paths(api: Any, method: str, repeats: int, lambda_ok: bool, shares: Dict[str, int]) -> Dict[str, Any]:
    """Child side: first pool, memory, warmed per-task times (and their floors), second pool (seconds, bytes)."""
    ctx = api.get_context(method)
    out: Dict[str, Any] = {"samples": {}, "floors": {}}
    out["first"] = first_pool_in_fresh_interpreter(api.key, method)
    pool, out["first_in_worker"] = _first_pool(ctx)
    try:
        pids = _all_workers_answered(pool)
        out["parent_rss"] = resident_bytes(os.getpid())
        sizes = [size for size in (resident_bytes(pid) for pid in pids) if size is not None]
        out["worker_rss"] = sorted(sizes)[len(sizes) // 2] if sizes else None
        for case in CASES:  # warm-up: lazy imports, the serializer's caches
            _timed_map(pool, case, 4 * WORKERS, lambda_ok)
        for _ in range(repeats):
            for case, (_label, _kind, n, chunksize) in CASES.items():
                n //= shares.get(case, 1)
                out["samples"].setdefault(case, []).append(_timed_map(pool, case, n, lambda_ok) / n)
                pool.map(add_one, range(WORKERS), 1)  # untimed: the results of the last map are freed
                out["floors"].setdefault(case, []).append(pickle_floor(n, chunksize) / n)
        pool.close()
        pool.join()
    finally:
        pool.terminate()
    second, out["second"] = _first_pool(ctx)
    second.close()
    second.join()
    return out


MEASURES = {"paths": measure_paths}

# ---------------------------------------------------------------- parent side


def run(ctx: BenchContext) -> SectionResult:
    result = SectionResult("paths", f"Pool({WORKERS}) on every start method: start-up, per-task cost, memory")
    keys = ctx.runner.keys
    columns = [(k, k) for k in keys]
    # --quick: one fresh process per implementation and method (first and
    # second pool: one sample each), two samples of each warmed map.
    rounds = ctx.pick(3, 1)
    repeats = ctx.pick(3, 2)
    starts = result.table(
        f"Pool({WORKERS}) created + first map of {FIRST_MAP} items (median); second: another pool in the same "
        "process after the first was closed",
        columns,
        name="start",
    )
    per_task = result.table(
        "warmed pool, time per item (median); floor = C pickle dumps + loads of the same map's results, "
        "chunk by chunk, in one process, no pool; the stdlib's lambda figure is its named function's",
        columns + [("floor", "floor")],
        name="per task",
        ratios=[("ours", "stdlib"), ("upstream", "stdlib"), ("floor", "stdlib"), ("ours", "floor")],
    )
    memory = result.table(
        f"resident memory (VmRSS, median) with a Pool({WORKERS}) after its first map",
        columns,
        kind=SIZE,
        name="memory",
    )
    data: Dict[str, Any] = {}
    for method in METHODS:
        ctx.log(f"  paths: {method}")
        cells: Dict[str, Dict[str, List[float]]] = {}
        failed: Dict[str, str] = {}
        for _, impl in ctx.runner.interleaved(rounds):
            if impl.key in failed:
                continue
            shares = UPSTREAM_SHARES if impl.key == "upstream" else ctx.pick({}, QUICK_SHARES)
            params = {"method": method, "repeats": repeats, "lambda_ok": impl.key != "stdlib", "shares": shares}
            try:
                answer = ctx.runner.call(impl, "paths:paths", params)
            except Exception as exc:
                failed[impl.key] = short_error(str(exc))
                ctx.log(f"  paths/{method}/{impl.key}: {failed[impl.key]}")
                continue
            for what in ("first", "first_in_worker", "second", "parent_rss", "worker_rss"):
                if answer.get(what) is not None:
                    cells.setdefault(what, {}).setdefault(impl.key, []).append(answer[what])
            for case, values in answer["samples"].items():
                cells.setdefault(case, {}).setdefault(impl.key, []).extend(values)
            if impl.key != "upstream":
                for case, values in answer["floors"].items():
                    cells.setdefault(f"floor_{case}", {}).setdefault("floor", []).extend(values)
        for key, message in failed.items():
            result.notes.append(f"{method}/{key}: {message}")
        data[method] = cells

        def row(what: str, cells: Dict[str, Dict[str, List[float]]] = cells) -> Dict[str, List[float] | None]:
            return {k: cells.get(what, {}).get(k) for k in keys}

        medians, spreads = summarize_columns(row("first"))
        starts.add(f"{method}: first pool", medians, [Target("stdlib", TARGETS["first"])], spreads)
        medians, spreads = summarize_columns(row("first_in_worker"))
        starts.add(f"{method}: first pool, in the bench's worker (information)", medians, spreads=spreads)
        medians, spreads = summarize_columns(row("second"))
        starts.add(f"{method}: second pool", medians, [Target("stdlib", TARGETS["first"])], spreads)
        for case, (label, _kind, _n, _chunksize) in CASES.items():
            values = row(case)
            values["floor"] = cells.get(f"floor_{case}", {}).get("floor")
            medians, spreads = summarize_columns(values)
            per_task.add(f"{method}: {label}", medians, [Target("stdlib", TARGETS[case])], spreads)
        for what, label in (("parent_rss", "parent"), ("worker_rss", "idle worker")):
            medians, spreads = summarize_columns(row(what))
            memory.add(f"{method}: {label}", medians, spreads=spreads)
    result.notes.append(
        f"{rounds} interleaved rounds (a fresh process each) per start method; warmed maps: {repeats} "
        "samples per round and case; upstream maps 1/10 of the items with chunksize=1 (a time per item "
        "all the same)" + ctx.pick("", "; under --quick the others map 1/4 of them")
    )
    result.notes.append(
        "targets (issue 19): ours/stdlib ≤ 0.8 for a pool's start, ≤ 0.5 per item with the default "
        "chunksize, ≤ 0.33 with chunksize=1 (the lambda against the stdlib's named function)"
    )
    result.data = data
    return result


register(
    Section(
        "paths",
        "Pool(2) on fork, spawn, forkserver: first and second pool, warmed per-task cost, memory",
        run,
        issue=19,
    )
)

"""``futures``: ``ProcessPoolExecutor`` round trips and ``map`` of tiny tasks: ours, the stdlib's and loky's.

What is measured, in a fresh worker process per implementation, start
method and round: a ``ProcessPoolExecutor(2, mp_context=ctx)`` is created
and its first ``map`` of 10 items timed (one sample per round); then it
is warmed up untimed (maps until both workers have answered, then one
small map of every case, so that lazy imports such as dill in the workers
are paid before the clock); then each case is timed on its own, several
times, interleaved case by case; ``shutdown(wait=True)`` ends it.

Cases:

* **start + first map**: the executor created and ``map`` of 10 items
  listed, in a process that has imported the implementation but never
  used it: with a lambda, whatever its serializer imports is paid there
  (ours: dill; loky: cloudpickle); ours is also timed with the named
  function, in a process of its own;
* **submit + result round trip**: ``executor.submit(fn, i).result()``,
  one after the other, ``ROUNDTRIPS`` times; the figure is the time of one
  round trip (the latency of a lone task: nothing else in flight);
* **map, chunksize=1**: ``list(executor.map(fn, range(20,000), chunksize=1))``:
  one task per item, the executor's per-task overhead;
* **map, chunksize=1000**: the same 20,000 items in 20 chunks: the
  per-item cost once the per-task overhead is spread.

``fn`` is ``x + 1``.  Ours runs it as a **lambda** (``targets.make_lambda``,
made afresh for every timed case, so whatever it costs to ship one by value
with dill is in every sample): what issue 16 promises its users.  The stdlib
cannot pickle a lambda, so it runs the **named** module-level function
``targets.add_one`` (pickled by reference), the baseline the target is
judged against.  A second table gives ours with the same named function
(information, no target).  Upstream ``multiprocess`` has no executor: it
is not measured.

loky (``loky.ProcessPoolExecutor`` with ``context=``, in its own venv:
``loky_venv``) runs the lambda, since it ships functions with
cloudpickle: its column is for information, beside ours.  It takes
each start method of the table (its default, ``"loky"``, is fork + exec:
spawn's cost); a method it refuses leaves its cell empty, with a note.

Every start method runs every case; the figures are seconds (medians),
ratios ``ours/stdlib`` of time.  Targets (issue 16): ours with a lambda at
least as fast as the stdlib with a named function on both kinds of
workload, i.e. ``ours/stdlib ≤ 1.0`` in time (≥ 1.0× its throughput).
"""

from __future__ import annotations

import time
from typing import Any, Dict, List

from .. import loky_venv
from ..report import TIME, SectionResult, Target
from ..runner import BenchContext, short_error
from ..stats import summarize_columns
from ..targets import add_one, make_lambda, worker_pid
from . import Section, register

WORKERS = 2
ROUNDTRIPS = 2_000
QUICK_ROUNDTRIPS = 500
MAP_ITEMS = 20_000
QUICK_CHUNK1_ITEMS = 2_000
LARGE_CHUNK = 1_000
METHODS = ("fork", "spawn", "forkserver")

#: case → (operation, chunksize); the number of items (or round trips) is chosen by the parent.
CASES = {
    "start": ("start", None),
    "roundtrip": ("submit", None),
    "map_chunk1": ("map", 1),
    "map_large": ("map", LARGE_CHUNK),
}
#: the function kinds (``lambda``, ``named``) each implementation runs: the stdlib cannot
#: pickle a lambda; loky's named function would add minutes of chunksize=1 maps for a
#: column of information only
KINDS_OF = {"ours": ["lambda", "named"], "stdlib": ["named"], "loky": ["lambda"]}


#: the first map's items in the ``start`` case
START_ITEMS = 10


def labels(roundtrips: int, chunk1_items: int = MAP_ITEMS) -> Dict[str, str]:
    return {
        "start": f"executor({WORKERS}) created + first map of {START_ITEMS} items",
        "roundtrip": f"submit(x+1).result(), one at a time (per round trip, of {roundtrips:,})",
        "map_chunk1": f"map(x+1), {chunk1_items // 1000}k ints, chunksize=1",
        "map_large": f"map(x+1), {MAP_ITEMS // 1000}k ints, chunksize={LARGE_CHUNK}",
    }


# ---------------------------------------------------------------- child side


def _function(kind: str) -> Any:
    return make_lambda() if kind == "lambda" else add_one


def _run_case(executor: Any, case: str, kind: str, n: int) -> float:
    """Seconds of one sample of ``case`` over ``n`` items; the round trip's is per round trip."""
    operation, chunksize = CASES[case]
    fn = _function(kind)
    if operation == "submit":
        submit = executor.submit
        started = time.perf_counter()
        for i in range(n):
            got = submit(fn, i).result()
        elapsed = time.perf_counter() - started
        if got != n:
            raise AssertionError(f"{case}/{kind}: the last round trip returned {got!r}, not {n}")
        return elapsed / n
    started = time.perf_counter()
    out = list(executor.map(fn, range(n), chunksize=chunksize))
    elapsed = time.perf_counter() - started
    if len(out) != n or out[-1] != n:
        raise AssertionError(f"{case}/{kind}: {len(out)} results for {n} items, the last {out[-1:]!r}")
    return elapsed


def _wait_for_workers(executor: Any, timeout: float = 60.0) -> None:
    """Return once every worker of ``executor`` has run a task (small maps until all their pids were seen)."""
    seen: set = set()
    deadline = time.monotonic() + timeout
    while len(seen) < WORKERS:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(seen)} of {WORKERS} executor workers answered within {timeout:.0f} s")
        seen.update(executor.map(worker_pid, range(50 * WORKERS), chunksize=1))


def measure_futures(
    api: Any, method: str, kinds: List[str], items: Dict[str, int], repeats: Dict[str, int]
) -> Dict[str, Any]:
    """Child side: seconds per sample of every ``(case, kind)`` (``samples["<case>/<kind>"]``).

    The ``start`` case (the executor created and its first map of
    ``START_ITEMS`` items listed) is one sample, of the first of
    ``kinds``.  ``items`` maps the other cases (``CASES``) to their number
    of items (round trips for ``roundtrip``); each is timed
    ``repeats[case]`` times per kind, the cases and kinds interleaved.  A
    case that fails is recorded in ``errors`` and left out, not raised.
    """
    executor_class = api.process_pool_executor()
    ctx = api.get_context(method)
    out: Dict[str, Any] = {"samples": {}, "errors": {}}
    pairs = [(case, kind) for case in items if case != "start" for kind in kinds]
    first = _function(kinds[0])
    started = time.perf_counter()
    executor = executor_class(WORKERS, mp_context=ctx)
    try:
        try:
            got = list(executor.map(first, range(START_ITEMS)))
            elapsed = time.perf_counter() - started
            if got != list(range(1, START_ITEMS + 1)):
                raise AssertionError(f"the first map returned {got!r}")
        except Exception as exc:
            out["errors"][f"start/{kinds[0]}"] = f"{type(exc).__name__}: {exc}"
        else:
            out["samples"][f"start/{kinds[0]}"] = [elapsed]
        _wait_for_workers(executor)
        ready = []
        for case, kind in pairs:
            try:
                _run_case(executor, case, kind, 10 * WORKERS)
            except Exception as exc:
                out["errors"][f"{case}/{kind}"] = f"{type(exc).__name__}: {exc}"
            else:
                ready.append((case, kind))
        for repeat in range(max(repeats.values(), default=0)):
            for case, kind in list(ready):
                if repeat >= repeats.get(case, 1):
                    continue
                key = f"{case}/{kind}"
                try:
                    elapsed = _run_case(executor, case, kind, items[case])
                except Exception as exc:
                    out["errors"][key] = f"{type(exc).__name__}: {exc}"
                    out["samples"].pop(key, None)
                    ready.remove((case, kind))
                    continue
                out["samples"].setdefault(key, []).append(elapsed)
        started = time.perf_counter()
        executor.shutdown(wait=True)
        out["shutdown"] = time.perf_counter() - started
    finally:
        # a no-op once shut down; loky's shutdown cancels with kill_workers= (it has no cancel_futures=)
        if api.key == "loky":
            executor.shutdown(wait=True, kill_workers=True)
        else:
            executor.shutdown(wait=True, cancel_futures=True)
    return out


MEASURES = {"futures": measure_futures}

# ---------------------------------------------------------------- parent side


def run(ctx: BenchContext) -> SectionResult:
    result = SectionResult("futures", f"ProcessPoolExecutor({WORKERS}): submit round trips, map of tiny tasks")
    impls = [impl for impl in ctx.runner.implementations if impl.key in ("ours", "stdlib")]
    if ctx.quick:
        # its chunksize=1 maps would take as long as the rest of the section
        result.notes.append("loky: in the default run only (not under --quick)")
    else:
        impls = loky_venv.with_loky(impls, ctx.log, result.notes)
    keys = [impl.key for impl in impls]
    if ctx.runner.get("upstream") is not None:
        result.notes.append("upstream multiprocess has no ProcessPoolExecutor: not measured")
    rounds, repeats = ctx.pick(3, 1), ctx.pick(2, 2)
    roundtrips = ctx.pick(ROUNDTRIPS, QUICK_ROUNDTRIPS)
    # (the stdlib's chunksize=1 map costs ~0.3 ms an item: --quick maps fewer)
    chunk1_items = ctx.pick(MAP_ITEMS, QUICK_CHUNK1_ITEMS)
    items = {"start": START_ITEMS, "roundtrip": roundtrips, "map_chunk1": chunk1_items, "map_large": MAP_ITEMS}
    # the large-chunk map takes ~0.05 s: at the mercy of any other process, so more samples
    repeats_by_case = {"roundtrip": repeats, "map_chunk1": repeats, "map_large": 3 * repeats}
    names = labels(roundtrips, chunk1_items)
    # method → case → "<impl>/<kind>" → samples
    samples: Dict[str, Dict[str, Dict[str, List[float]]]] = {}
    for method in METHODS:
        ctx.log(f"  futures: {method}")
        failed: Dict[str, str] = {}
        for _, impl in ctx.runner.interleaved(rounds, impls):
            if impl.key in failed:
                continue
            calls = [{"method": method, "kinds": KINDS_OF[impl.key], "items": items, "repeats": repeats_by_case}]
            if impl.key == "ours":
                # the start with the named function too, in a process of its own (the first
                # map with a lambda also pays for importing dill in the parent)
                calls.append({"method": method, "kinds": ["named"], "items": {"start": START_ITEMS}, "repeats": {}})
            for params in calls:
                try:
                    answer = ctx.runner.call(impl, "futures:futures", params)
                except Exception as exc:
                    failed[impl.key] = short_error(str(exc))
                    ctx.log(f"  futures/{method}/{impl.key}: {failed[impl.key]}")
                    break
                for key, values in answer["samples"].items():
                    case, kind = key.split("/")
                    cell = samples.setdefault(method, {}).setdefault(case, {})
                    cell.setdefault(f"{impl.key}/{kind}", []).extend(values)
                for key, message in answer["errors"].items():
                    note = f"{method} {key} / {impl.key}: {short_error(message)}"
                    if note not in result.notes:
                        result.notes.append(note)
        for key, message in failed.items():
            result.notes.append(f"{method}/{key}: {message}")

    ratios = [(key, "stdlib") for key in keys if key != "stdlib"]
    lam = result.table(
        "ours (and loky) with a lambda, the stdlib with a named function (it cannot pickle a lambda): "
        "seconds (median; the round trip: per round trip)",
        [(k, "stdlib (named fn)" if k == "stdlib" else f"{k} (lambda)") for k in keys],
        kind=TIME,
        ratios=ratios,
        name="lambda",
    )
    named = result.table(
        "ours and the stdlib with the same named function: seconds (median; the round trip: per round trip)",
        [(k, k) for k in keys if k != "loky"],
        kind=TIME,
        ratios=[("ours", "stdlib")],
        name="named",
    )
    for method in METHODS:
        per_case = samples.get(method, {})
        for case in CASES:
            cells = per_case.get(case, {})
            medians, spreads = summarize_columns(
                {
                    "ours": cells.get("ours/lambda"),
                    "stdlib": cells.get("stdlib/named"),
                    "loky": cells.get("loky/lambda"),
                }
            )
            # the start row is for information: issue 16's targets are the warmed executor's
            targets = [] if case == "start" else [Target("stdlib", 1.0)]
            lam.add(f"{method}: {names[case]}", medians, targets, spreads)
            medians, spreads = summarize_columns({key: cells.get(f"{key}/named") for key in ("ours", "stdlib")})
            named.add(f"{method}: {names[case]}", medians, spreads=spreads)
    result.notes.append(
        f"{rounds} interleaved rounds (a fresh executor each) × {repeats} samples per cell "
        f"({3 * repeats} for chunksize={LARGE_CHUNK}); {WORKERS} workers"
    )
    result.data = {"samples": samples, "items": items}
    return result


register(
    Section(
        "futures",
        "ProcessPoolExecutor: start + first map, submit+result round trip, map of 20k tiny tasks "
        "(chunksize 1 and 1000), ours vs stdlib (loky beside them)",
        run,
        issue=16,
    )
)

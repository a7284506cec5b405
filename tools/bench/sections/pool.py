"""``pool``: ``Pool.map`` throughput with tiny tasks, closures and ~100 KB payloads.

What is measured, in a fresh worker process per implementation, start
method and round: a ``ctx.Pool(2)`` is started — timed until each of its
workers has returned a result (``pool start``, reported apart) — and
warmed up untimed (a ``chunksize=1`` map, and one small map of every case,
so that lazy imports such as dill in the workers are paid before the
clock); then each case's ``pool.map`` is timed on its own, several times,
interleaved case by case (the ~25 ms default-chunksize maps more often
than the others); ``close()`` + ``join()`` is timed at the end.

Cases (the functions live in ``tools.bench.targets``, which imports
nothing, so spawned workers can import them cheaply):

* **tiny tasks, named function**: ``map(add_one, 200k ints)`` with the
  default chunksize, and ``map(add_one, 20k ints, chunksize=1)``;
  ``add_one`` is a module-level function (pickled by reference);
* **tiny tasks, closure**: the same maps with ``make_adder(1)``, a real
  closure (``make_adder.<locals>.add``) made afresh for every timed map, so
  whatever it costs to ship it is paid in every sample.  The stdlib cannot
  pickle it: its column holds its *named-function* figure, the baseline
  the target is judged against;
* **payloads**: ``map(echo, 2,000 payloads)``, each a distinct list of
  12,500 ints around 2**40 (about 100 KB when pickled; the lists share
  their int objects on the sending side), echoed back.  Figures are
  payload bytes (C pickle size, see the notes) echoed per second.  Right
  after each timed payload map, the same child times the **serialization
  floor**: C pickle ``dumps`` of every payload and ``loads`` of the result,
  in one process, no pool.  That is the work the pool's parent cannot
  avoid (it pickles the arguments and unpickles the results, under one
  GIL), so ``floor/stdlib`` is the highest payload ratio any parent that
  serializes with C pickle can reach on this machine, and ``ours/floor``
  how close we come to it.

Tiny-task figures are items per second.  Fork (the default start method on
Linux up to 3.13) runs every case; spawn runs the tiny-task maps.  Where
upstream is one to two orders of magnitude slower, it maps fewer items to
keep the run short (closures with ``chunksize=1``: a tenth; payloads: a
twentieth) — a throughput, so still comparable; the notes say so.  After
each timed map an untimed tiny map lets the pool settle (see
``measure_pool``).  The garbage collector stays on, as in a user's program.

Targets (issue 5), ratios to the stdlib under the same start method: tiny
tasks ≥ 1.0× its throughput in both chunk modes; closures ≥ 0.8× its
throughput with a named function; payloads ≥ 1.3× its MB/s.
"""

from __future__ import annotations

import pickle
import time
from typing import Any, Dict, List

from ..report import OPS, RATE, SectionResult, Target
from ..runner import BenchContext, Implementation, short_error
from ..stats import summarize_columns
from ..targets import add_one, echo, make_adder, worker_pid
from . import Section, register

WORKERS = 2
TINY_DEFAULT = 200_000
TINY_CHUNK1 = 20_000
PAYLOADS = 2_000
QUICK_PAYLOADS = 500
PAYLOAD_LEN = 12_500
#: Upstream maps 1/N of the items in the cases where it is one to two orders of magnitude slower.
UPSTREAM_SHARE = {"closure_chunk1": 10, "payload": 20}
#: ``--quick`` maps 1/N of the chunksize=1 items (the figures are per item all the same).
QUICK_CHUNK1_SHARE = 4
#: Ours and the stdlib repeat the (short) default-chunksize maps this many times more.
DEFAULT_CHUNK_EXTRA = 3

#: case → (function kind, item kind, chunksize); the number of items is chosen by the parent.
CASES = {
    "named_default": ("named", "int", None),
    "named_chunk1": ("named", "int", 1),
    "closure_default": ("closure", "int", None),
    "closure_chunk1": ("closure", "int", 1),
    "payload": ("named", "payload", None),
}


def payload_label(count: int) -> str:
    """The label of the payload case with ``count`` payloads."""
    return f"map(echo), {count:,} × ~100 KB lists of ints"


LABELS = {
    "named_default": f"map(x+1), {TINY_DEFAULT // 1000}k ints, default chunksize",
    "named_chunk1": f"map(x+1), {TINY_CHUNK1 // 1000}k ints, chunksize=1",
    "closure_default": f"closure map(x+1), {TINY_DEFAULT // 1000}k ints, default chunksize",
    "closure_chunk1": f"closure map(x+1), {TINY_CHUNK1 // 1000}k ints, chunksize=1",
    "payload": payload_label(PAYLOADS),
}
#: The stdlib's figure a closure case is judged against.
CLOSURE_BASELINE = {"closure_default": "named_default", "closure_chunk1": "named_chunk1"}

# ---------------------------------------------------------------- child side


def payload_base() -> List[int]:
    """The ints every payload list holds: large enough to take 8 bytes each when pickled."""
    return [2**40 + 7919 * i for i in range(PAYLOAD_LEN)]


def _function(kind: str) -> Any:
    return add_one if kind == "named" else make_adder(1)


def _inputs(items: str, n: int) -> List[Any]:
    if items == "int":
        return list(range(n))
    base = payload_base()
    return [list(base) for _ in range(n)]


def _run_case(pool: Any, case: str, n: int, data: List[Any] | None = None) -> float:
    """Seconds of one ``pool.map`` of ``case`` over ``n`` items (inputs built before the clock)."""
    kind, items, chunksize = CASES[case]
    if data is None:
        data = _inputs(items, n)
    fn = echo if items == "payload" else _function(kind)
    started = time.perf_counter()
    out = pool.map(fn, data, chunksize)
    elapsed = time.perf_counter() - started
    if len(out) != n:
        raise AssertionError(f"{case}: {len(out)} results for {n} items")
    if items == "int" and out[-1] != n:
        raise AssertionError(f"{case}: the last result is {out[-1]!r}, not {n}")
    if items == "payload" and (out[0] != data[0] or out[-1][-1] != data[-1][-1] or out[-1] is data[-1]):
        raise AssertionError(f"{case}: the payloads did not come back intact")
    return elapsed


def _serialization_floor(data: List[Any]) -> float:
    """Seconds to C-pickle every payload and unpickle it again in this process: a pool parent's minimum."""
    dumps, loads, protocol = pickle.dumps, pickle.loads, pickle.DEFAULT_PROTOCOL
    started = time.perf_counter()
    out = [loads(dumps(item, protocol)) for item in data]
    elapsed = time.perf_counter() - started
    if out[-1] != data[-1]:
        raise AssertionError("the serialization floor did not round-trip the payloads")
    return elapsed


def _wait_for_workers(pool: Any, timeout: float = 60.0) -> None:
    """Return once every worker of ``pool`` has run a task (tiny maps until all their pids were seen)."""
    seen: set = set()
    deadline = time.monotonic() + timeout
    while len(seen) < WORKERS:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(seen)} of {WORKERS} pool workers answered within {timeout:.0f} s")
        seen.update(pool.map(worker_pid, range(WORKERS), 1))


def measure_pool(
    api: Any, method: str, cases: Dict[str, int], repeats: Dict[str, int], floor: bool = False
) -> Dict[str, Any]:
    """Child side: pool start, rates of every case (items/s; payload: bytes/s), pool shutdown.

    With ``floor``, each payload sample is followed by one of the
    serialization floor (``_serialization_floor``), stored as the case
    ``payload_floor``.

    Each case is timed ``repeats[case]`` times, the cases interleaved.

    ``cases`` maps a case name (``CASES``) to its number of items.  A case
    that fails is recorded in ``errors`` and left out, not raised.
    """
    ctx = api.get_context(method)
    out: Dict[str, Any] = {
        "samples": {},
        "errors": {},
        "items": dict(cases),
        "payload_bytes": len(pickle.dumps(payload_base(), pickle.DEFAULT_PROTOCOL)),
    }
    started = time.perf_counter()
    pool = ctx.Pool(WORKERS)
    try:
        _wait_for_workers(pool)
        out["start"] = time.perf_counter() - started
        pool.map(add_one, range(200), 1)
        ready = []
        for case in cases:
            try:
                _run_case(pool, case, 4 * WORKERS)
            except Exception as exc:
                out["errors"][case] = f"{type(exc).__name__}: {exc}"
            else:
                ready.append(case)
        payloads = _inputs("payload", cases["payload"]) if "payload" in ready else None
        for repeat in range(max(repeats.values(), default=0)):
            for case in list(ready):
                if repeat >= repeats.get(case, 1):
                    continue
                n = cases[case]
                try:
                    elapsed = _run_case(pool, case, n, payloads if case == "payload" else None)
                except Exception as exc:
                    out["errors"][case] = f"{type(exc).__name__}: {exc}"
                    out["samples"].pop(case, None)
                    ready.remove(case)
                    continue
                units = n * out["payload_bytes"] if case == "payload" else n
                out["samples"].setdefault(case, []).append(units / elapsed)
                # Untimed: a pool may drop its last reference to the results a
                # moment after map() returned, and their deallocation (~0.1 s
                # for the payloads) must not land in the next timing.
                pool.map(add_one, range(WORKERS), 1)
                if case == "payload" and floor:
                    # Paired with the sample just taken: same process, same moment's load.
                    rate = units / _serialization_floor(payloads)
                    out["samples"].setdefault("payload_floor", []).append(rate)
        started = time.perf_counter()
        pool.close()
        pool.join()
        out["shutdown"] = time.perf_counter() - started
    finally:
        pool.terminate()
    return out


MEASURES = {"pool": measure_pool}

# ---------------------------------------------------------------- parent side


def _cases_for(impl: Implementation, method: str, quick: bool) -> Dict[str, int]:
    """What ``impl`` maps under ``method``: the number of items per case."""
    cases = {
        "named_default": TINY_DEFAULT,
        "named_chunk1": TINY_CHUNK1,
        "closure_default": TINY_DEFAULT,
        "closure_chunk1": TINY_CHUNK1,
        "payload": PAYLOADS,
    }
    if quick:
        cases["payload"] = QUICK_PAYLOADS
        cases["named_chunk1"] //= QUICK_CHUNK1_SHARE
        cases["closure_chunk1"] //= QUICK_CHUNK1_SHARE
    if method != "fork":
        del cases["payload"]
    if impl.key == "stdlib":
        del cases["closure_default"], cases["closure_chunk1"]
    if impl.key == "upstream":
        for case, share in UPSTREAM_SHARE.items():
            if case in cases:
                cases[case] //= share
    return cases


def run(ctx: BenchContext) -> SectionResult:
    result = SectionResult("pool", f"Pool({WORKERS}).map: tiny tasks, closures, ~100 KB payloads")
    keys = ctx.runner.keys
    # method → (rounds, chunksize=1 repeats per round).  A map with the
    # default chunksize takes ~25 ms, at the mercy of any other process on
    # a busy machine: DEFAULT_CHUNK_EXTRA times as many samples.  Payloads
    # (fork only) are the long part.
    methods = {"fork": (ctx.pick(3, 2), ctx.pick(2, 1)), "spawn": (ctx.pick(2, 1), ctx.pick(2, 1))}
    payload_repeats = ctx.pick(2, 1)
    labels = dict(LABELS, payload=payload_label(ctx.pick(PAYLOADS, QUICK_PAYLOADS)))
    samples: Dict[str, Dict[str, Dict[str, List[float]]]] = {}
    starts: Dict[str, Dict[str, List[float]]] = {}
    shutdowns: Dict[str, Dict[str, List[float]]] = {}
    items: Dict[str, Dict[str, Dict[str, int]]] = {}
    payload_bytes = None
    for method, (rounds, repeats) in methods.items():
        ctx.log(f"  pool: {method}")
        failed: Dict[str, str] = {}
        for _, impl in ctx.runner.interleaved(rounds):
            if impl.key in failed:
                continue
            cases = _cases_for(impl, method, ctx.quick)
            extra = 1 if impl.key == "upstream" else DEFAULT_CHUNK_EXTRA  # the targets compare ours and stdlib
            repeats_by_case = {case: repeats * extra if case.endswith("_default") else repeats for case in cases}
            if "payload" in cases:
                repeats_by_case["payload"] = payload_repeats
            items.setdefault(method, {})[impl.key] = cases
            try:
                params = {"method": method, "cases": cases, "repeats": repeats_by_case, "floor": impl.key != "upstream"}
                answer = ctx.runner.call(impl, "pool:pool", params)
            except Exception as exc:
                failed[impl.key] = short_error(str(exc))
                ctx.log(f"  pool/{method}/{impl.key}: {failed[impl.key]}")
                continue
            payload_bytes = answer["payload_bytes"]
            for case, values in answer["samples"].items():
                samples.setdefault(method, {}).setdefault(case, {}).setdefault(impl.key, []).extend(values)
            starts.setdefault(method, {}).setdefault(impl.key, []).append(answer["start"])
            shutdowns.setdefault(method, {}).setdefault(impl.key, []).append(answer["shutdown"])
            for case, message in answer["errors"].items():
                note = f"{method} {labels[case]} / {impl.key}: {short_error(message)}"
                if note not in result.notes:
                    result.notes.append(note)
        for key, message in failed.items():
            result.notes.append(f"{method}/{key}: {message}")

    columns = [(k, k) for k in keys]
    named = result.table("tiny tasks, named function: items per second (median)", columns, kind=OPS, name="named")
    closure = result.table(
        "tiny tasks, closure: items per second (median); the stdlib cannot pickle a "
        "closure: its column is its named-function figure, the baseline",
        [(k, "stdlib (named fn)" if k == "stdlib" else k) for k in keys],
        kind=OPS,
        name="closure",
    )
    payload = result.table(
        "payloads echoed, bytes per second (median); floor = C pickle dumps + loads of the "
        "same payloads in one process, no pool (ours' and the stdlib's children, pooled): "
        "the most a pool parent that serializes with C pickle can reach",
        columns + [("floor", "floor")],
        kind=RATE,
        name="payload",
        ratios=[("ours", "stdlib"), ("upstream", "stdlib"), ("floor", "stdlib"), ("ours", "floor")],
    )
    for method in methods:
        per_case = samples.get(method, {})
        for case in ("named_default", "named_chunk1"):
            medians, spreads = summarize_columns({k: per_case.get(case, {}).get(k) for k in keys})
            named.add(f"{method}: {labels[case]}", medians, [Target("stdlib", 1.0, at_least=True)], spreads)
        for case, baseline in CLOSURE_BASELINE.items():
            cells = {k: per_case.get(case, {}).get(k) for k in keys}
            cells["stdlib"] = per_case.get(baseline, {}).get("stdlib")
            medians, spreads = summarize_columns(cells)
            closure.add(f"{method}: {labels[case]}", medians, [Target("stdlib", 0.8, at_least=True)], spreads)
        if method == "fork":
            cells = {k: per_case.get("payload", {}).get(k) for k in keys}
            floors = [x for k in keys for x in per_case.get("payload_floor", {}).get(k, [])]
            cells["floor"] = floors or None
            medians, spreads = summarize_columns(cells)
            payload.add(f"{method}: {labels['payload']}", medians, [Target("stdlib", 1.3, at_least=True)], spreads)

    lifecycle = result.table(
        f"pool lifecycle (median): start = Pool({WORKERS}) until every worker answered; shutdown = close() + join()",
        columns,
        name="lifecycle",
    )
    for method in methods:
        for what, table in (("start", starts), ("shutdown", shutdowns)):
            medians, spreads = summarize_columns({k: table.get(method, {}).get(k) for k in keys})
            lifecycle.add(f"{method}: pool {what}", medians, spreads=spreads)

    if payload_bytes:
        result.notes.append(
            f"payload: a list of {PAYLOAD_LEN:,} ints, {payload_bytes / 1000:.1f} kB pickled "
            f"(C pickle, protocol {pickle.DEFAULT_PROTOCOL}); MiB/s counts that size once per "
            "payload echoed"
        )
    scaled = {case for per_impl in items.values() for case in per_impl.get("upstream", {}) if case in UPSTREAM_SHARE}
    if scaled:
        result.notes.append(
            "upstream maps fewer items where it is very slow (a throughput all the same): "
            + "; ".join(f"{labels[case]}: 1/{UPSTREAM_SHARE[case]}" for case in sorted(scaled))
        )
    if ctx.quick:
        result.notes.append(f"--quick: the chunksize=1 maps are of 1/{QUICK_CHUNK1_SHARE} of the items")
    for method, (rounds, repeats) in methods.items():
        result.notes.append(
            f"{method}: {rounds * repeats * DEFAULT_CHUNK_EXTRA} samples per cell with the default "
            f"chunksize (upstream {rounds * repeats}), {rounds * repeats} with chunksize=1"
            + (f", {rounds * payload_repeats} of payloads" if method == "fork" else "")
            + f", over {rounds} interleaved rounds (a fresh pool each); pool start/shutdown: "
            f"{rounds} samples"
        )
    result.data = {
        "samples": samples,
        "start": starts,
        "shutdown": shutdowns,
        "items": items,
        "payload_bytes": payload_bytes,
    }
    return result


register(Section("pool", "Pool.map throughput: tiny tasks, closures, ~100 KB payloads (fork, spawn)", run, issue=5))

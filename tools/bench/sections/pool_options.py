"""``pool-options``: what the pool's optional machinery costs when it is used (issue 17).

What is measured, in a fresh worker process of ours per round: a
``ctx.Pool(2)`` (fork) is started and warmed up untimed; then the tiny-task
maps of the ``pool`` section are timed in pairs, the plain call and the same
call with one option switched on, back to back in alternating order (so
that a drift of the machine's load falls on both halves alike):

* ``map(add_one, 200k ints)``, default chunksize, and
  ``map(add_one, 20k ints, chunksize=1)``, where per-chunk costs weigh most;
* options: ``progress=`` a counting object (an ``update(n)`` that adds ``n``:
  the cheapest object a user can pass, so what is left is the pool's own
  cost of reporting each finished chunk).

Figures are items per second (median over every sample of every round);
the ratio is option/plain, and the target (issue 17) is at most 5% slower:
≥ 0.95.  The notes give the median of the per-pair ratios as well, the
figure least moved by the machine's load.  Only ours is measured: neither
the standard library nor upstream has these options; the cost is paid in
the pool's parent (the manager thread), the same under every start method.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List

from ..report import OPS, SectionResult, Target
from ..runner import BenchContext, short_error
from ..stats import median, summarize_columns
from ..targets import add_one, worker_pid
from . import Section, register

WORKERS = 2
#: case → (items, chunksize); the tiny-task maps of the ``pool`` section.
CASES = {
    "default": (200_000, None),
    "chunk1": (20_000, 1),
}
LABELS = {
    "default": "map(x+1), 200k ints, default chunksize",
    "chunk1": "map(x+1), 20k ints, chunksize=1",
}
#: option → its label; each is timed against the plain call.
OPTIONS = {
    "progress": "progress= a counting object",
    "task_timeout": "task_timeout=60 (never hit)",
}


class CountingProgress:
    """The cheapest ``progress=`` object: counts the items it is told about."""

    def __init__(self) -> None:
        self.n = 0

    def update(self, n: int) -> None:
        self.n += n


def _option_arguments(option: str) -> Dict[str, Any]:
    """Fresh keyword arguments that switch ``option`` on for one call (and what to check after it)."""
    if option == "progress":
        return {"progress": CountingProgress()}
    if option == "task_timeout":
        return {"task_timeout": 60.0}
    raise ValueError(f"unknown option {option!r}")


def _timed_map(pool: Any, n: int, chunksize: Any, kwds: Dict[str, Any]) -> float:
    data = list(range(n))
    started = time.perf_counter()
    out = pool.map(add_one, data, chunksize, **kwds)
    elapsed = time.perf_counter() - started
    if len(out) != n or out[-1] != n:
        raise AssertionError(f"map of {n} items returned {len(out)} results ending in {out[-1:]!r}")
    progress = kwds.get("progress")
    if progress is not None and progress.n != n:
        raise AssertionError(f"progress counted {progress.n} of {n} items")
    return elapsed


def measure_options(api: Any, method: str, repeats: Dict[str, int]) -> Dict[str, Any]:
    """Child side: per case and option, ``repeats[case]`` pairs of (plain, option) rates in items per second."""
    ctx = api.get_context(method)
    samples: Dict[str, Dict[str, Dict[str, List[float]]]] = {}
    pool = ctx.Pool(WORKERS)
    try:
        seen: set = set()
        while len(seen) < WORKERS:
            seen.update(pool.map(worker_pid, range(WORKERS), 1))
        for n, chunksize in CASES.values():  # untimed: every path warmed up once
            for option in OPTIONS:
                _timed_map(pool, n // 10, chunksize, _option_arguments(option))
            _timed_map(pool, n // 10, chunksize, {})
        for repeat in range(max(repeats.values())):
            for case, (n, chunksize) in CASES.items():
                if repeat >= repeats[case]:
                    continue
                for option in OPTIONS:
                    pair: Dict[str, float] = {}
                    order = ("plain", option) if repeat % 2 == 0 else (option, "plain")
                    for which in order:
                        kwds = {} if which == "plain" else _option_arguments(option)
                        pair[which] = n / _timed_map(pool, n, chunksize, kwds)
                        pool.map(add_one, range(WORKERS), 1)  # untimed: let the pool settle
                    per_case = samples.setdefault(case, {}).setdefault(option, {})
                    for which, rate in pair.items():
                        per_case.setdefault(which, []).append(rate)
        pool.close()
        pool.join()
    finally:
        pool.terminate()
    return {"samples": samples}


MEASURES = {"options": measure_options}


def run(ctx: BenchContext) -> SectionResult:
    result = SectionResult("pool-options", f"Pool({WORKERS}).map with an option switched on vs plain (ours)")
    ours = ctx.runner.get("ours")
    if ours is None:
        result.notes.append("ours is not part of this run")
        return result
    rounds = ctx.pick(3, 1)
    repeats = {"default": ctx.pick(12, 8), "chunk1": ctx.pick(8, 5)}
    method = "fork"
    answers, errors = ctx.collect("pool_options:options", {"method": method, "repeats": repeats}, rounds, [ours])
    for key, message in errors.items():
        result.notes.append(f"{key}: {short_error(message)}")
    samples: Dict[str, Dict[str, Dict[str, List[float]]]] = {}
    for answer in answers.get("ours", []):
        for case, per_option in answer["samples"].items():
            for option, per_which in per_option.items():
                for which, rates in per_which.items():
                    samples.setdefault(case, {}).setdefault(option, {}).setdefault(which, []).extend(rates)
    for option, option_label in OPTIONS.items():
        table = result.table(
            f"{option_label}: items per second (median), the plain call beside it",
            [("plain", "plain"), (option, option)],
            kind=OPS,
            name=option,
            ratios=[(option, "plain")],
        )
        for case in CASES:
            cells = samples.get(case, {}).get(option, {})
            medians, spreads = summarize_columns({"plain": cells.get("plain"), option: cells.get(option)})
            table.add(
                f"{method}: {LABELS[case]}",
                medians,
                [Target("plain", 0.95, at_least=True, subject=option)],
                spreads,
            )
            pairs = list(zip(cells.get(option, []), cells.get("plain", [])))
            if pairs:
                paired = median([with_option / plain for with_option, plain in pairs])
                result.notes.append(
                    f"{option}, {LABELS[case]}: median of {len(pairs)} paired ratios {option}/plain = {paired:.3f}"
                )
    result.notes.append(
        f"{rounds} rounds (a fresh pool each) of {repeats['default']} pairs with the default chunksize and "
        f"{repeats['chunk1']} with chunksize=1; each pair is the plain call and the call with the option, "
        "back to back, in alternating order"
    )
    result.data = {"samples": samples}
    return result


register(
    Section(
        "pool-options",
        "Pool.map with progress= vs plain: the cost of the option when used (ours; fork)",
        run,
        issue=17,
    )
)

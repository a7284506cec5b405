"""``dask``: ``map`` on mp_dask.Pool's own LocalCluster against multiprocess.Pool and plain ``client.map``.

What is measured, for ours only (the stdlib and upstream have no dask
pool), in a fresh worker process per round and engine:

* **mp_dask.Pool(2)**, the pool's own ``LocalCluster`` of 2 worker
  processes of one thread each: ``pool.map(fn, range(n))`` with the
  standard chunk size (``ceil(n / 8)`` here), and with ``chunksize=1``
  (one dask task per item, as ``client.map``);
* **client.map** on that same cluster: ``client.gather(client.map(fn,
  range(n), pure=False))``, dask's own per-task path with the same
  function, one task per item;
* **multiprocess.Pool(2)** (the default start method): ``pool.map(fn,
  range(n))``, standard chunk size.

Workloads: ``n = 2,000`` tasks of 10 ms (``time.sleep(0.01)``: 10 s of
work, 5 s on 2 workers at best) and ``n = 20,000`` tiny tasks (``x + 1``).
Each cluster or pool is started and warmed up untimed (a small map that
reaches both workers).  The figures are seconds (medians); the notes give
the overhead per task: ``(seconds - ideal) / n`` where ``ideal`` is the
work divided among 2 workers (0 for the tiny tasks), the number a user
weighing "one machine or a cluster" needs.  No target: information.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List

from ..report import TIME, SectionResult
from ..runner import BenchContext, short_error
from ..stats import summarize_columns
from ..targets import add_one
from . import Section, register

WORKERS = 2
SLEEP = 0.01
#: workload -> (full n, quick n)
SIZES = {"sleep": (2_000, 200), "tiny": (20_000, 1_000)}
#: column -> header
ENGINES = {
    "dask_pool": "mp_dask.Pool",
    "dask_chunk1": "mp_dask.Pool chunksize=1",
    "client_map": "client.map",
    "mp_pool": "multiprocess.Pool",
}


#: The engines on a dask cluster (one measure call can run any of them).
DASK_ENGINES = ["dask_pool", "dask_chunk1", "client_map"]


def sleep_10ms(x: int) -> int:
    """The 10 ms task: a module-level function, pickled by reference by every engine."""
    time.sleep(SLEEP)
    return x + 1


def _function(workload: str) -> Any:
    return sleep_10ms if workload == "sleep" else add_one


def _check(out: List[int], n: int, what: str) -> None:
    if len(out) != n or out[-1] != n:
        raise AssertionError(f"{what}: {len(out)} results for {n} items, the last {out[-1:]!r}")


# ---------------------------------------------------------------- child side


def measure_dask(api: Any, sizes: Dict[str, int], engines: List[str] = DASK_ENGINES) -> Dict[str, Any]:
    """Child side: seconds of each of ``engines`` on each workload (``samples["<engine>/<workload>"]``)."""
    import logging

    import mp_dask

    out: Dict[str, Any] = {"samples": {}}
    started = time.perf_counter()
    pool = mp_dask.Pool(WORKERS, cluster_options={"silence_logs": logging.CRITICAL})
    try:
        client = pool.client
        client.wait_for_workers(WORKERS, timeout=60)
        pool.map(add_one, range(8 * WORKERS), chunksize=1)
        client.gather(client.map(add_one, range(8 * WORKERS), pure=False))
        out["start"] = time.perf_counter() - started
        for workload, n in sizes.items():
            fn = _function(workload)
            for engine in engines:
                began = time.perf_counter()
                if engine == "client_map":
                    got = client.gather(client.map(fn, range(n), pure=False))
                else:
                    got = pool.map(fn, range(n), chunksize=1 if engine == "dask_chunk1" else None)
                out["samples"][f"{engine}/{workload}"] = [time.perf_counter() - began]
                _check(got, n, f"{engine}/{workload}")
        pool.close()
        pool.join()
    finally:
        pool.terminate()
    return out


def measure_mp_pool(api: Any, sizes: Dict[str, int]) -> Dict[str, Any]:
    """Child side: seconds of ``multiprocess.Pool(2).map`` on each workload."""
    import multiprocess

    out: Dict[str, Any] = {"samples": {}}
    with multiprocess.Pool(WORKERS) as pool:
        pool.map(add_one, range(8 * WORKERS), chunksize=1)
        for workload, n in sizes.items():
            began = time.perf_counter()
            got = pool.map(_function(workload), range(n))
            out["samples"][f"mp_pool/{workload}"] = [time.perf_counter() - began]
            _check(got, n, f"mp_pool/{workload}")
    return out


MEASURES = {"dask": measure_dask, "mp_pool": measure_mp_pool}

# ---------------------------------------------------------------- parent side


def ideal_seconds(workload: str, n: int) -> float:
    """The work itself, shared by the workers: what no engine can beat."""
    return n * SLEEP / WORKERS if workload == "sleep" else 0.0


def run(ctx: BenchContext) -> SectionResult:
    result = SectionResult(
        "dask", f"map on mp_dask.Pool({WORKERS})'s own LocalCluster vs multiprocess.Pool, client.map"
    )
    ours = ctx.runner.get("ours")
    if ours is None:
        result.notes.append("only ours has a dask pool: nothing to measure without it")
        return result
    sizes = {workload: ctx.pick(full, quick) for workload, (full, quick) in SIZES.items()}
    rounds = ctx.pick(2, 1)
    samples: Dict[str, Dict[str, List[float]]] = {}  # workload -> engine -> seconds
    # One worker (and a fresh cluster) per workload and engine: the 20,000 one-item tasks of
    # client.map or chunksize=1 take one to two minutes each on 2 busy cores, and a worker has 300 s.
    # (--quick: both workloads on one cluster per engine; starting a cluster takes seconds.)
    if ctx.quick:
        calls = [("dask_pool:dask", {"sizes": sizes, "engines": [e]}) for e in DASK_ENGINES]
    else:
        calls = [("dask_pool:dask", {"sizes": {w: n}, "engines": [e]}) for w, n in sizes.items() for e in DASK_ENGINES]
    calls.append(("dask_pool:mp_pool", {"sizes": sizes}))
    for round_number in range(rounds):
        shift = round_number % len(calls)
        for measure, params in calls[shift:] + calls[:shift]:
            what = "+".join(params.get("engines", ["mp_pool"])) + " " + "+".join(params["sizes"])
            ctx.log(f"  dask: {what} (round {round_number + 1} of {rounds})")
            try:
                answer = ctx.runner.call(ours, measure, params)
            except Exception as exc:
                note = f"{measure}: {short_error(str(exc))}"
                result.notes.append(note)
                ctx.log(f"  {note}")
                continue
            for key, values in answer["samples"].items():
                engine, workload = key.split("/")
                samples.setdefault(workload, {}).setdefault(engine, []).extend(values)
    table = result.table(
        "seconds (median) of map(fn, range(n)), 2 workers",
        list(ENGINES.items()),
        kind=TIME,
        ratios=[("dask_pool", "mp_pool"), ("dask_pool", "client_map")],
        name="dask",
    )
    labels = {
        "sleep": f"{sizes['sleep']:,} tasks of {SLEEP * 1000:.0f} ms",
        "tiny": f"{sizes['tiny']:,} tiny tasks (x+1)",
    }
    for workload in SIZES:
        medians, spreads = summarize_columns({engine: samples.get(workload, {}).get(engine) for engine in ENGINES})
        table.add(labels[workload], medians, spreads=spreads)
        n, ideal = sizes[workload], ideal_seconds(workload, sizes[workload])
        overheads = [
            f"{header} {(medians[engine] - ideal) / n * 1e6:,.0f} us"
            for engine, header in ENGINES.items()
            if medians.get(engine) is not None
        ]
        result.notes.append(f"overhead per task, {labels[workload]}: " + "; ".join(overheads))
    result.notes.append(
        f"{rounds} round(s), a fresh cluster or pool each; multiprocess.Pool and mp_dask.Pool use the "
        "standard chunk size unless said; client.map is one dask task per item"
    )
    result.data = {"samples": samples, "sizes": sizes}
    return result


register(
    Section(
        "dask",
        "mp_dask.Pool on its own LocalCluster: map of 2,000 x 10 ms and 20,000 tiny tasks vs multiprocess.Pool, "
        "client.map",
        run,
        issue=20,
    )
)

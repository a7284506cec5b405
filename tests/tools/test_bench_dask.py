"""Tests for the ``dask`` section of tools/bench: the child's measures (in a bench worker, as in a real
run) and the parent's table and per-task overheads.  No test here judges speed."""

from __future__ import annotations

import sys
from typing import Any, Dict, List

import pytest
from tools.bench.runner import BenchContext, Implementation, Runner
from tools.bench.sections import dask_pool

NEEDS_DISTRIBUTED = "mp-dask needs distributed, whose current releases need CPython 3.10+ (not installed here)"


@pytest.mark.timeout(180)
def test_the_measures_time_every_engine_on_every_workload(tmp_path, monkeypatch) -> None:
    pytest.importorskip("mp_dask", reason=NEEDS_DISTRIBUTED)
    monkeypatch.setenv("DASK_TEMPORARY_DIRECTORY", str(tmp_path))  # not dask's /tmp/dask-scratch-space
    runner, ours = Runner([], timeout=150), Implementation("ours", sys.executable)
    sizes = {"sleep": 6, "tiny": 30}
    dask = runner.call(ours, "dask_pool:dask", {"sizes": sizes})
    local = runner.call(ours, "dask_pool:mp_pool", {"sizes": sizes})
    assert sorted(dask["samples"]) == sorted(
        f"{engine}/{workload}" for engine in ("dask_pool", "dask_chunk1", "client_map") for workload in sizes
    )
    assert sorted(local["samples"]) == ["mp_pool/sleep", "mp_pool/tiny"]
    assert all(len(v) == 1 and v[0] > 0 for out in (dask, local) for v in out["samples"].values())
    # Six 10 ms tasks on 2 workers take at least 30 ms on any engine.
    assert all(dask["samples"][f"{e}/sleep"][0] >= 0.03 for e in ("dask_pool", "dask_chunk1", "client_map"))


class CannedRunner(Runner):
    """Answers every measure at once with fixed seconds, and records what was asked."""

    def __init__(self, keys: List[str]) -> None:
        super().__init__([Implementation(key, "python") for key in keys])
        self.asked: List[str] = []

    def call(self, impl: Implementation, measure: str, params: Dict[str, Any] | None = None) -> Any:
        assert impl.key == "ours" and params is not None
        self.asked.append(measure)
        seconds = {"dask_pool": 3.0, "dask_chunk1": 4.0, "client_map": 5.0, "mp_pool": 2.5}
        engines = ["mp_pool"] if measure.endswith(":mp_pool") else params["engines"]
        return {"samples": {f"{e}/{w}": [seconds[e]] for e in engines for w in params["sizes"]}}


def test_the_table_and_the_overhead_per_task() -> None:
    runner = CannedRunner(["ours", "stdlib"])
    result = dask_pool.run(BenchContext(runner, quick=True, log=lambda _: None))
    # --quick: both workloads on one cluster per engine (a cluster takes seconds to start)
    assert sorted(runner.asked) == ["dask_pool:dask"] * 3 + ["dask_pool:mp_pool"]
    (table,) = result.tables
    assert [key for key, _ in table.columns] == list(dask_pool.ENGINES)
    sleep, tiny = table.rows
    assert sleep.label == "200 tasks of 10 ms" and tiny.label == "1,000 tiny tasks (x+1)"
    assert sleep.values == {"dask_pool": 3.0, "dask_chunk1": 4.0, "client_map": 5.0, "mp_pool": 2.5}
    # 200 x 10 ms on 2 workers: 1 s of work; (3 - 1) / 200 s = 10,000 us per task.
    assert "mp_dask.Pool 10,000 us" in result.notes[0]
    assert "mp_dask.Pool 3,000 us" in result.notes[1]  # 3 s / 1,000 tiny tasks


def test_the_default_run_gives_each_workload_and_engine_a_cluster_of_its_own() -> None:
    runner = CannedRunner(["ours", "stdlib"])
    result = dask_pool.run(BenchContext(runner, quick=False, log=lambda _: None))
    # 2 rounds of 2 workloads x 3 engines, and of the local pool
    assert sorted(runner.asked) == ["dask_pool:dask"] * 12 + ["dask_pool:mp_pool"] * 2
    sleep, tiny = result.tables[0].rows
    assert sleep.label == "2,000 tasks of 10 ms" and tiny.label == "20,000 tiny tasks (x+1)"


def test_without_ours_nothing_is_measured() -> None:
    result = dask_pool.run(BenchContext(CannedRunner(["stdlib"]), quick=True, log=lambda _: None))
    assert result.tables == [] and "only ours" in result.notes[0]

"""Tests for the ``futures`` section of tools/bench: the child's measure under every start method, and
the parent's tables (upstream, which has no executor, is never asked).

The measure runs in a bench worker process, as in a real run: the stdlib's
fork server would otherwise outlive the test in this process.  No test here
judges speed.
"""

from __future__ import annotations

import sys
from typing import Any, Dict, List

import pytest
from tools.bench import impls
from tools.bench.runner import BenchContext, Implementation, Runner
from tools.bench.sections import futures
from tools.bench.sections.futures import CASES


def _skip_a_broken_stdlib_executor(impl: str, start_method: str) -> None:
    # Debian's PyPy 3.9 ships a concurrent.futures whose submit() calls a
    # method it renamed: its executor starts no worker under spawn or forkserver.
    import concurrent.futures

    executor = concurrent.futures.ProcessPoolExecutor
    if impl == "stdlib" and start_method != "fork" and not hasattr(executor, "_adjust_process_count"):
        pytest.skip(f"this interpreter's stdlib ProcessPoolExecutor cannot start {start_method} workers")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("impl", ["ours", "stdlib"])
def test_measure_times_every_case_and_kind(impl: str, start_method: str) -> None:
    _skip_a_broken_stdlib_executor(impl, start_method)
    kinds = ["lambda", "named"] if impl == "ours" else ["named"]
    params = {
        "method": start_method,
        "kinds": kinds,
        "items": {"roundtrip": 20, "map_chunk1": 50, "map_large": 3000},
        "repeats": {"roundtrip": 2, "map_chunk1": 1, "map_large": 2},
    }
    out = Runner([], timeout=150).call(Implementation(impl, sys.executable), "futures:futures", params)
    assert out["errors"] == {}
    assert sorted(out["samples"]) == sorted(f"{case}/{kind}" for case in CASES for kind in kinds)
    assert all(len(out["samples"][f"map_large/{kind}"]) == 2 for kind in kinds)
    assert all(x > 0 for values in out["samples"].values() for x in values)
    assert out["start"] > 0 and out["shutdown"] >= 0


@pytest.mark.timeout(180)
def test_the_stdlib_cannot_run_the_lambda_case_and_says_so() -> None:
    _skip_a_broken_stdlib_executor("stdlib", "spawn")
    params = {"method": "spawn", "kinds": ["lambda"], "items": {"map_large": 10}, "repeats": {"map_large": 1}}
    out = Runner([], timeout=150).call(Implementation("stdlib", sys.executable), "futures:futures", params)
    assert out["samples"] == {}
    assert "map_large/lambda" in out["errors"]


def test_upstream_has_no_executor() -> None:
    with pytest.raises(NotImplementedError, match="upstream has no ProcessPoolExecutor"):
        impls.load("upstream").process_pool_executor()


class CannedRunner(Runner):
    """Answers every measure at once with fixed samples, and records who was asked."""

    def __init__(self, keys: List[str]) -> None:
        super().__init__([Implementation(key, "python") for key in keys])
        self.asked: List[str] = []

    def call(self, impl: Implementation, measure: str, params: Dict[str, Any] | None = None) -> Any:
        assert measure == "futures:futures" and params is not None
        self.asked.append(impl.key)
        time = {"ours": 1.0, "stdlib": 2.0}[impl.key]
        samples = {f"{case}/{kind}": [time, time] for case in params["items"] for kind in params["kinds"]}
        if impl.key == "ours":
            samples["roundtrip/named"] = [4.0, 4.0]
        return {"samples": samples, "errors": {}, "start": 0.1, "shutdown": 0.1}


def test_the_tables_pair_ours_lambda_and_named_with_the_stdlibs_named_function() -> None:
    runner = CannedRunner(["ours", "stdlib", "upstream"])
    result = futures.run(BenchContext(runner, quick=True, log=lambda _: None))
    assert "upstream" not in runner.asked
    assert any("upstream multiprocess has no ProcessPoolExecutor" in note for note in result.notes)
    lam, named = result.tables
    assert [key for key, _ in lam.columns] == ["ours", "stdlib"]
    assert len(lam.rows) == len(futures.METHODS) * len(CASES)
    row = lam.rows[0]
    assert row.label.startswith("fork: submit") and row.values == {"ours": 1.0, "stdlib": 2.0}
    assert [t.verdict(row.values) for t in row.targets] == ["PASS"]
    assert named.rows[0].values == {"ours": 4.0, "stdlib": 2.0} and not named.rows[0].targets

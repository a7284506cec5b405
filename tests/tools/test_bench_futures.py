"""Tests for the ``futures`` section of tools/bench: the child's measure under every start method, and
the parent's tables (upstream, which has no executor, is never asked; loky, from its venv, beside ours).

The measure runs in a bench worker process, as in a real run: the stdlib's
fork server would otherwise outlive the test in this process.  No test here
judges speed.
"""

from __future__ import annotations

import sys
from typing import Any, Dict, List, Tuple

import pytest
from tools.bench import impls, loky_venv
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
@pytest.mark.parametrize("impl", ["ours", "stdlib", "loky"])
def test_measure_times_every_case_and_kind(impl: str, start_method: str) -> None:
    _skip_a_broken_stdlib_executor(impl, start_method)
    if impl == "loky":
        # the bench runs loky from a venv of its own; the development requirements install it too
        pytest.importorskip("loky")
    kinds = futures.KINDS_OF[impl]
    params = {
        "method": start_method,
        "kinds": kinds,
        "items": {"start": futures.START_ITEMS, "roundtrip": 20, "map_chunk1": 50, "map_large": 3000},
        "repeats": {"roundtrip": 2, "map_chunk1": 1, "map_large": 2},
    }
    out = Runner([], timeout=150).call(Implementation(impl, sys.executable), "futures:futures", params)
    assert out["errors"] == {}
    expected = [f"start/{kinds[0]}"] + [f"{case}/{kind}" for case in CASES if case != "start" for kind in kinds]
    assert sorted(out["samples"]) == sorted(expected)
    assert len(out["samples"][f"start/{kinds[0]}"]) == 1
    assert all(len(out["samples"][f"map_large/{kind}"]) == 2 for kind in kinds)
    assert all(x > 0 for values in out["samples"].values() for x in values)
    assert out["shutdown"] >= 0


@pytest.mark.timeout(180)
def test_a_start_only_measure_times_the_first_map_and_nothing_else(start_method: str) -> None:
    params = {"method": start_method, "kinds": ["named"], "items": {"start": futures.START_ITEMS}, "repeats": {}}
    out = Runner([], timeout=150).call(Implementation("ours", sys.executable), "futures:futures", params)
    assert out["errors"] == {} and list(out["samples"]) == ["start/named"]
    assert len(out["samples"]["start/named"]) == 1 and out["samples"]["start/named"][0] > 0


def test_the_loky_adapter_makes_an_executor_of_the_given_context(monkeypatch: pytest.MonkeyPatch) -> None:
    made: List[Any] = []

    class FakeExecutor:
        def __init__(self, max_workers: int, context: Any) -> None:
            made.append((max_workers, context))

    fake = type(sys)("loky")
    fake.ProcessPoolExecutor = FakeExecutor  # type: ignore[attr-defined]
    fake.get_reusable_executor = lambda max_workers: ("reusable", max_workers)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "loky", fake)
    executor = impls.load("loky").process_pool_executor()
    assert isinstance(executor(2, mp_context="ctx"), FakeExecutor) and made == [(2, "ctx")]
    assert executor(1) == ("reusable", 1)


@pytest.mark.timeout(180)
def test_the_stdlib_cannot_run_the_lambda_case_and_says_so() -> None:
    _skip_a_broken_stdlib_executor("stdlib", "spawn")
    params = {
        "method": "spawn",
        "kinds": ["lambda"],
        "items": {"start": futures.START_ITEMS, "map_large": 10},
        "repeats": {"map_large": 1},
    }
    out = Runner([], timeout=150).call(Implementation("stdlib", sys.executable), "futures:futures", params)
    assert out["samples"] == {}
    assert sorted(out["errors"]) == ["map_large/lambda", "start/lambda"]
    assert "lambda" in out["errors"]["start/lambda"]


def test_upstream_has_no_executor() -> None:
    with pytest.raises(NotImplementedError, match="upstream has no ProcessPoolExecutor"):
        impls.load("upstream").process_pool_executor()


class CannedRunner(Runner):
    """Answers every measure at once with fixed samples, and records who was asked."""

    def __init__(self, keys: List[str]) -> None:
        super().__init__([Implementation(key, "python") for key in keys])
        self.asked: List[Tuple[str, List[str]]] = []

    def call(self, impl: Implementation, measure: str, params: Dict[str, Any] | None = None) -> Any:
        assert measure == "futures:futures" and params is not None
        self.asked.append((impl.key, params["kinds"]))
        time = {"ours": 1.0, "stdlib": 2.0, "loky": 3.0}[impl.key]
        samples = {f"{case}/{kind}": [time, time] for case in params["items"] for kind in params["kinds"]}
        if impl.key == "ours":
            samples["roundtrip/named"] = [4.0, 4.0]
        return {"samples": samples, "errors": {}, "shutdown": 0.1}


def _no_loky(log: Any = None) -> Tuple[str, str]:
    raise loky_venv.LokyUnavailable("no venv in this test")


def test_the_tables_pair_ours_lambda_and_named_with_the_stdlibs_named_function(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(loky_venv, "ensure_loky", _no_loky)
    runner = CannedRunner(["ours", "stdlib", "upstream"])
    result = futures.run(BenchContext(runner, quick=False, log=lambda _: None))
    assert "upstream" not in [key for key, _ in runner.asked]
    assert any("upstream multiprocess has no ProcessPoolExecutor" in note for note in result.notes)
    assert "loky left out: no venv in this test" in result.notes
    lam, named = result.tables
    assert [key for key, _ in lam.columns] == ["ours", "stdlib"] and lam.ratios == [("ours", "stdlib")]
    assert len(lam.rows) == len(futures.METHODS) * len(CASES)
    start, row = lam.rows[0], lam.rows[1]
    assert start.label == f"fork: executor(2) created + first map of {futures.START_ITEMS} items"
    assert start.values == {"ours": 1.0, "stdlib": 2.0, "loky": None} and not start.targets
    assert row.label.startswith("fork: submit") and row.values == {"ours": 1.0, "stdlib": 2.0, "loky": None}
    assert [t.verdict(row.values) for t in row.targets] == ["PASS"]
    assert named.rows[1].values == {"ours": 4.0, "stdlib": 2.0} and not named.rows[1].targets


def test_loky_runs_the_lambda_from_its_venv_in_a_column_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loky_venv, "ensure_loky", lambda log=None: ("/venv/bin/python", "3.9.9"))
    runner = CannedRunner(["ours", "stdlib"])
    result = futures.run(BenchContext(runner, quick=False, log=lambda _: None))
    # per start method and round: loky with the lambda, the stdlib with the named function, ours
    # with both, and ours once more for a start with the named function alone
    rounds = 3  # the default run's
    assert sorted(runner.asked) == sorted(
        [("loky", ["lambda"]), ("ours", ["lambda", "named"]), ("ours", ["named"]), ("stdlib", ["named"])]
        * len(futures.METHODS)
        * rounds
    )
    lam, named = result.tables
    assert [key for key, _ in lam.columns] == ["ours", "stdlib", "loky"]
    assert lam.ratios == [("ours", "stdlib"), ("loky", "stdlib")]
    assert [key for key, _ in named.columns] == ["ours", "stdlib"] and named.ratios == [("ours", "stdlib")]
    row = lam.rows[1]
    assert row.values == {"ours": 1.0, "stdlib": 2.0, "loky": 3.0}
    # the target is ours' alone: loky's column is for information
    assert [t.subject for t in row.targets] == ["ours"] and [t.verdict(row.values) for t in row.targets] == ["PASS"]
    assert named.rows[1].values == {"ours": 4.0, "stdlib": 2.0}
    # the start with the named function: ours' samples of both of its calls
    assert named.rows[0].values == {"ours": 1.0, "stdlib": 2.0}


def test_quick_leaves_loky_out_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(log: Any = None) -> Tuple[str, str]:
        raise AssertionError("--quick must not look for the loky venv")

    monkeypatch.setattr(loky_venv, "ensure_loky", fail)
    runner = CannedRunner(["ours", "stdlib"])
    result = futures.run(BenchContext(runner, quick=True, log=lambda _: None))
    assert "loky" not in [key for key, _ in runner.asked]
    assert "loky: in the default run only (not under --quick)" in result.notes
    assert [key for key, _ in result.tables[0].columns] == ["ours", "stdlib"]

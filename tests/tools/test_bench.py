"""Tests for tools/bench: the pure parts (statistics, tables, targets, registry,
command line) and one real quick run of the ``serialize`` section.

No test here judges speed: figures come from the benchmark itself, never from
timed tests.  The subprocess run uses ``--no-upstream`` so it needs no network
and no upstream venv.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
from tools.bench import impls, report, stats, worker
from tools.bench.__main__ import parse_args
from tools.bench.report import RATE, Row, SectionResult, Table, Target
from tools.bench.runner import BenchContext, Implementation, Runner
from tools.bench.sections import SECTION_MODULES, Section, all_sections, paths, pool, register
from tools.bench.sections.importtime import parse_importtime
from tools.bench.sections.managers import raw_round_trips
from tools.bench.sections.paths import CASES, first_pool_in_fresh_interpreter, measure_paths, resident_bytes
from tools.bench.sections.pool import _serialization_floor, payload_base
from tools.bench.sections.serialize import measure_roundtrip
from tools.bench.sections.start import interpreter_start_up
from tools.bench.sections.sync import raw_transfer

REPO_ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- stats


def test_median_odd_even_and_empty() -> None:
    assert stats.median([3, 1, 2]) == 2
    assert stats.median([4, 1, 3, 2]) == 2.5
    with pytest.raises(ValueError):
        stats.median([])
    assert stats.median_or_none([]) is None
    assert stats.median_or_none(None) is None


def test_ratio_handles_missing_and_zero() -> None:
    assert stats.ratio(3.0, 2.0) == 1.5
    assert stats.ratio(None, 2.0) is None
    assert stats.ratio(1.0, None) is None
    assert stats.ratio(1.0, 0.0) is None


def test_relative_spread_and_summaries() -> None:
    assert stats.relative_spread([1.0, 1.0, 1.0]) is None  # too few samples to judge
    assert stats.relative_spread([1.0, 1.0, 1.0, 1.0]) == 0.0
    assert stats.relative_spread([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(2.0 / 3.0)
    medians, spreads = stats.summarize_columns({"a": [1.0, 3.0], "b": None})
    assert medians == {"a": 2.0, "b": None}
    assert spreads == {"a": None, "b": None}


def test_rotate() -> None:
    assert stats.rotate(["a", "b", "c"], 1) == ["b", "c", "a"]
    assert stats.rotate(["a", "b", "c"], 4) == ["b", "c", "a"]
    assert stats.rotate([], 3) == []


# ---------------------------------------------------------------- formatting and targets


@pytest.mark.parametrize(
    "seconds, text",
    [
        (2.5, "2.50 s"),
        (0.0123, "12.3 ms"),
        (0.000456, "456 µs"),
        (3.2e-8, "32.0 ns"),
    ],
)
def test_format_time(seconds: float, text: str) -> None:
    assert report.format_time(seconds) == text


def test_format_rate_size_and_missing() -> None:
    assert report.format_rate(3 * 2**30) == "3072 MiB/s"
    assert report.format_ops(1.234e6) == "1.23 M/s" and report.format_ops(456e3) == "456 k/s"
    assert report.format_size(512) == "512 B"
    assert report.format_size(3 * 2**10) == "3.00 KiB"
    assert report.format_value(None, report.TIME) == "n/a"
    assert report.format_ratio(None) == "n/a"
    assert report.format_ratio(1.234) == "1.23"


def test_target_at_most_and_at_least() -> None:
    at_most = Target("stdlib", 1.05)
    assert at_most.describe() == "ours/stdlib ≤ 1.05"
    assert at_most.verdict({"ours": 1.0, "stdlib": 1.0}) == "PASS"
    assert at_most.verdict({"ours": 1.1, "stdlib": 1.0}) == "MISS"
    assert at_most.verdict({"ours": None, "stdlib": 1.0}) == "n/a"
    at_least = Target("raw", 0.8, at_least=True)
    assert at_least.describe() == "ours/raw ≥ 0.8"
    assert at_least.verdict({"ours": 90.0, "raw": 100.0}) == "PASS"
    assert at_least.verdict({"ours": 70.0, "raw": 100.0}) == "MISS"
    assert at_least.ratio({"ours": 70.0, "raw": 100.0}) == pytest.approx(0.7)


def test_table_render_has_values_ratios_and_verdicts() -> None:
    table = Table("start+join", [("ours", "ours"), ("stdlib", "stdlib"), ("upstream", "upstream")], name="t")
    table.add("fork", {"ours": 0.002, "stdlib": 0.002, "upstream": None}, [Target("stdlib", 1.05)])
    table.add(
        "spawn", {"ours": 0.09, "stdlib": 0.06, "upstream": 0.07}, [Target("stdlib", 1.05)], spreads={"ours": 0.5}
    )
    text = table.render()
    lines = text.splitlines()
    assert lines[0] == "**start+join** (lower is better)"
    header = next(line for line in lines if line.startswith("| case"))
    for column in ("ours", "stdlib", "upstream", "ours/stdlib", "upstream/stdlib", "target", "verdict"):
        assert column in header
    fork = next(line for line in lines if line.startswith("| fork"))
    assert "2.00 ms" in fork and "n/a" in fork and "1.00" in fork and "PASS" in fork
    spawn = next(line for line in lines if line.startswith("| spawn"))
    assert "1.50" in spawn and "MISS" in spawn and "90.0 ms *" in spawn
    assert "noisy" in text
    # Every table line has the same width: the Markdown stays aligned.
    widths = {len(line) for line in lines if line.startswith("|")}
    assert len(widths) == 1


def test_table_without_targets_has_no_verdict_column() -> None:
    table = Table("raw", [("raw", "raw")], kind=RATE, ratios=[])
    table.add("socketpair", {"raw": 2**30})
    text = table.render()
    assert "verdict" not in text and "1024 MiB/s" in text and "higher is better" in text


def test_section_summary_and_json() -> None:
    result = SectionResult("demo", "a demo")
    table = result.table("times", [("ours", "ours"), ("stdlib", "stdlib")], name="t")
    table.add("a", {"ours": 1.0, "stdlib": 1.0}, [Target("stdlib", 1.05)])
    table.add("b", {"ours": 2.0, "stdlib": 1.0}, [Target("stdlib", 1.05)])
    table.add("c", {"ours": None, "stdlib": 1.0}, [Target("stdlib", 1.05)])
    assert [v[4] for v in result.verdicts()] == ["PASS", "MISS", "n/a"]
    assert result.verdicts()[0][1] == "t: a"
    summary = report.render_summary([result])
    assert "1 PASS, 1 MISS, 1 n/a" in summary
    document = json.loads(json.dumps(result.to_json()))
    row = document["tables"][0]["rows"][1]
    assert row["ratios"]["ours/stdlib"] == 2.0
    assert row["targets"][0]["verdict"] == "MISS"
    assert isinstance(Row("x", {}).spreads, dict)


# ---------------------------------------------------------------- registry and command line


def test_registry_has_the_issue_sections_in_order() -> None:
    sections = all_sections()
    assert list(sections) == [
        "start",
        "serialize",
        "import",
        "bandwidth",
        "latency",
        "sync",
        "pool",
        "paths",
        "pool-options",
        "futures",
        "managers",
        "dask",
        "zerocopy",
    ]
    names = ("sync", "pool", "managers", "futures", "pool-options", "zerocopy", "dask")
    assert {sections[name].issue for name in names} == {
        4,
        5,
        6,
        16,
        17,
        18,
        20,
    }
    assert all(isinstance(s, Section) and s.title for s in sections.values())
    assert SECTION_MODULES[0] == "start"


def test_register_refuses_a_second_section_with_the_same_name() -> None:
    existing = all_sections()["start"]
    assert register(existing) is existing  # registering the same object again is harmless
    with pytest.raises(ValueError, match="start"):
        register(Section("start", "an impostor", existing.run))


def test_parse_args_sections() -> None:
    names = list(all_sections())
    args = parse_args(["--quick", "--only", "serialize,start", "--only", "import", "--no-upstream"], names)
    assert args.quick and args.no_upstream
    assert args.only == ["serialize", "start", "import"]
    with pytest.raises(SystemExit):
        parse_args(["--only", "nonsense"], names)


def test_parse_importtime() -> None:
    stderr = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       120 |        120 |   _io\n"
        "import time:      2301 |       5402 |     mp_core.context\n"
        "import time:       500 |       6100 | multiprocess\n"
        "unrelated line\n"
    )
    table = parse_importtime(stderr)
    assert table["multiprocess"] == (500, 6100)
    assert table["mp_core.context"] == (2301, 5402)
    assert "imported package" not in table


# ---------------------------------------------------------------- child side, in process


def test_roundtrip_measure_with_references_only() -> None:
    out = measure_roundtrip(impls.load("none"), ["ints", "lambda"], samples=2, target_time=0.001, references=True)
    assert len(out["samples"]["ints/pickle5"]) == 2
    assert len(out["samples"]["ints/pickle"]) == 2
    assert out["sizes"]["ints/pickle5"] > 100_000
    # C pickle cannot carry a lambda: recorded as an error, not raised.  (PyPy's
    # pure-Python pickle can, once dill is imported: dill extends its dispatch.)
    if pickle.Pickler is not getattr(pickle, "_Pickler", None):
        assert "lambda/pickle5" in out["errors"] and "lambda/pickle5" not in out["samples"]


def test_serialization_floor_round_trips_the_payloads() -> None:
    payloads = [list(payload_base()) for _ in range(3)]
    assert _serialization_floor(payloads) > 0
    assert payloads[0] == payload_base()  # the inputs are left as they were
    with pytest.raises(AssertionError, match="round-trip"):
        _serialization_floor([float("nan")])  # nan != nan: a result that differs is caught


@pytest.mark.parametrize("impl", ["ours", "stdlib"])
def test_paths_measure_reports_every_figure(impl: str) -> None:
    # A tenth of a thousandth of the items: the measurement's shape, not its figures.
    shares = {case: 1000 for case in CASES}
    out = measure_paths(impls.load(impl), "fork", repeats=1, lambda_ok=impl == "ours", shares=shares)
    assert out["first"] > 0 and out["first_in_worker"] > 0 and out["second"] > 0
    assert set(out["samples"]) == set(CASES) == set(out["floors"])
    assert all(len(values) == 1 and values[0] > 0 for values in out["samples"].values())
    if os.path.exists("/proc/self/status"):
        assert out["parent_rss"] > out["worker_rss"] > 1 << 20


def test_pool_maps_fewer_chunksize_1_items_under_quick() -> None:
    ours, upstream = Implementation("ours", "python"), Implementation("upstream", "python")
    full, quick = pool._cases_for(ours, "fork", False), pool._cases_for(ours, "fork", True)
    assert full["named_chunk1"] == full["closure_chunk1"] == pool.TINY_CHUNK1
    assert quick["named_chunk1"] == quick["closure_chunk1"] == pool.TINY_CHUNK1 // pool.QUICK_CHUNK1_SHARE
    assert quick["named_default"] == full["named_default"] and quick["payload"] == pool.QUICK_PAYLOADS
    assert pool._cases_for(upstream, "fork", True)["closure_chunk1"] == pool.TINY_CHUNK1 // 4 // 10


@pytest.mark.parametrize("quick", [False, True])
def test_paths_asks_for_fewer_chunksize_1_items_under_quick(quick: bool) -> None:
    asked: Dict[str, List[Dict[str, int]]] = {}

    class Canned(Runner):
        def call(self, impl: Implementation, measure: str, params: Dict[str, Any] | None = None) -> Any:
            assert measure == "paths:paths" and params is not None
            asked.setdefault(impl.key, []).append(params["shares"])
            cases = {case: [1.0] for case in CASES}
            figures = {"first": 1.0, "first_in_worker": 1.0, "second": 1.0, "parent_rss": 1, "worker_rss": 1}
            return {"samples": cases, "floors": cases, **figures}

    runner = Canned([Implementation(key, "python") for key in ("ours", "stdlib", "upstream")])
    result = paths.run(BenchContext(runner, quick=quick, log=lambda _: None))
    expected = paths.QUICK_SHARES if quick else {}
    assert all(shares == expected for key in ("ours", "stdlib") for shares in asked[key])
    assert all(shares == paths.UPSTREAM_SHARES for shares in asked["upstream"])
    assert any(note.endswith("under --quick the others map 1/4 of them") for note in result.notes) == quick


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_the_first_pool_in_a_fresh_interpreter_is_timed_and_its_failure_raised(method: str) -> None:
    for impl in ("ours", "stdlib"):
        assert 0 < first_pool_in_fresh_interpreter(impl, method) < 60
    with pytest.raises(RuntimeError, match="fresh interpreter failed"):
        first_pool_in_fresh_interpreter("ours", "no-such-method")


def test_floors_measure_what_they_name() -> None:
    assert resident_bytes(os.getpid()) == pytest.approx(resident_bytes(os.getpid()), rel=0.5)
    assert resident_bytes(-1) is None
    assert 0 < interpreter_start_up() < 60
    assert 0 < raw_transfer(1000) < 60  # (it checks that the last message arrived intact)
    trips = raw_round_trips(50, 2)
    assert len(trips) == 2 and all(0 < t < 1 for t in trips)


def test_worker_reports_errors_instead_of_raising() -> None:
    answer = worker.run({"impl": "none", "measure": "serialize:no_such_measure", "params": {}})
    assert answer["ok"] is False and "no_such_measure" in answer["error"]
    answer = worker.run({"impl": "nonsense", "measure": "serialize:roundtrip", "params": {}})
    assert answer["ok"] is False and "unknown implementation" in answer["error"]


# ---------------------------------------------------------------- a real run


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_serialize_run_without_upstream(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-m", "tools.bench", "--quick", "--only", "serialize", "--no-upstream", "--json", str(out)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "## serialize" in done.stdout and "ours/pickle5" in done.stdout
    document = json.loads(out.read_text())
    assert document["quick"] is True
    assert "upstream" not in document["environment"]["implementations"]
    (section,) = document["sections"]
    assert section["name"] == "serialize"
    times = section["tables"][0]
    assert "upstream" not in times["columns"]
    rows = {row["label"]: row for row in times["rows"]}
    for label in ("list of 1e5 ints", "dict of 1e4 str→float", "list of 1e4 small tuples"):
        values = rows[label]["values"]
        assert values["ours"] and values["stdlib"] and values["pickle5"], label
        assert rows[label]["targets"][0]["verdict"] in ("PASS", "MISS")
    lam = rows["lambda x: x + 1"]["values"]
    assert lam["ours"] and lam["stdlib"] is None  # the stdlib cannot pickle a lambda


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_sync_run_without_upstream(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-m", "tools.bench", "--quick", "--only", "sync", "--no-upstream", "--json", str(out)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "## sync" in done.stdout
    (section,) = json.loads(out.read_text())["sections"]
    assert section["name"] == "sync"
    rows = {row["label"]: row for table in section["tables"] for row in table["rows"]}
    for label in ("acquire() + release()", "Queue", "SimpleQueue"):
        values = rows[label]["values"]
        assert values["ours"] and values["stdlib"] and "upstream" not in values, label
        assert rows[label]["targets"][0]["verdict"] in ("PASS", "MISS"), label

"""tools/soak: a brief real run (``--quick``) and the bounds it enforces.

The soak's figures are reported by the tool itself; here it runs briefly so
that it keeps working, and its checks are shown to catch a leak.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tools.soak import probes
from tools.soak.__main__ import COLUMNS, format_workload, parse_args
from tools.soak.workloads import BY_NAME, WORKLOADS, Workload

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(300)


def test_the_workloads_the_issue_asks_for():
    assert {w.name: w.ops for w in WORKLOADS} == {
        "pool.map": 1_000_000,
        "pool.imap_unord": 1_000_000,
        "queue": 1_000_000,
        "simplequeue": 1_000_000,
        "manager.dict": 100_000,
        "pools": 10_000,
    }
    pools = BY_NAME["pools"]
    assert pools.round_sizes(quick=False) == [1000] * 10
    assert pools.round_sizes(quick=True) == [10] * 10
    assert sum(BY_NAME["queue"].round_sizes(quick=True)) == 10_000
    odd = Workload("odd", 23, 5, None, None, None, "")
    assert odd.round_sizes(quick=False) == [5, 5, 5, 4, 4]
    assert odd.round_sizes(quick=True) == [1] * 5


def test_command_line():
    args = parse_args(["--quick", "--only", "queue,pools", "--only", "pool.map", "--start-method", "spawn"])
    assert args.quick and args.only == ["queue", "pools", "pool.map"] and args.start_method == "spawn"
    assert parse_args([]).rss_bound == 5.0
    with pytest.raises(SystemExit):
        parse_args(["--only", "nonsense"])


def test_a_table_row():
    row = {
        "name": "queue",
        "ops": 1_000_000,
        "seconds": 6.14,
        "rss_start": 22 * 2**20,
        "rss_end": 23 * 2**20,
        "rss_growth": 4.546,
        "fds": [4, 10, 10, 4],
        "threads": [1, 2, 2, 1],
        "leftovers": [],
    }
    cells = format_workload(row).split()
    assert cells == ["queue", "1,000,000", "6.1", "22.0", "MiB", "23.0", "MiB", "+4.55%", "4→10→10→4", "1→2→2→1", "0"]
    assert len(COLUMNS) == 9


def test_probes_see_descriptors_threads_and_files(tmp_path):
    counts = measure_scenario("probes", tmp_path)
    assert counts == {"fds": 2, "threads": 1, "rss_over_1_mib": True}
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    assert probes.files_under(str(tmp_path)) == {"d", os.path.join("d", "f")}


def measure_scenario(name, tmp_path):
    """The row of one of ``_soak_scenarios``' workloads, measured in a fresh interpreter."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("_soak_scenarios.py")), name, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_measure_reports_every_broken_bound(tmp_path):
    row = measure_scenario("leaky", tmp_path)
    assert row["ops"] == 20
    before, start, end, after = row["fds"]
    # Two warm-up rounds of 2 operations (one thread each), then 10 rounds of 2.
    assert end == start + 40 and after == before + 2 * 24 - 1
    before, start, end, after = row["threads"]
    assert end == start + 10 and after == before + 12
    # 7 rounds of 2 MiB between the floors of the first and the last three rounds.
    assert row["rss_end"] - row["rss_start"] >= 7 * (2 << 20)
    assert row["broken"] == [
        f"RSS grew {row['rss_growth']:.1f}% (bound 5%)",
        f"descriptors grew from {row['fds'][1]} to {row['fds'][2]}",
        f"threads grew from {start} to {end}",
        "47 descriptor(s) stayed open after the teardown",
        "12 thread(s) stayed after the teardown",
    ]
    assert row["leftovers"] == []


def test_the_end_reading_waits_for_stragglers_that_go_on_their_own(tmp_path):
    # (A fork pool's join returns while a thread still reaps its zygote:
    # the soak's "pools" bounds broke on that once, in CI.)
    row = measure_scenario("stragglers", tmp_path)
    before, start, end, after = row["threads"]
    assert end <= start and after <= before
    before, start, end, after = row["fds"]
    assert end <= start and after <= before
    assert row["broken"] == []


def test_measure_reports_what_a_teardown_leaves_behind(tmp_path):
    row = measure_scenario("leaves_things", tmp_path)
    assert row["leftovers"] == [f"child {row['child_pid']}", f"/dev/shm/{row['prefix']}segment", "$TMPDIR/left.txt"]
    assert row["broken"] == ["left behind: " + ", ".join(row["leftovers"])]


def test_a_quick_run_passes_and_prints_its_table():
    done = subprocess.run(
        [sys.executable, "-m", "tools.soak", "--quick", "--rss-bound", "50"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("workload"))
    rows = [line.split()[0] for line in lines[header + 1 : header + 1 + len(WORKLOADS)]]
    assert rows == [w.name for w in WORKLOADS]
    assert lines[-1] == "soak: every bound held"

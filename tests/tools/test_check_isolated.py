"""Tests for the pure helpers of tools/check_isolated.py (no builds, no venvs)."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from tests.tools.test_versions import HEALTHY, set_deps, write_dist
from tools import check_isolated, versions


@pytest.fixture
def by_key(tmp_path: Path) -> dict:
    for name, spec in HEALTHY.items():
        write_dist(tmp_path, name, spec["version"], spec["deps"])  # type: ignore[arg-type]
    return {d.key: d for d in versions.discover(tmp_path)}


def test_internal_closure_is_transitive(tmp_path: Path, by_key: dict) -> None:
    assert check_isolated.internal_closure(by_key["mp-core"], by_key) == []
    assert check_isolated.internal_closure(by_key["mp-sync"], by_key) == ["mp-core"]
    assert check_isolated.internal_closure(by_key["multiprocess"], by_key) == [
        "mp-core",
        "mp-managers",
        "mp-pool",
        "mp-sync",
    ]
    # mp-pool declaring only mp-sync still needs mp-core through it
    set_deps(tmp_path, "mp-pool", ["mp-sync>=0.1.0,<0.2"])
    fresh = {d.key: d for d in versions.discover(tmp_path)}
    assert check_isolated.internal_closure(fresh["mp-pool"], fresh) == ["mp-core", "mp-sync"]


def test_third_party_requirements_skip_our_own(by_key: dict) -> None:
    internal = versions.internal_names(by_key.values())
    assert check_isolated.third_party_requirements(list(by_key.values()), internal) == ["dill>=0.3.8"]


def test_error_summary_finds_the_backend_error() -> None:
    pip_output = """\
      File ".../hatchling/metadata/core.py", line 553, in readme
        raise OSError(message)
    OSError: Readme file does not exist: README.md
    [end of output]
note: This error originates from a subprocess, and is likely not a problem with pip.
error: metadata-generation-failed
"""
    assert check_isolated.error_summary(pip_output) == "OSError: Readme file does not exist: README.md"
    assert check_isolated.error_summary("ERROR: No matching distribution found for mp-core>=0.3\n") == (
        "ERROR: No matching distribution found for mp-core>=0.3"
    )
    assert check_isolated.error_summary("") == "no output"


def test_hermetic_env_drops_pip_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_FIND_LINKS", "/somewhere")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = check_isolated.hermetic_env()
    assert "PIP_FIND_LINKS" not in env and "PYTHONPATH" not in env
    assert env["PIP_CONFIG_FILE"] == os.devnull


def test_parse_probe_output_takes_the_marked_line() -> None:
    report = {"import": [True, "/x/__init__.py"]}
    output = f"noise\n{check_isolated.PROBE_MARKER}{json.dumps(report)}\nmore noise\n"
    assert check_isolated.parse_probe_output(output) == report
    assert check_isolated.parse_probe_output("Traceback ...\n") is None


def test_probe_source_compiles() -> None:
    compile(check_isolated.PROBE_SOURCE, "<probe>", "exec")


def test_wheel_init_problem(tmp_path: Path, by_key: dict) -> None:
    dist = by_key["mp-sync"]
    good, bad = tmp_path / "good.whl", tmp_path / "bad.whl"
    with zipfile.ZipFile(good, "w") as archive:
        archive.writestr("mp_sync/__init__.py", "")
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("mp_sync/__about__.py", "")
    assert check_isolated.wheel_init_problem(dist, good) == ""
    problem = check_isolated.wheel_init_problem(dist, bad)
    assert "has no mp_sync/__init__.py" in problem and "does not exist" in problem


def test_report_cells_and_verdict(by_key: dict, capsys: pytest.CaptureFixture) -> None:
    report = check_isolated.DistReport(by_key["mp-core"])
    assert report.failed  # nothing ran: never a silent PASS
    report.add("build", "build wheel", check_isolated.PASS)
    report.add("smoke", "fork smoke", check_isolated.SKIP, "no get_context yet")
    assert not report.failed
    assert [report.cell(c) for c in check_isolated.CATEGORIES] == ["PASS", "-", "-", "-", "skip"]
    report.add("isolation", "import mp_sync fails", check_isolated.FAIL, "imported from /x")
    assert report.failed and report.cell("isolation") == "FAIL"
    assert report.first_failure() == "import mp_sync fails: imported from /x"
    assert "[FAIL] mp-core: import mp_sync fails" in capsys.readouterr().out


def test_a_distribution_this_interpreter_cannot_install_is_skipped_with_the_reason(by_key: dict) -> None:
    dist = by_key["mp-pool"]
    assert check_isolated.unsupported_here(dist, "3.9.18") is None  # requires-python >=3.9
    text = dist.pyproject.read_text().replace('requires-python = ">=3.9"', 'requires-python = ">=3.10"')
    dist.pyproject.write_text(text)
    assert check_isolated.unsupported_here(dist, "3.9.18") == "requires Python >=3.10, this is 3.9.18"
    assert check_isolated.unsupported_here(dist, "3.12.1") is None


def test_mp_dask_is_smoke_tested_and_its_stdlib_multiprocessing_is_distributeds() -> None:
    assert check_isolated.SMOKE_TESTS["mp-dask"] == "dask"
    assert "def smoke_dask():" in check_isolated.PROBE_SOURCE
    assert "distributed" in check_isolated.STDLIB_MP_BY_DEPENDENCY["mp-dask"]

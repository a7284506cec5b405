"""``python -m multiprocess.tests`` and ``python -m multiprocess`` work and report honestly."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

import multiprocess
from multiprocess.tests import CHECKS

pytestmark = pytest.mark.timeout(120)


def test_self_test_passes_every_check_under_every_start_method():
    result = subprocess.run(
        [sys.executable, "-m", "multiprocess.tests"], capture_output=True, text=True, timeout=110, cwd="/"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    total = len(CHECKS) * len(multiprocess.get_all_start_methods())
    assert re.search(rf"^{total} passed, 0 failed in [0-9.]+s$", result.stdout, re.M), result.stdout
    assert result.stdout.count("[ok  ]") == total


def test_self_test_reports_failures_with_a_non_zero_exit(monkeypatch, capsys):
    import multiprocess.tests as selftest

    def broken(ctx):
        raise RuntimeError("deliberately broken check")

    monkeypatch.setattr(selftest, "CHECKS", [("process", selftest.check_process), ("broken", broken)])
    assert selftest.main(["fork"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] fork       broken         RuntimeError: deliberately broken check" in out
    assert "1 passed, 1 failed in" in out


def test_self_test_rejects_unknown_start_methods():
    result = subprocess.run(
        [sys.executable, "-m", "multiprocess.tests", "bogus"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "unknown start method(s): bogus; available: " in result.stderr


def test_demo_runs_a_lambda_under_every_start_method():
    result = subprocess.run([sys.executable, "-m", "multiprocess"], capture_output=True, text=True, timeout=60, cwd="/")
    assert result.returncode == 0, result.stderr
    assert f"default start method: {multiprocess.get_start_method()}" in result.stdout
    for method in multiprocess.get_all_start_methods():
        assert re.search(
            rf"^  {method} +lambda ran in child pid \d+: \[0, 3, 6, 9, 12\] \(exit code 0\)$", result.stdout, re.M
        ), result.stdout

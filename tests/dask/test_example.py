"""examples/dask_cluster.py runs on its own LocalCluster and prints what it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import NEEDS_DISTRIBUTED

pytest.importorskip("mp_dask", reason=NEEDS_DISTRIBUTED)  # before distributed: see mp_dask._distributed

pytestmark = pytest.mark.timeout(120)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dask_cluster.py"

EXPECTED = [
    "map: longest Collatz chain below 1001 starts at 871 (178 steps)",
    "imap: [0, 10, 20, 30, 40]",
    "starmap: [1024, 81]",
    "apply_async: 6 callback saw [6]",
    "remote error arrived as ZeroDivisionError with the worker's traceback: True",
]


def test_the_dask_example_runs():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=100, env=env, cwd=EXAMPLE.parents[1]
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for expected in EXPECTED:
        assert expected in lines, (expected, result.stdout, result.stderr)

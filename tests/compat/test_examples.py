"""Every example in examples/ runs and prints what it promises, under every start method."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import multiprocess

pytestmark = pytest.mark.timeout(180)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
METHODS = multiprocess.get_all_start_methods()

EXPECTED = {
    "process_queue.py": ["worker 0: [0, 1, 4, 9, 16]", "worker 2: [0, 1, 4, 9, 16]", "exit codes: [0, 0, 0]"],
    "pools.py": [
        "map: [1, 2, 3, 4, 5, 6, 7, 8]",
        "imap: [0, 1, 4, 9, 16, 25]",
        "imap_unordered sum: 55",
        "starmap: [2, 12]",
        "apply_async: 49 callback saw [49]",
        "error reached the caller; error_callback saw ['ZeroDivisionError']",
        "timed out waiting, as asked",
    ],
    "synchronization.py": [
        "all workers passed the barrier",
        "worker 1 in the critical section",
        "wait_for with timeout: False",
    ],
    "task_queue.py": ["add(0, 7) = 7", "mul(4, 7) = 28"],
    "custom_manager.py": ["counter value: 300", "reset refused: UnexposedMethodError"],
    "asyncio_offload.py": [
        "GET /primes?below=20000 -> 200 2262 primes below 20000",
        "GET /primes?below=50000 -> 200 5133 primes below 50000",
        "GET /squares?upto=100 -> 200 sum of 101 squares: 338350",
        "GET /divide?by=4 -> 200 100 / 4 = 25.0",
        "GET /divide?by=0 -> 500 ZeroDivisionError: division by zero",
        "GET /primes?below=many -> 400 below must be an integer",
        "GET /nowhere -> 404 no such page",
        "server stopped",
    ],
    "socket_server.py": ["'hello multiprocess world' -> 3 words, longest multiprocess", "'' -> 0 words, longest -"],
}


def run_example(name: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=150,
        env=env,
        cwd=EXAMPLES.parent,
    )


def test_every_example_is_covered():
    # dask_cluster.py needs mp-dask (CPython 3.10+): tests/dask/test_example.py runs it.
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(EXPECTED) | {"benchmark.py", "dask_cluster.py"}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name, method):
    result = run_example(name, method)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for expected in EXPECTED[name]:
        assert expected in lines, (expected, result.stdout, result.stderr)


def test_benchmark_example_prints_a_ratio():
    result = run_example("benchmark.py", "fork", "200")
    assert result.returncode == 0, result.stderr
    ratio_line = result.stdout.splitlines()[-1]
    assert ratio_line.startswith("ratio (multiprocess / multiprocessing): ")
    assert float(ratio_line.rsplit(" ", 1)[1]) > 0

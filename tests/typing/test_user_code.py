"""What a user's type checker sees: ``user_code.py`` checked by mypy, and run.

The file holds ``assert_type`` expectations on the public API (contexts,
``Pool`` and its results, queues, locks, ``Manager()``, shared memory,
``multiprocess.pool``/``managers``/``dummy``, ``mp_core``); mypy must find
0 errors in it, and the same file must run, so each expectation is about
code that works.  A deliberately wrong expectation must make mypy fail, so
the check can fail.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
USER_CODE = Path(__file__).with_name("user_code.py")

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed"),
]


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One cache for the module's runs: the first checks the standard
    # library's stubs, the others reuse them.
    return tmp_path_factory.mktemp("mypy_cache")


def run_mypy(cache: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    # From the repository root, so that its [tool.mypy] configuration holds;
    # only the given files are reported on (the packages have their own run).
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(cache), "--follow-imports=silent", *map(str, files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
    )


def test_user_code_type_checks_with_no_error(mypy_cache: Path) -> None:
    result = run_mypy(mypy_cache, USER_CODE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Success: no issues found in 1 source file"), result.stdout


def test_a_wrong_expectation_fails_the_check(mypy_cache: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong_expectation.py"
    wrong.write_text(
        "from typing_extensions import assert_type\n"
        "import multiprocess as mp\n"
        "def square(x: int) -> int:\n"
        "    return x * x\n"
        "with mp.Pool(1) as pool:\n"
        "    assert_type(pool.map(square, [1]), list[str])\n"
        "reveal_type(mp.get_context('spawn').Queue())\n"
        "reveal_type(mp.Manager().dict())\n"
    )
    result = run_mypy(mypy_cache, wrong)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert f'{wrong}:6: error: Expression is of type "list[int]", not "list[str]"  [assert-type]' in lines
    assert f'{wrong}:7: note: Revealed type is "mp_sync.queues.Queue[Any]"' in lines
    assert f'{wrong}:8: note: Revealed type is "mp_managers._proxytypes.DictProxy"' in lines
    assert lines[-1] == "Found 1 error in 1 file (checked 1 source file)"


def test_user_code_runs() -> None:
    result = subprocess.run([sys.executable, str(USER_CODE)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["user code ran"]

"""The static checks that CI runs before the tests: lint, format, types, layers.

Usage (from the repository root, in the venv that ``requirements-dev.txt``
made)::

    python -m tools.lint                 # every check; a summary line each
    python -m tools.lint mypy            # one check (or several, by name)
    python -m tools.lint --list          # name<TAB>command, one check a line (.ci/run loops over them)

The checks, in order:

* ``ruff-check``: ``ruff check .`` (rules in the root ``pyproject.toml``);
* ``ruff-format``: ``ruff format --check .``;
* ``mypy``: ``mypy`` on every ``packages/*/src`` and on the typing test
  ``tests/typing`` (user code with ``assert_type`` expectations) when it exists;
* ``import-linter``: ``lint-imports``, the layers contract in the root
  ``pyproject.toml`` (arrows point down: DESIGN.md).

The tools are pinned in ``requirements-dev.txt`` and installed on CPython
3.11 or later only; they are run from this interpreter's ``bin`` directory,
so the venv need not be activated.  Exits 1 if any check failed (a tool that
is not installed counts as failed), 2 on an unknown check name.  Standard
library only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]


def mypy_targets(root: Path = REPO_ROOT) -> List[str]:
    """What mypy checks: every distribution's sources, and the typing test once it exists."""
    targets = [str(path.relative_to(root)) for path in sorted(root.glob("packages/*/src"))]
    if (root / "tests" / "typing").is_dir():
        targets.append("tests/typing")
    return targets


def checks(root: Path = REPO_ROOT) -> Dict[str, List[str]]:
    """Check name -> command line, in the order they run."""
    return {
        "ruff-check": ["ruff", "check", "--output-format", "concise", "."],
        "ruff-format": ["ruff", "format", "--check", "."],
        "mypy": ["mypy", *mypy_targets(root)],
        "import-linter": ["lint-imports", "--no-logo"],
    }


def tool_path(name: str) -> Optional[str]:
    """The executable *name* beside this interpreter (the venv's), else on ``PATH``."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def run_check(name: str, argv: Sequence[str], root: Path = REPO_ROOT) -> int:
    """Run one check with its output going straight through; return its exit status."""
    print(f"--- {name}: {' '.join(argv)}", flush=True)
    executable = tool_path(argv[0])
    if executable is None:
        print(
            f"{argv[0]} is not installed for {sys.executable}: pip install -r requirements-dev.txt "
            f"(the lint tools install on CPython 3.11 and later)",
            file=sys.stderr,
        )
        return 127
    return subprocess.run([executable, *argv[1:]], cwd=root).returncode


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.lint", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="CHECK", help="run only these checks (default: all)")
    parser.add_argument("--list", action="store_true", help="print each check's name and command line, and exit")
    args = parser.parse_args(argv)
    table = checks()
    if args.list:
        print("\n".join(f"{name}\t{' '.join(argv)}" for name, argv in table.items()))
        return 0
    unknown = [name for name in args.names if name not in table]
    if unknown:
        parser.error(f"unknown check {', '.join(unknown)} (known: {', '.join(table)})")
    results = []
    for name in args.names or list(table):
        started = time.monotonic()
        status = run_check(name, table[name])
        results.append((name, status, time.monotonic() - started))
    if len(results) > 1:
        print("--- summary")
        for name, status, seconds in results:
            verdict = "passed" if status == 0 else f"FAILED (exit status {status})"
            print(f"{name:<14} {verdict:<24} {seconds:5.1f}s  {' '.join(table[name])}")
    return 1 if any(status != 0 for _, status, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())

"""The interpreters the project supports, and where to find each one on this machine.

Usage (from the repository root)::

    python tools/interpreters.py            # one line per interpreter: name, path or '-', version
    python tools/interpreters.py --path 3.12

Supported: CPython 3.9 to 3.13 and PyPy 3.9 (``pypy3``).  A CPython
``3.X`` is ``python3.X`` on ``PATH`` if it runs and is that version, else
the newest pyenv build ``$(pyenv root)/versions/3.X.*`` (a pyenv shim on
``PATH`` fails unless pyenv has that version selected, so a shim that does
not answer is passed over).  PyPy is ``pypy3`` on ``PATH``.  The noxfile
and ``.ci/run`` both take the matrix from here, so they cannot drift apart.

Standard library only: this runs before anything is installed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

#: nox's names for the supported interpreters (``tests-3.9`` ... ``tests-pypy3``).
SUPPORTED: List[str] = ["3.9", "3.10", "3.11", "3.12", "3.13", "pypy3"]

_VERSION_PROBE = "import platform, sys; print(platform.python_implementation(), '%d.%d.%d' % sys.version_info[:3])"


def describe(executable: str) -> Optional[Tuple[str, str]]:
    """``(implementation, version)`` of the interpreter at ``executable``, or None if it does not run."""
    try:
        out = subprocess.run(
            [executable, "-c", _VERSION_PROBE],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            timeout=60,
            check=True,
            text=True,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return (out[0], out[1]) if len(out) == 2 else None


def pyenv_root() -> Optional[Path]:
    """pyenv's root directory (``PYENV_ROOT``, ``pyenv root``, or ``~/.pyenv``), if it exists."""
    candidates = []
    if os.environ.get("PYENV_ROOT"):
        candidates.append(os.environ["PYENV_ROOT"])
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            candidates.append(
                subprocess.run(
                    [pyenv, "root"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    timeout=60,
                    check=True,
                    text=True,
                ).stdout.strip()
            )
        except (OSError, subprocess.SubprocessError):
            pass
    candidates.append(os.path.expanduser("~/.pyenv"))
    for candidate in candidates:
        if candidate and (Path(candidate) / "versions").is_dir():
            return Path(candidate)
    return None


def _pyenv_builds(minor: str) -> List[Path]:
    """pyenv's CPython builds of ``3.X`` (final releases), newest first."""
    root = pyenv_root()
    if root is None:
        return []
    builds = []
    for entry in (root / "versions").iterdir():
        match = re.fullmatch(re.escape(minor) + r"\.(\d+)", entry.name)
        if match and (entry / "bin" / f"python{minor}").exists():
            builds.append((int(match.group(1)), entry / "bin" / f"python{minor}"))
    return [path for _, path in sorted(builds, reverse=True)]


def find(name: str) -> Optional[str]:
    """The path of a working interpreter for ``name`` (one of ``SUPPORTED``), or None."""
    if name == "pypy3":
        path = shutil.which("pypy3")
        found = describe(path) if path else None
        return path if found and found[0] == "PyPy" else None
    candidates = [shutil.which(f"python{name}")] + [str(p) for p in _pyenv_builds(name)]
    for path in candidates:
        if not path:
            continue
        found = describe(path)
        if found and found[0] == "CPython" and found[1].startswith(name + "."):
            return path
    return None


def find_all(names: Sequence[str] = SUPPORTED) -> Dict[str, Optional[str]]:
    """``find`` for every name."""
    return {name: find(name) for name in names}


def expose(directory: str) -> str:
    """Fill ``directory`` with links ``python3.X``/``pypy3`` to the interpreters found; return it.

    Put first on ``PATH``, it lets nox (which looks interpreters up by those
    names) use pyenv builds that pyenv has not selected, without shadowing
    any other command.
    """
    os.makedirs(directory, exist_ok=True)
    for name, path in find_all().items():
        link = os.path.join(directory, name if name == "pypy3" else f"python{name}")
        if not path:
            try:
                os.remove(link)
            except FileNotFoundError:
                pass
            continue
        # Made aside and renamed over the old one: several nox processes
        # (.ci/run's lanes) expose the same directory at the same time, and
        # none may see a link missing or fail on one that another just made.
        temporary = f"{link}.{os.getpid()}.tmp"
        if os.path.lexists(temporary):
            os.remove(temporary)
        os.symlink(path, temporary)
        os.replace(temporary, link)
    return directory


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--path",
        metavar="NAME",
        choices=SUPPORTED,
        help="print only the path of NAME (exit status 1 if it is not installed)",
    )
    args = parser.parse_args(argv)
    if args.path:
        path = find(args.path)
        if path is None:
            return 1
        print(path)
        return 0
    for name, path in find_all().items():
        found = describe(path) if path else None
        print(name, path or "-", " ".join(found) if found else "not installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""loky (joblib's process pool) and NumPy in a venv of their own, for the ``futures`` and ``zerocopy`` sections.

Like the upstream release (``upstream.py``), loky is kept out of the
interpreter that runs ours: a venv under the benchmark's cache directory
(``cache_dir()/loky-venv``), created on first use with the running
interpreter's ``python -m venv`` and ``pip install loky numpy``.  Its
workers run ``tools.bench.worker`` from this repository with the ``loky``
adapter (``impls.Loky``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Callable, List

from .runner import Implementation
from .upstream import cache_dir, venv_python

_PROBE = "import json, sys, loky, numpy; print(json.dumps([loky.__version__, list(sys.version_info[:2])]))"


class LokyUnavailable(RuntimeError):
    """The loky venv could not be created or does not work."""


def _probe(python: str) -> str:
    try:
        out = subprocess.run(
            [python, "-c", _PROBE], capture_output=True, text=True, timeout=120, cwd=os.path.expanduser("~")
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LokyUnavailable(f"cannot run {python}: {exc}") from exc
    if out.returncode != 0:
        raise LokyUnavailable(f"{python} cannot import loky and numpy: {out.stderr.strip()[-300:]}")
    version, (major, minor) = json.loads(out.stdout)
    if (major, minor) != tuple(sys.version_info[:2]):
        raise LokyUnavailable(f"{python} is Python {major}.{minor}, not {sys.version_info[0]}.{sys.version_info[1]}")
    return str(version)


def ensure_loky(log: Callable[[str], None] = print) -> tuple[str, str]:
    """``(interpreter, loky version)``: the cached venv, created (or repaired) if needed.

    Raises ``LokyUnavailable``.
    """
    venv = cache_dir() / "loky-venv"
    interpreter = venv_python(venv)
    if interpreter.exists():
        try:
            return str(interpreter), _probe(str(interpreter))
        except LokyUnavailable:
            pass
    log(f"creating the loky venv in {venv} (loky, numpy) ...")
    steps = []
    if not interpreter.exists():
        steps.append([sys.executable, "-m", "venv", str(venv)])
    steps.append([str(interpreter), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "loky", "numpy"])
    for cmd in steps:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LokyUnavailable(f"{' '.join(cmd)} failed: {exc}") from exc
        if done.returncode != 0:
            raise LokyUnavailable(f"{' '.join(cmd)} failed:\n{(done.stdout + done.stderr).strip()[-1500:]}")
    return str(interpreter), _probe(str(interpreter))


def with_loky(impls: List[Implementation], log: Callable[[str], None], notes: List[str]) -> List[Implementation]:
    """``impls`` followed by loky in its venv; if that cannot be had, ``impls`` alone, and a note says why."""
    try:
        python, version = ensure_loky(log=log)
    except LokyUnavailable as exc:
        notes.append(f"loky left out: {exc}")
        return list(impls)
    return [*impls, Implementation("loky", python, f"loky {version}")]

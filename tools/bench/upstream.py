"""The upstream ``multiprocess`` release, in a virtual environment of its own.

Upstream ``multiprocess`` and ours both import as ``multiprocess``, so the
upstream release can never share an interpreter with this repository's
editable install.  It lives in a venv under the user's cache directory
(``$XDG_CACHE_HOME/mp-bench/upstream-venv``, by default
``~/.cache/mp-bench/upstream-venv``), created on first use with the running
interpreter's ``python -m venv`` and ``pip install multiprocess==<version>``.
pip compiles the installed modules, so upstream imports start from bytecode
just like ours (see ``compile_sources``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

#: The upstream release we compare with (the last one before this rewrite).
UPSTREAM_VERSION = "0.70.19"

_PROBE = (
    "import json, sys, multiprocess, dill; "
    "print(json.dumps([multiprocess.__version__, dill.__version__, list(sys.version_info[:2]), "
    "multiprocess.__file__]))"
)

_REPO_ROOT = Path(__file__).resolve().parents[2]


class UpstreamUnavailable(RuntimeError):
    """The upstream venv could not be created or does not hold the expected release."""


def cache_dir() -> Path:
    """Where the benchmark keeps what it builds (honours ``XDG_CACHE_HOME``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mp-bench"


def venv_python(venv: Path) -> Path:
    """The interpreter of ``venv``."""
    if sys.platform == "win32":  # pragma: no cover - untested here
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def probe(python: str) -> tuple[str, str]:
    """Return ``(multiprocess version, dill version)`` as seen by ``python``.

    Run from a neutral directory so that nothing of this repository shadows
    the installed release.  Raises ``UpstreamUnavailable`` on failure.
    """
    try:
        out = subprocess.run(
            [python, "-c", _PROBE], capture_output=True, text=True, timeout=60, cwd=os.path.expanduser("~")
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UpstreamUnavailable(f"cannot run {python}: {exc}") from exc
    if out.returncode != 0:
        raise UpstreamUnavailable(f"{python} cannot import multiprocess: {out.stderr.strip()[-500:]}")
    mp_version, dill_version, (major, minor), location = json.loads(out.stdout)
    if Path(location).resolve().is_relative_to(_REPO_ROOT):
        raise UpstreamUnavailable(
            f"{python} imports this repository's multiprocess ({location}), not the upstream release"
        )
    if (major, minor) != tuple(sys.version_info[:2]):
        raise UpstreamUnavailable(
            f"{python} is Python {major}.{minor}, the benchmark runs on "
            f"{sys.version_info[0]}.{sys.version_info[1]}: the comparison would not be fair"
        )
    return mp_version, dill_version


def ensure_upstream(
    python: str | None = None, version: str = UPSTREAM_VERSION, log: Callable[[str], None] = print
) -> tuple[str, str, str]:
    """Return ``(interpreter, multiprocess version, dill version)`` for the upstream side.

    With ``python`` given, use that interpreter as it is (it must already have
    the release installed).  Otherwise create or reuse the cached venv,
    (re)installing ``multiprocess==version`` when the venv is missing, broken
    or holds another version.  Raises ``UpstreamUnavailable``.
    """
    if python:
        mp_version, dill_version = probe(python)
        if mp_version != version:
            log(f"note: {python} has multiprocess {mp_version}, not {version}")
        return python, mp_version, dill_version

    venv = cache_dir() / "upstream-venv"
    interpreter = venv_python(venv)
    if interpreter.exists():
        try:
            mp_version, dill_version = probe(str(interpreter))
            if mp_version == version:
                return str(interpreter), mp_version, dill_version
        except UpstreamUnavailable:
            pass
    log(f"creating the upstream venv in {venv} (multiprocess=={version}) ...")
    steps = []
    if not interpreter.exists():
        steps.append([sys.executable, "-m", "venv", str(venv)])
    steps.append(
        [str(interpreter), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"multiprocess=={version}"]
    )
    for cmd in steps:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise UpstreamUnavailable(f"{' '.join(cmd)} failed: {exc}") from exc
        if done.returncode != 0:
            raise UpstreamUnavailable(f"{' '.join(cmd)} failed:\n{(done.stdout + done.stderr).strip()[-1500:]}")
    mp_version, dill_version = probe(str(interpreter))
    return str(interpreter), mp_version, dill_version

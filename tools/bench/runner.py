"""Parent side: run measurements in fresh worker processes, one implementation each.

Every measurement of every implementation runs in a new interpreter
(``python -m tools.bench.worker``): ours and the stdlib with the running
interpreter (where our packages are installed editable), upstream with the
interpreter of its own venv (``upstream.py``).  A worker imports only the
implementation it measures, so neither imports nor caches of one
implementation touch another's figures.

On a busy machine the load drifts during a run, so implementations are
*interleaved*: a section asks for several rounds, and each round runs every
implementation once, in a rotated order.  Figures are medians over the
samples of all rounds.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Sequence, Tuple

from .stats import rotate

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Generous: a worker that takes longer than this is stuck, not slow.
WORKER_TIMEOUT = 300.0


@dataclass(frozen=True)
class Implementation:
    """One side of the comparison: a key (``ours``, ``stdlib``, ``upstream``, ``none``) and its interpreter."""

    key: str
    python: str
    description: str = ""


class WorkerError(RuntimeError):
    """A worker failed: it raised (the message holds its traceback), crashed or timed out."""


@dataclass
class Runner:
    """Starts worker processes and collects their JSON answers.

    ``implementations``: the compared implementations, in column order.
    """

    implementations: List[Implementation]
    cwd: Path = REPO_ROOT
    timeout: float = WORKER_TIMEOUT
    env: Dict[str, str] = field(default_factory=lambda: dict(os.environ))

    @property
    def keys(self) -> List[str]:
        return [impl.key for impl in self.implementations]

    def get(self, key: str) -> Implementation | None:
        """The implementation with ``key``, if it takes part in this run."""
        for impl in self.implementations:
            if impl.key == key:
                return impl
        return None

    def call(self, impl: Implementation, measure: str, params: Dict[str, Any] | None = None) -> Any:
        """Run ``measure`` (``module:name``) for ``impl`` in a fresh worker; return its result.

        Raises ``WorkerError`` if the measurement raised, the worker crashed
        or it ran past ``timeout``.
        """
        request = {"impl": impl.key, "measure": measure, "params": params or {}}
        with tempfile.TemporaryDirectory(prefix="mp-bench-") as tmp:
            out_path = os.path.join(tmp, "result.json")
            log_path = os.path.join(tmp, "worker.log")
            with open(log_path, "wb") as log:
                # Output to a file, not a pipe: helpers the measurement leaves
                # behind (a fork server) inherit it, and must not hold us up.
                cmd = [impl.python, "-m", "tools.bench.worker", json.dumps(request), out_path]
                try:
                    proc = subprocess.run(
                        cmd,
                        cwd=self.cwd,
                        env=self.env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        timeout=self.timeout,
                    )
                except subprocess.TimeoutExpired as exc:
                    raise WorkerError(f"{impl.key} {measure}: timed out after {self.timeout:.0f} s") from exc
            try:
                with open(out_path) as f:
                    answer = json.load(f)
            except (OSError, ValueError):
                with open(log_path, errors="replace") as f:
                    output = f.read()[-2000:]
                raise WorkerError(
                    f"{impl.key} {measure}: worker exited with {proc.returncode} and no result\n{output}"
                ) from None
        if not answer["ok"]:
            raise WorkerError(f"{impl.key} {measure} raised:\n{answer['error']}")
        return answer["result"]

    def interleaved(
        self, rounds: int, implementations: Sequence[Implementation] | None = None
    ) -> Iterator[Tuple[int, Implementation]]:
        """``(round, implementation)`` pairs: each round every implementation once, in rotated order."""
        impls = list(self.implementations if implementations is None else implementations)
        for r in range(rounds):
            for impl in rotate(impls, r):
                yield r, impl


def compile_sources(python: str, paths: Sequence[str], log: Callable[[str], None] = print) -> None:
    """Byte-compile ``paths`` with ``python`` so that timed imports read bytecode.

    This environment may set ``PYTHONDONTWRITEBYTECODE=1``: interpreters then
    still *read* ``__pycache__`` but never write it, and a package without
    bytecode would pay for compiling its sources on every import.  The stdlib
    and the upstream venv (pip compiles at install) have bytecode; this gives
    ours the same.  ``compileall`` writes regardless of the variable.
    """
    existing = [p for p in paths if os.path.exists(p)]
    if not existing:
        return
    done = subprocess.run([python, "-m", "compileall", "-q", *existing], capture_output=True, text=True)
    if done.returncode != 0:
        log(f"warning: compileall failed for {existing}: {(done.stdout + done.stderr).strip()[-500:]}")


def our_source_dirs(root: Path = REPO_ROOT) -> List[str]:
    """``packages/*/src`` and ``tools/bench``: what our workers import."""
    return sorted(glob.glob(str(root / "packages" / "*" / "src"))) + [str(root / "tools")]


def upstream_site_packages(python: str) -> List[str]:
    """The site-packages directories of the interpreter ``python`` (for ``compile_sources``)."""
    done = subprocess.run(
        [python, "-c", "import site, json; print(json.dumps(site.getsitepackages()))"],
        capture_output=True,
        text=True,
        cwd=os.path.expanduser("~"),
    )
    if done.returncode != 0:
        return []
    return json.loads(done.stdout)


@dataclass
class BenchContext:
    """What a section gets: the runner, the run's mode, and a logger."""

    runner: Runner
    quick: bool = False
    log: Callable[[str], None] = print

    def pick(self, default: Any, quick: Any) -> Any:
        """``quick`` under ``--quick``, else ``default``."""
        return quick if self.quick else default

    def collect(
        self,
        measure: str,
        params: Dict[str, Any],
        rounds: int,
        implementations: Sequence[Implementation] | None = None,
    ) -> Tuple[Dict[str, List[Any]], Dict[str, str]]:
        """Run ``measure`` for every implementation, ``rounds`` times, interleaved.

        Returns ``(results, errors)``: each implementation's list of results
        (one per round that succeeded) and, for an implementation that
        failed, its error message (later rounds of it are skipped).
        """
        results: Dict[str, List[Any]] = {}
        errors: Dict[str, str] = {}
        for _, impl in self.runner.interleaved(rounds, implementations):
            if impl.key in errors:
                continue
            started = time.perf_counter()
            try:
                results.setdefault(impl.key, []).append(self.runner.call(impl, measure, params))
            except WorkerError as exc:
                errors[impl.key] = str(exc)
                self.log(f"  {impl.key}: {str(exc).strip().splitlines()[-1]}")
            else:
                if time.perf_counter() - started > 30:
                    self.log(f"  {impl.key} {measure}: {time.perf_counter() - started:.0f} s")
        return results, errors


def short_error(message: str) -> str:
    """The last line of an error message (a traceback's exception line)."""
    lines = [line for line in message.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else message

"""Run one test module in its own process group, with per-test and per-module time limits.

The child (``child.py``, installed as ``_mpconf_runner``) is the leader of a
new session, so every process a test starts -- workers, fork server,
resource tracker, manager servers -- is in its process group.  When a test
outlives its limit the child's watchdog kills that group; when the module
outlives its limit we do.  Either way the run resumes with the test after the
one that hung (``--after``), in a fresh process, until the module's time is
spent.  Whatever is left in the group after a launch is killed too, so
nothing leaks into the next module.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .child import group_members, kill_group, test_before_fixtures
from .discover import TestModule
from .results import ModuleRun, finish_run, fold_records, parse_records, settle_unfinished
from .venv import Venv, clean_env

MAX_LAUNCHES = 40
GRACE = 5.0  # seconds a launch's leftover processes get to exit by themselves


@dataclass
class RunOptions:
    test_timeout: float = 60.0
    module_timeout: float = 900.0
    keywords: Sequence[str] = field(default_factory=tuple)
    out_dir: Path = Path(".")
    stubs: Dict[str, object] = field(default_factory=dict)
    suite: str = "multiprocessing"  # or "futures": ours also replaces the stdlib's ProcessPoolExecutor


def _group_alive(pgid: int) -> bool:
    """Whether a live (non-zombie) process is left in group *pgid*."""
    members = group_members(pgid, include_zombies=False)
    if members is not None:
        return bool(members)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clear_group(pgid: int, grace: float = GRACE) -> None:
    """Let the group's leftovers (resource tracker, fork server) finish for *grace* s, then kill them."""
    deadline = time.monotonic() + grace
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _group_alive(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _tail(path: Path, lines: int = 15, limit: int = 3000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _last_dump(path: Path) -> str:
    """The text after the last watchdog banner in the log (its traceback dump)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    banners = list(re.finditer(r"\*\*\* conformance: \S+ exceeded ", text))
    if not banners:
        return ""
    dump = text[banners[-1].start() :]
    end = dump.find("*** conformance: relaunching")
    return dump[:end] if end >= 0 else dump


def command(venv: Venv, tm: TestModule, results: Path, opts: RunOptions, after: Optional[str]) -> List[str]:
    cmd = [
        str(venv.python),
        "-X",
        "faulthandler",
        "-m",
        "_mpconf_runner",
        "--module",
        tm.module,
        "--results",
        str(results),
        "--test-timeout",
        f"{opts.test_timeout:g}",
    ]
    for glob in tm.include:
        cmd += ["--include", glob]
    for glob in tm.exclude:
        cmd += ["--exclude", glob]
    for kw in opts.keywords:
        cmd += ["-k", kw]
    if after is not None:
        cmd += ["--after", after]
    return cmd


def run_module(
    venv: Venv, tm: TestModule, impl: str, opts: RunOptions, known_plan: Optional[Sequence[str]] = None
) -> ModuleRun:
    """Run *tm* under *impl* (``ours`` or ``stdlib``) and return every test's outcome."""
    stem = f"{impl}-{tm.method}-{tm.name}"
    results_path = opts.out_dir / f"{stem}.jsonl"
    log_path = opts.out_dir / f"{stem}.log"
    workdir = opts.out_dir / "work" / stem
    workdir.mkdir(parents=True, exist_ok=True)
    for p in (results_path, log_path):
        if p.exists():
            p.unlink()
    run = ModuleRun(impl=impl, method=tm.method, name=tm.name, module=tm.module, log=str(log_path))
    env = clean_env(impl, opts.stubs, opts.suite)
    t_start = time.monotonic()
    deadline = t_start + opts.module_timeout
    after: Optional[str] = None
    offset = 0
    with open(log_path, "ab") as log:
        while run.launches < MAX_LAUNCHES:
            run.launches += 1
            if after is not None:
                log.write(f"\n*** conformance: relaunching after {after}\n".encode())
                log.flush()
            proc = subprocess.Popen(
                command(venv, tm, results_path, opts, after),
                cwd=str(workdir),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            limit_hit = False
            try:
                returncode: Optional[int] = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                limit_hit = True
                kill_group(proc.pid)
                returncode = proc.wait()
                log.write(f"\n*** conformance: module time limit ({opts.module_timeout:g} s) reached\n".encode())
                log.flush()
            finally:
                _clear_group(proc.pid)  # leftovers: orphaned workers, servers, trackers
            ended = time.time()
            text = results_path.read_text(encoding="utf-8", errors="replace") if results_path.exists() else ""
            records = parse_records(text[offset:])
            offset = len(text)
            summary = fold_records(run, records)
            if summary.done or run.import_error is not None or run.module_skip is not None:
                break
            if summary.unfinished is None and summary.timed_out is None:
                # Died outside any test (in a fixture, or before its plan): nothing to resume past.
                if not run.plan:
                    run.import_error = (
                        f"the test process exited with code {returncode} before listing its tests\n{_tail(log_path)}"
                    )
                break
            settle_unfinished(
                run,
                summary,
                test_timeout=opts.test_timeout,
                ended_at=ended,
                returncode=returncode,
                log_tail=_tail(log_path),
                module_limit_hit=limit_hit,
                dump=_last_dump(log_path),
            )
            if limit_hit or time.monotonic() >= deadline:
                run.module_timed_out = True
                break
            after = summary.unfinished or summary.timed_out
            resume_after = test_before_fixtures(after)
            if resume_after is not None:  # hung in the fixtures after a test: go on with the next test
                after = resume_after
                if run.plan and all(tid in run.outcomes for tid in run.plan):
                    break
    run.wall = round(time.monotonic() - t_start, 2)
    finish_run(run, known_plan)
    return run

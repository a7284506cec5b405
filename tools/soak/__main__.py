"""Command line: ``python -m tools.soak [--quick] [--only NAME,...] [--start-method M] [--rss-bound PCT]``.

Starts the runner (``runner.py``) in a session of its own with a private
``TMPDIR``, prints its figures as a table while it goes, then checks what
the run left once the runner has exited.  Exit status 0 when every bound
held, 1 when one broke, 2 when the runner itself failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Sequence

from . import RSS_BOUND_PERCENT, probes
from .workloads import BY_NAME

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: How long the run's processes and files may take to go once the runner has exited.
EXIT_SETTLE_SECONDS = 30.0

COLUMNS = [
    ("workload", 16),
    ("ops", 10),
    ("seconds", 8),
    ("RSS start", 10),
    ("RSS end", 10),
    ("growth", 8),
    ("fds", 13),
    ("threads", 13),
    ("leftovers", 9),
]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.soak",
        description="Soak the library: millions of small operations, then check "
        "that memory, descriptors and threads stayed flat and that "
        "nothing was left in /dev/shm, the temp dir or the process table.",
    )
    parser.add_argument("--quick", action="store_true", help="a hundredth of the operations (under a minute)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these workloads (repeatable or comma-separated): {', '.join(BY_NAME)}",
    )
    parser.add_argument(
        "--start-method",
        choices=["fork", "spawn", "forkserver"],
        default=None,
        help="the start method of every pool, queue consumer and manager (default: the platform's)",
    )
    parser.add_argument(
        "--rss-bound",
        type=float,
        default=RSS_BOUND_PERCENT,
        metavar="PCT",
        help=f"RSS growth after warm-up that breaks the bound (default {RSS_BOUND_PERCENT:g}%%)",
    )
    args = parser.parse_args(argv)
    args.only = [name.strip() for item in args.only for name in item.split(",") if name.strip()]
    unknown = [name for name in args.only if name not in BY_NAME]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    return args


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def format_row(cells: Sequence[str]) -> str:
    return "  ".join(str(cell).ljust(width) for cell, (_, width) in zip(cells, COLUMNS)).rstrip()


def format_workload(row: Dict[str, Any]) -> str:
    """One table line: fds and threads as before setup → after warm-up → end → after teardown."""
    return format_row(
        [
            row["name"],
            f"{row['ops']:,}",
            f"{row['seconds']:.1f}",
            _mib(row["rss_start"]),
            _mib(row["rss_end"]),
            f"{row['rss_growth']:+.2f}%",
            "→".join(map(str, row["fds"])),
            "→".join(map(str, row["threads"])),
            str(len(row["leftovers"])),
        ]
    )


def _after_exit(start: Dict[str, Any], tmp_root: str) -> List[str]:
    """What the run left once its runner has exited: processes of its session, /dev/shm entries, files."""
    sid = start["pid"]
    deadline = time.monotonic() + EXIT_SETTLE_SECONDS
    while True:
        members = probes.session_members(sid)
        shm = probes.shm_entries(start["prefixes"])
        files = probes.files_under(tmp_root)
        if not (members or shm or files) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for pid in members:  # not ours to keep: killed by pid
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return (
        [f"process {pid} of the run still alive" for pid in sorted(members)]
        + [f"/dev/shm/{name}" for name in sorted(shm)]
        + [f"$TMPDIR/{path}" for path in sorted(files)]
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tmp_root = tempfile.mkdtemp(prefix="mp-soak-")
    env = dict(
        os.environ,
        TMPDIR=tmp_root,
        PYTHONPATH=os.pathsep.join([REPO_ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
    )
    command = [sys.executable, "-m", "tools.soak.runner", "--rss-bound", str(args.rss_bound)]
    if args.quick:
        command.append("--quick")
    if args.only:
        command += ["--only", ",".join(args.only)]
    if args.start_method:
        command += ["--start-method", args.start_method]
    broken: List[str] = []
    start: Dict[str, Any] = {}
    done = False
    began = time.monotonic()
    runner = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT, env=env, start_new_session=True
    )
    try:
        assert runner.stdout is not None
        for line in runner.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                print(line, end="", flush=True)  # not ours: pass it on
                continue
            if event["event"] == "start":
                start = event
                print(
                    f"soak: Python {event['python']}, start method {event['start_method']}, "
                    f"{'quick' if args.quick else 'full'} run, runner pid {event['pid']}, TMPDIR {tmp_root}"
                )
                print(format_row([title for title, _ in COLUMNS]), flush=True)
            elif event["event"] == "workload":
                print(format_workload(event), flush=True)
                broken += [f"{event['name']}: {problem}" for problem in event["broken"]]
            elif event["event"] == "done":
                done = True
        runner.wait()
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    if start:
        broken += [f"after exit: {leftover}" for leftover in _after_exit(start, tmp_root)]
    shutil.rmtree(tmp_root, ignore_errors=True)
    print(
        f"soak: fds and threads read as before setup→after warm-up→end→after teardown; "
        f"{time.monotonic() - began:.0f} s in all"
    )
    if not done or runner.returncode != 0:
        print(f"soak: the runner failed (exit status {runner.returncode}); see its traceback above")
        return 2
    for problem in broken:
        print(f"soak: BOUND BROKEN: {problem}")
    print("soak: every bound held" if not broken else f"soak: {len(broken)} bound(s) broken")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())

"""Command line: ``python -m tools.fuzz [--profile ci|long] [--only PROTOCOL] [--examples N]``.

Runs the hypothesis fuzzers of ``tests/fuzz`` (the connection framing, the
handshake both ways, the pool's frames both ways, a manager server) with the chosen profile
(``long``: 100,000 examples per fuzzer unless ``--examples`` says otherwise)
and prints, per fuzzer, the examples run, the failures found and the time.
Exits non-zero if any fuzzer failed; the failing example is in the output
above the table (hypothesis prints it, with a blob to reproduce it).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[2]
PROTOCOLS = {
    "connection": "tests/fuzz/test_fuzz_connection.py",
    "handshake": "tests/fuzz/test_fuzz_handshake.py",
    "pool": "tests/fuzz/test_fuzz_pool.py",
    "managers": "tests/fuzz/test_fuzz_managers.py",
}

_TEST = re.compile(r"^(tests/fuzz/\S+::\S+):$")
_COUNTS = re.compile(r"- (\d+) passing, (\d+) failing, and (\d+) invalid")
_PHASE_TIME = re.compile(r"- during \w+ phase \(([\d.]+) seconds\)")


def parse_statistics(output: str) -> Dict[str, Dict[str, float]]:
    """Per test: passing, failing, invalid examples and seconds, from ``--hypothesis-show-statistics``."""
    stats: Dict[str, Dict[str, float]] = {}
    current: Optional[str] = None
    for line in output.splitlines():
        line = line.strip()
        match = _TEST.match(line)
        if match:
            current = match.group(1)
            stats[current] = {"passing": 0, "failing": 0, "invalid": 0, "seconds": 0.0}
            continue
        if current is None:
            continue
        match = _COUNTS.search(line)
        if match:
            for key, value in zip(("passing", "failing", "invalid"), match.groups()):
                stats[current][key] += int(value)
            continue
        match = _PHASE_TIME.search(line)
        if match:
            stats[current]["seconds"] += float(match.group(1))
    return stats


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.fuzz", description=__doc__.split("\n\n")[1])
    parser.add_argument("--profile", choices=["ci", "long"], default="long")
    parser.add_argument(
        "--only", action="append", default=[], choices=sorted(PROTOCOLS), help="fuzz only this protocol (repeatable)"
    )
    parser.add_argument("--examples", type=int, help="examples per fuzzer for the long profile (default 100000)")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.examples:
        env["MP_FUZZ_EXAMPLES"] = str(args.examples)
    files = [PROTOCOLS[name] for name in (args.only or PROTOCOLS)]
    command = [
        sys.executable,
        "-m",
        "pytest",
        *files,
        "-q",
        "-p",
        "no:cacheprovider",
        f"--hypothesis-profile={args.profile}",
        "--hypothesis-show-statistics",
    ]
    print("$", " ".join(command), flush=True)
    began = time.monotonic()
    lines: List[str] = []
    with subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            lines.append(line)
        code = proc.wait()
    total = time.monotonic() - began
    stats = parse_statistics("".join(lines))
    print(f"\n{'fuzzer':<56} {'cases':>9} {'failing':>8} {'invalid':>8} {'seconds':>9}")
    for name, figures in stats.items():
        cases = int(figures["passing"] + figures["failing"])
        print(
            f"{name.split('::')[-1]:<56} {cases:>9} {int(figures['failing']):>8} "
            f"{int(figures['invalid']):>8} {figures['seconds']:>9.1f}"
        )
    print(f"total {total:.0f} s, pytest exit code {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())

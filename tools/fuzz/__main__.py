"""Command line: ``python -m tools.fuzz [--profile ci|long] [--only TARGET] [--cases N] [--seed N]``."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from typing import Sequence

from . import PROFILES, TARGETS


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.fuzz",
                                     description="Fuzz the wire protocols with hypothesis and print the figures.")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="ci",
                        help="ci: a few hundred cases per target; long: at least 100,000 per target")
    parser.add_argument("--only", action="append", metavar="TARGET", default=[],
                        help=f"fuzz only this target (repeatable or comma-separated): {', '.join(TARGETS)}")
    parser.add_argument("--cases", type=int, help="cases per target (instead of the profile's)")
    parser.add_argument("--start-method", action="append", default=[], dest="start_methods",
                        help="start method of the processes under test (repeatable; default: fork, spawn, "
                             "forkserver, the cases split among them)")
    parser.add_argument("--seed", type=int, help="hypothesis seed, to replay a run")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    only = [name for item in args.only for name in item.split(",") if name]
    unknown = sorted(set(only) - set(TARGETS))
    if unknown:
        print(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    cases = args.cases or PROFILES[args.profile]
    start_methods = args.start_methods or ["fork", "spawn", "forkserver"]
    report = {}
    failed = False
    for name in only or list(TARGETS):
        module = importlib.import_module(TARGETS[name])
        started = time.monotonic()
        print(f"{name}: {cases} cases ({args.profile} profile), start methods {', '.join(start_methods)}",
              flush=True)
        try:
            figures = module.main(cases, start_methods, args.seed)
        except Exception as exc:  # hypothesis re-raises the (shrunk) failure, or a group of them
            failed = True
            import traceback

            traceback.print_exc()
            print(f"{name}: FAILED after {time.monotonic() - started:.0f} s: {type(exc).__name__}: {exc}",
                  flush=True)
            report[name] = {"failed": f"{type(exc).__name__}: {exc}"}
            continue
        for run in figures:
            print(f"  {json.dumps(run)}", flush=True)
        print(f"{name}: passed, {sum(run['cases'] for run in figures)} cases in "
              f"{time.monotonic() - started:.0f} s", flush=True)
        report[name] = figures
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

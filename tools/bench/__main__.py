"""Command line: ``python -m tools.bench [--quick] [--only SECTION] [--upstream-python PATH] [--json FILE]``."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any, Dict, List, Sequence

from . import upstream
from .report import IMPLEMENTATIONS, SectionResult, render_summary
from .runner import (
    BenchContext,
    Implementation,
    Runner,
    compile_sources,
    our_source_dirs,
    upstream_site_packages,
)
from .sections import all_sections


def parse_args(argv: Sequence[str] | None, section_names: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench",
        description="Benchmark ours against the stdlib multiprocessing and upstream multiprocess, side by side.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer samples: under 2 min (default run: about 25 min, on 2 cores)"
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="SECTION",
        default=[],
        help=f"run only this section (repeatable or comma-separated): {', '.join(section_names)}",
    )
    parser.add_argument(
        "--upstream-python",
        metavar="PATH",
        help="an interpreter that already has the upstream multiprocess installed "
        f"(default: a cached venv with multiprocess=={upstream.UPSTREAM_VERSION})",
    )
    parser.add_argument(
        "--no-upstream", action="store_true", help="compare with the stdlib only (no upstream venv, no network)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write every figure and raw sample to FILE")
    parser.add_argument("--list", action="store_true", help="list the sections and exit")
    args = parser.parse_args(argv)
    only: List[str] = [name.strip() for item in args.only for name in item.split(",") if name.strip()]
    unknown = [name for name in only if name not in section_names]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(section_names)}")
    args.only = only
    return args


def our_versions() -> Dict[str, str]:
    """Versions of this repository's distributions and of dill, read from their metadata (nothing imported)."""
    from importlib import metadata

    found = {}
    for dist in ("multiprocess", "mp-core", "dill"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def environment(implementations: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """What the figures depend on: the machine, its load, the interpreter and the versions compared."""
    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover
        load = None
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg": load,
        "implementations": implementations,
    }


def main(argv: Sequence[str] | None = None) -> int:
    sections = all_sections()
    args = parse_args(argv, list(sections))
    if args.list:
        for name, section in sections.items():
            print(f"{name:12} {section.title}" + (f"  (issue {section.issue})" if section.issue else ""))
        return 0

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.perf_counter()
    versions: Dict[str, Dict[str, Any]] = {
        "ours": dict(our_versions(), python=sys.executable),
        "stdlib": {"python": sys.executable},
    }
    ours = ", ".join(f"{name} {version}" for name, version in versions["ours"].items() if name != "python")
    impls = [
        Implementation("ours", sys.executable, f"this repository, editable ({ours})"),
        Implementation("stdlib", sys.executable, "multiprocessing"),
    ]
    if not args.no_upstream:
        try:
            python, mp_version, dill_version = upstream.ensure_upstream(args.upstream_python, log=log)
        except upstream.UpstreamUnavailable as exc:
            log(f"upstream left out: {exc}")
            versions["upstream"] = {"error": str(exc)}
        else:
            impls.append(Implementation("upstream", python, f"multiprocess {mp_version}, dill {dill_version}"))
            versions["upstream"] = {"python": python, "multiprocess": mp_version, "dill": dill_version}
            compile_sources(python, upstream_site_packages(python), log=log)
    compile_sources(sys.executable, our_source_dirs(), log=log)

    runner = Runner(impls)
    ctx = BenchContext(runner, quick=args.quick, log=log)
    env = environment(versions)
    print(f"# multiprocess benchmarks ({'quick' if args.quick else 'default'} run)\n")
    print(
        f"Python {env['python']} ({env['implementation']}) on {env['platform']}, {env['cpus']} CPUs, "
        f"load average {', '.join(f'{x:.2f}' for x in env['loadavg']) if env['loadavg'] else 'n/a'}"
    )
    for impl in impls:
        print(f"- {impl.key}: {impl.description} — {impl.python}")
    missing = [k for k in IMPLEMENTATIONS if k not in runner.keys]
    if missing:
        print(f"- not compared: {', '.join(missing)}")
    print(flush=True)

    results: List[SectionResult] = []
    for name, section in sections.items():
        if args.only and name not in args.only:
            continue
        log(f"[{name}] {section.title}")
        section_started = time.perf_counter()
        result = section.run(ctx)
        result.elapsed = time.perf_counter() - section_started
        results.append(result)
        print(result.render(), end="\n\n", flush=True)
    summary = render_summary(results)
    if summary:
        print(summary, end="\n\n")
    total = time.perf_counter() - started
    end_load = environment({})["loadavg"]
    print(
        f"total {total:.1f} s; load average at the end {', '.join(f'{x:.2f}' for x in end_load) if end_load else 'n/a'}"
    )
    if args.json:
        document = {
            "environment": env,
            "quick": args.quick,
            "elapsed": total,
            "sections": [r.to_json() for r in results],
        }
        with open(args.json, "w") as f:
            json.dump(document, f, indent=1)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

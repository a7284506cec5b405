"""Command line of ``python -m tools.conformance`` (see the package docstring)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import allowlist as allowlist_mod
from . import discover_futures
from .discover import METHODS, Layout, discover, select_modules
from .report import format_categories, format_failures, method_rows, table
from .results import ModuleRun, Verdict, add_counts, compare, finish_run, fold_records, parse_records
from .runner import RunOptions, run_module
from .venv import DEFAULT_CACHE, REPO_ROOT, SUITES, ensure_venv, install_support_files, preflight

#: what each suite runs, for the help and the messages
SUITE_TESTS = {
    "multiprocessing": "the multiprocessing tests (test_multiprocessing_<method>, _test_multiprocessing)",
    "futures": "the process-pool tests of test_concurrent_futures",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tools.conformance",
        description="Run CPython's multiprocessing test suite against multiprocess (and the stdlib).",
    )
    p.add_argument(
        "--suite",
        choices=SUITES,
        default="multiprocessing",
        help="multiprocessing (default): CPython's multiprocessing tests, multiprocessing -> multiprocess; "
        "futures: the process-pool tests of test_concurrent_futures, with multiprocess.futures."
        "ProcessPoolExecutor in place of the stdlib's as well",
    )
    p.add_argument(
        "--only",
        action="append",
        choices=METHODS,
        metavar="METHOD",
        help="start method to run (repeatable; default: fork, spawn and forkserver)",
    )
    p.add_argument(
        "--module",
        action="append",
        default=[],
        metavar="NAME",
        help="test module to run by its short name: processes, threads, manager, misc, "
        "main_handling; with --suite futures: process_pool, shutdown, wait, as_completed, init, "
        "deadlock (repeatable; default: all)",
    )
    p.add_argument(
        "-k",
        dest="keywords",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only tests whose id matches (unittest -k rules; repeatable)",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--baseline", action="store_true", help="also run the stdlib, side by side")
    g.add_argument("--baseline-only", action="store_true", help="run only the stdlib")
    g.add_argument(
        "--baseline-json",
        type=Path,
        action="append",
        metavar="FILE",
        help="compare with the stdlib results saved by earlier --json runs (repeatable)",
    )
    g.add_argument(
        "--baseline-run",
        type=Path,
        action="append",
        metavar="DIR",
        help="compare with the stdlib results in the directory of an earlier run of the same "
        "interpreter (its stdlib-*.jsonl files; repeatable)",
    )
    p.add_argument("--list-failures", action="store_true", help="print failing test ids with their key error lines")
    p.add_argument(
        "--lines",
        type=int,
        default=0,
        metavar="N",
        help="with --list-failures, also print the first N lines of each traceback",
    )
    p.add_argument(
        "--categories",
        type=int,
        default=15,
        metavar="N",
        help="print the N largest groups of failures by error line (0: none)",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="write every outcome as JSON")
    p.add_argument("--test-timeout", type=float, default=60.0, metavar="S", help="per-test limit (60)")
    p.add_argument("--module-timeout", type=float, default=900.0, metavar="S", help="per-module limit (900)")
    p.add_argument(
        "--allowlist", type=Path, metavar="FILE", help="default: allowlist.toml, allowlist_futures.toml for futures"
    )
    p.add_argument("--python", default=sys.executable, help="interpreter to test (default: this one)")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--out", type=Path, help="directory for logs and raw results (default: under --cache-dir)")
    p.add_argument("--rebuild-venv", action="store_true")
    p.add_argument("--setup-only", action="store_true", help="prepare the venv, check the hook, and stop")
    p.add_argument(
        "--stub",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="diagnostic only: give ours a missing module attribute (e.g. "
        "multiprocessing.util.abstract_sockets_supported=True, a Python literal) to look past "
        "an error that stops the whole test module from importing; the report says so",
    )
    p.add_argument(
        "--api-gaps",
        action="store_true",
        help="list the multiprocessing.* names the suite uses that ours lacks, and stop",
    )
    return p


def _say(msg: str = "") -> None:
    print(msg, flush=True)


def _progress(run: ModuleRun) -> str:
    c = run.counts()
    extra = ""
    if run.import_error is not None:
        extra = "  IMPORT ERROR: " + run.import_error.strip().splitlines()[-1][:150]
    elif run.module_timed_out:
        extra = "  MODULE TIME LIMIT"
    if run.launches > 1:
        extra += f"  ({run.launches} launches)"
    return (
        f"[{run.method}/{run.name}] {run.impl:6s} {c['total']:4d} tests: {c['passed']} passed, "
        f"{c['failed']} failed, {c['errors']} errors, {c['skipped']} skipped, {c['timeout']} timed out"
        + (f", {c['not_run']} not run" if c["not_run"] else "")
        + f"  in {run.wall:.1f} s{extra}"
    )


def parse_stubs(items: Sequence[str]) -> Dict[str, object]:
    """``["multiprocessing.util.x=True"]`` -> ``{"multiprocessing.util.x": True}``."""
    import ast

    stubs: Dict[str, object] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("multiprocessing.") or name.count(".") < 2:
            raise SystemExit(f"--stub {item!r}: expected multiprocessing.MODULE.NAME=VALUE")
        try:
            stubs[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise SystemExit(f"--stub {item!r}: VALUE must be a Python literal") from None
    return stubs


def restrict(run: ModuleRun, keywords: Sequence[str]) -> ModuleRun:
    """*run* cut down to the tests that ``-k`` selects, as if it had been run with them."""
    if not keywords:
        return run
    from .child import select

    class _Id(str):
        def id(self) -> str:
            return str(self)

    keep = {str(t) for t in select([_Id(i) for i in list(run.outcomes) + run.plan], keywords=keywords)}
    run.outcomes = {k: o for k, o in run.outcomes.items() if k in keep}
    run.plan = [i for i in run.plan if i in keep]
    return run


def load_baseline(path: Path, suite: str = "multiprocessing") -> Dict[Tuple[str, str], ModuleRun]:
    data = json.loads(path.read_text(encoding="utf-8"))
    saved = data.get("suite", "multiprocessing")
    if saved != suite:
        raise SystemExit(f"--baseline-json {path}: results of the {saved} suite, not of {suite}")
    runs = [ModuleRun.from_json(r) for r in data.get("runs", []) if r.get("impl") == "stdlib"]
    return {(r.method, r.name): r for r in runs}


def load_baseline_run(directory: Path, modules: Sequence[Any]) -> Dict[Tuple[str, str], ModuleRun]:
    """The stdlib's outcomes recorded in an earlier run's directory, for the test modules given.

    A module whose stdlib results are missing there is left out (it has no
    baseline, as in a run without one).
    """
    loaded: Dict[Tuple[str, str], ModuleRun] = {}
    for tm in modules:
        path = directory / f"stdlib-{tm.method}-{tm.name}.jsonl"
        if not path.exists():
            continue
        run = ModuleRun(impl="stdlib", method=tm.method, name=tm.name, module=tm.module, log=str(path))
        fold_records(run, parse_records(path.read_text(encoding="utf-8")))
        finish_run(run)
        loaded[(tm.method, tm.name)] = run
    return loaded


def print_api_gaps(venv) -> int:
    from .gaps import gaps, scan, test_sources

    sources = test_sources(venv)
    found = gaps(scan(venv, "stdlib", sources), scan(venv, "ours", sources))
    _say(
        f"\nmultiprocessing.* names used by {', '.join(p.name for p in sources)} "
        f"that resolve in the stdlib but not in ours: {len(found)}"
    )
    for gap in found:
        _say(f"  {gap['name']:60s} {gap['where']:32s} {gap['problem']}")
    return 1 if found else 0


def discover_suite(suite: str, stdlib: Path, methods: Sequence[str]) -> Layout:
    """The test modules of *suite* in the interpreter's ``test`` package under *stdlib*."""
    if suite == "futures":
        return discover_futures.discover(stdlib, methods)
    return discover(stdlib, methods)


def preflight_problem(suite: str, impl: str, pf: Dict[str, Any]) -> Optional[str]:
    """Why the preflight report *pf* of *impl* makes the run meaningless, or ``None``."""
    if impl == "ours" and not pf.get("is_ours"):
        return "the import hook did not make multiprocessing resolve to multiprocess"
    if impl == "stdlib" and pf.get("is_ours"):
        return "the stdlib run resolved multiprocessing to ours"
    if suite != "futures":
        return None
    stdlib_executor = "concurrent.futures.process"
    for where in ("executor", "spawn_child_executor"):
        found = str(pf.get(where))
        if impl == "ours" and (found == stdlib_executor or found.startswith("error") or found == "None"):
            return f"{where}: ProcessPoolExecutor comes from {found}, not from multiprocess.futures"
        if impl == "stdlib" and found != stdlib_executor:
            return f"{where}: the stdlib run's ProcessPoolExecutor comes from {found}"
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    suite = args.suite
    methods = [m for m in METHODS if not args.only or m in args.only]
    run_ours = not args.baseline_only
    stubs = parse_stubs(args.stub)
    run_stdlib = args.baseline or args.baseline_only
    allowlist_path = args.allowlist or allowlist_mod.default_path(suite)
    allow = allowlist_mod.load(allowlist_path)
    if suite == "futures" and args.api_gaps:
        _say("--api-gaps scans the multiprocessing suite only")
        return 2

    venv = ensure_venv(args.python, args.cache_dir, REPO_ROOT, rebuild=args.rebuild_venv, log=_say)
    layout = discover_suite(suite, venv.stdlib, methods)
    if not layout.modules:
        _say(
            f"no {SUITE_TESTS[suite]} under {venv.stdlib}/test: install the interpreter's test suite "
            "(Debian: libpython3.X-testsuite)"
        )
        return 2
    install_support_files(venv.site, REPO_ROOT, layout.generated_sources)
    try:
        modules = select_modules(layout.modules, args.module)
    except ValueError as exc:
        _say(str(exc))
        return 2

    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or args.cache_dir / "runs" / (stamp if suite == "multiprocessing" else f"{suite}-{stamp}")
    out.mkdir(parents=True, exist_ok=True)
    _say(f"python {venv.version} in venv {venv.path}")
    _say(f"suite: {SUITE_TESTS[suite]}")
    _say(f"test layout: {layout.kind}; {len(modules)} module runs; logs and raw results in {out}")
    _say(f"allow-list: {len(allow)} entries ({allowlist_path})")
    if stubs:
        _say(
            f"*** DIAGNOSTIC RUN: ours is given stand-ins for missing names: {stubs}; "
            "these results are a preview, not conformance ***"
        )

    impls = (["stdlib"] if run_stdlib else []) + (["ours"] if run_ours else [])
    for impl in ["stdlib", "ours"] if args.setup_only else impls:
        pf = preflight(venv, impl, out, suite)
        _say(f"preflight {impl}: {json.dumps(pf)}")
        problem = preflight_problem(suite, impl, pf)
        if problem is not None:
            _say(f"{problem}: stopping")
            return 2
    if args.setup_only:
        return 0
    if args.api_gaps:
        return print_api_gaps(venv)

    baseline: Dict[Tuple[str, str], ModuleRun] = {}
    for path in args.baseline_json or ():
        loaded = load_baseline(path, suite)
        wanted = {(tm.method, tm.name) for tm in modules}
        baseline.update((key, restrict(run, args.keywords)) for key, run in loaded.items() if key in wanted)
        _say(f"baseline: {len(loaded)} stdlib module runs from {path}")
    for directory in args.baseline_run or ():
        loaded = load_baseline_run(directory, modules)
        baseline.update((key, restrict(run, args.keywords)) for key, run in loaded.items())
        _say(f"baseline: {len(loaded)} stdlib module runs from {directory}")
    ours: Dict[Tuple[str, str], ModuleRun] = {}
    walls: Dict[Tuple[str, str], float] = {}
    opts = RunOptions(
        test_timeout=args.test_timeout,
        module_timeout=args.module_timeout,
        keywords=tuple(args.keywords),
        out_dir=out,
        stubs=stubs,
        suite=suite,
    )
    t0 = time.monotonic()
    for tm in modules:
        key = (tm.method, tm.name)
        if run_stdlib:
            baseline[key] = run_module(venv, tm, "stdlib", opts)
            walls[("stdlib", tm.method)] = walls.get(("stdlib", tm.method), 0.0) + baseline[key].wall
            _say(_progress(baseline[key]))
        if run_ours:
            known = baseline[key].plan if key in baseline else None
            ours[key] = run_module(venv, tm, "ours", opts, known_plan=known)
            walls[("ours", tm.method)] = walls.get(("ours", tm.method), 0.0) + ours[key].wall
            _say(_progress(ours[key]))
    total_wall = time.monotonic() - t0

    verdicts: Dict[Tuple[str, str], List[Verdict]] = {
        key: compare(run, baseline.get(key), allow) for key, run in ours.items()
    }
    all_verdicts = [v for vs in verdicts.values() for v in vs]
    show_stdlib = bool(baseline)

    _say()
    Counts = Optional[Dict[str, int]]
    totals: List[Tuple[str, Counts, Counts, Counts]] = []
    for method in methods:
        names = [tm.name for tm in modules if tm.method == method]
        if not names:
            continue
        rows, tot = method_rows(method, names, baseline, ours, verdicts)
        totals.append((method, *tot))
        wall = "; ".join(
            f"{impl} {walls[(impl, method)]:.0f} s" for impl in ("stdlib", "ours") if (impl, method) in walls
        )
        _say(f"== {method} ==  wall time: {wall or 'n/a'}")
        _say(table(rows, show_stdlib, run_ours))
        _say()
    if len(totals) > 1:
        grand: List[Counts] = [None, None, None]
        for _, *parts in totals:
            for i, part in enumerate(parts):
                if part is not None:
                    grand[i] = add_counts(grand[i] or {}, part)
        _say("== all start methods ==")
        _say(table(totals + [("total", grand[0], grand[1], grand[2])], show_stdlib, run_ours, label="start method"))
        _say()
    _say(f"total wall time: {total_wall:.0f} s")

    regressions = [v for v in all_verdicts if v.kind == "regression"]
    allowed = [v for v in all_verdicts if v.kind == "allowed"]
    fixed = [v for v in all_verdicts if v.kind == "fixed"]
    timeouts = [v for v in all_verdicts if v.outcome.status == "timeout"]
    if run_ours and args.categories and regressions:
        what = "failures of ours where the stdlib passes" if show_stdlib else "failures of ours"
        _say(f"\ntop categories of {what}:")
        _say(format_categories(all_verdicts, top=args.categories))
    if allowed:
        _say(f"\nallow-listed ({len(allowed)}):")
        _say(format_failures(allowed, ("allowed",), lines=0))
    if fixed:
        _say(f"\npassing with ours where the stdlib fails or skips: {len(fixed)}")
    if args.list_failures:
        if run_ours:
            _say(f"\nfailures of ours{' where the stdlib passes' if show_stdlib else ''} ({len(regressions)}):")
            _say(format_failures(all_verdicts, ("regression",), lines=args.lines))
        else:
            stdlib_bad = [
                Verdict(o, None, "regression")
                for r in baseline.values()
                for o in r.outcomes.values()
                if o.status not in ("passed", "xfail", "skipped")
            ]
            _say(f"\nfailures of the stdlib ({len(stdlib_bad)}):")
            _say(format_failures(stdlib_bad, ("regression",), lines=args.lines))

    if args.json:
        payload = {
            "python": venv.version,
            "suite": suite,
            "venv": str(venv.path),
            "layout": layout.kind,
            "out": str(out),
            "argv": list(argv) if argv is not None else sys.argv[1:],
            "stubs": stubs,
            "walls": {f"{i}/{m}": w for (i, m), w in walls.items()},
            "runs": [r.to_json() for r in list(baseline.values()) + list(ours.values())],
            "verdicts": [
                {
                    "id": v.outcome.id,
                    "method": k[0],
                    "module": k[1],
                    "kind": v.kind,
                    "status": v.outcome.status,
                    "stdlib": v.baseline,
                    "reason": v.reason,
                }
                for k, vs in verdicts.items()
                for v in vs
                if v.kind != "ok"
            ],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=1), encoding="utf-8")
        _say(f"wrote {args.json}")

    if not run_ours:
        return 0
    if stubs:
        _say(f"\n*** DIAGNOSTIC RUN with stand-ins {stubs}: a preview, not conformance ***")
    _say(
        f"\nresult: {len(regressions)} failures of ours"
        + (" where the stdlib passes" if show_stdlib else "")
        + f", {len(timeouts)} timeouts, {len(allowed)} allow-listed, {len(fixed)} fixed"
    )
    return 1 if regressions or timeouts else 0

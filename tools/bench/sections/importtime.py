"""``import``: what ``import multiprocess`` costs, against ``import multiprocessing``.

What is measured, per implementation, in two set-ups:

* **clean**: ``python -S`` with ``PYTHONPATH`` naming exactly what the
  implementation needs (ours: ``packages/*/src`` and the site-packages that
  hold dill — what the editable install's ``.pth`` files add; stdlib: the
  same path; upstream: its venv's site-packages).  No ``site``, no ``.pth``
  side effects: every module the package needs is paid for by the package.
  This is the set-up the target is judged on;
* **as installed**: the interpreters as they are, ``site`` and all.  In
  this environment the main interpreter's ``.pth`` files import a hundred
  modules before any program starts (``typing`` and ``importlib.resources``
  among them), so packages that need those modules look cheaper here than
  on a user's machine; reported for information.

and two ways:

* wall time: ``python -c "import X"`` minus ``python -c "pass"`` of the
  same interpreter and set-up (start-up cancels out), many runs, commands
  shuffled, medians;
* ``python -X importtime -c "import X"``: the cumulative time the import
  system reports for the top module (no start-up noise at all), medians.

ours: ``multiprocess`` of this repository (also ``mp_core`` alone);
stdlib: ``multiprocessing``; upstream: ``multiprocess`` in its venv.
Commands run from an empty directory, after ``compileall`` of our sources
(``runner.compile_sources``), so every side imports from bytecode.  Also
reported: whether the import pulled in ``dill`` (ours must not) and which
costly modules each package loads.

Targets, clean set-up: ours ≤ 1.5× the stdlib (issue 2), ≤ 1.05× (issue 19).
"""

from __future__ import annotations

import json
import os
import random
import site
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

from ..report import SectionResult, Target
from ..runner import BenchContext, our_source_dirs, upstream_site_packages
from ..stats import median_or_none, summarize_columns
from . import Section, register

MEASURES: Dict[str, object] = {}  # measured from the parent: no worker needed

#: Modules worth naming when a package loads them.
OF_NOTE = (
    "dill",
    "typing",
    "importlib.abc",
    "importlib.resources",
    "logging",
    "tempfile",
    "subprocess",
    "socket",
    "selectors",
    "threading",
    "pickle",
    "hmac",
)


@dataclass(frozen=True)
class Interpreter:
    """How to run one implementation's interpreter in one set-up."""

    python: str
    flags: Tuple[str, ...] = ()
    pythonpath: str | None = None

    def command(self, *args: str) -> List[str]:
        return [self.python, *self.flags, *args]

    def env(self) -> Dict[str, str]:
        env = dict(os.environ)
        if self.pythonpath is not None:
            env["PYTHONPATH"] = self.pythonpath
        return env


@dataclass
class Measured:
    """Samples of one set-up: wall times per command and importtime cumulatives per case."""

    wall: Dict[str, List[float]] = field(default_factory=dict)
    cumulative: Dict[str, List[int]] = field(default_factory=dict)
    modules: Dict[str, Dict[str, Tuple[int, int]]] = field(default_factory=dict)


def parse_importtime(stderr: str) -> Dict[str, Tuple[int, int]]:
    """``{module: (self µs, cumulative µs)}`` from ``-X importtime`` output.

    Nested modules are indented in the report; the name is stripped here.
    A module reported twice keeps its first entry.
    """
    found: Dict[str, Tuple[int, int]] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:") :].split("|")
        if len(parts) != 3:
            continue
        try:
            self_us, cumulative_us = int(parts[0]), int(parts[1])
        except ValueError:
            continue  # the header line
        found.setdefault(parts[2].strip(), (self_us, cumulative_us))
    return found


def _wall(interp: Interpreter, code: str, cwd: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        interp.command("-c", code),
        cwd=cwd,
        env=interp.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{interp.command('-c', code)} failed: {done.stderr.decode(errors='replace')[-500:]}")
    return elapsed


def _importtime(interp: Interpreter, module: str, cwd: str) -> Dict[str, Tuple[int, int]]:
    done = subprocess.run(
        interp.command("-X", "importtime", "-c", f"import {module}"),
        cwd=cwd,
        env=interp.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return parse_importtime(done.stderr)


def _preloaded(interp: Interpreter, cwd: str) -> List[str]:
    """The modules an interpreter has imported before the program's first line."""
    done = subprocess.run(
        interp.command("-c", "import sys, json; print(json.dumps(sorted(sys.modules)))"),
        cwd=cwd,
        env=interp.env(),
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout) if done.returncode == 0 else []


def _measure(
    setup: Dict[str, Interpreter],
    cases: List[Tuple[str, str]],
    repeats: int,
    importtime_runs: int,
    rng: random.Random,
    cwd: str,
) -> Measured:
    measured = Measured()
    baselines = {interp for interp in setup.values()}
    commands = [("pass", interp, "pass") for interp in baselines]
    commands += [(f"{key}:{module}", setup[key], f"import {module}") for key, module in cases]
    for _, interp, code in commands:  # warm the OS caches, untimed
        _wall(interp, code, cwd)
    for _ in range(repeats):
        rng.shuffle(commands)
        for name, interp, code in commands:
            tag = f"pass@{interp}" if name == "pass" else name
            measured.wall.setdefault(tag, []).append(_wall(interp, code, cwd))
    for _ in range(importtime_runs):
        for key, module in rng.sample(cases, len(cases)):
            table = _importtime(setup[key], module, cwd)
            if module in table:
                measured.cumulative.setdefault(f"{key}:{module}", []).append(table[module][1])
            measured.modules[f"{key}:{module}"] = table
    return measured


def _extra_wall(measured: Measured, setup: Dict[str, Interpreter], key: str, module: str) -> float | None:
    base = median_or_none(measured.wall.get(f"pass@{setup[key]}"))
    value = median_or_none(measured.wall.get(f"{key}:{module}"))
    return None if base is None or value is None else value - base


def run(ctx: BenchContext) -> SectionResult:
    result = SectionResult("import", "import time of the top-level package")
    keys = ctx.runner.keys
    main_module = {key: "multiprocessing" if key == "stdlib" else "multiprocess" for key in keys}
    cases = [(key, main_module[key]) for key in keys]
    if "ours" in keys:
        cases.append(("ours", "mp_core"))
    ours_path = os.pathsep.join(our_source_dirs()[:-1] + site.getsitepackages())
    clean: Dict[str, Interpreter] = {}
    installed: Dict[str, Interpreter] = {}
    for key in keys:
        python = ctx.runner.get(key).python  # type: ignore[union-attr]
        path = os.pathsep.join(upstream_site_packages(python)) if key == "upstream" else ours_path
        clean[key] = Interpreter(python, ("-S",), path)
        installed[key] = Interpreter(python)
    repeats = ctx.pick(25, 10)
    importtime_runs = ctx.pick(10, 4)
    rng = random.Random(20240601)
    with tempfile.TemporaryDirectory(prefix="mp-bench-import-") as cwd:
        measured = {
            "clean": _measure(clean, cases, repeats, importtime_runs, rng, cwd),
            "installed": _measure(installed, cases, ctx.pick(15, 6), ctx.pick(5, 2), rng, cwd),
        }
        preloaded = {key: _preloaded(installed[key], cwd) for key in keys}

    columns = [(k, k) for k in keys]
    wall_table = result.table("wall time: python -c 'import X' minus python -c 'pass' (median)", columns, name="wall")
    cumulative_table = result.table(
        "python -X importtime: cumulative time of the top module (median)", columns, name="-X importtime"
    )
    labels = {"clean": "clean interpreter (-S, PYTHONPATH)", "installed": "as installed here (site, .pth files)"}
    for setup_name, setup in (("clean", clean), ("installed", installed)):
        m = measured[setup_name]
        targets = [Target("stdlib", 1.5), Target("stdlib", 1.05)] if setup_name == "clean" else []
        wall_table.add(labels[setup_name], {k: _extra_wall(m, setup, k, main_module[k]) for k in keys}, targets)
        seconds = {k: [us / 1e6 for us in m.cumulative.get(f"{k}:{main_module[k]}", [])] for k in keys}
        medians, spreads = summarize_columns(seconds)
        cumulative_table.add(labels[setup_name], medians, targets, spreads)
    if "ours" in keys:
        m = measured["clean"]
        wall_table.add("ours: import mp_core alone, clean", {"ours": _extra_wall(m, clean, "ours", "mp_core")})
        cumulative_table.add(
            "ours: import mp_core alone, clean",
            {"ours": median_or_none([us / 1e6 for us in m.cumulative.get("ours:mp_core", [])])},
        )

    result.notes.append("packages: " + ", ".join(f"{k} `{main_module[k]}`" for k in keys))
    for key in keys:
        table = measured["clean"].modules.get(f"{key}:{main_module[key]}", {})
        loaded = [name for name in OF_NOTE if name in table]
        result.notes.append(
            f"{key}, clean: `import {main_module[key]}` loads {len(table)} modules; "
            f"{'dill among them' if 'dill' in table else 'not dill'}; of note: "
            f"{', '.join(loaded) or 'none'}"
        )
    for key in keys:
        early = [
            name for name in ("typing", "importlib.resources", "importlib.abc", "tempfile") if name in preloaded[key]
        ]
        result.notes.append(
            f"{key}, as installed: site has imported {len(preloaded[key])} modules before the "
            f"program starts{' (' + ', '.join(early) + ')' if early else ''}"
        )
    if "ours" in keys:
        table = measured["clean"].modules.get("ours:multiprocess", {})
        heaviest = sorted(((cum, name) for name, (_, cum) in table.items()), reverse=True)
        ours_own = [(v[0], name) for name, v in table.items() if name.split(".")[0] in ("mp_core", "multiprocess")]
        result.notes.append(
            "ours, clean: largest cumulative imports: "
            + ", ".join(f"{name} {us / 1000:.1f} ms" for us, name in heaviest[:6])
        )
        result.notes.append(
            "ours, clean: own modules by self time: "
            + ", ".join(f"{name} {us} µs" for us, name in sorted(ours_own, reverse=True)[:5])
        )
    result.notes.append(
        f"wall time: {repeats} runs per command (as installed: {ctx.pick(15, 6)}), shuffled; "
        f"-X importtime: {importtime_runs} runs per package (as installed: {ctx.pick(5, 2)})"
    )
    result.data = {
        name: {
            "wall": m.wall,
            "importtime_cumulative_us": m.cumulative,
            "modules": {k: sorted(v) for k, v in m.modules.items()},
        }
        for name, m in measured.items()
    }
    result.data["preloaded_by_site"] = preloaded
    return result


register(
    Section("import", "wall time and -X importtime of importing the package, clean and as installed", run, issue=2)
)

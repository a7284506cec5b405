"""Install each distribution alone in a fresh venv and prove it works alone.

Usage (from the repository root)::

    python tools/check_isolated.py                  # every dist under packages/
    python tools/check_isolated.py --dist mp-core --dist mp-sync
    python -m tools.check_isolated --keep           # keep the temp dir to inspect

For every selected distribution this:

1. builds its wheel and the wheels of its internal dependencies
   (``python -m build`` if installed, else ``python -m pip wheel --no-deps``;
   the build backend is fetched from PyPI into pip's isolated build env);
2. creates a fresh ``python -m venv`` and installs the wheel with
   ``--no-index``, from a find-links folder holding *only* the wheels of the
   dist and of its declared internal dependencies, plus third-party wheels
   (dill...) downloaded once from PyPI.  ``--no-index`` matters: a project of
   the same name on PyPI must never stand in for one of ours;
3. runs a probe in that venv (``python -I``, outside the checkout, so neither
   the working tree nor PYTHONPATH can leak in) that imports the module,
   compares ``__version__`` with ``__about__.py``, runs a ``fork`` smoke test
   (mp_core: a ``Process``; mp_pool: a ``Pool`` mapping a lambda), and checks
   that every internal module the dist does not depend on fails to import
   with ImportError.

Prints one PASS/FAIL row per distribution and exits 1 on any failure (2 on a
usage error).  Distribution metadata comes from ``tools/versions.py`` (the
dev requirements); the probe in each venv needs only the standard library.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence, Set

try:
    from tools import versions
except ImportError:  # run as a script: tools/ itself is sys.path[0]
    import versions  # type: ignore[no-redef]

BUILD_TIMEOUT = 600
VENV_TIMEOUT = 300
INSTALL_TIMEOUT = 600
PROBE_TIMEOUT = 180
#: How long the smoke test waits for its child; well under PROBE_TIMEOUT so a
#: hung child is reported by the probe itself rather than as a probe timeout.
SMOKE_JOIN_SECONDS = 30
OUTPUT_TAIL_LINES = 20

#: The distributions whose probe runs something, not only imports: a fork
#: ``Process`` for mp-core, a ``Pool`` (with mp-core alone under it) for mp-pool.
SMOKE_TESTS: Dict[str, str] = {"mp-core": "process", "mp-pool": "pool", "mp-dask": "dask"}

#: The distributions that bring the stdlib's multiprocessing in through a
#: third-party dependency (not our code), and which one: no warning for them.
STDLIB_MP_BY_DEPENDENCY: Dict[str, str] = {"mp-dask": "distributed starts its workers with it"}

#: The order in which check categories appear as table columns.
CATEGORIES = ("build", "install", "import", "isolation", "smoke")

PASS, FAIL, SKIP, WARN = "PASS", "FAIL", "skip", "warn"

# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclass
class Check:
    """One verdict about one distribution."""

    category: str
    name: str
    status: str
    detail: str = ""
    output: str = ""


@dataclass
class DistReport:
    """Every check run for one distribution, in order."""

    dist: versions.Distribution
    checks: List[Check] = field(default_factory=list)

    def add(self, category: str, name: str, status: str, detail: str = "", output: str = "") -> Check:
        """Record a check, print it at once (a slow run shows progress), return it."""
        check = Check(category, name, status, detail, output)
        self.checks.append(check)
        suffix = f": {detail}" if detail else ""
        print(f"  [{status:>4}] {self.dist.name}: {name}{suffix}", flush=True)
        if output and status == FAIL:
            for line in tail(output).splitlines():
                print(f"           | {line}")
        return check

    @property
    def failed(self) -> bool:
        """True if any check failed (or none could run at all)."""
        return not self.checks or any(c.status == FAIL for c in self.checks)

    def cell(self, category: str) -> str:
        """Summary of one category for the table."""
        statuses = {c.status for c in self.checks if c.category == category}
        if FAIL in statuses:
            return FAIL
        if PASS in statuses:
            return PASS
        return SKIP if statuses else "-"

    def first_failure(self) -> str:
        """A one-line reason for the table's last column."""
        for check in self.checks:
            if check.status == FAIL:
                return f"{check.name}: {check.detail}" if check.detail else check.name
        return ""


def tail(text: str, lines: int = OUTPUT_TAIL_LINES) -> str:
    """The last *lines* non-blank lines of *text*."""
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def error_summary(output: str) -> str:
    """The most telling line of a failed tool's output (e.g. ``OSError: ...``).

    pip wraps the backend's traceback in its own banner; the last line that
    looks like ``SomethingError: message`` is usually the real cause.
    """
    lines = [line.strip().lstrip("╰─>│ ").strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.endswith(("Error", "Exception")) and " " not in head and ":" in line:
            return line
    for line in reversed(lines):
        if line.lower().startswith("error"):
            return line
    return lines[-1] if lines else "no output"


# --------------------------------------------------------------------------
# Subprocesses
# --------------------------------------------------------------------------


@dataclass
class RunResult:
    """Outcome of :func:`run_command`."""

    returncode: int | None  # None: killed after the timeout
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def hermetic_env() -> Dict[str, str]:
    """The environment for creating venvs and installing into them.

    Drops every ``PIP_*`` variable and loads no pip configuration file
    (``PIP_CONFIG_FILE=os.devnull``): a machine-wide ``find-links``, extra
    index or constraints file must not change what lands in an isolated venv.
    ``PYTHONPATH``/``PYTHONHOME`` go too, so the venv's pip runs only its own code.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PIP_") and key not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")
    }
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run_command(
    argv: Sequence[str], timeout: float, cwd: Path | None = None, env: Dict[str, str] | None = None
) -> RunResult:
    """Run *argv* with stdout+stderr merged; never raises for the child's failure.

    The child gets its own session so that, on timeout, the whole process
    group (including anything it forked) is killed, not just the leader.
    """
    try:
        proc = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(cwd) if cwd else None,
            env=env,
            text=True,
            errors="replace",
            start_new_session=(os.name == "posix"),
        )
    except OSError as exc:
        return RunResult(127, f"cannot run {argv[0]}: {exc}")
    try:
        output, _ = proc.communicate(timeout=timeout)
        return RunResult(proc.returncode, output)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        output, _ = proc.communicate()
        return RunResult(None, f"{output}\n(killed after {timeout:.0f} s)")


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill *proc* and the process group it leads (POSIX), or just *proc*."""
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass


# --------------------------------------------------------------------------
# Dependency graph
# --------------------------------------------------------------------------


def internal_closure(dist: versions.Distribution, by_key: Dict[str, versions.Distribution]) -> List[str]:
    """Keys of every internal distribution *dist* needs, transitively (sorted).

    Requirements on names that have no folder are skipped here; ``versions.py
    check`` reports them.
    """
    seen: Set[str] = set()
    stack = [dist]
    while stack:
        current = stack.pop()
        for req in current.requirements:
            if req.key in by_key and req.key not in seen and req.key != dist.key:
                seen.add(req.key)
                stack.append(by_key[req.key])
    return sorted(seen)


def third_party_requirements(dists: Sequence[versions.Distribution], internal: frozenset) -> List[str]:
    """Every non-internal requirement string of *dists*, deduplicated, in order."""
    found: List[str] = []
    for dist in dists:
        for req in dist.requirements:
            if req.key not in internal and req.raw not in found:
                found.append(req.raw)
    return found


# --------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------


def build_command(folder: Path, outdir: Path) -> List[str]:
    """The command that builds *folder*'s wheel into *outdir*.

    ``python -m build`` when installed (it is the standard front end), else
    ``pip wheel --no-deps``; both build in an isolated env, so the backend
    version in ``[build-system] requires`` is the one actually used.
    """
    if importlib.util.find_spec("build") is not None:
        return [sys.executable, "-m", "build", "--wheel", "--outdir", str(outdir), str(folder)]
    return [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--disable-pip-version-check",
        "-w",
        str(outdir),
        str(folder),
    ]


@dataclass
class BuiltWheel:
    """A build attempt: ``path`` is set on success, ``error`` and ``output`` on failure."""

    path: Path | None = None
    error: str = ""
    output: str = ""


def build_wheel(dist: versions.Distribution, outdir: Path) -> BuiltWheel:
    """Build *dist*'s wheel into its own *outdir*; exactly one wheel must result."""
    outdir.mkdir(parents=True, exist_ok=True)
    result = run_command(build_command(dist.folder, outdir), BUILD_TIMEOUT)
    wheels = sorted(outdir.glob("*.whl"))
    if not result.ok:
        return BuiltWheel(error=error_summary(result.output), output=result.output)
    if len(wheels) != 1:
        return BuiltWheel(error=f"expected one wheel in {outdir}, found {len(wheels)}", output=result.output)
    return BuiltWheel(path=wheels[0])


def wheel_init_problem(dist: versions.Distribution, wheel: Path) -> str:
    """Empty if the wheel ships ``<import_name>/__init__.py``, else why not.

    Without it the module would still "import" as a namespace package,
    which would hide a missing ``__init__.py`` behind a passing import.
    """
    member = f"{dist.import_name}/__init__.py"
    try:
        with zipfile.ZipFile(wheel) as archive:
            if member in archive.namelist():
                return ""
    except zipfile.BadZipFile as exc:
        return f"{wheel.name} is not a valid wheel: {exc}"
    source = dist.folder / "src" / dist.import_name / "__init__.py"
    hint = f"{source} does not exist" if not source.exists() else "check [tool.hatch.build.targets.wheel]"
    return f"{wheel.name} has no {member} ({hint})"


def download_third_party(requirements: Sequence[str], dest: Path) -> RunResult:
    """Download *requirements* (and their dependencies) as wheels/sdists into *dest*."""
    dest.mkdir(parents=True, exist_ok=True)
    if not requirements:
        return RunResult(0, "")
    return run_command(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--disable-pip-version-check",
            "-q",
            "--dest",
            str(dest),
            *requirements,
        ],
        INSTALL_TIMEOUT,
    )


# --------------------------------------------------------------------------
# The probe (runs inside each venv)
# --------------------------------------------------------------------------

PROBE_MARKER = "CHECK-ISOLATED-REPORT:"

#: Executed as ``python -I -c PROBE_SOURCE '<json args>'`` inside the venv.
#: Kept free of anything but the standard library and our own module.
PROBE_SOURCE = r'''
import importlib, json, os, sys, traceback

args = json.loads(sys.argv[1])
report = {"import": None, "version": None, "smoke": None, "forbidden": {}, "installed": [], "stdlib_mp": False}

def describe(exc):
    return "%s: %s" % (type(exc).__name__, exc)

try:
    from importlib.metadata import distributions
    report["installed"] = sorted({(d.metadata["Name"] or "") for d in distributions()})
except Exception as exc:
    report["installed"] = ["<cannot list: %s>" % describe(exc)]

module = None
try:
    module = importlib.import_module(args["module"])
    # __file__ is None for a namespace package: "importable" without an __init__.py
    report["import"] = [True, getattr(module, "__file__", None)]
except BaseException as exc:
    report["import"] = [False, describe(exc), traceback.format_exc()]

if module is not None:
    report["version"] = getattr(module, "__version__", None)
    # DESIGN.md: no library code imports the stdlib multiprocessing
    report["stdlib_mp"] = "multiprocessing" in sys.modules

def reap(pid):
    """Kill and reap *pid* if it is still our unreaped child; ignore it otherwise."""
    if not pid:
        return
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == 0:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
    except ChildProcessError:
        pass  # already reaped by the library under test

def smoke_process():
    get_context = getattr(module, "get_context", None)
    if get_context is None:
        return ["skip", "%s has no get_context yet: import-only" % args["module"]]
    if not hasattr(os, "fork"):
        return ["skip", "no fork on this platform"]
    ctx = get_context("fork")
    Process = getattr(ctx, "Process", None)
    if Process is None:
        return ["skip", "the fork context has no Process yet: import-only"]
    proc = Process(target=os.getpid)
    proc.start()
    try:
        proc.join(args["join_seconds"])
        hung = proc.exitcode is None
    finally:
        # whatever went wrong in join/exitcode, never leave the child behind
        reap(getattr(proc, "pid", None))
    if hung:
        return ["fail", "child did not exit within %s s" % args["join_seconds"]]
    if proc.exitcode != 0:
        return ["fail", "child exit code %r, expected 0" % proc.exitcode]
    return ["pass", "fork Process(target=os.getpid) exited 0"]

def smoke_dask():
    # A lambda on a LocalCluster of one worker process that the pool owns.
    import logging
    pool = module.Pool(1, cluster_options={"silence_logs": logging.CRITICAL})
    try:
        squares = pool.map_async(lambda x: x * x, range(5)).get(args["join_seconds"])
        pool.close()
        pool.join()
    finally:
        pool.terminate()
    if squares != [0, 1, 4, 9, 16]:
        return ["fail", "Pool(1).map(lambda x: x * x, range(5)) returned %r" % (squares,)]
    return ["pass", "LocalCluster Pool(1).map(lambda x: x * x, range(5)) == [0, 1, 4, 9, 16]"]

def smoke_pool():
    # A lambda: the pool works alone with only mp-core's serializer (dill) under it.
    if not hasattr(os, "fork"):
        return ["skip", "no fork on this platform"]
    import mp_core
    pool = module.Pool(2, context=mp_core.get_context("fork"))
    try:
        squares = pool.map_async(lambda x: x * x, range(5)).get(args["join_seconds"])
        pool.close()
    finally:
        pool.terminate()
        pool.join()
    if squares != [0, 1, 4, 9, 16]:
        return ["fail", "Pool(2).map(lambda x: x * x, range(5)) returned %r" % (squares,)]
    return ["pass", "fork Pool(2).map(lambda x: x * x, range(5)) == [0, 1, 4, 9, 16]"]

if module is not None and args["smoke"]:
    try:
        report["smoke"] = {"process": smoke_process, "pool": smoke_pool, "dask": smoke_dask}[args["smoke"]]()
    except BaseException as exc:
        report["smoke"] = ["fail", describe(exc), traceback.format_exc()]

for name in args["forbidden"]:
    try:
        found = importlib.import_module(name)
        report["forbidden"][name] = [False, "imported from %s" % getattr(found, "__file__", None)]
    except ImportError as exc:
        report["forbidden"][name] = [True, describe(exc)]
    except BaseException as exc:
        report["forbidden"][name] = [False, "raised %s instead of ImportError" % describe(exc)]

sys.stdout.flush()
print(__MARKER__ + json.dumps(report))
'''.replace("__MARKER__", repr(PROBE_MARKER))


def parse_probe_output(output: str) -> dict | None:
    """The probe's JSON report, or ``None`` if it never got to print one."""
    for line in reversed(output.splitlines()):
        if line.startswith(PROBE_MARKER):
            return json.loads(line[len(PROBE_MARKER) :])
    return None


# --------------------------------------------------------------------------
# Per-distribution check
# --------------------------------------------------------------------------


def venv_python(venv_dir: Path) -> Path:
    """The interpreter inside a venv created by ``python -m venv``."""
    if os.name == "nt":
        return venv_dir / "Scripts" / "python.exe"
    return venv_dir / "bin" / "python"


@dataclass
class Workspace:
    """The temp folders shared by one run."""

    root: Path

    @property
    def wheels(self) -> Path:
        return self.root / "wheels"

    @property
    def third_party(self) -> Path:
        return self.root / "third-party"

    def links(self, dist: versions.Distribution) -> Path:
        return self.root / "links" / dist.key

    def venv(self, dist: versions.Distribution) -> Path:
        return self.root / "venvs" / dist.key

    def probe_cwd(self) -> Path:
        """An empty folder to run probes in, so the cwd holds no importable code."""
        path = self.root / "probe-cwd"
        path.mkdir(exist_ok=True)
        return path


def check_distribution(
    dist: versions.Distribution,
    by_key: Dict[str, versions.Distribution],
    built: Dict[str, BuiltWheel],
    third_party: RunResult,
    workspace: Workspace,
) -> DistReport:
    """Run every check for *dist*; stops at the first step others depend on."""
    report = DistReport(dist)
    deps = internal_closure(dist, by_key)
    own = built[dist.key]
    if own.path is None:
        report.add("build", "build wheel", FAIL, own.error, own.output)
        return report
    report.add("build", "build wheel", PASS, own.path.name)
    init_problem = wheel_init_problem(dist, own.path)
    report.add("build", "wheel contents", FAIL if init_problem else PASS, init_problem)
    dep_wheels = [path for key in deps if (path := built[key].path) is not None]
    if len(dep_wheels) != len(deps):
        missing = ", ".join(key for key in deps if built[key].path is None)
        report.add("install", "dependencies built", FAIL, f"cannot test alone: {missing} did not build")
        return report
    if not third_party.ok:
        report.add("install", "third-party download", FAIL, error_summary(third_party.output), third_party.output)
        return report

    python = install_into_fresh_venv(report, dist, own.path, dep_wheels, workspace)
    if python is None:
        return report
    probe_venv(report, dist, python, deps, by_key, workspace)
    return report


def install_into_fresh_venv(
    report: DistReport, dist: versions.Distribution, own_wheel: Path, dep_wheels: List[Path], workspace: Workspace
) -> Path | None:
    """Create *dist*'s venv and install *own_wheel* into it; return the venv's python.

    The only internal wheels pip can see are *own_wheel* and *dep_wheels*
    (copied into a links folder of their own), so an undeclared dependency
    on a sibling fails here instead of being satisfied by accident.
    """
    links = workspace.links(dist)
    links.mkdir(parents=True, exist_ok=True)
    for wheel in [own_wheel, *dep_wheels]:
        shutil.copy2(wheel, links / wheel.name)

    venv_dir = workspace.venv(dist)
    created = run_command([sys.executable, "-m", "venv", str(venv_dir)], VENV_TIMEOUT, env=hermetic_env())
    if not created.ok:
        report.add("install", "create venv", FAIL, error_summary(created.output), created.output)
        return None
    python = venv_python(venv_dir)
    installed = run_command(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-index",
            "--find-links",
            str(links),
            "--find-links",
            str(workspace.third_party),
            str(links / own_wheel.name),
        ],
        INSTALL_TIMEOUT,
        env=hermetic_env(),
    )
    if not installed.ok:
        report.add("install", "pip install", FAIL, error_summary(installed.output), installed.output)
        return None
    report.add("install", "pip install", PASS, f"with {len(dep_wheels)} internal dependency wheel(s)")
    return python


def probe_venv(
    report: DistReport,
    dist: versions.Distribution,
    python: Path,
    deps: List[str],
    by_key: Dict[str, versions.Distribution],
    workspace: Workspace,
) -> None:
    """Run the probe in *dist*'s venv and turn its report into checks."""
    allowed = {dist.key, *deps}
    forbidden = sorted(other.import_name for key, other in by_key.items() if key not in allowed)
    probe_args = {
        "module": dist.import_name,
        "forbidden": forbidden,
        "smoke": SMOKE_TESTS.get(dist.key),
        "join_seconds": SMOKE_JOIN_SECONDS,
    }
    result = run_command(
        [str(python), "-I", "-c", PROBE_SOURCE, json.dumps(probe_args)],
        PROBE_TIMEOUT,
        cwd=workspace.probe_cwd(),
        env=hermetic_env(),
    )
    probe = parse_probe_output(result.output)
    if probe is None:
        report.add("import", "probe", FAIL, f"probe crashed ({error_summary(result.output)})", result.output)
        return

    check_installed_set(report, probe["installed"], allowed, set(by_key))
    imported, detail, *trace = probe["import"]
    if not imported:
        report.add("import", f"import {dist.import_name}", FAIL, detail, "".join(trace))
    elif detail is None:
        report.add(
            "import", f"import {dist.import_name}", FAIL, "imported only as a namespace package (no __init__.py)"
        )
    else:
        report.add("import", f"import {dist.import_name}", PASS, detail)
        check_version(report, dist, probe["version"])
        if probe["stdlib_mp"] and dist.key in STDLIB_MP_BY_DEPENDENCY:
            report.add("import", "no stdlib multiprocessing of ours", PASS, STDLIB_MP_BY_DEPENDENCY[dist.key])
        elif probe["stdlib_mp"]:
            report.add(
                "import", "no stdlib multiprocessing", WARN, f"import {dist.import_name} imported multiprocessing"
            )
    for name, (ok, why) in sorted(probe["forbidden"].items()):
        report.add("isolation", f"import {name} fails", PASS if ok else FAIL, why)
    if probe_args["smoke"] and probe["smoke"] is not None:
        status, detail, *trace = probe["smoke"]
        report.add(
            "smoke",
            f"{probe_args['smoke']} smoke",
            {"pass": PASS, "fail": FAIL}.get(status, SKIP),
            detail,
            "".join(trace),
        )


def check_installed_set(report: DistReport, installed: List[str], allowed: Set[str], internal: Set[str]) -> None:
    """Fail if the venv holds any of our distributions beyond *allowed*."""
    present = {versions.normalize_name(name) for name in installed}
    extra = sorted((present & internal) - allowed)
    absent = sorted(allowed - present)
    if extra or absent:
        detail = "; ".join(
            filter(
                None,
                [
                    f"unexpected: {', '.join(extra)}" if extra else "",
                    f"missing: {', '.join(absent)}" if absent else "",
                ],
            )
        )
        report.add("install", "only declared dependencies installed", FAIL, detail)
    else:
        report.add("install", "only declared dependencies installed", PASS, ", ".join(sorted(allowed)))


def check_version(report: DistReport, dist: versions.Distribution, module_version: str | None) -> None:
    """The imported module's ``__version__`` must equal its ``__about__.py``."""
    if module_version is None:
        report.add(
            "import", "__version__", FAIL, f"{dist.import_name} has no __version__ (re-export it from __about__)"
        )
    elif module_version != dist.version:
        report.add("import", "__version__", FAIL, f"{module_version!r} != __about__.py's {dist.version!r}")
    else:
        report.add("import", "__version__", PASS, module_version)


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------


def select_distributions(dists: List[versions.Distribution], wanted: List[str] | None) -> List[versions.Distribution]:
    """The distributions named by ``--dist`` (all when none); raises ``LookupError``."""
    if not wanted:
        return dists
    selected = []
    for name in wanted:
        dist = versions.find_distribution(dists, name)
        if dist not in selected:
            selected.append(dist)
    return selected


def unsupported_here(dist: versions.Distribution, python_version: str | None = None) -> str | None:
    """Why the running interpreter cannot install *dist* (its ``requires-python``), or ``None``."""
    try:
        data = versions.tomllib.loads(dist.pyproject.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # read_distribution reports it
    requires = data.get("project", {}).get("requires-python")
    here = python_version or ".".join(map(str, sys.version_info[:3]))
    if requires and not versions.specifier_admits(requires, here):
        return f"requires Python {requires}, this is {here}"
    return None


def run(root: Path, wanted: List[str] | None, workdir: Path) -> List[DistReport]:
    """Build what is needed under *workdir* and check every selected distribution."""
    dists = versions.discover(root)
    if not dists:
        raise LookupError(f"no packages/*/pyproject.toml under {root}")
    by_key = {d.key: d for d in dists}
    skipped: List[DistReport] = []
    selected = []
    for dist in select_distributions(dists, wanted):
        why = unsupported_here(dist)
        if why is None:
            selected.append(dist)
        else:
            skipped.append(DistReport(dist))
            skipped[-1].add("install", "requires-python", SKIP, why)
    needed = sorted({d.key for d in selected} | {k for d in selected for k in internal_closure(d, by_key)})
    workspace = Workspace(workdir)

    built: Dict[str, BuiltWheel] = {}
    for key in needed:
        print(f"building {by_key[key].name} ...", flush=True)
        built[key] = build_wheel(by_key[key], workspace.wheels / key)
        if built[key].path is None:
            print(f"  build of {by_key[key].name} failed: {built[key].error}", flush=True)

    requirements = third_party_requirements([by_key[k] for k in needed], versions.internal_names(dists))
    print(f"downloading third-party requirements: {', '.join(requirements) or 'none'} ...", flush=True)
    third_party = download_third_party(requirements, workspace.third_party)

    reports = []
    for dist in selected:
        print(f"checking {dist.name} ...", flush=True)
        reports.append(check_distribution(dist, by_key, built, third_party, workspace))
    return sorted(reports + skipped, key=lambda report: report.dist.folder.name)


def format_summary(reports: Sequence[DistReport]) -> str:
    """The PASS/FAIL table, one row per distribution."""
    rows = [["dist", "version", *CATEGORIES, "result", "first failure"]]
    for report in reports:
        rows.append(
            [
                report.dist.name,
                report.dist.version or "?",
                *(report.cell(category) for category in CATEGORIES),
                FAIL if report.failed else PASS,
                report.first_failure(),
            ]
        )
    return versions.format_table(rows)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="check_isolated.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dist", action="append", metavar="NAME", help="check only this dist (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print its path")
    parser.add_argument("--root", type=Path, default=None, help="repository root holding packages/")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns 0 if every selected dist passed, 1 if not, 2 on usage errors."""
    args = build_parser().parse_args(argv)
    root = (args.root or versions.find_repo_root(Path(__file__).resolve())).resolve()
    workdir = Path(tempfile.mkdtemp(prefix="mp-check-isolated-"))
    try:
        reports = run(root, args.dist, workdir)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(format_summary(reports))
    return 1 if any(report.failed for report in reports) else 0


if __name__ == "__main__":
    sys.exit(main())

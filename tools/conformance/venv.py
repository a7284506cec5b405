"""The throwaway venv the suite runs in, and what we put into it.

``python -m venv --system-site-packages`` (the interpreter's own packages
stay visible), cached under ``~/.cache/mp-conformance/venv-<key>``, the key
hashing the interpreter and every ``packages/*/pyproject.toml``.  The
distributions' third-party requirements (``dill``) are installed into it
with its own pip, from whatever index pip is configured with: a bare pyenv
interpreter has none of them.  Into its site-packages go:

* ``_mp_conformance.pth``: our ``packages/*/src`` directories (before the
  system site-packages, so this checkout wins over any other install), then
  ``import _mp_conformance_hook``;
* ``_mp_conformance_hook.py``: the import hook (``hook.py``), active only
  with ``MP_CONFORMANCE=1``;
* ``_mpconf_runner/__main__.py``: the per-module unittest runner (``child.py``);
* ``_mpconf_tests/``: generated per-start-method wrappers, when the
  interpreter does not ship them (see ``discover.py``).

The support files are rewritten on every run (cheap, and a change to them
never needs a new venv).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional

from tools import versions

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mp-conformance"
LAYOUT_VERSION = "2"  # 2: the third-party requirements are installed into the venv
ENV_VAR = "MP_CONFORMANCE"


@dataclass
class Venv:
    path: Path
    python: Path
    site: Path
    stdlib: Path
    version: str


def package_src_dirs(repo: Path = REPO_ROOT) -> List[Path]:
    return sorted(p for p in (repo / "packages").glob("*/src") if p.is_dir())


def venv_key(python: str, repo: Path = REPO_ROOT) -> str:
    h = hashlib.sha256()
    h.update(LAYOUT_VERSION.encode())
    h.update(os.path.realpath(python).encode())
    h.update(str(repo.resolve()).encode())
    for pyproject in sorted((repo / "packages").glob("*/pyproject.toml")):
        h.update(str(pyproject.relative_to(repo)).encode())
        h.update(pyproject.read_bytes())
    return h.hexdigest()[:16]


def _query(python: Path) -> Dict[str, str]:
    code = (
        "import json, sys, sysconfig; print(json.dumps({'site': sysconfig.get_paths()['purelib'], "
        "'stdlib': sysconfig.get_paths()['stdlib'], 'version': sys.version.split()[0]}))"
    )
    # Not ``-S``: a venv's prefix (and so its site-packages) is only set up by ``site``.
    out = subprocess.run(
        [str(python), "-c", code], check=True, capture_output=True, text=True, env=clean_env(None)
    ).stdout
    return json.loads(out)


def ensure_venv(
    python: str = sys.executable, cache: Path = DEFAULT_CACHE, repo: Path = REPO_ROOT, rebuild: bool = False, log=print
) -> Venv:
    """Create (or reuse) the venv for *python* and this checkout; install the support files."""
    path = Path(cache) / f"venv-{venv_key(python, repo)}"
    marker = path / ".mpconf-ready"
    if rebuild or not marker.exists():
        if path.exists():
            shutil.rmtree(path)
        log(f"creating venv {path} (from {python})")
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([python, "-m", "venv", "--system-site-packages", str(path)], check=True, env=clean_env(None))
        requirements = third_party_requirements(repo)
        if requirements:
            log(f"installing {', '.join(requirements)} into it")
            subprocess.run(
                [str(path / "bin" / "python"), "-m", "pip", "install", "--quiet", *requirements],
                check=True,
                env=clean_env(None),
            )
        marker.write_text(python + "\n")
    vpy = path / "bin" / "python"
    info = _query(vpy)
    venv = Venv(path, vpy, Path(info["site"]), Path(info["stdlib"]), info["version"])
    if path.resolve() not in venv.site.resolve().parents:
        raise RuntimeError(
            f"the venv's site-packages {venv.site} is outside the venv {path}: refusing to write support files there"
        )
    install_support_files(venv.site, repo)
    return venv


def third_party_requirements(repo: Path = REPO_ROOT) -> List[str]:
    """The requirements of ``packages/*`` that are not the monorepo's own distributions, sorted."""
    dists = versions.discover(repo)
    own = versions.internal_names(dists)
    return sorted({req.raw for dist in dists for req in dist.requirements if req.key not in own})


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def pth_text(src_dirs: List[Path]) -> str:
    lines = [str(p) for p in src_dirs]
    lines.append("import _mp_conformance_hook")
    return "\n".join(lines) + "\n"


def install_support_files(site: Path, repo: Path = REPO_ROOT, generated: Optional[Mapping[str, str]] = None) -> None:
    _write_if_changed(site / "_mp_conformance.pth", pth_text(package_src_dirs(repo)))
    _write_if_changed(site / "_mp_conformance_hook.py", (HERE / "hook.py").read_text(encoding="utf-8"))
    _write_if_changed(site / "_mpconf_runner" / "__init__.py", "")
    _write_if_changed(site / "_mpconf_runner" / "__main__.py", (HERE / "child.py").read_text(encoding="utf-8"))
    for name, source in (generated or {}).items():
        package, _, module = name.rpartition(".")
        _write_if_changed(site / package / "__init__.py", "")
        _write_if_changed(site / package / f"{module}.py", source)


STUBS_VAR = "MP_CONFORMANCE_STUBS"
FUTURES_VAR = "MP_CONFORMANCE_FUTURES"
SUITES = ("multiprocessing", "futures")


def clean_env(
    impl: Optional[str], stubs: Optional[Mapping[str, object]] = None, suite: str = "multiprocessing"
) -> Dict[str, str]:
    """The environment for a child: ours (``impl='ours'``), the stdlib, or neutral (``None``).

    *stubs* (ours only) are diagnostic stand-ins for missing names, see ``hook.parse_stubs``.
    With ``suite='futures'``, ours also gets ``multiprocess.futures.ProcessPoolExecutor``
    in place of the stdlib's (``hook.install_futures``).
    """
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; known: {', '.join(SUITES)}")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH", ENV_VAR, STUBS_VAR, FUTURES_VAR)
    }
    if impl == "ours":
        env[ENV_VAR] = "1"
        if stubs:
            env[STUBS_VAR] = json.dumps(dict(stubs))
        if suite == "futures":
            env[FUTURES_VAR] = "1"
    return env


PREFLIGHT = r"""
import json, os, sys
report = {"hook": os.environ.get("MP_CONFORMANCE") == "1"}
import multiprocessing, multiprocessing.connection
report["multiprocessing"] = getattr(multiprocessing, "__file__", None)
try:
    import multiprocess
    report["is_ours"] = multiprocessing is multiprocess
    report["connection_is_ours"] = multiprocessing.connection is multiprocess.connection
except ImportError as exc:
    report["is_ours"] = False
    report["error"] = repr(exc)
try:
    import dill
    report["dill"] = dill.__version__
except ImportError:
    report["dill"] = None

def executor_module():
    try:
        from concurrent.futures import ProcessPoolExecutor
        return ProcessPoolExecutor.__module__
    except Exception as exc:
        return "error: %r" % (exc,)

report["executor"] = executor_module()

def child(conn):
    import sys
    m = sys.modules.get("multiprocessing")
    conn.send((getattr(m, "__name__", None), executor_module()))
    conn.close()

if __name__ == "__main__":
    try:
        ctx = multiprocessing.get_context("spawn")
        a, b = ctx.Pipe()
        p = ctx.Process(target=child, args=(b,))
        p.start()
        if a.poll(60):
            report["spawn_child_sees"], report["spawn_child_executor"] = a.recv()
        else:
            report["spawn_child_sees"] = "(no answer)"
        p.join(30)
    except Exception as exc:
        report["spawn_child_sees"] = "error: %r" % (exc,)
    print(json.dumps(report))
"""


def preflight(venv: Venv, impl: str, workdir: Path, suite: str = "multiprocessing") -> Dict[str, object]:
    """Check what ``multiprocessing`` (and the executor) is in the venv under *impl*, here and in a spawned child."""
    script = workdir / "mpconf_preflight.py"
    script.write_text(PREFLIGHT, encoding="utf-8")
    proc = subprocess.run(
        [str(venv.python), str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(impl, suite=suite),
        cwd=str(workdir),
    )
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": (proc.stderr or proc.stdout)[-2000:]}

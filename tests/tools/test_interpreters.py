"""tools/interpreters.py, the noxfile and the packages' metadata agree on the supported interpreters."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import pytest

from tools import interpreters

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parents[2]
CPYTHONS = [name for name in interpreters.SUPPORTED if name[0].isdigit()]


def test_the_matrix_is_cpython_3_9_to_3_13_and_pypy3():
    assert interpreters.SUPPORTED == ["3.9", "3.10", "3.11", "3.12", "3.13", "pypy3"]


#: Distributions whose dependency needs a newer CPython than the matrix's oldest: their floor, and why.
NARROWER = {"mp-dask": ("3.10", "distributed needs CPython 3.10+ (so no PyPy 3.9 either)")}


@pytest.mark.parametrize("pyproject", sorted(REPO_ROOT.glob("packages/*/pyproject.toml")), ids=lambda p: p.parent.name)
def test_every_distribution_declares_the_interpreters_we_support(pyproject):
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]

    def key(version):
        return tuple(map(int, version.split(".")))

    floor, _why = NARROWER.get(project["name"], (min(CPYTHONS, key=key), ""))
    assert project["requires-python"] == f">={floor}"
    classifiers = set(project["classifiers"])
    versions = re.compile(r"Programming Language :: Python :: (3\.\d+)")
    declared = {m.group(1) for m in map(versions.fullmatch, classifiers) if m}
    assert declared == {v for v in CPYTHONS if key(v) >= key(floor)}
    assert {
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: Implementation :: CPython",
    } <= classifiers
    pypy = "Programming Language :: Python :: Implementation :: PyPy"
    assert (pypy in classifiers) == (project["name"] not in NARROWER)


def test_the_running_interpreter_is_one_we_support_and_is_found_as_itself():
    if sys.implementation.name == "pypy":
        name = "pypy3"
    else:
        name = "{}.{}".format(*sys.version_info[:2])
    assert name in interpreters.SUPPORTED
    implementation, version = interpreters.describe(sys.executable)
    assert implementation == ("PyPy" if name == "pypy3" else "CPython")
    assert version == "{}.{}.{}".format(*sys.version_info[:3])


def test_an_interpreter_that_does_not_run_is_not_found(tmp_path, monkeypatch):
    broken = tmp_path / "python3.12"
    broken.write_text("#!/bin/sh\necho 'pyenv: python3.12: command not found' >&2\nexit 127\n")
    broken.chmod(0o755)
    assert interpreters.describe(str(broken)) is None
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv-here"))
    monkeypatch.setattr(os.path, "expanduser", lambda path: str(tmp_path / "no-home-pyenv"))
    assert interpreters.find("3.12") is None
    assert interpreters.find("pypy3") is None


def test_pyenv_builds_are_found_newest_patch_release_first(tmp_path, monkeypatch):
    real = Path(sys.executable).resolve()
    version = "{}.{}".format(*sys.version_info[:2])
    if sys.implementation.name != "cpython":
        pytest.skip("needs a CPython to pose as a pyenv build")
    for patch in (1, 12, 3):
        bin_dir = tmp_path / "versions" / f"{version}.{patch}" / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / f"python{version}").symlink_to(real)
    (tmp_path / "versions" / f"{version}.99rc1" / "bin").mkdir(parents=True)  # not a final release
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    builds = interpreters._pyenv_builds(version)
    assert [p.parent.parent.name for p in builds] == [f"{version}.12", f"{version}.3", f"{version}.1"]
    assert interpreters.find(version) == str(builds[0])


def test_expose_links_only_python_names_to_the_interpreters_found(tmp_path, monkeypatch):
    monkeypatch.setattr(
        interpreters,
        "find_all",
        lambda names=None: {"3.9": "/opt/py39/bin/python3.9", "3.10": None, "pypy3": "/usr/bin/pypy3"},
    )
    directory = tmp_path / "links"
    directory.mkdir()
    (directory / "python3.10").symlink_to("/stale/link")
    assert interpreters.expose(str(directory)) == str(directory)
    assert sorted(os.listdir(directory)) == ["pypy3", "python3.9"]
    assert os.readlink(directory / "python3.9") == "/opt/py39/bin/python3.9"
    assert os.readlink(directory / "pypy3") == "/usr/bin/pypy3"


def test_the_nox_sessions_are_the_supported_interpreters(tmp_path, monkeypatch):
    nox = pytest.importorskip("nox", reason="nox runs on Python 3.10 and later")
    from nox import registry

    monkeypatch.setattr(interpreters, "expose", lambda directory: str(tmp_path))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))
    monkeypatch.setattr(nox.options, "error_on_missing_interpreters", nox.options.error_on_missing_interpreters)
    spec = importlib.util.spec_from_file_location("noxfile_under_test", REPO_ROOT / "noxfile.py")
    module = importlib.util.module_from_spec(spec)
    saved = registry.get()
    registry.reset()
    try:
        spec.loader.exec_module(module)
        sessions = registry.get()
        assert list(sessions) == ["tests", "lint"]
        assert sessions["tests"].python == interpreters.SUPPORTED
        assert sessions["lint"].python == module.LINT_PYTHON
        assert module.LINT_PYTHON in interpreters.SUPPORTED
        assert nox.options.error_on_missing_interpreters is False
        assert os.environ["PATH"].split(os.pathsep)[0] == str(tmp_path)
    finally:
        registry.reset()
        registry._REGISTRY.update(saved)

"""Tests for the pure logic of tools/versions.py.

Every test that touches a tree builds its own fake ``packages/`` under
``tmp_path`` so the results never depend on the real versions in the repo.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Sequence

import pytest

from tools import versions

REPO_ROOT = Path(__file__).resolve().parents[2]

PYPROJECT_TEMPLATE = """\
[build-system]
requires = ["hatchling>=1.18"]
build-backend = "hatchling.build"

[project]
name = "{name}"
dynamic = ["version"]
description = "A fake {name} for tests."
readme = "README.md"
requires-python = ">=3.9"
authors = [{{ name = "The multiprocess developers" }}]
dependencies = [
{dependencies}]

[tool.hatch.version]
path = "src/{import_name}/__about__.py"

[tool.hatch.build.targets.wheel]
packages = ["src/{import_name}"]
"""

#: The real layout, with versions and ranges that all agree.
HEALTHY: Dict[str, Dict[str, object]] = {
    "mp-core": {"version": "0.1.0", "deps": ["dill>=0.3.8"]},
    "mp-sync": {"version": "0.1.0", "deps": ["mp-core>=0.1.0,<0.2"]},
    "mp-pool": {"version": "0.1.0", "deps": ["mp-core>=0.1.0,<0.2"]},
    "mp-managers": {"version": "0.1.0", "deps": ["mp-core>=0.1.0,<0.2", "mp-sync>=0.1.0,<0.2"]},
    "multiprocess": {
        "version": "0.71.0",
        "deps": ["mp-core>=0.1.0,<0.2", "mp-sync>=0.1.0,<0.2", "mp-pool>=0.1.0,<0.2", "mp-managers>=0.1.0,<0.2"],
    },
}


def write_dist(
    root: Path,
    name: str,
    version: str | None,
    deps: Sequence[str],
    about_text: str | None = None,
) -> Path:
    """Create ``root/packages/<name>/`` like the real ones; return the folder.

    ``version=None`` with ``about_text=None`` leaves ``__about__.py`` out.
    """
    import_name = name.replace("-", "_")
    folder = root / "packages" / name
    package = folder / "src" / import_name
    package.mkdir(parents=True)
    dependencies = "".join(f'  "{dep}",\n' for dep in deps)
    (folder / "pyproject.toml").write_text(
        PYPROJECT_TEMPLATE.format(name=name, import_name=import_name, dependencies=dependencies)
    )
    if about_text is None and version is not None:
        about_text = f'"""Version of {name}."""\n\n__version__ = "{version}"\n'
    if about_text is not None:
        (package / "__about__.py").write_text(about_text)
    return folder


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A healthy fake repository root."""
    for name, spec in HEALTHY.items():
        write_dist(tmp_path, name, spec["version"], spec["deps"])  # type: ignore[arg-type]
    return tmp_path


def set_deps(root: Path, name: str, deps: Sequence[str]) -> None:
    """Rewrite one fake dist's dependency list."""
    folder = root / "packages" / name
    import_name = name.replace("-", "_")
    dependencies = "".join(f'  "{dep}",\n' for dep in deps)
    (folder / "pyproject.toml").write_text(
        PYPROJECT_TEMPLATE.format(name=name, import_name=import_name, dependencies=dependencies)
    )


def set_version(root: Path, name: str, version: str) -> None:
    """Rewrite one fake dist's __about__.py."""
    about = root / "packages" / name / "src" / name.replace("-", "_") / "__about__.py"
    about.write_text(f'__version__ = "{version}"\n')


def problems_for(root: Path) -> list:
    return versions.run_checks(versions.discover(root))


# ---------------------------------------------------------------- versions


@pytest.mark.parametrize(
    ("text", "valid"), [("0.1.0", True), ("0.2.0.dev3", True), ("1!2.0rc1", True), ("banana", False)]
)
def test_is_valid_version(text: str, valid: bool) -> None:
    assert versions.is_valid_version(text) is valid


@pytest.mark.parametrize(
    ("version", "part", "expected"),
    [
        ("0.1.0", "patch", "0.1.1"),
        ("0.1.7", "minor", "0.2.0"),
        ("0.9.3", "major", "1.0.0"),
        ("0.71.0", "minor", "0.72.0"),
        ("1.2", "patch", "1.2.1"),
        ("2", "minor", "2.1.0"),
        ("1.2.3.4", "patch", "1.2.4"),
    ],
)
def test_bump_version(version: str, part: str, expected: str) -> None:
    assert versions.bump_version(version, part) == expected


def test_bump_version_rejects_unknown_part_and_prereleases() -> None:
    with pytest.raises(ValueError, match="unknown version part"):
        versions.bump_version("0.1.0", "micro")
    for version in ("0.1.0rc1", "0.1.0.post1", "0.1.0+local", "1!0.1.0"):
        with pytest.raises(ValueError, match="not a plain release"):
            versions.bump_version(version, "patch")
    with pytest.raises(ValueError):
        versions.bump_version("banana", "patch")


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("0.2.0", ">=0.2.0,<0.3"),
        ("0.71.1", ">=0.71.1,<0.72"),
        ("0.0.3", ">=0.0.3,<0.1"),
        ("1.4.2", ">=1.4.2,<2"),
        ("3.0.0", ">=3.0.0,<4"),
    ],
)
def test_compatible_range(version: str, expected: str) -> None:
    assert versions.compatible_range(version) == expected
    assert versions.specifier_admits(expected, version)


# -------------------------------------------------------------- specifiers


@pytest.mark.parametrize(
    ("specifier", "version", "admitted"),
    [
        (">=0.1.0,<0.2", "0.1.0", True),
        (">=0.1.0,<0.2", "0.1.9", True),
        (">=0.1.0,<0.2", "0.2.0", False),
        (">=0.1.0,<0.2", "0.0.9", False),
        (">=0.1.0, <0.2", "0.1.5", True),
        ("==0.1", "0.1.0", True),
        ("==0.1.0", "0.1.1", False),
        ("==0.1.*", "0.1.7", True),
        ("==0.1.*", "0.2.0", False),
        ("!=0.1.*", "0.2.0", True),
        ("!=0.1.1", "0.1.1", False),
        ("~=0.1.0", "0.1.5", True),
        ("~=0.1.0", "0.2.0", False),
        ("~=1.2", "1.9", True),
        ("~=1.2", "2.0", False),
        ("~=1.2", "1.1", False),
        (">0.1", "0.1.0", False),
        ("<=0.1", "0.1.0", True),
        ("", "9.9.9", True),
    ],
)
def test_specifier_admits(specifier: str, version: str, admitted: bool) -> None:
    assert versions.specifier_admits(specifier, version) is admitted


def test_pre_releases_are_judged_like_pip_judges_them() -> None:
    assert versions.specifier_admits(">=0.1.0,<0.2", "0.1.1rc1")
    assert not versions.specifier_admits(">=0.1.0,<0.2", "0.2.0rc1")
    assert versions.specifier_admits("==0.2.*", "0.2.0.dev3")


@pytest.mark.parametrize(("specifier", "version"), [(">=0.1.*", "0.1"), ("latest", "0.1"), ("", "x")])
def test_what_cannot_be_judged_is_a_value_error_naming_both(specifier: str, version: str) -> None:
    with pytest.raises(ValueError, match="cannot judge"):
        versions.specifier_admits(specifier, version)


def test_a_requirement_that_cannot_be_parsed_is_a_problem(tree: Path) -> None:
    set_deps(tree, "mp-sync", ["mp-core>=0.1.*"])
    problems = problems_for(tree)
    assert len(problems) == 1, problems
    assert "mp-sync/pyproject.toml: cannot parse requirement 'mp-core>=0.1.*': " in problems[0]
    assert "suffix can only be used with" in problems[0]


# ------------------------------------------------------------ requirements


def test_parse_requirement_keeps_the_parts() -> None:
    req = versions.parse_requirement("MP_Core[extra] >=0.1.0,<0.2 ; python_version >= '3.9'")
    assert req.name == "MP_Core"
    assert req.key == "mp-core"
    assert req.specifier == ">=0.1.0,<0.2"
    assert req.marker == "python_version >= '3.9'"
    assert req.with_specifier(">=0.2.0,<0.3") == "MP_Core[extra] >=0.2.0,<0.3 ; python_version >= '3.9'"


@pytest.mark.parametrize(
    ("raw", "name", "specifier"),
    [("dill", "dill", ""), ("dill>=0.3.8", "dill", ">=0.3.8"), ("mp-sync (>=0.1,<0.2)", "mp-sync", ">=0.1,<0.2")],
)
def test_parse_requirement_forms(raw: str, name: str, specifier: str) -> None:
    req = versions.parse_requirement(raw)
    assert (req.name, req.specifier) == (name, specifier)


def test_parse_requirement_rejects_urls_and_garbage() -> None:
    for raw in ("mp-core @ https://example.invalid/x.whl", "", ">=1.0"):
        with pytest.raises(ValueError):
            versions.parse_requirement(raw)


@pytest.mark.parametrize("name", ["mp-core", "MP_Core", "mp.core", "mp__core"])
def test_normalize_name(name: str) -> None:
    assert versions.normalize_name(name) == "mp-core"


# ---------------------------------------------------------------- the tree


def test_discover_reads_every_folder(tree: Path) -> None:
    dists = versions.discover(tree)
    assert [d.name for d in dists] == ["mp-core", "mp-managers", "mp-pool", "mp-sync", "multiprocess"]
    by_name = {d.name: d for d in dists}
    assert by_name["multiprocess"].version == "0.71.0"
    assert by_name["mp-pool"].import_name == "mp_pool"
    assert [r.key for r in by_name["mp-pool"].requirements] == ["mp-core"]
    assert all(not d.problems for d in dists)


def test_discover_has_no_hard_coded_list(tree: Path) -> None:
    write_dist(tree, "mp-extra", "0.1.0", ["mp-core>=0.1.0,<0.2"])
    dists = versions.discover(tree)
    assert "mp-extra" in [d.name for d in dists]
    # ...and a dist the layering policy does not know is flagged, not ignored
    assert any("mp-extra has no layer rule" in p for p in versions.run_checks(dists))


def test_find_distribution_accepts_dist_folder_and_import_names(tree: Path) -> None:
    dists = versions.discover(tree)
    for wanted in ("mp-sync", "mp_sync", "MP.Sync"):
        assert versions.find_distribution(dists, wanted).name == "mp-sync"
    with pytest.raises(LookupError, match="known: mp-core"):
        versions.find_distribution(dists, "nope")


@pytest.mark.parametrize(
    ("about_text", "reason"),
    [
        (None, "is missing"),
        ("__version__ = ", "syntax error"),
        ("VERSION = '0.1.0'\n", "no top-level __version__"),
        ("__version__ = get_version()\n", "not a string literal"),
        ("__version__ = 'banana'\n", "not a valid version"),
    ],
)
def test_missing_or_malformed_about_fails_the_check(tmp_path: Path, about_text: str | None, reason: str) -> None:
    write_dist(tmp_path, "mp-core", None, ["dill>=0.3.8"], about_text=about_text)
    dists = versions.discover(tmp_path)
    assert dists[0].version is None
    problems = versions.run_checks(dists)
    assert any(reason in p for p in problems), problems


def test_static_version_is_a_problem(tree: Path) -> None:
    pyproject = tree / "packages" / "mp-core" / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('dynamic = ["version"]', 'version = "0.1.0"'))
    assert any("version must be dynamic" in p for p in problems_for(tree))


def test_unreadable_pyproject_is_reported_not_raised(tree: Path) -> None:
    (tree / "packages" / "mp-sync" / "pyproject.toml").write_text("[project\nname = ")
    problems = problems_for(tree)
    assert any("mp-sync" in p and "cannot read" in p for p in problems), problems


# ------------------------------------------------------------------ checks


def test_healthy_tree_passes(tree: Path, capsys: pytest.CaptureFixture) -> None:
    assert problems_for(tree) == []
    assert versions.main(["--root", str(tree), "check"]) == 0
    assert capsys.readouterr().out.strip() == "ok"


def test_range_that_rejects_the_sibling_fails(tree: Path, capsys: pytest.CaptureFixture) -> None:
    set_version(tree, "mp-core", "0.2.0")
    problems = problems_for(tree)
    assert len(problems) == 4  # mp-sync, mp-pool, mp-managers and multiprocess all pin <0.2
    assert any("mp-sync requires 'mp-core>=0.1.0,<0.2'" in p and "0.2.0" in p for p in problems)
    assert versions.main(["check", "--root", str(tree)]) == 1
    assert "4 problem(s) found" in capsys.readouterr().err


def test_requirement_on_a_missing_sibling_fails(tree: Path) -> None:
    shutil.rmtree(tree / "packages" / "mp-managers")
    problems = problems_for(tree)
    assert any("multiprocess requires 'mp-managers>=0.1.0,<0.2'" in p and "no packages" in p for p in problems)


@pytest.mark.parametrize(
    ("dist", "deps", "bad_target"),
    [
        ("mp-core", ["dill>=0.3.8", "mp-sync>=0.1.0,<0.2"], "mp-sync"),
        ("mp-sync", ["mp-core>=0.1.0,<0.2", "mp-pool>=0.1.0,<0.2"], "mp-pool"),
        ("mp-pool", ["mp-core>=0.1.0,<0.2", "mp-managers>=0.1.0,<0.2"], "mp-managers"),
        ("mp-managers", ["mp-core>=0.1.0,<0.2", "multiprocess>=0.71.0,<0.72"], "multiprocess"),
    ],
)
def test_arrows_must_point_down(tree: Path, dist: str, deps: list, bad_target: str) -> None:
    set_deps(tree, dist, deps)
    problems = versions.check_layers(versions.discover(tree))
    assert problems == [problems[0]] and f"{dist} must not depend on {bad_target}" in problems[0]


def test_allowed_arrows(tree: Path) -> None:
    set_deps(tree, "mp-managers", ["mp-core>=0.1.0,<0.2"])  # a subset of the allowed arrows is fine
    assert versions.check_layers(versions.discover(tree)) == []


def test_the_pool_needs_no_sync_primitives(tree: Path) -> None:
    set_deps(tree, "mp-pool", ["mp-core>=0.1.0,<0.2", "mp-sync>=0.1.0,<0.2"])
    problems = versions.check_layers(versions.discover(tree))
    assert problems == ["layering: mp-pool must not depend on mp-sync (mp-pool may depend on: mp-core)"]


def test_only_core_may_depend_on_dill(tree: Path) -> None:
    assert versions.check_dill(versions.discover(tree)) == []
    set_deps(tree, "mp-sync", ["mp-core>=0.1.0,<0.2", "Dill>=0.3"])
    problems = versions.check_dill(versions.discover(tree))
    assert len(problems) == 1 and "mp-sync depends on dill directly" in problems[0]


# -------------------------------------------------------------------- bump


def about_of(root: Path, name: str) -> str:
    return (root / "packages" / name / "src" / name.replace("-", "_") / "__about__.py").read_text()


def pyproject_of(root: Path, name: str) -> str:
    return (root / "packages" / name / "pyproject.toml").read_text()


def test_minor_bump_with_update_ranges(tree: Path, capsys: pytest.CaptureFixture) -> None:
    before = pyproject_of(tree, "mp-pool")
    assert versions.main(["--root", str(tree), "bump", "mp-core", "minor", "--update-ranges"]) == 0
    out = capsys.readouterr().out
    assert '__version__ = "0.2.0"' in about_of(tree, "mp-core")
    assert "mp-core: 0.1.0 -> 0.2.0" in out
    for sibling in ("mp-sync", "mp-pool", "mp-managers", "multiprocess"):
        assert '"mp-core>=0.2.0,<0.3"' in pyproject_of(tree, sibling)
        assert f"{sibling}: 'mp-core>=0.1.0,<0.2' -> 'mp-core>=0.2.0,<0.3'" in out
    # only the one line changed: other requirements and formatting are kept
    after = pyproject_of(tree, "mp-pool")
    assert after == before.replace('"mp-core>=0.1.0,<0.2"', '"mp-core>=0.2.0,<0.3"')
    assert problems_for(tree) == []


def test_bump_without_update_ranges_warns_and_leaves_siblings(tree: Path, capsys: pytest.CaptureFixture) -> None:
    before = pyproject_of(tree, "mp-sync")
    assert versions.main(["--root", str(tree), "bump", "mp-core", "major"]) == 0
    assert '__version__ = "1.0.0"' in about_of(tree, "mp-core")
    assert pyproject_of(tree, "mp-sync") == before
    assert "rerun with --update-ranges" in capsys.readouterr().err
    assert len(problems_for(tree)) == 4


def test_patch_bump_changes_no_range(tree: Path, capsys: pytest.CaptureFixture) -> None:
    before = {name: pyproject_of(tree, name) for name in HEALTHY}
    assert versions.main(["--root", str(tree), "bump", "mp_sync", "patch", "--update-ranges"]) == 0
    assert '__version__ = "0.1.1"' in about_of(tree, "mp-sync")
    assert {name: pyproject_of(tree, name) for name in HEALTHY} == before
    assert capsys.readouterr().out.count("changed") == 1


def test_bump_to_explicit_version_keeps_markers_and_quotes(tree: Path) -> None:
    set_deps(tree, "mp-pool", ["mp-core>=0.1.0,<0.2 ; python_version >= '3.9'"])
    assert versions.main(["--root", str(tree), "bump", "mp-core", "--to", "1.3.0", "--update-ranges"]) == 0
    assert "\"mp-core>=1.3.0,<2 ; python_version >= '3.9'\"" in pyproject_of(tree, "mp-pool")
    assert problems_for(tree) == []


def test_bump_dry_run_writes_nothing(tree: Path, capsys: pytest.CaptureFixture) -> None:
    before = {name: (about_of(tree, name), pyproject_of(tree, name)) for name in HEALTHY}
    assert versions.main(["--root", str(tree), "bump", "mp-core", "minor", "--update-ranges", "--dry-run"]) == 0
    assert {name: (about_of(tree, name), pyproject_of(tree, name)) for name in HEALTHY} == before
    assert "would change" in capsys.readouterr().out


def test_bump_errors(tree: Path) -> None:
    assert versions.main(["--root", str(tree), "bump", "mp-core", "--to", "banana"]) == 1
    assert versions.main(["--root", str(tree), "bump", "mp-core", "--to", "0.1.0"]) == 1
    assert versions.main(["--root", str(tree), "bump", "nope", "patch"]) == 2
    with pytest.raises(SystemExit) as excinfo:
        versions.main(["--root", str(tree), "bump", "mp-core", "patch", "--to", "0.3.0"])
    assert excinfo.value.code == 2
    with pytest.raises(SystemExit):
        versions.main(["--root", str(tree), "bump", "mp-core"])
    assert '__version__ = "0.1.0"' in about_of(tree, "mp-core")


def test_bump_refuses_a_missing_about(tree: Path, capsys: pytest.CaptureFixture) -> None:
    (tree / "packages" / "mp-sync" / "src" / "mp_sync" / "__about__.py").unlink()
    assert versions.main(["--root", str(tree), "bump", "mp-sync", "patch"]) == 1
    assert "is missing" in capsys.readouterr().err


# -------------------------------------------------------------------- show


def test_show_lists_every_dist(tree: Path, capsys: pytest.CaptureFixture) -> None:
    set_version(tree, "mp-pool", "0.1.4")
    assert versions.main(["--root", str(tree), "show"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["folder", "dist", "import", "version", "internal", "requirements"]
    pool = next(line for line in lines if line.startswith("packages/mp-pool"))
    assert pool.split()[:4] == ["packages/mp-pool", "mp-pool", "mp_pool", "0.1.4"]
    assert pool.endswith("0.1.4    mp-core>=0.1.0,<0.2")
    managers = next(line for line in lines if line.startswith("packages/mp-managers"))
    assert managers.endswith("mp-core>=0.1.0,<0.2, mp-sync>=0.1.0,<0.2")
    assert "dill" not in next(line for line in lines if line.startswith("packages/mp-core "))


# ---------------------------------------------------------- command lines


@pytest.mark.parametrize(
    "argv",
    [["tools/versions.py"], ["-m", "tools.versions"]],
    ids=["script", "module"],
)
def test_runs_as_script_and_module(tree: Path, argv: list) -> None:
    result = subprocess.run(
        [sys.executable, *argv, "--root", str(tree), "check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr

"""The ``.pyi`` stubs are the generator's output, and name what runtime has.

``tools.stubs`` derives them from the owner table and the default context;
a stub edited by hand, or a name added to the table or the context without
regenerating, fails here (``python -m tools.stubs`` rewrites them).
"""

from __future__ import annotations

import ast
import importlib

import pytest

from tools import stubs

pytestmark = pytest.mark.timeout(120)

EXPECTED = stubs.expected_stubs()


@pytest.mark.parametrize("path", sorted(EXPECTED), ids=lambda p: str(p.relative_to(stubs.ROOT / "packages")))
def test_committed_stub_is_the_generators_output(path):
    assert path.exists(), f"{path} is missing: run python -m tools.stubs"
    assert path.read_text() == EXPECTED[path], f"{path} is stale: run python -m tools.stubs"


def test_no_stub_beside_the_generated_ones():
    committed = {p for p in (stubs.ROOT / "packages").glob("*/src/**/*.pyi")}
    # An optional distribution not installed here (mp-dask before CPython 3.10)
    # keeps its committed stub, which the interpreters that have it check.
    unchecked = {stubs.FACE / f"{sub}.pyi" for sub in stubs.unavailable_submodules()}
    assert committed - unchecked == set(EXPECTED)
    assert unchecked <= committed


@pytest.mark.parametrize("path", sorted(EXPECTED), ids=lambda p: str(p.relative_to(stubs.ROOT / "packages")))
def test_every_name_of_a_stub_exists_at_run_time(path):
    # What a type checker is told must be what the import gives.
    src = stubs.ROOT / "packages" / path.relative_to(stubs.ROOT / "packages").parts[0] / "src"
    parts = path.relative_to(src).with_suffix("").parts
    module = importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    names.discard("_default_context")
    if path == stubs.FACE / "__init__.pyi":
        names -= set(stubs.unavailable_submodules())  # an optional distribution not installed here
    assert names, path
    assert not [name for name in sorted(names) if not hasattr(module, name)]
    runtime_all = [name for name in getattr(module, "__all__", ()) if hasattr(module, name)]
    assert sorted(ast.literal_eval(next(n.value for n in tree.body if _assigns(n, "__all__")))) == sorted(runtime_all)


def test_check_mode_reports_a_stale_stub(tmp_path, monkeypatch, capsys):
    path = sorted(EXPECTED)[0]
    moved = {tmp_path / "stale.pyi": "# not what the generator writes\n"}
    (tmp_path / "stale.pyi").write_text("# stale\n")
    monkeypatch.setattr(stubs, "expected_stubs", lambda: moved)
    monkeypatch.setattr(stubs, "ROOT", tmp_path)
    assert stubs.main(["--check"]) == 1
    assert "stale: stale.pyi" in capsys.readouterr().out
    assert (tmp_path / "stale.pyi").read_text() == "# stale\n"  # --check writes nothing
    assert path.exists()


def _assigns(node: ast.stmt, name: str) -> bool:
    return isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)


FACE_FILES = stubs.expected_face_files()


@pytest.mark.parametrize("path", sorted(FACE_FILES), ids=lambda p: p.name)
def test_committed_face_file_is_the_generators_output(path):
    assert path.exists(), f"{path} is missing: run python -m tools.stubs"
    assert path.read_text() == FACE_FILES[path], f"{path} is stale: run python -m tools.stubs"


def test_every_module_of_the_face_is_a_file_there():
    """``pkgutil`` and CPython's ``_TestImportStar`` find the face's modules as files, as in the stdlib's package."""
    import pkgutil

    import multiprocess
    from mp_core._owners import SUBMODULES

    found = {info.name for info in pkgutil.iter_modules(multiprocess.__path__)}
    real = {"__about__", "__main__", "_aliases", "tests"}
    assert {path.stem for path in FACE_FILES} == found - real
    required = stubs.required_distributions()
    assert required == {"mp-core", "mp-sync", "mp-pool", "mp-managers"}
    # Every module of those distributions (multiprocess.dummy is a package: its stubs name it).
    assert {sub for sub, (_owner, dist) in SUBMODULES.items() if dist in required} - found == {"dummy"}


def test_a_face_file_run_without_the_finder_still_gives_the_owning_module():
    import importlib.util
    import sys

    path = stubs.FACE / "pool.py"
    spec = importlib.util.spec_from_file_location("multiprocess.pool", path)
    module = importlib.util.module_from_spec(spec)
    saved = sys.modules.get("multiprocess.pool")
    sys.modules["multiprocess.pool"] = module
    try:
        spec.loader.exec_module(module)
        assert sys.modules["multiprocess.pool"] is importlib.import_module("mp_pool.pool")
    finally:
        if saved is None:
            sys.modules.pop("multiprocess.pool", None)
        else:
            sys.modules["multiprocess.pool"] = saved
    import multiprocess.pool

    assert multiprocess.pool is importlib.import_module("mp_pool.pool")

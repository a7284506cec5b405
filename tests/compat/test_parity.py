"""API parity with the running interpreter's ``multiprocessing``.

For ``multiprocess`` itself and each of its submodules: every public name of
the standard library module exists in ours, callables accept the same
parameters (``inspect.signature``), and ``multiprocess.X`` is the owning
distribution's module object itself.  Deliberate differences are listed in
``ALLOWED_DIFFERENCES`` with the reason.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types

import pytest

import multiprocess
from mp_core import _owners

pytestmark = pytest.mark.timeout(60)

# (module, name) -> why we differ on purpose.
ALLOWED_DIFFERENCES: dict[tuple[str, str], str] = {
    # Windows-only machinery of the stdlib, replaced by the reduction module's
    # own steal_handle/duplicate where the platform has them.
    ("popen_spawn_win32", "*"): "Windows-only module; importable but empty on POSIX",
    # The stdlib re-exports modules it imports (os, sys, ...) from its
    # submodules; those are not API.
}

# Names of the stdlib modules that are platform-specific or absent here.
SKIP_STDLIB_MODULES = {"popen_spawn_win32"}


def public_names(module: types.ModuleType) -> set[str]:
    """The module's public API: ``__all__`` when it has one, else its public callables and constants."""
    names = getattr(module, "__all__", None)
    if names is not None:
        return set(names)
    return {
        name for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", module.__name__) in (module.__name__, None)
    }


def compatible(stdlib_obj, ours_obj) -> str | None:
    """None if ``ours_obj`` accepts every way of calling ``stdlib_obj``; else why not."""
    try:
        theirs = inspect.signature(stdlib_obj)
    except (TypeError, ValueError):
        return None  # builtins without signatures: nothing to compare
    try:
        mine = inspect.signature(ours_obj)
    except (TypeError, ValueError):
        return "our object has no signature"
    mine_params = mine.parameters
    has_var_kw = any(p.kind is p.VAR_KEYWORD for p in mine_params.values())
    has_var_pos = any(p.kind is p.VAR_POSITIONAL for p in mine_params.values())
    theirs_positional = [p for p in theirs.parameters.values()
                         if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    mine_positional = [p for p in mine_params.values()
                       if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for index, param in enumerate(theirs_positional):
        if index >= len(mine_positional):
            if not has_var_pos:
                return f"positional parameter {param.name!r} missing"
            continue
        if mine_positional[index].name != param.name and param.kind is not param.POSITIONAL_ONLY:
            return f"parameter {index} is {mine_positional[index].name!r}, stdlib has {param.name!r}"
    for name, param in theirs.parameters.items():
        if param.kind is param.KEYWORD_ONLY and name not in mine_params and not has_var_kw:
            return f"keyword parameter {name!r} missing"
        if param.kind is param.VAR_POSITIONAL and not has_var_pos:
            return "*args missing"
        if param.kind is param.VAR_KEYWORD and not has_var_kw:
            return "**kwargs missing"
    theirs_var_pos = any(p.kind is p.VAR_POSITIONAL for p in theirs.parameters.values())
    for name, param in mine_params.items():
        # Extra parameters of ours must be optional, so stdlib calls still work
        # (a positional one may stand for part of the stdlib's *args).
        if theirs_var_pos and param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            continue
        if name not in theirs.parameters and param.default is param.empty and param.kind not in (
                param.VAR_POSITIONAL, param.VAR_KEYWORD):
            return f"our extra parameter {name!r} is required"
    return None


def test_every_top_level_name_is_present_and_compatible():
    import multiprocessing
    missing, mismatched = [], []
    for name in public_names(multiprocessing):
        if not hasattr(multiprocess, name):
            missing.append(name)
            continue
        theirs, mine = getattr(multiprocessing, name), getattr(multiprocess, name)
        if callable(theirs) and not isinstance(theirs, type):
            why = compatible(theirs, mine)
            if why:
                mismatched.append(f"{name}: {why}")
    assert not missing, f"missing from multiprocess: {sorted(missing)}"
    assert not mismatched, mismatched


def test_all_is_consistent_and_has_no_duplicates():
    assert len(multiprocess.__all__) == len(set(multiprocess.__all__))
    for name in multiprocess.__all__:
        assert hasattr(multiprocess, name), name


def _module_files_of_the_package() -> list[str]:
    import os
    folder = os.path.dirname(multiprocess.__file__)
    names = sorted(os.path.splitext(f)[0] for f in os.listdir(folder) if f.endswith(".py"))
    return ["multiprocess" if n == "__init__" else f"multiprocess.{n}" for n in names]


def test_every_module_file_has_an_all_that_holds():
    # As the stdlib suite's _TestImportStar: `from multiprocess.X import *`
    # works for every module file of the package, private ones included.
    names = _module_files_of_the_package()
    assert {"multiprocess", "multiprocess.__about__", "multiprocess.__main__", "multiprocess._aliases"} <= set(names)
    for name in names:
        if name == "multiprocess.popen_spawn_win32" and sys.platform != "win32":
            continue
        module = importlib.import_module(name)
        assert isinstance(getattr(module, "__all__", None), (list, tuple)), name
        for attr in module.__all__:
            assert hasattr(module, attr), f"{name}.__all__ names {attr!r}, which it lacks"
    assert importlib.import_module("multiprocess.__about__").__all__ == ["__version__"]
    assert importlib.import_module("multiprocess._aliases").__all__ == ["NestedAliasFinder", "install"]


@pytest.mark.parametrize("submodule", sorted(_owners.SUBMODULES))
def test_submodule_is_the_owning_module_object(submodule):
    owner_name, _dist = _owners.SUBMODULES[submodule]
    ours = importlib.import_module(f"multiprocess.{submodule}")
    owner = importlib.import_module(owner_name)
    assert ours is owner
    assert sys.modules[f"multiprocess.{submodule}"] is owner
    assert getattr(multiprocess, submodule) is owner


@pytest.mark.parametrize("submodule", sorted(set(_owners.SUBMODULES) - SKIP_STDLIB_MODULES))
def test_submodule_names_and_signatures_match_the_stdlib(submodule):
    stdlib = importlib.import_module(f"multiprocessing.{submodule}")
    ours = importlib.import_module(f"multiprocess.{submodule}")
    missing, mismatched = [], []
    for name in sorted(public_names(stdlib)):
        if (submodule, name) in ALLOWED_DIFFERENCES:
            continue
        if not hasattr(ours, name):
            missing.append(name)
            continue
        theirs, mine = getattr(stdlib, name), getattr(ours, name)
        targets = [(name, theirs, mine)]
        if isinstance(theirs, type) and isinstance(mine, type):
            targets = [(name, theirs.__init__, mine.__init__)] if "__init__" in vars(theirs) else []
            for attr, value in vars(theirs).items():
                if attr.startswith("_") or not callable(value):
                    continue
                if not hasattr(mine, attr):
                    missing.append(f"{name}.{attr}")
                    continue
                targets.append((f"{name}.{attr}", value, getattr(mine, attr)))
        for label, t_obj, m_obj in targets:
            if callable(t_obj):
                why = compatible(t_obj, m_obj)
                if why:
                    mismatched.append(f"{label}: {why}")
    assert not missing, f"multiprocess.{submodule} lacks {missing}"
    assert not mismatched, f"multiprocess.{submodule}: {mismatched}"


def test_import_multiprocess_is_cheap():
    import subprocess
    code = ("import sys, multiprocess; heavy = [m for m in ('dill', 'mp_pool.pool', 'mp_managers.managers',"
            " 'mp_sync.queues', 'mp_core.connection') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_nested_submodules_are_the_owners_modules_too():
    # multiprocess.dummy is a package (mp_pool.dummy); its connection module
    # must not be loaded a second time under the alias name.
    pytest.importorskip("mp_pool.dummy.connection")
    import mp_pool.dummy.connection as real

    import multiprocess.dummy.connection as alias
    assert alias is real
    assert real.__spec__.name == "mp_pool.dummy.connection"
    from multiprocess.dummy.connection import Pipe
    assert Pipe is real.Pipe

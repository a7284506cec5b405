"""Contexts and start methods; lazy factories that name the missing distribution."""

from __future__ import annotations

import logging
import sys

import pytest

import mp_core
from mp_core import _owners, context, reduction

from ..support import run_python

pytestmark = pytest.mark.timeout(60)


def test_get_context_returns_one_context_per_method():
    for method in ("fork", "spawn", "forkserver"):
        ctx = mp_core.get_context(method)
        assert ctx.get_start_method() == method
        assert ctx is mp_core.get_context(method)
        assert ctx.Process._start_method == method
        assert ctx.get_context() is ctx
    with pytest.raises(ValueError, match="cannot find context for 'bogus'"):
        mp_core.get_context("bogus")
    with pytest.raises(ValueError, match="cannot set start method of concrete context"):
        mp_core.get_context("spawn").set_start_method("fork")


def test_all_start_methods_default_first():
    methods = mp_core.get_all_start_methods()
    assert sorted(methods) == ["fork", "forkserver", "spawn"]
    assert methods[0] == context._platform_default_method()


def test_default_method_follows_the_interpreter():
    expected = (
        "spawn" if sys.platform in ("darwin", "win32") else ("forkserver" if sys.version_info >= (3, 14) else "fork")
    )
    assert context._platform_default_method() == expected
    import multiprocessing  # the comparison only; library code never imports it

    assert expected == multiprocessing.get_context().get_start_method()


def test_the_default_start_method_is_the_running_stdlibs():
    # Compared in a fresh interpreter, where neither library's default has
    # been fixed by anything else: fork on Linux up to 3.13, forkserver from
    # 3.14, spawn on macOS and Windows -- whatever this Python's stdlib says.
    out = run_python("""
        import json, multiprocessing, multiprocess
        print(json.dumps({
            "stdlib": multiprocessing.get_start_method(),
            "ours": multiprocess.get_start_method(),
            "stdlib_all": multiprocessing.get_all_start_methods(),
            "ours_all": multiprocess.get_all_start_methods(),
        }))
    """)
    assert out.returncode == 0, out.stderr
    import json

    seen = json.loads(out.stdout)
    assert seen["ours"] == seen["stdlib"]
    assert seen["ours_all"][0] == seen["stdlib"]  # the default first (3.14's rule, on every version)
    assert sorted(seen["ours_all"]) == sorted(seen["stdlib_all"])
    if sys.version_info >= (3, 14):
        assert seen["ours_all"] == seen["stdlib_all"]


def test_set_start_method_once_then_runtime_error():
    out = run_python("""
        import mp_core
        assert mp_core.get_start_method(allow_none=True) is None
        mp_core.set_start_method("spawn")
        assert mp_core.get_start_method() == "spawn"
        try:
            mp_core.set_start_method("fork")
        except RuntimeError as exc:
            print("RuntimeError:", exc)
        mp_core.set_start_method("forkserver", force=True)
        print(mp_core.get_start_method())
        mp_core.set_start_method(None, force=True)
        print(mp_core.get_start_method(allow_none=True))
        try:
            mp_core.set_start_method("nonsense", force=True)
        except ValueError as exc:
            print("ValueError:", exc)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "RuntimeError: context has already been set",
        "forkserver",
        "None",
        "ValueError: cannot find context for 'nonsense'",
    ]


def test_get_start_method_fixes_the_default():
    out = run_python("""
        import mp_core
        print(mp_core.get_start_method(allow_none=True), mp_core.get_start_method(),
              mp_core.get_start_method(allow_none=True))
    """)
    default = context._platform_default_method()
    assert out.stdout.split() == ["None", default, default]


def test_module_level_api_is_the_default_context():
    for name in (
        "Process",
        "Pipe",
        "Lock",
        "Queue",
        "Pool",
        "Manager",
        "Value",
        "get_context",
        "set_start_method",
        "cpu_count",
        "current_process",
        "active_children",
        "parent_process",
        "freeze_support",
        "get_logger",
        "log_to_stderr",
        "allow_connection_pickling",
        "set_executable",
        "set_forkserver_preload",
        "get_all_start_methods",
        "reducer",
        "ProcessError",
        "BufferTooShort",
        "TimeoutError",
        "AuthenticationError",
    ):
        assert name in mp_core.__all__, name
        assert hasattr(mp_core, name), name
    assert mp_core.cpu_count() >= 1
    assert issubclass(mp_core.AuthenticationError, mp_core.ProcessError)
    assert issubclass(mp_core.TimeoutError, mp_core.ProcessError)
    assert mp_core.reducer is reduction


def test_every_factory_is_a_context_method_and_names_its_distribution():
    for name, (submodule, _attr) in _owners.FACTORIES.items():
        assert callable(getattr(context.BaseContext, name)), name
        assert submodule in _owners.SUBMODULES, name
    for _submodule, (module, dist) in _owners.SUBMODULES.items():
        assert module.split(".")[0] == dist.replace("-", "_")


@pytest.mark.parametrize(
    "factory, args, dist",
    [
        ("Lock", (), "mp-sync"),
        ("Queue", (), "mp-sync"),
        ("Pool", (), "mp-pool"),
        ("Manager", (), "mp-managers"),
        ("Value", ("i", 0), "mp-managers"),
    ],
)
def test_missing_distribution_raises_import_error_naming_it(monkeypatch, factory, args, dist):
    submodule, _ = _owners.FACTORIES[factory]
    module, owner = _owners.SUBMODULES[submodule]
    # Pretend the owning distribution is not installed.
    monkeypatch.setitem(
        _owners.SUBMODULES, submodule, (module.replace(owner.replace("-", "_"), "not_installed_mp"), owner)
    )
    with pytest.raises(ImportError, match=f"pip install {dist}") as excinfo:
        getattr(mp_core.get_context("spawn"), factory)(*args)
    assert f"multiprocess.{submodule} is provided by the '{dist}' distribution" in str(excinfo.value)


def test_reducer_property_can_be_replaced():
    ctx = mp_core.get_context("fork")
    original = ctx.reducer
    try:
        ctx.reducer = "sentinel"
        assert ctx.reducer == "sentinel"
    finally:
        ctx.reducer = original
    assert ctx.reducer is reduction


def test_logging_helpers(capfd):
    out = run_python("""
        import logging, mp_core
        logger = mp_core.log_to_stderr(logging.INFO)
        assert logger is mp_core.get_logger() and logger.name == "multiprocess"
        logger.info("hello from the logger")
    """)
    assert out.returncode == 0, out.stderr
    assert "[INFO/MainProcess] hello from the logger" in out.stderr
    assert logging.getLogger("multiprocess").propagate is False or mp_core.util._logger is None


def test_set_forkserver_preload_validates():
    with pytest.raises(TypeError, match="module_names must be a list of strings"):
        mp_core.set_forkserver_preload(["os", 3])


def test_freeze_support_is_a_no_op_when_not_frozen():
    assert mp_core.freeze_support() is None

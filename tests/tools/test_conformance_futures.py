"""Tests for ``python -m tools.conformance --suite futures``: test selection, the executor hook, the environment.

No CPython suite is run here: discovery reads throwaway sources laid out as
CPython ships them, and the hook is exercised in a subprocess with a stand-in
for our executor.
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tools.conformance import allowlist, cli, discover_futures, hook, venv

REPO_ROOT = Path(__file__).resolve().parents[2]

#: create_executor_tests calls as CPython writes them (3.12+: with globals() first)
PROCESS_ONLY = """\
create_executor_tests({g}WaitTests,
                      executor_mixins=(ProcessPoolForkMixin,
                                       ProcessPoolForkserverMixin,
                                       ProcessPoolSpawnMixin))
"""
ALL_EXECUTORS = "create_executor_tests({g}AsCompletedTests)\n"
INIT = """\
create_executor_tests({g}InitializerMixin)
create_executor_tests({g}FailingInitializerMixin)


class FailingInitializerResourcesTest(unittest.TestCase):
    def test_spawn(self):
        pass

    def test_forkserver(self):
        pass
"""
THREAD_ONLY = "class ThreadPoolWaitTests(ThreadPoolMixin, WaitTests, BaseTestCase):\n    pass\n"


def _ids(classes, method="test_x"):
    return [f"test.mod.{cls}.{method}" for cls in classes]


def _selected(globs, ids):
    return [i for i in ids if any(fnmatch.fnmatchcase(i, g) for g in globs)]


ALL_CLASSES = [
    f"ProcessPool{m}{t}Test" for m in ("Fork", "Forkserver", "Spawn") for t in ("Wait", "AsCompleted", "Initializer")
] + ["ThreadPoolWaitTest", "ThreadPoolAsCompletedTest", "FailingInitializerResourcesTest"]


def test_class_names_follow_cpythons_rule():
    assert discover_futures.strip_mixin("ProcessPoolForkMixin") == "ProcessPoolFork"
    assert discover_futures.strip_mixin("WaitTests") == "Wait"
    assert discover_futures.strip_mixin("ExecutorDeadlockTest") == "ExecutorDeadlock"
    assert discover_futures.class_name("ProcessPoolForkserverMixin", "WaitTests") == "ProcessPoolForkserverWaitTest"
    assert (
        discover_futures.class_name("ProcessPoolSpawnMixin", "ProcessPoolExecutorTest")
        == "ProcessPoolSpawnProcessPoolExecutorTest"
    )


@pytest.mark.parametrize("g", ["", "globals(), "], ids=["single-file", "package"])
def test_calls_are_read_with_their_executor_mixins(g):
    source = PROCESS_ONLY.format(g=g) + ALL_EXECUTORS.format(g=g) + THREAD_ONLY
    assert discover_futures.executor_test_mixins(source) == [
        ("WaitTests", ("ProcessPoolForkMixin", "ProcessPoolForkserverMixin", "ProcessPoolSpawnMixin")),
        ("AsCompletedTests", discover_futures.DEFAULT_EXECUTOR_MIXINS),
    ]
    assert discover_futures.process_pool_classes(source, "fork") == {
        "WaitTests": ["ProcessPoolForkWaitTest"],
        "AsCompletedTests": ["ProcessPoolForkAsCompletedTest"],
    }


def test_an_executor_mixins_list_without_a_start_method_leaves_it_out():
    source = "create_executor_tests(globals(), X,\n    executor_mixins=(ThreadPoolMixin, ProcessPoolSpawnMixin))\n"
    assert discover_futures.process_pool_classes(source, "spawn") == {"X": ["ProcessPoolSpawnXTest"]}
    assert discover_futures.process_pool_classes(source, "fork") == {}


def _package(tmp_path):
    pkg = tmp_path / "test" / "test_concurrent_futures"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "util.py").write_text("def create_executor_tests(*a, **k): pass\n")
    (pkg / "test_wait.py").write_text(PROCESS_ONLY.format(g="globals(), ") + THREAD_ONLY)
    (pkg / "test_as_completed.py").write_text(ALL_EXECUTORS.format(g="globals(), "))
    (pkg / "test_init.py").write_text(INIT.format(g="globals(), "))
    (pkg / "test_thread_pool.py").write_text(THREAD_ONLY)
    (pkg / "test_future.py").write_text("class FutureTests(BaseTestCase):\n    pass\n")
    return tmp_path


def test_discover_package_layout_selects_each_start_methods_process_pool_classes(tmp_path):
    layout = discover_futures.discover(_package(tmp_path), ["fork", "forkserver", "spawn"])
    assert layout.kind == "package" and not layout.generated_sources
    by_key = {m.key: m for m in layout.modules}
    assert [m.name for m in layout.modules if m.method == "fork"] == ["wait", "as_completed", "init"]
    assert by_key["fork/wait"].module == "test.test_concurrent_futures.test_wait"
    ids = _ids(ALL_CLASSES) + _ids(["FailingInitializerResourcesTest"], "test_spawn")
    ids += _ids(["FailingInitializerResourcesTest"], "test_forkserver")
    # ProcessPoolFork is a prefix of ProcessPoolForkserver: fork must not take forkserver's classes
    assert _selected(by_key["fork/wait"].include, ids) == ["test.mod.ProcessPoolForkWaitTest.test_x"]
    assert _selected(by_key["forkserver/init"].include, ids) == [
        "test.mod.ProcessPoolForkserverInitializerTest.test_x",
        "test.mod.FailingInitializerResourcesTest.test_forkserver",
    ]
    assert _selected(by_key["fork/init"].include, ids) == ["test.mod.ProcessPoolForkInitializerTest.test_x"]
    assert not any("ThreadPool" in g for m in layout.modules for g in m.include)


def test_discover_single_file_layout_splits_into_the_packages_parts(tmp_path):
    (tmp_path / "test").mkdir()
    source = "\n".join(
        [
            PROCESS_ONLY.format(g=""),
            ALL_EXECUTORS.format(g=""),
            INIT.format(g=""),
            "create_executor_tests(ExecutorDeadlockTest,\n    executor_mixins=(ProcessPoolSpawnMixin,))\n",
            "create_executor_tests(SomethingNewTests,\n    executor_mixins=(ProcessPoolSpawnMixin,))\n",
        ]
    )
    (tmp_path / "test" / "test_concurrent_futures.py").write_text(source)
    layout = discover_futures.discover(tmp_path, ["spawn"])
    assert layout.kind == "file"
    assert {m.module for m in layout.modules} == {"test.test_concurrent_futures"}
    assert [(m.name, m.include) for m in layout.modules] == [
        ("wait", ("*.ProcessPoolSpawnWaitTest.*",)),
        ("as_completed", ("*.ProcessPoolSpawnAsCompletedTest.*",)),
        ("init", ("*.ProcessPoolSpawnInitializerTest.*", "*.ProcessPoolSpawnFailingInitializerTest.*")),
        ("deadlock", ("*.ProcessPoolSpawnExecutorDeadlockTest.*",)),
        ("something_new", ("*.ProcessPoolSpawnSomethingNewTest.*",)),
    ]


def test_discover_nothing(tmp_path):
    layout = discover_futures.discover(tmp_path)
    assert layout.kind == "missing" and layout.modules == []


def test_discover_the_running_interpreters_suite_if_it_ships_one():
    import sysconfig

    layout = discover_futures.discover(Path(sysconfig.get_paths()["stdlib"]))
    if layout.kind == "missing":
        pytest.skip("this interpreter ships no test_concurrent_futures")
    names = {m.name for m in layout.modules}
    assert {"process_pool", "shutdown", "wait", "as_completed", "init", "deadlock"} <= names
    assert {m.method for m in layout.modules} == {"fork", "spawn", "forkserver"}


# ------------------------------------------------------------------ the hook

STAND_IN = """\
class ProcessPoolExecutor:
    '''Stands in for multiprocess.futures.ProcessPoolExecutor.'''
"""

HOOK_CHECK = textwrap.dedent("""\
    import sys
    sys.path.insert(0, sys.argv[1])
    import _mp_conformance_hook as hook
    hook.FUTURES_TARGET = "stand_in_futures"
    if sys.argv[2] == "early":  # the module imported before the hook: patched in place
        import concurrent.futures.process
    if hook.futures_active():
        hook.install_futures()
    else:
        print("off"); raise SystemExit
    import stand_in_futures
    ours = stand_in_futures.ProcessPoolExecutor
    from concurrent import futures
    from concurrent.futures import ProcessPoolExecutor
    import concurrent.futures.process as process
    from concurrent.futures.process import BrokenProcessPool, ProcessPoolExecutor as direct
    assert ProcessPoolExecutor is ours and direct is ours and process.ProcessPoolExecutor is ours
    assert futures.ProcessPoolExecutor is ours
    assert BrokenProcessPool.__module__ == "concurrent.futures.process"  # the rest stays the stdlib's
    assert process._check_system_limits is not None
    try:
        process.no_such_name
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    print("ok")
    """)


@pytest.mark.parametrize("when", ["late", "early"])
def test_the_futures_hook_replaces_the_executor_everywhere_the_tests_reach_it(tmp_path, when):
    (tmp_path / "_mp_conformance_hook.py").write_text((REPO_ROOT / "tools/conformance/hook.py").read_text())
    (tmp_path / "stand_in_futures.py").write_text(STAND_IN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MP_CONFORMANCE")}

    def run(**extra):
        return subprocess.run(
            [sys.executable, "-c", HOOK_CHECK, str(tmp_path), when],
            capture_output=True,
            text=True,
            env=dict(env, **extra),
            timeout=60,
        )

    proc = run(MP_CONFORMANCE="1", MP_CONFORMANCE_FUTURES="1")
    assert proc.stdout.strip() == "ok", proc.stderr
    assert run(MP_CONFORMANCE="1").stdout.strip() == "off"
    assert run(MP_CONFORMANCE_FUTURES="1").stdout.strip() == "off"  # the stdlib run: nothing replaced


def test_futures_active_needs_both_variables():
    assert hook.futures_active({"MP_CONFORMANCE": "1", "MP_CONFORMANCE_FUTURES": "1"})
    assert not hook.futures_active({"MP_CONFORMANCE": "1"})
    assert not hook.futures_active({"MP_CONFORMANCE_FUTURES": "1"})


def test_clean_env_turns_the_executor_on_for_ours_in_the_futures_suite_only(monkeypatch):
    monkeypatch.setenv("MP_CONFORMANCE_FUTURES", "1")  # inherited: must not leak into a run
    assert venv.clean_env("ours", suite="futures")["MP_CONFORMANCE_FUTURES"] == "1"
    assert venv.clean_env("ours", suite="futures")["MP_CONFORMANCE"] == "1"
    assert "MP_CONFORMANCE_FUTURES" not in venv.clean_env("ours")
    assert "MP_CONFORMANCE_FUTURES" not in venv.clean_env("stdlib", suite="futures")
    with pytest.raises(ValueError, match="unknown suite 'nope'"):
        venv.clean_env("ours", suite="nope")


# ------------------------------------------------------------------ the command line

GOOD_OURS = {"is_ours": True, "executor": "mp_pool.futures", "spawn_child_executor": "mp_pool.futures"}
GOOD_STDLIB = {
    "is_ours": False,
    "executor": "concurrent.futures.process",
    "spawn_child_executor": "concurrent.futures.process",
}


def test_preflight_problem():
    assert cli.preflight_problem("futures", "ours", GOOD_OURS) is None
    assert cli.preflight_problem("futures", "stdlib", GOOD_STDLIB) is None
    assert "spawn_child_executor" in cli.preflight_problem(
        "futures", "ours", dict(GOOD_OURS, spawn_child_executor="concurrent.futures.process")
    )
    assert "not from multiprocess.futures" in cli.preflight_problem(
        "futures", "ours", dict(GOOD_OURS, executor="error: ModuleNotFoundError('x')")
    )
    assert "the stdlib run" in cli.preflight_problem("futures", "stdlib", dict(GOOD_STDLIB, executor="mp_pool.futures"))
    assert "did not make multiprocessing" in cli.preflight_problem("futures", "ours", dict(GOOD_OURS, is_ours=False))
    # the multiprocessing suite does not care which executor the venv has
    assert cli.preflight_problem("multiprocessing", "ours", dict(GOOD_OURS, executor="x")) is None


def test_a_baseline_of_the_other_suite_is_refused(tmp_path):
    saved = tmp_path / "base.json"
    saved.write_text('{"suite": "multiprocessing", "runs": []}')
    with pytest.raises(SystemExit, match="results of the multiprocessing suite, not of futures"):
        cli.load_baseline(saved, "futures")
    assert cli.load_baseline(saved) == {}


def test_the_futures_allow_list_loads_and_every_entry_has_a_reason():
    assert allowlist.default_path("futures").name == "allowlist_futures.toml"
    assert allowlist.default_path("multiprocessing") == allowlist.DEFAULT_PATH
    entries = allowlist.load(allowlist.default_path("futures")).entries
    assert all(len(e.reason) > 40 for e in entries)
    assert all(e.match for e in entries), "every futures entry must say which failure it allows"

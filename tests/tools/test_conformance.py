"""Tests for tools/conformance: record parsing, verdicts, tables, allow-list, discovery, the child runner.

No CPython suite is run here: the child runner and the module runner are
exercised on tiny throwaway test modules.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tools.conformance import allowlist, child, discover, hook, report, results, runner, venv
from tools.conformance.results import ModuleRun, Outcome

REPO_ROOT = Path(__file__).resolve().parents[2]


def rec(event, **kw):
    return dict(event=event, **kw)


def lines(*records):
    return "".join(json.dumps(r) + "\n" for r in records)


# ------------------------------------------------------------------ records


def test_parse_records_drops_a_line_cut_short_by_a_kill():
    text = lines(rec("plan", ids=["m.C.a"]), rec("start", id="m.C.a", t=1.0)) + '{"event": "res'
    assert [r["event"] for r in results.parse_records(text)] == ["plan", "start"]


def test_parse_records_ignores_noise():
    text = "garbage\n\n[1, 2]\n" + lines(rec("done"))
    assert results.parse_records(text) == [{"event": "done"}]


def test_fold_records_collects_outcomes_fixtures_and_completion():
    run = ModuleRun("ours", "fork", "misc", "m")
    summary = results.fold_records(
        run,
        [
            rec("plan", ids=["m.C.a", "m.C.b"]),
            rec("start", id="m.C.a", t=1.0),
            rec("result", id="m.C.a", status="passed", duration=0.5, detail=None),
            rec("start", id="m.C.b", t=2.0),
            rec("result", id="m.C.b", status="failed", duration=0.1, detail="AssertionError: 1 != 2"),
            rec("fixture", name="tearDownModule (m)", status="error", detail="AttributeError: x"),
            rec("fixture", name="setUpClass (m.D)", status="skipped", detail="why"),
            rec("done"),
        ],
    )
    assert summary.done and summary.unfinished is None
    assert run.plan == ["m.C.a", "m.C.b"]
    assert {k: o.status for k, o in run.outcomes.items()} == {
        "m.C.a": "passed",
        "m.C.b": "failed",
        "tearDownModule (m)": "error",
    }


def test_fold_records_reports_the_test_left_running():
    run = ModuleRun("ours", "fork", "misc", "m")
    summary = results.fold_records(
        run,
        [
            rec("plan", ids=["m.C.a", "m.C.b"]),
            rec("start", id="m.C.a", t=1.0),
            rec("result", id="m.C.a", status="passed"),
            rec("start", id="m.C.b", t=2.0),
        ],
    )
    assert not summary.done
    assert (summary.unfinished, summary.unfinished_started) == ("m.C.b", 2.0)


@pytest.mark.parametrize(
    "timed_out, ended_at, limit_hit, expected",
    [
        ("m.C.b", 3.0, False, "timeout"),  # the watchdog said so
        (None, 70.0, False, "timeout"),  # ran past the per-test limit
        (None, 3.0, True, "timeout"),  # the module's limit ran out
        (None, 3.0, False, "crashed"),  # died quickly on its own
    ],
)
def test_settle_unfinished(timed_out, ended_at, limit_hit, expected):
    run = ModuleRun("ours", "fork", "misc", "m")
    summary = results.LaunchSummary(unfinished="m.C.b", unfinished_started=2.0, timed_out=timed_out)
    results.settle_unfinished(
        run,
        summary,
        test_timeout=60,
        ended_at=ended_at,
        returncode=-9,
        log_tail="Fatal Python error",
        module_limit_hit=limit_hit,
    )
    assert run.outcomes["m.C.b"].status == expected
    assert "Fatal Python error" in run.outcomes["m.C.b"].detail


def test_finish_run_spreads_an_import_error_over_the_known_plan():
    run = ModuleRun("ours", "fork", "misc", "m", import_error="Traceback...\nAttributeError: no util.x")
    results.finish_run(run, known_plan=["m.C.a", "m.C.b"])
    assert [o.status for o in run.outcomes.values()] == ["error", "error"]
    assert results.key_error_line(run.outcomes["m.C.a"].detail) == "AttributeError: no util.x"


def test_finish_run_without_a_plan_records_one_module_error():
    run = ModuleRun("ours", "fork", "misc", "m", import_error="ImportError: boom")
    results.finish_run(run)
    assert list(run.outcomes) == ["m"] and run.outcomes["m"].status == "error"


def test_finish_run_marks_unrun_tests():
    run = ModuleRun("ours", "fork", "misc", "m", plan=["m.C.a", "m.C.b"], module_timed_out=True)
    run.outcomes["m.C.a"] = Outcome("m.C.a", "timeout")
    results.finish_run(run)
    assert run.outcomes["m.C.b"].status == "not_run"
    assert run.counts() == {"total": 2, "passed": 0, "failed": 0, "errors": 0, "skipped": 0, "timeout": 1, "not_run": 1}


def test_count_statuses_folds_xfail_and_xpass():
    counts = results.count_statuses(["passed", "xfail", "xpass", "failed", "error", "crashed", "skipped"])
    assert counts["passed"] == 2 and counts["failed"] == 2 and counts["errors"] == 2
    assert counts["skipped"] == 1 and counts["total"] == 7


def test_module_run_json_round_trip():
    run = ModuleRun("stdlib", "spawn", "threads", "m", plan=["m.C.a"], wall=1.5)
    run.outcomes["m.C.a"] = Outcome("m.C.a", "passed", 0.2)
    again = ModuleRun.from_json(json.loads(json.dumps(run.to_json())))
    assert again == run


# --------------------------------------------------------------- comparison


def _run(impl, **statuses):
    run = ModuleRun(impl, "spawn", "processes", "m")
    for name, status in statuses.items():
        tid = f"m.WithProcessesTestX.{name}"
        run.outcomes[tid] = Outcome(tid, status, detail=f"AssertionError: {name}")
    return run


def test_compare_with_a_baseline():
    stdlib = _run("stdlib", a="passed", b="failed", c="passed", d="skipped", e="passed", f="timeout", g="passed")
    ours = _run("ours", a="failed", b="error", c="passed", d="passed", e="skipped", f="timeout", g="xfail")
    kinds = {v.outcome.id.rsplit(".", 1)[1]: v.kind for v in results.compare(ours, stdlib)}
    assert kinds == {
        "a": "regression",
        "b": "also_stdlib",
        "c": "ok",
        "d": "fixed",
        "e": "regression",
        "f": "regression",
        "g": "ok",
    }


def test_compare_without_a_baseline_counts_every_failure():
    ours = _run("ours", a="failed", b="passed", c="skipped", d="not_run")
    kinds = {v.outcome.id.rsplit(".", 1)[1]: v.kind for v in results.compare(ours, None)}
    assert kinds == {"a": "regression", "b": "ok", "c": "ok", "d": "regression"}


def test_compare_applies_the_allow_list_only_when_the_failure_matches():
    allow = allowlist.parse(
        {
            "allow": [
                {"test": "WithProcessesTestX.a", "reason": "dill pickles lambdas", "match": "AssertionError: a"},
                {"test": "*.b", "reason": "r", "match": "MaybeEncodingError"},
            ]
        }
    )
    stdlib = _run("stdlib", a="passed", b="passed")
    ours = _run("ours", a="failed", b="failed")
    verdicts = {v.outcome.id.rsplit(".", 1)[1]: v for v in results.compare(ours, stdlib, allow)}
    assert verdicts["a"].kind == "allowed" and verdicts["a"].reason == "dill pickles lambdas"
    assert verdicts["b"].kind == "regression"


# ----------------------------------------------------------------- categories


def test_key_error_line_and_innermost_frame():
    detail = textwrap.dedent("""\
        Traceback (most recent call last):
          File "/x/_test_multiprocessing.py", line 10, in test_a
            f()
          File "/w/packages/mp-pool/src/mp_pool/pool.py", line 99, in map
            raise
        TypeError: cannot pickle '_thread.lock' object
        """)
    assert results.key_error_line(detail) == "TypeError: cannot pickle '_thread.lock' object"
    assert results.innermost_frame(detail) == "pool.py:99 in map"
    assert results.key_error_line(None) == "(no detail)"


def test_category_groups_the_same_problem():
    a = "Traceback\nAttributeError: 'X' object at 0x7f00aa has no attribute 'y' in /tmp/a/b.py line 12"
    b = "Traceback\nAttributeError: 'X' object at 0x7f11bb has no attribute 'y' in /tmp/c/d.py line 99"
    assert results.category(a) == results.category(b)
    verdicts = [
        results.Verdict(Outcome(f"m.C.t{i}", "error", detail=d), "passed", "regression")
        for i, d in enumerate([a, b, "ValueError: other"])
    ]
    groups = results.categorize(verdicts)
    assert [len(m) for _, m in groups] == [2, 1]


# ---------------------------------------------------------------- the table


def test_table_side_by_side_with_a_total_row():
    s = results.count_statuses(["passed"] * 3 + ["skipped"])
    o = results.count_statuses(["passed", "failed", "error", "timeout"])
    v = {"regression": 3, "allowed": 0, "fixed": 0}
    text = report.table([("processes", s, o, v), ("total fork", s, o, v)], show_stdlib=True, show_ours=True)
    out = text.splitlines()
    assert "stdlib" in out[0] and "ours" in out[0] and "vs stdlib" in out[0]
    assert out[1].split("|")[0].strip() == "module"
    row = [c for c in out[3].replace("|", " ").split()]
    assert row == ["processes", "4", "3", "0", "0", "1", "0", "0", "4", "1", "1", "1", "0", "1", "0", "3", "0", "0"]
    assert out[-1].startswith("total fork") and set(out[-2]) == {"-"}


def test_table_ours_only_and_missing_cells():
    o = results.count_statuses(["passed"])
    text = report.table([("misc", None, o, None)], show_stdlib=False, show_ours=True)
    assert "stdlib" not in text and text.splitlines()[-1].split()[-3:] == ["-", "-", "-"]


def test_format_failures_shows_the_key_line():
    v = results.Verdict(
        Outcome("m.C.t", "error", detail='File "/a/b.py", line 3, in f\nKeyError: 1'), "passed", "regression"
    )
    text = report.format_failures([v], ("regression",), lines=1)
    assert "[error (stdlib: passed)] m.C.t" in text and "KeyError: 1" in text and "b.py:3 in f" in text


# ---------------------------------------------------------------- allow-list


def test_the_shipped_allow_list_loads_and_every_entry_has_a_reason():
    allow = allowlist.load()
    for entry in allow.entries:
        assert entry.reason.strip() and entry.test.strip()


def test_allow_list_loading_from_toml(tmp_path):
    path = tmp_path / "allow.toml"
    path.write_text(
        textwrap.dedent('''\
        [[allow]]
        test = "*.WithProcessesTestPoolWorkerErrors.test_unpickleable_result"
        reason = """dill pickles the lambda
                    that pickle cannot"""
        methods = ["spawn"]
        match = "MaybeEncodingError not raised"
        ''')
    )
    allow = allowlist.load(path)
    (entry,) = allow.entries
    assert entry.reason == "dill pickles the lambda that pickle cannot" and entry.methods == ("spawn",)
    hit = Outcome(
        "x.WithProcessesTestPoolWorkerErrors.test_unpickleable_result",
        "failed",
        detail="AssertionError: MaybeEncodingError not raised by get",
    )
    assert allow.match(hit, "spawn") is entry
    assert allow.match(hit, "fork") is None
    assert allow.match(Outcome(hit.id, "error", detail="ImportError"), "spawn") is None


@pytest.mark.parametrize(
    "item, message",
    [
        ({"test": "a.b"}, "reason"),
        ({"reason": "r"}, "test"),
        ({"test": "a.b", "reason": "  "}, "reason"),
        ({"test": "a.b", "reason": "r", "methods": ["vfork"]}, "methods"),
        ({"test": "a.b", "reason": "r", "match": "("}, "regex"),
        ({"test": "a.b", "reason": "r", "why": "x"}, "unknown"),
    ],
)
def test_allow_list_rejects_malformed_entries(item, message):
    with pytest.raises(ValueError, match=message):
        allowlist.parse({"allow": [item]})


# ----------------------------------------------------------------- discovery


def _stdlib(tmp_path, files):
    for name in files:
        path = tmp_path / "test" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    return tmp_path


def test_discover_package_layout(tmp_path):
    root = _stdlib(
        tmp_path,
        ["_test_multiprocessing.py", "test_multiprocessing_main_handling.py"]
        + [f"test_multiprocessing_spawn/{n}.py" for n in ("__init__", "test_misc", "test_processes", "test_threads")],
    )
    layout = discover.discover(root, ["spawn"])
    assert layout.kind == "package" and not layout.generated_sources
    assert [(m.name, m.module) for m in layout.modules] == [
        ("processes", "test.test_multiprocessing_spawn.test_processes"),
        ("threads", "test.test_multiprocessing_spawn.test_threads"),
        ("misc", "test.test_multiprocessing_spawn.test_misc"),
        ("main_handling", "test.test_multiprocessing_main_handling"),
    ]
    assert layout.modules[-1].include == ("*.SpawnCmdLineTest.*",)


def test_discover_single_file_layout_splits_by_class(tmp_path):
    root = _stdlib(tmp_path, ["_test_multiprocessing.py", "test_multiprocessing_fork.py"])
    layout = discover.discover(root, ["fork"])
    assert layout.kind == "file"
    by_name = {m.name: m for m in layout.modules}
    assert by_name["processes"].include == ("*.WithProcesses*",)
    assert set(by_name["misc"].exclude) == {"*.WithProcesses*", "*.WithThreads*", "*.WithManager*"}
    assert {m.module for m in layout.modules} == {"test.test_multiprocessing_fork"}


def test_discover_generates_missing_wrappers(tmp_path):
    root = _stdlib(tmp_path, ["_test_multiprocessing.py"])
    layout = discover.discover(root, ["fork", "forkserver"])
    assert layout.kind == "generated" and len(layout.modules) == 8
    assert set(layout.generated_sources) == {m.module for m in layout.modules}
    source = layout.generated_sources["_mpconf_tests.forkserver_manager"]
    compile(source, "gen.py", "exec")
    assert "install_tests_in_module_dict(globals(), 'forkserver')" in source
    assert "_name.startswith('WithManager')" in source


def test_discover_nothing(tmp_path):
    assert discover.discover(tmp_path).modules == []


def test_select_modules():
    mods = [discover.TestModule("fork", n, "m") for n in ("processes", "misc")]
    assert [m.name for m in discover.select_modules(mods, ["misc"])] == ["misc"]
    with pytest.raises(ValueError, match="unknown"):
        discover.select_modules(mods, ["nope"])


# ------------------------------------------------------------------ the hook


def test_hook_target_name():
    assert hook.target_name("multiprocessing") == "multiprocess"
    assert hook.target_name("multiprocessing.pool") == "multiprocess.pool"
    assert hook.target_name("multiprocessing.dummy.connection") == "multiprocess.dummy.connection"
    assert hook.target_name("multiprocessingx") is None and hook.target_name("os") is None


def test_hook_makes_multiprocessing_be_multiprocess(tmp_path):
    code = textwrap.dedent("""\
        import sys
        sys.path.insert(0, sys.argv[1])
        import _mp_conformance_hook
        import multiprocessing, multiprocessing.connection, multiprocess
        assert sys.modules["multiprocessing"] is multiprocess
        assert multiprocessing.connection is sys.modules["multiprocess.connection"]
        assert multiprocess.__spec__.name == "multiprocess", multiprocess.__spec__
        from multiprocessing import util
        assert util.zz_stub == 5 and util.Finalize != 6
        try:
            import multiprocessing.no_such_module
        except ModuleNotFoundError as exc:
            assert exc.name == "multiprocessing.no_such_module", exc.name
        print("ok")
        """)
    (tmp_path / "_mp_conformance_hook.py").write_text((REPO_ROOT / "tools/conformance/hook.py").read_text())
    stubs = {"multiprocessing.util.zz_stub": 5, "multiprocessing.util.Finalize": 6}
    env = dict(os.environ, MP_CONFORMANCE="1", MP_CONFORMANCE_STUBS=json.dumps(stubs))
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.stdout.strip() == "ok", proc.stderr
    env.pop("MP_CONFORMANCE")
    code_off = code.replace('assert sys.modules["multiprocessing"] is multiprocess', 'print("off"); raise SystemExit')
    proc = subprocess.run(
        [sys.executable, "-c", code_off, str(tmp_path)], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.stdout.strip() == "off", proc.stderr


def test_pth_lists_the_sources_then_imports_the_hook(tmp_path):
    text = venv.pth_text([tmp_path / "a" / "src", tmp_path / "b" / "src"])
    assert text.splitlines() == [
        str(tmp_path / "a" / "src"),
        str(tmp_path / "b" / "src"),
        "import _mp_conformance_hook",
    ]


def test_venv_key_follows_the_pyproject_files(tmp_path):
    (tmp_path / "packages" / "a").mkdir(parents=True)
    pyproject = tmp_path / "packages" / "a" / "pyproject.toml"
    pyproject.write_text("[project]\nname = 'a'\n")
    key = venv.venv_key(sys.executable, tmp_path)
    assert key == venv.venv_key(sys.executable, tmp_path)
    pyproject.write_text("[project]\nname = 'b'\n")
    assert key != venv.venv_key(sys.executable, tmp_path)


# ----------------------------------------------------------- the child runner


@pytest.mark.skipif(
    sys.implementation.name != "cpython",
    reason="PyPy installs its SIGINT handler even when SIGINT was ignored at start-up: "
    "nothing to restore (and the tool runs CPython's suite only)",
)
def test_the_child_runner_restores_sigint_that_a_background_launch_ignored():
    program = (
        f"import signal, sys; sys.path.insert(0, {str(venv.REPO_ROOT)!r})\n"
        "from tools.conformance.child import restore_interrupts\n"
        "print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN, end=' ')\n"
        "restore_interrupts()\n"
        "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert out.stdout.strip() == "True True", out.stderr


class _T:
    def __init__(self, tid):
        self._id = tid

    def id(self):
        return self._id


def test_child_select():
    tests = [_T(f"m.{c}.test_{n}") for c in ("WithProcessesA", "WithThreadsA", "B") for n in ("x", "y")]
    ids = lambda ts: [t.id() for t in ts]  # noqa: E731
    assert ids(child.select(tests, include=["*.WithProcesses*"])) == [
        "m.WithProcessesA.test_x",
        "m.WithProcessesA.test_y",
    ]
    assert ids(child.select(tests, exclude=["*.With*"], keywords=["y"])) == ["m.B.test_y"]
    assert ids(child.select(tests, keywords=["B.*x"])) == []  # a wildcard pattern must match the whole id
    assert ids(child.select(tests, keywords=["*B.*x"])) == ["m.B.test_x"]
    assert ids(child.select(tests, after="m.B.test_x")) == ["m.B.test_y"]


def test_child_settle_unrun_blames_the_setup_fixture():
    fixtures = [
        {"name": "setUpClass (m.C)", "status": "error", "detail": "boom"},
        {"name": "setUpModule (n)", "status": "skipped", "detail": "no fork"},
    ]
    out = child.settle_unrun(["m.C.a", "m.C.b", "m.D.c", "n.E.d"], {"m.C.a": {}}, fixtures)
    assert [(r["id"], r["status"]) for r in out] == [("m.C.b", "error"), ("m.D.c", "not_run"), ("n.E.d", "skipped")]
    assert child.fixture_target("tearDownClass (a.b.C)") == ("class", "a.b.C")


FAKE_TESTS = """\
import subprocess, sys, time, unittest

class A(unittest.TestCase):
    def test_1_pass(self):
        pass
    def test_2_fail(self):
        self.assertEqual(1, 2)
    def test_3_error(self):
        raise KeyError("k")
    def test_4_skip(self):
        self.skipTest("because")
    def test_5_subtest(self):
        for i in range(3):
            with self.subTest(i=i):
                self.assertLess(i, 2)
    @unittest.expectedFailure
    def test_6_xfail(self):
        self.fail()
    def test_7_hang(self):
        subprocess.Popen([sys.executable, "-X", "faulthandler", "-c", "import time; time.sleep(120)"])
        time.sleep(120)
    def test_8_after_hang(self):
        pass

class B(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        raise RuntimeError("class setup broke")
    def test_b(self):
        pass
"""


@pytest.fixture
def fake_site(tmp_path):
    site = tmp_path / "site"
    (site / "_mpconf_runner").mkdir(parents=True)
    (site / "_mpconf_runner" / "__init__.py").write_text("")
    (site / "_mpconf_runner" / "__main__.py").write_text((REPO_ROOT / "tools/conformance/child.py").read_text())
    (site / "fake_mod.py").write_text(FAKE_TESTS)
    (site / "broken_mod.py").write_text("import multiprocessing\nmultiprocessing.util.no_such_name\n")
    return site


def test_run_module_end_to_end_with_a_hang_and_a_resume(fake_site, tmp_path, monkeypatch):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(fake_site)
    monkeypatch.setattr(runner, "clean_env", lambda impl, stubs=None, suite="multiprocessing": env)
    fake = venv.Venv(tmp_path, Path(sys.executable), fake_site, fake_site, "x")
    opts = runner.RunOptions(test_timeout=2.0, module_timeout=60.0, out_dir=tmp_path / "out")
    run = runner.run_module(fake, discover.TestModule("fork", "misc", "fake_mod"), "ours", opts)
    status = {tid.split(".", 1)[1]: o.status for tid, o in run.outcomes.items()}
    assert status == {
        "A.test_1_pass": "passed",
        "A.test_2_fail": "failed",
        "A.test_3_error": "error",
        "A.test_4_skip": "skipped",
        "A.test_5_subtest": "failed",
        "A.test_6_xfail": "xfail",
        "A.test_7_hang": "timeout",
        "A.test_8_after_hang": "passed",
        "B.test_b": "error",
    }
    assert run.launches == 2
    assert "class setup broke" in run.outcomes["fake_mod.B.test_b"].detail
    assert "i=2" in run.outcomes["fake_mod.A.test_5_subtest"].detail
    log = Path(run.log).read_text()
    assert "exceeded 2 s" in log
    assert "Fatal Python error: Aborted" in log  # the hung test's child said where it was
    assert "in test_7_hang" in run.outcomes["fake_mod.A.test_7_hang"].detail

    broken = runner.run_module(
        fake, discover.TestModule("fork", "misc", "broken_mod"), "ours", opts, known_plan=["broken_mod.C.t"]
    )
    assert broken.import_error and broken.outcomes["broken_mod.C.t"].status == "error"


HANGING_TEARDOWN = """\
import time
import unittest

def tearDownModule():
    time.sleep(120)  # e.g. module cleanup waiting for processes a failed test left running

class A(unittest.TestCase):
    def test_1(self):
        pass

class B(unittest.TestCase):
    @classmethod
    def tearDownClass(cls):
        time.sleep(120)
    def test_2(self):
        pass

class C(unittest.TestCase):
    def test_3(self):
        pass
"""


def test_run_module_cuts_short_fixtures_that_hang_after_a_test(fake_site, tmp_path, monkeypatch):
    (fake_site / "hanging_fixtures.py").write_text(HANGING_TEARDOWN)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(fake_site)
    monkeypatch.setattr(runner, "clean_env", lambda impl, stubs=None, suite="multiprocessing": env)
    fake = venv.Venv(tmp_path, Path(sys.executable), fake_site, fake_site, "x")
    opts = runner.RunOptions(test_timeout=2.0, module_timeout=60.0, out_dir=tmp_path / "out")
    started = time.monotonic()
    run = runner.run_module(fake, discover.TestModule("fork", "misc", "hanging_fixtures"), "ours", opts)
    assert time.monotonic() - started < 45
    status = {tid: o.status for tid, o in run.outcomes.items()}
    assert status == {
        "hanging_fixtures.A.test_1": "passed",
        "hanging_fixtures.B.test_2": "passed",
        "fixtures after hanging_fixtures.B.test_2": "timeout",  # B's tearDownClass; the run goes on with C
        "hanging_fixtures.C.test_3": "passed",
        "fixtures after hanging_fixtures.C.test_3": "timeout",  # the module's cleanup: no relaunch for it
    }
    assert run.launches == 2
    assert "in tearDownClass" in run.outcomes["fixtures after hanging_fixtures.B.test_2"].detail
    assert "in tearDownModule" in run.outcomes["fixtures after hanging_fixtures.C.test_3"].detail
    assert child.test_before_fixtures("fixtures after m.C.t") == "m.C.t"
    assert child.test_before_fixtures("m.C.t") is None


def test_ensure_venv_writes_support_files_only_inside_the_venv(tmp_path):
    repo = tmp_path / "repo"
    (repo / "packages" / "a" / "src").mkdir(parents=True)
    (repo / "packages" / "a" / "pyproject.toml").write_text("[project]\nname = 'a'\n")
    made = venv.ensure_venv(sys.executable, tmp_path / "cache", repo, log=lambda msg: None)
    assert made.path.resolve() in made.site.resolve().parents
    pth = made.site / "_mp_conformance.pth"
    assert pth.read_text().splitlines() == [str(repo / "packages" / "a" / "src"), "import _mp_conformance_hook"]
    assert (made.site / "_mpconf_runner" / "__main__.py").exists()
    proc = subprocess.run(
        [str(made.python), "-c", "import sys, _mp_conformance_hook; print(sys.prefix)"],
        capture_output=True,
        text=True,
        env=venv.clean_env(None),
        timeout=60,
    )
    assert proc.stdout.strip() == str(made.path), proc.stderr
    base_site = subprocess.run(
        [sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    assert Path(base_site).resolve() != made.site.resolve()


def test_group_members_and_kill_group_spare_the_tracker(tmp_path):
    # Each child says it is running before the pids are printed: until it has
    # exec'd, its /proc cmdline is still the parent's and is_tracker cannot tell.
    script = (
        "import subprocess, sys, time\n"
        "code = 'import time; print(1, flush=True); time.sleep(60)'\n"
        "a = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE)\n"
        "b = subprocess.Popen([sys.executable, '-c', code, 'resource_' + 'tracker'], stdout=subprocess.PIPE)\n"
        "a.stdout.readline(); b.stdout.readline()\n"
        "print(a.pid, b.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        a, b = map(int, proc.stdout.readline().split())
        assert set(child.group_members(proc.pid)) == {proc.pid, a, b}
        assert child.is_tracker(b) and not child.is_tracker(a)
        child.kill_group(proc.pid)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while a in child.group_members(proc.pid, include_zombies=False) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.group_members(proc.pid, include_zombies=False) == [b]
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


def test_diagnostic_stubs_reach_only_their_module():
    env = {
        "MP_CONFORMANCE_STUBS": json.dumps(
            {"multiprocessing.util.abstract_sockets_supported": True, "multiprocessing.shared_memory._USE_POSIX": 1}
        )
    }
    assert hook.parse_stubs(env) == {
        ("multiprocessing.util", "abstract_sockets_supported"): True,
        ("multiprocessing.shared_memory", "_USE_POSIX"): 1,
    }
    assert hook.parse_stubs({}) == {}
    assert "MP_CONFORMANCE_STUBS" not in venv.clean_env("stdlib", {"multiprocessing.util.x": 1})
    assert json.loads(venv.clean_env("ours", {"multiprocessing.util.x": 1})["MP_CONFORMANCE_STUBS"]) == {
        "multiprocessing.util.x": 1
    }


def test_parse_stubs():
    from tools.conformance.cli import parse_stubs

    assert parse_stubs(["multiprocessing.util.x=True", "multiprocessing.a.b='s'"]) == {
        "multiprocessing.util.x": True,
        "multiprocessing.a.b": "s",
    }
    for bad in ("multiprocessing.x=1", "os.path.x=1", "multiprocessing.util.x=not literal", "x"):
        with pytest.raises(SystemExit):
            parse_stubs([bad])

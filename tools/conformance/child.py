"""Run one test module with unittest, one JSON record per event, per-test time limit.

This file is copied into the conformance venv as ``_mpconf_runner/__main__.py``
and run there as ``python -m _mpconf_runner --module NAME --results FILE``.
Being a package's ``__main__``, a spawned child never re-imports it.

It writes JSON lines to ``--results`` (flushed one by one, so whatever
happened before a crash or a kill survives):

* ``{"event": "plan", "ids": [...]}`` -- the selected tests, in run order;
* ``{"event": "start", "id": ..., "t": ...}`` -- a test begins;
* ``{"event": "result", "id": ..., "status": ..., "duration": ..., "detail": ...}``
  with status ``passed``, ``failed``, ``error``, ``skipped``, ``xfail``
  (expected failure), ``xpass`` (unexpected success) or ``not_run``;
* ``{"event": "fixture", "name": "setUpClass (mod.Class)", "status": ..., "detail": ...}``
  -- a class- or module-level fixture failed or skipped;
* ``{"event": "timeout", "id": ..., "seconds": ...}`` -- the watchdog fired:
  it dumps every thread's traceback to stderr and kills the whole process
  group (this process is its leader), taking any hung children with it.
  Between tests the watchdog keeps watching, under the id
  ``"fixtures after <the last test's id>"``: a ``tearDownClass``,
  ``setUpClass`` or module cleanup that hangs (one waiting for processes a
  failed test left running) is cut short the same way;
* ``{"event": "import_error", "detail": ...}`` / ``{"event": "module_skip", ...}``;
* ``{"event": "done"}``.

Human-readable verbose unittest output goes to stderr (the parent's log).
Standard library only; runs on every Python the project supports.
"""

import argparse
import faulthandler
import fnmatch
import importlib
import json
import os
import signal
import sys
import threading
import time
import traceback
import unittest

MAX_DETAIL = 6000
#: the watchdog's id for the class and module fixtures that run after a test (see ``fixtures_after``)
FIXTURES_AFTER = "fixtures after "


def fixtures_after(test_id):
    """The watchdog's id for the fixtures that run after test *test_id*."""
    return FIXTURES_AFTER + test_id


def test_before_fixtures(watch_id):
    """The test whose following fixtures *watch_id* names, or ``None`` if it names a test itself."""
    if watch_id is not None and watch_id.startswith(FIXTURES_AFTER):
        return watch_id[len(FIXTURES_AFTER) :]
    return None


def clip(text, limit=MAX_DETAIL):
    """Keep the head and the (more telling) tail of a long traceback."""
    if text is None or len(text) <= limit:
        return text
    head = limit // 4
    return text[:head] + f"\n[... {len(text) - limit} characters clipped ...]\n" + text[-(limit - head) :]


class Emitter:
    def __init__(self, path):
        self._file = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def __call__(self, **record):
        line = json.dumps(record) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()


TRACKER_MARKERS = (b"resource_tracker",)


def group_members(pgid, include_zombies=True):
    """PIDs in process group *pgid* (Linux ``/proc``); ``None`` when that cannot be known."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    members = []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name (field 2) may hold spaces or parentheses: split after its last ')'
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and (include_zombies or fields[0] != b"Z"):
            members.append(int(entry))
    return members


def is_tracker(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return False
    return any(marker in cmdline for marker in TRACKER_MARKERS)


def kill_group(pgid, spare_trackers=True, dump_first=0.0):
    """SIGKILL process group *pgid*, sparing resource trackers (and this process).

    A resource tracker left alive sees its pipe close once everyone else is
    dead, unlinks the semaphores and shared memory they leaked, and exits;
    killing it too would leave those in /dev/shm.  The caller kills whatever
    is left after a grace period.  With *dump_first* (seconds), the others
    first get SIGABRT, so that the ones running with faulthandler enabled
    (the suite's children inherit ``-X faulthandler``) print where they were
    stuck before they die.
    """
    members = group_members(pgid) if spare_trackers else None
    if members is None:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return
    victims = [pid for pid in members if pid != os.getpid() and not is_tracker(pid)]
    signals = ([signal.SIGABRT] if dump_first else []) + [signal.SIGKILL]
    for i, sig in enumerate(signals):
        if i:
            time.sleep(dump_first)
        for pid in victims:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass


class Watchdog:
    """Kills the process group when one test runs longer than ``seconds``.

    A Python thread reports the timeout and dumps tracebacks; a C-level
    ``faulthandler`` timer a little later is the fallback for a test that
    never releases the GIL.
    """

    GRACE = 30.0

    def __init__(self, seconds, emit):
        self.seconds = seconds
        self._emit = emit
        self._cond = threading.Condition()
        self._deadline = None
        self._test_id = None
        self._thread = threading.Thread(target=self._run, name="conformance-watchdog", daemon=True)
        self._thread.start()

    def arm(self, test_id):
        if not self.seconds:
            return
        with self._cond:
            self._test_id = test_id
            self._deadline = time.monotonic() + self.seconds
            self._cond.notify()
        faulthandler.dump_traceback_later(self.seconds + self.GRACE, exit=True)

    def disarm(self):
        if not self.seconds:
            return
        faulthandler.cancel_dump_traceback_later()
        with self._cond:
            self._deadline = None
            self._test_id = None
            self._cond.notify()

    def _run(self):
        with self._cond:
            while True:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                remaining = self._deadline - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                self._fire(self._test_id)
                return

    def _fire(self, test_id):
        try:
            self._emit(event="timeout", id=test_id, seconds=self.seconds, t=time.time())
            sys.stderr.write(
                f"\n*** conformance: {test_id} exceeded {self.seconds:g} s; tracebacks follow, "
                "then the process group is killed\n"
            )
            sys.stderr.flush()
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            sys.stderr.flush()
        finally:
            if os.getpgrp() == os.getpid():
                sys.stderr.write("\n*** conformance: the other processes of the test, where they were:\n")
                sys.stderr.flush()
                kill_group(os.getpgrp(), dump_first=1.0)
            os._exit(124)


def fixture_target(name):
    """``'setUpClass (a.b.C)'`` -> ``('class', 'a.b.C')``; ``'setUpModule (a.b)'`` -> ``('module', 'a.b')``."""
    kind, _, rest = name.partition(" (")
    target = rest.rstrip(")")
    if kind in ("setUpClass", "tearDownClass"):
        return "class", target
    if kind in ("setUpModule", "tearDownModule"):
        return "module", target
    return None, target


def make_result_class(emit, watchdog):
    class RecordingResult(unittest.TextTestResult):
        """A verbose text result that also writes one JSON record per test."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.recorded = {}
            self.fixtures = []
            self._current = None

        # -- per-test bookkeeping
        def startTest(self, test):
            super().startTest(test)
            self._current = {"id": test.id(), "t0": time.monotonic(), "status": None, "detail": None, "sub": None}
            emit(event="start", id=test.id(), t=time.time())
            watchdog.arm(test.id())

        def stopTest(self, test):
            watchdog.disarm()
            cur = self._current
            if cur is not None and cur["id"] == test.id():
                status, detail = cur["status"], cur["detail"]
                if cur["sub"] is not None and status in (None, "passed"):
                    status, detail = cur["sub"]
                if status is None:
                    status, detail = "error", "test finished without an outcome"
                record = {
                    "id": cur["id"],
                    "status": status,
                    "duration": round(time.monotonic() - cur["t0"], 3),
                    "detail": clip(detail),
                }
                self.recorded[cur["id"]] = record
                emit(event="result", **record)
            self._current = None
            super().stopTest(test)
            # tearDownClass, the next setUpClass, module cleanups: watched too
            watchdog.arm(fixtures_after(test.id()))

        def _set(self, test, status, detail=None):
            cur = self._current
            if cur is None or cur["id"] != test.id():
                return False
            if cur["status"] in ("failed", "error"):
                return True  # e.g. an error in tearDown after a failure: keep the first
            cur["status"], cur["detail"] = status, detail
            return True

        def _fixture(self, test, status, detail):
            name = getattr(test, "description", None) or str(test)
            self.fixtures.append({"name": name, "status": status, "detail": clip(detail)})
            emit(event="fixture", name=name, status=status, detail=clip(detail))

        # -- outcomes
        def addSuccess(self, test):
            super().addSuccess(test)
            self._set(test, "passed")

        def addFailure(self, test, err):
            super().addFailure(test, err)
            if not self._set(test, "failed", self._exc_info_to_string(err, test)):
                self._fixture(test, "error", self._exc_info_to_string(err, test))

        def addError(self, test, err):
            super().addError(test, err)
            if not self._set(test, "error", self._exc_info_to_string(err, test)):
                self._fixture(test, "error", self._exc_info_to_string(err, test))

        def addSkip(self, test, reason):
            super().addSkip(test, reason)
            if isinstance(test, unittest.TestCase) and not self._is_subtest(test):
                if not self._set(test, "skipped", str(reason)):
                    self._fixture(test, "skipped", str(reason))
            elif not isinstance(test, unittest.TestCase):
                self._fixture(test, "skipped", str(reason))

        def addExpectedFailure(self, test, err):
            super().addExpectedFailure(test, err)
            self._set(test, "xfail", self._exc_info_to_string(err, test))

        def addUnexpectedSuccess(self, test):
            super().addUnexpectedSuccess(test)
            self._set(test, "xpass", "unexpected success")

        def addSubTest(self, test, subtest, err):
            super().addSubTest(test, subtest, err)
            cur = self._current
            if err is None or cur is None or cur["id"] != test.id() or cur["sub"] is not None:
                return
            status = "failed" if issubclass(err[0], test.failureException) else "error"
            cur["sub"] = (status, f"{subtest.id()}\n{self._exc_info_to_string(err, test)}")

        @staticmethod
        def _is_subtest(test):
            return type(test).__name__ == "_SubTest"

    return RecordingResult


def flatten(suite):
    for item in suite:
        if isinstance(item, unittest.BaseTestSuite):
            yield from flatten(item)
        else:
            yield item


def _as_glob(pattern):
    """unittest's ``-k`` rule: a pattern without wildcards matches as a substring."""
    return pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"


def select(tests, include=(), exclude=(), keywords=(), after=None):
    """Filter *tests* (objects with ``id()``), keeping their order.

    ``include``/``exclude`` are fnmatch globs on the full id (any include
    must match, no exclude may); ``keywords`` are unittest ``-k`` patterns
    (any may match); ``after`` drops every test up to and including that id.
    """
    chosen = []
    for test in tests:
        tid = test.id()
        if include and not any(fnmatch.fnmatchcase(tid, g) for g in include):
            continue
        if any(fnmatch.fnmatchcase(tid, g) for g in exclude):
            continue
        if keywords and not any(fnmatch.fnmatchcase(tid, _as_glob(k)) for k in keywords):
            continue
        chosen.append(test)
    if after is not None:
        ids = [t.id() for t in chosen]
        if after in ids:
            chosen = chosen[ids.index(after) + 1 :]
    return chosen


def settle_unrun(plan, recorded, fixtures):
    """Records for planned tests that never ran, blaming a failed setUp fixture when there is one."""
    setups = {}
    for fx in fixtures:
        if fx["name"].startswith("setUp"):
            setups.setdefault(fixture_target(fx["name"]), fx)
    out = []
    for tid in plan:
        if tid in recorded:
            continue
        cls = tid.rsplit(".", 1)[0]
        mod = cls.rsplit(".", 1)[0]
        fx = setups.get(("class", cls)) or setups.get(("module", mod))
        if fx is not None:
            out.append(
                {
                    "id": tid,
                    "status": fx["status"],
                    "duration": 0.0,
                    "detail": "{}: {}".format(fx["name"], fx["detail"]),
                }
            )
        else:
            out.append({"id": tid, "status": "not_run", "duration": 0.0, "detail": None})
    return out


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m _mpconf_runner")
    p.add_argument("--module", required=True)
    p.add_argument("--results", required=True)
    p.add_argument("--test-timeout", type=float, default=60.0)
    p.add_argument("--include", action="append", default=[])
    p.add_argument("--exclude", action="append", default=[])
    p.add_argument("-k", dest="keywords", action="append", default=[])
    p.add_argument("--after")
    p.add_argument("--list", action="store_true", help="write the plan and stop")
    return p.parse_args(argv)


def restore_interrupts():
    """Let SIGINT raise KeyboardInterrupt, as in an interactive shell.

    A program started in the background by a non-interactive shell (``cmd &``)
    inherits SIGINT ignored, and children inherit that in turn; the suite's
    tests that interrupt a process (SharedMemoryServer ignores SIGINT,
    Condition.wait interrupted...) would then fail for the stdlib and ours
    alike, however the run was meant.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    emit = Emitter(args.results)
    faulthandler.enable(file=sys.stderr, all_threads=True)
    restore_interrupts()
    try:
        module = importlib.import_module(args.module)
        tests = list(flatten(unittest.defaultTestLoader.loadTestsFromModule(module)))
    except unittest.SkipTest as exc:
        emit(event="module_skip", detail=str(exc))
        emit(event="done")
        return 0
    except BaseException:
        emit(event="import_error", detail=clip(traceback.format_exc()))
        traceback.print_exc()
        return 2
    everything = select(tests, args.include, args.exclude, args.keywords)
    emit(event="plan", ids=[t.id() for t in everything])
    if args.list:
        emit(event="done")
        return 0
    tests = select(everything, after=args.after)
    plan = [t.id() for t in tests]
    watchdog = Watchdog(args.test_timeout, emit)
    runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=2, resultclass=make_result_class(emit, watchdog))
    result = runner.run(unittest.TestSuite(tests))
    watchdog.disarm()
    for record in settle_unrun(plan, result.recorded, result.fixtures):
        emit(event="result", **record)
    emit(event="done")
    sys.stdout.flush()
    sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

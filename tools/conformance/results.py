"""Turning the child's JSON records into per-test outcomes, counts and a verdict.

Pure functions and small data classes only (no processes), so that the
tests in ``tests/tools/test_conformance.py`` can exercise them directly.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

#: The columns of the summary, and which raw statuses fall into each.
COLUMNS: Tuple[str, ...] = ("passed", "failed", "errors", "skipped", "timeout", "not_run")
STATUS_COLUMN: Dict[str, str] = {
    "passed": "passed",
    "xfail": "passed",  # an expected failure is the suite working as intended
    "failed": "failed",
    "xpass": "failed",  # an unexpected success is reported as a failure by unittest
    "error": "errors",
    "crashed": "errors",
    "skipped": "skipped",
    "timeout": "timeout",
    "not_run": "not_run",
}
GOOD = frozenset({"passed", "xfail"})
BAD = frozenset({"failed", "xpass", "error", "crashed", "timeout", "not_run"})


@dataclass
class Outcome:
    id: str
    status: str
    duration: float = 0.0
    detail: Optional[str] = None

    @property
    def short_id(self) -> str:
        """``Class.test_method``: the id without its (start-method specific) module."""
        return short_id(self.id)


def short_id(test_id: str) -> str:
    parts = test_id.split(".")
    return ".".join(parts[-2:]) if len(parts) >= 2 else test_id


@dataclass
class ModuleRun:
    """One test module run by one implementation under one start method."""

    impl: str  # "ours" or "stdlib"
    method: str
    name: str  # display name: processes, threads, manager, misc, main_handling
    module: str  # the importable test module
    outcomes: Dict[str, Outcome] = field(default_factory=dict)
    plan: List[str] = field(default_factory=list)
    import_error: Optional[str] = None
    module_skip: Optional[str] = None
    module_timed_out: bool = False
    launches: int = 0
    wall: float = 0.0
    log: Optional[str] = None

    def counts(self) -> Dict[str, int]:
        return count_statuses(o.status for o in self.outcomes.values())

    def to_json(self) -> Dict[str, Any]:
        data = asdict(self)
        data["outcomes"] = [asdict(o) for o in self.outcomes.values()]
        return data

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> ModuleRun:
        data = dict(data)
        outcomes = data.pop("outcomes", [])
        run = cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        run.outcomes = {o["id"]: Outcome(**o) for o in outcomes}
        return run


def count_statuses(statuses: Iterable[str]) -> Dict[str, int]:
    counts = dict.fromkeys(COLUMNS, 0)
    for status in statuses:
        counts[STATUS_COLUMN.get(status, "errors")] += 1
    counts["total"] = sum(counts[c] for c in COLUMNS)
    return counts


def add_counts(a: Dict[str, int], b: Dict[str, int]) -> Dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in set(a) | set(b)}


# --------------------------------------------------------------------- records


def parse_records(text: str) -> List[Dict[str, Any]]:
    """The JSON records of a results file; a line cut short by a kill is dropped."""
    records = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "event" in record:
            records.append(record)
    return records


@dataclass
class LaunchSummary:
    """What one launch of the child left behind, once its records are folded in."""

    done: bool = False
    unfinished: Optional[str] = None  # a test that started and never reported
    unfinished_started: Optional[float] = None
    timed_out: Optional[str] = None  # the watchdog named this test


def fold_records(run: ModuleRun, records: Sequence[Dict[str, Any]]) -> LaunchSummary:
    """Fold one launch's records into *run*; say whether it finished and what it left hanging."""
    summary = LaunchSummary()
    started: Dict[str, float] = {}
    for rec in records:
        event = rec["event"]
        if event == "plan":
            if not run.plan:
                run.plan = list(rec.get("ids", []))
        elif event == "start":
            started[rec["id"]] = rec.get("t", 0.0)
        elif event == "result":
            started.pop(rec["id"], None)
            run.outcomes[rec["id"]] = Outcome(rec["id"], rec["status"], rec.get("duration", 0.0), rec.get("detail"))
        elif event == "timeout":
            summary.timed_out = rec.get("id")
        elif event == "fixture":
            name = rec.get("name", "fixture")
            if rec.get("status") == "error" and name.startswith("tearDown"):
                run.outcomes[name] = Outcome(name, "error", 0.0, rec.get("detail"))
        elif event == "import_error":
            run.import_error = rec.get("detail") or "import failed"
        elif event == "module_skip":
            run.module_skip = rec.get("detail") or "skipped"
        elif event == "done":
            summary.done = True
    if started:
        tid, t0 = max(started.items(), key=lambda item: item[1])
        summary.unfinished, summary.unfinished_started = tid, t0
    return summary


def settle_unfinished(
    run: ModuleRun,
    summary: LaunchSummary,
    *,
    test_timeout: float,
    ended_at: float,
    returncode: Optional[int],
    log_tail: str = "",
    module_limit_hit: bool = False,
    dump: str = "",
) -> None:
    """Record the outcome of the test that was running when the child died or was killed.

    *dump* is the watchdog's traceback dump from the log, if any: the frames
    the test was stuck in go into the detail.
    """
    tid = summary.unfinished or summary.timed_out
    if tid is None or tid in run.outcomes:
        return
    elapsed = ended_at - summary.unfinished_started if summary.unfinished_started else 0.0
    if summary.timed_out == tid or (test_timeout and elapsed >= test_timeout):
        detail = f"timed out after {test_timeout:g} s (per-test limit)"
        status = "timeout"
    elif module_limit_hit:
        detail = "timed out: the module's time limit ran out during this test"
        status = "timeout"
    else:
        detail = f"the test process died during this test (exit code {returncode})"
        status = "crashed"
    frames = hung_frames(dump) if status == "timeout" else []
    if frames:
        detail += "\nthe test was stuck in (innermost first):\n" + "\n".join("  " + f for f in frames)
    elif log_tail:
        detail += "\n--- end of the log ---\n" + log_tail
    run.outcomes[tid] = Outcome(tid, status, round(elapsed, 3), detail)


def finish_run(run: ModuleRun, known_plan: Optional[Sequence[str]] = None) -> None:
    """Give every planned test an outcome, and a module that never loaded its tests' ids if known."""
    plan = run.plan or list(known_plan or [])
    if run.import_error is not None and not run.outcomes:
        if plan:
            for tid in plan:
                run.outcomes[tid] = Outcome(tid, "error", 0.0, "module import failed:\n" + run.import_error)
        else:
            run.outcomes[run.module] = Outcome(run.module, "error", 0.0, run.import_error)
        return
    if run.module_skip is not None and not run.outcomes:
        if plan:
            for tid in plan:
                run.outcomes[tid] = Outcome(tid, "skipped", 0.0, run.module_skip)
        else:
            run.outcomes[run.module] = Outcome(run.module, "skipped", 0.0, run.module_skip)
        return
    for tid in plan:
        if tid not in run.outcomes:
            detail = "not run: the module's time limit ran out" if run.module_timed_out else "not run"
            run.outcomes[tid] = Outcome(tid, "not_run", 0.0, detail)


# ---------------------------------------------------------------- comparison


@dataclass
class Verdict:
    """How one of our outcomes compares with the stdlib's on the same test."""

    outcome: Outcome
    baseline: Optional[str]  # the stdlib's status, None when not run or unknown
    kind: str  # regression | allowed | also_stdlib | fixed | ok
    reason: Optional[str] = None  # the allow-list's reason


def compare(ours: ModuleRun, stdlib: Optional[ModuleRun], allow: Any = None) -> List[Verdict]:
    """Classify every outcome of ours.

    * ``regression``: ours failed/errored/timed out (or was skipped) where the
      stdlib passed -- or, with no baseline, any failure of ours;
    * ``allowed``: such a failure, but on the allow-list;
    * ``also_stdlib``: ours failed where the stdlib also fails or skips;
    * ``fixed``: ours passed where the stdlib failed or skipped;
    * ``ok``: everything else.
    A timeout of ours is a regression even when the stdlib also times out.
    """
    base = stdlib.outcomes if stdlib is not None else None
    verdicts = []
    for outcome in ours.outcomes.values():
        b = base.get(outcome.id) if base is not None else None
        b_status = b.status if b is not None else None
        bad = outcome.status in BAD
        skipped_where_passed = outcome.status == "skipped" and b_status in GOOD
        if bad or skipped_where_passed:
            if base is not None and b_status is not None and b_status not in GOOD and outcome.status != "timeout":
                kind = "also_stdlib"
                reason = None
            else:
                entry = allow.match(outcome, ours.method) if allow is not None else None
                kind, reason = ("allowed", entry.reason) if entry is not None else ("regression", None)
        elif outcome.status in GOOD and base is not None and b_status is not None and b_status not in GOOD:
            kind, reason = "fixed", None
        else:
            kind, reason = "ok", None
        verdicts.append(Verdict(outcome, b_status, kind, reason))
    return verdicts


# ---------------------------------------------------------------- categories

_EXC_LINE = re.compile(
    r"^([A-Za-z_][\w.]*(Error|Exception|Exit|Warning|Failure|Interrupt|Timeout)"
    r"|AssertionError|[\w.]*SkipTest|[\w.]*MaybeEncodingError)\b.*"
)


def key_error_line(detail: Optional[str]) -> str:
    """The line of a traceback that says what went wrong (usually its last exception line)."""
    if not detail:
        return "(no detail)"
    lines = [ln.rstrip() for ln in detail.splitlines() if ln.strip()]
    for line in reversed(lines):
        if _EXC_LINE.match(line.strip()):
            return line.strip()
    for line in lines:
        if line.startswith(("timed out", "the test process died", "not run", "module import failed")):
            return line
    return lines[-1].strip() if lines else "(no detail)"


def innermost_frame(detail: Optional[str]) -> Optional[str]:
    """``File "...", line N, in f`` of the last frame, shortened to the file's base name."""
    if not detail:
        return None
    stuck = detail.find("stuck in (innermost first)")
    frames = re.findall(r'File "([^"]+)", line (\d+),? in (\S+)', detail[stuck:] if stuck >= 0 else detail)
    if not frames:
        return None
    path, line, func = frames[0] if stuck >= 0 else frames[-1]
    return f"{path.rsplit('/', 1)[-1]}:{line} in {func}"


_NOISE = [
    (re.compile(r"0x[0-9a-fA-F]+"), "0x…"),
    (re.compile(r"(?<![\w.])\d+(\.\d+)?"), "N"),
    (re.compile(r"'[^']{40,}'"), "'…'"),
    (re.compile(r"/[\w./-]+"), "PATH"),
    (re.compile(r"_mpconf_tests\.\w+|test\.test_(multiprocessing|concurrent_futures)\w*(\.\w+)?"), "MOD"),
    (re.compile(r"\b(fork|spawn|forkserver)\b"), "METHOD"),
]


def hung_frames(dump: str, limit: int = 4) -> List[str]:
    """The innermost frames of the thread that was running the test, from a faulthandler dump.

    Outside a test (a class or module fixture that hung, see ``child.fixtures_after``):
    those of the thread running unittest.
    """
    blocks = re.split(r"\n(?=(?:Current thread|Thread) 0x)", dump)
    for marker in ("_callTestMethod", "/unittest/"):
        for block in blocks:
            if marker in block:
                frames = [ln.strip() for ln in block.splitlines()[1:] if ln.strip().startswith("File ")]
                return frames[:limit]
    return []


def category(detail: Optional[str], test_id: Optional[str] = None) -> str:
    """A normalized key error line, so that the same problem in many tests groups together.

    Timeouts are grouped per test (across start methods), since each hang is its own problem.
    """
    line = key_error_line(detail)
    if test_id is not None and line.startswith("timed out"):
        return f"timed out: {short_id(test_id)}"
    for pattern, repl in _NOISE:
        line = pattern.sub(repl, line)
    return line[:160]


def categorize(verdicts: Iterable[Verdict], kinds: Sequence[str] = ("regression",)) -> List[Tuple[str, List[Verdict]]]:
    """Group verdicts of the given kinds by :func:`category`, largest group first."""
    groups: Dict[str, List[Verdict]] = {}
    for v in verdicts:
        if v.kind in kinds:
            groups.setdefault(category(v.outcome.detail, v.outcome.id), []).append(v)
    return sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))

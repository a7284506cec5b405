"""The allow-list: CPython tests that assert stdlib-pickle behaviour dill deliberately changes.

``allowlist.toml`` beside this file holds ``[[allow]]`` tables::

    [[allow]]
    test = "*.WithProcessesTestPoolWorkerErrors.test_unpickleable_result"
    reason = "dill pickles the lambda that stdlib pickle cannot ..."
    methods = ["fork", "spawn", "forkserver"]      # optional, default: all
    match = "MaybeEncodingError not raised"        # optional regex

``test`` is an fnmatch glob tried against the full test id and against its
start-method independent short form ``Class.test_method``.  When ``match``
is given, the failure is allowed only if the regex is found in its
traceback, so the same test failing for another reason (our code being
incomplete) still counts.  Every entry must carry a ``reason``.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

DEFAULT_PATH = Path(__file__).with_name("allowlist.toml")
#: ``--suite futures``: the process-pool tests of test_concurrent_futures against multiprocess.futures
FUTURES_PATH = Path(__file__).with_name("allowlist_futures.toml")
METHODS = ("fork", "spawn", "forkserver")


def default_path(suite: str = "multiprocessing") -> Path:
    """The allow-list shipped for *suite*."""
    return FUTURES_PATH if suite == "futures" else DEFAULT_PATH


@dataclass(frozen=True)
class Entry:
    test: str
    reason: str
    methods: Optional[Sequence[str]] = None
    match: Optional[str] = None

    def applies(self, test_id: str, method: str, detail: Optional[str]) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        short = ".".join(test_id.split(".")[-2:])
        if not (fnmatch.fnmatchcase(test_id, self.test) or fnmatch.fnmatchcase(short, self.test)):
            return False
        if self.match is not None and not re.search(self.match, detail or ""):
            return False
        return True


class AllowList:
    def __init__(self, entries: Sequence[Entry] = ()) -> None:
        self.entries: List[Entry] = list(entries)

    def match(self, outcome: Any, method: str) -> Optional[Entry]:
        """The first entry that allows *outcome* (an object with ``id`` and ``detail``) under *method*."""
        for entry in self.entries:
            if entry.applies(outcome.id, method, outcome.detail):
                return entry
        return None

    def __len__(self) -> int:
        return len(self.entries)


def parse(data: dict, source: str = "allow-list") -> AllowList:
    """Build an :class:`AllowList` from parsed TOML; ``ValueError`` on a malformed entry."""
    raw = data.get("allow", [])
    if not isinstance(raw, list):
        raise ValueError(f"{source}: 'allow' must be an array of tables ([[allow]])")
    entries = []
    for i, item in enumerate(raw, 1):
        where = f"{source}: entry {i}"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: not a table")
        unknown = set(item) - {"test", "reason", "methods", "match"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        test, reason = item.get("test"), item.get("reason")
        if not isinstance(test, str) or not test.strip():
            raise ValueError(f"{where}: 'test' (a glob) is required")
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"{where} ({test}): a non-empty 'reason' is required")
        methods = item.get("methods")
        if methods is not None:
            if not isinstance(methods, list) or not set(methods) <= set(METHODS):
                raise ValueError(f"{where} ({test}): 'methods' must be a list drawn from {METHODS}")
            methods = tuple(methods)
        match = item.get("match")
        if match is not None:
            if not isinstance(match, str):
                raise ValueError(f"{where} ({test}): 'match' must be a string")
            try:
                re.compile(match)
            except re.error as exc:
                raise ValueError(f"{where} ({test}): bad 'match' regex: {exc}") from exc
        entries.append(Entry(test.strip(), " ".join(reason.split()), methods, match))
    return AllowList(entries)


def load(path: Optional[Path] = None) -> AllowList:
    path = DEFAULT_PATH if path is None else Path(path)
    return parse(tomllib.loads(path.read_text(encoding="utf-8")), str(path))

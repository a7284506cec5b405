"""Which tests of CPython's ``test_concurrent_futures`` to run for each start method (``--suite futures``).

Only the process-pool tests are wanted.  CPython builds them with
``create_executor_tests(mixin, executor_mixins=...)``, which makes one class
per executor mixin, named ``strip(executor mixin) + strip(mixin) + "Test"``
(``strip`` drops a trailing ``Mixin``, ``Tests`` or ``Test``): the fork
classes of ``WaitTests`` are ``ProcessPoolForkWaitTest``, and so on.  The
classes are found by reading those calls in the source (no import), so
that each start method gets exactly its own classes -- ``ProcessPoolFork``
is a prefix of ``ProcessPoolForkserver``, which rules out a plain glob.

Layouts:

* a package (3.12+, and late 3.11 backports):
  ``test/test_concurrent_futures/test_<part>.py``; each file with
  process-pool classes is one module run, named after the file
  (``process_pool``, ``shutdown``, ``wait``, ``as_completed``, ``init``,
  ``deadlock``).  ``test_init.FailingInitializerResourcesTest`` (3.12+)
  has one test per start method (``test_spawn``, ``test_forkserver``)
  that runs a process-pool test class: it goes with its start method.
* one file (3.9-3.11): ``test/test_concurrent_futures.py``, split into
  the same parts by class, so that each part runs in its own process
  under its own time limit and the names line up across layouts.

The thread-pool classes and ``FutureTests`` (no process at all) are left out.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from .discover import METHODS, Layout, TestModule

PACKAGE = "test_concurrent_futures"

#: the executor mixin of each start method
EXECUTOR_MIXIN: Dict[str, str] = {
    "fork": "ProcessPoolForkMixin",
    "spawn": "ProcessPoolSpawnMixin",
    "forkserver": "ProcessPoolForkserverMixin",
}
#: ``create_executor_tests``'s default ``executor_mixins``: the thread pool and every process pool
DEFAULT_EXECUTOR_MIXINS: Tuple[str, ...] = ("ThreadPoolMixin",) + tuple(EXECUTOR_MIXIN.values())

#: the part (module run) of each test mixin of the single-file layout, as the package layout splits them
PART_OF_MIXIN: Dict[str, str] = {
    "ProcessPoolExecutorTest": "process_pool",
    "ProcessPoolShutdownTest": "shutdown",
    "WaitTests": "wait",
    "AsCompletedTests": "as_completed",
    "InitializerMixin": "init",
    "FailingInitializerMixin": "init",
    "ExecutorDeadlockTest": "deadlock",
}
PART_ORDER: Tuple[str, ...] = ("process_pool", "shutdown", "wait", "as_completed", "init", "deadlock")

#: a plain TestCase whose ``test_<method>`` runs a process-pool class of that start method (3.12+)
PER_METHOD_CLASSES: Tuple[str, ...] = ("FailingInitializerResourcesTest",)

_CALL = re.compile(r"^create_executor_tests\(\s*(?:globals\(\)\s*,\s*)?(\w+)", re.MULTILINE)


def strip_mixin(name: str) -> str:
    """CPython's rule: ``FooMixin``/``FooTests`` -> ``Foo``, ``FooTest`` -> ``Foo``."""
    if name.endswith(("Mixin", "Tests")):
        return name[:-5]
    if name.endswith("Test"):
        return name[:-4]
    return name


def class_name(executor_mixin: str, mixin: str) -> str:
    """The name ``create_executor_tests`` gives the class of *mixin* run by *executor_mixin*."""
    return f"{strip_mixin(executor_mixin)}{strip_mixin(mixin)}Test"


def _call_text(source: str, start: int) -> str:
    """The text of the call that opens at *start*, up to its matching parenthesis."""
    depth = 0
    for i in range(source.index("(", start), len(source)):
        if source[i] == "(":
            depth += 1
        elif source[i] == ")":
            depth -= 1
            if depth == 0:
                return source[start : i + 1]
    return source[start:]


def executor_test_mixins(source: str) -> List[Tuple[str, Tuple[str, ...]]]:
    """``(test mixin, executor mixins)`` of every top-level ``create_executor_tests`` call in *source*."""
    found = []
    for match in _CALL.finditer(source):
        call = _call_text(source, match.start())
        listed = re.search(r"executor_mixins\s*=\s*\(([^)]*)\)", call)
        executors = tuple(re.findall(r"\w+", listed.group(1))) if listed else DEFAULT_EXECUTOR_MIXINS
        found.append((match.group(1), executors))
    return found


def process_pool_classes(source: str, method: str) -> Dict[str, List[str]]:
    """The process-pool test classes of *method* that *source* creates, by test mixin."""
    executor = EXECUTOR_MIXIN[method]
    out: Dict[str, List[str]] = {}
    for mixin, executors in executor_test_mixins(source):
        if executor in executors:
            out.setdefault(mixin, []).append(class_name(executor, mixin))
    return out


def per_method_globs(source: str, method: str) -> Tuple[str, ...]:
    """Globs for the tests of ``PER_METHOD_CLASSES`` that belong to *method*, if *source* has them."""
    return tuple(
        f"*.{cls}.test_{method}"
        for cls in PER_METHOD_CLASSES
        if re.search(rf"^class {cls}\b", source, re.MULTILINE) and re.search(rf"def test_{method}\b", source)
    )


def class_globs(classes: Sequence[str]) -> Tuple[str, ...]:
    return tuple(f"*.{cls}.*" for cls in classes)


def _part_name(mixin: str) -> str:
    known = PART_OF_MIXIN.get(mixin)
    if known is not None:
        return known
    return re.sub(r"(?<!^)(?=[A-Z])", "_", strip_mixin(mixin)).lower()


def _ordered(parts: Dict[str, Tuple[str, ...]]) -> List[Tuple[str, Tuple[str, ...]]]:
    order = {name: i for i, name in enumerate(PART_ORDER)}
    return sorted(parts.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))


def discover(stdlib_dir: Path, methods: Sequence[str] = METHODS) -> Layout:
    """The process-pool test modules of ``test_concurrent_futures`` for *methods* under *stdlib_dir*."""
    test_dir = Path(stdlib_dir) / "test"
    pkg = test_dir / PACKAGE
    single = test_dir / f"{PACKAGE}.py"
    if pkg.is_dir() and (pkg / "__init__.py").exists():
        layout = Layout(kind="package")
        sources = {p.stem: p.read_text(encoding="utf-8") for p in sorted(pkg.glob("test_*.py"))}
        for method in methods:
            parts: Dict[str, Tuple[str, ...]] = {}
            for stem, source in sources.items():
                classes = [c for cs in process_pool_classes(source, method).values() for c in cs]
                globs = class_globs(classes) + per_method_globs(source, method)
                if globs:
                    parts[stem[len("test_") :]] = globs
            for name, include in _ordered(parts):
                layout.modules.append(TestModule(method, name, f"test.{PACKAGE}.test_{name}", include=include))
        return layout
    if single.exists():
        layout = Layout(kind="file")
        source = single.read_text(encoding="utf-8")
        for method in methods:
            parts = {}
            for mixin, classes in process_pool_classes(source, method).items():
                name = _part_name(mixin)
                parts[name] = parts.get(name, ()) + class_globs(classes)
            for name, include in _ordered(parts):
                layout.modules.append(TestModule(method, name, f"test.{PACKAGE}", include=include))
        return layout
    return Layout(kind="missing")

"""Shared fixtures and hooks: start-method parametrization and leak checks (helpers: tests/support.py).

Every test runs with a time limit (pytest-timeout, configured in the root
pyproject.toml).  After every test we check that it left no running or
zombie child processes and no new /dev/shm entries; at the end of the
session, that the long-lived helpers (fork server, resource tracker) stop
cleanly and nothing of ours is left in /dev/shm.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any, Callable, Iterator

import pytest

import mp_core

from . import _child_pytest
from .support import (
    SEMAPHORE_PREFIX,
    SHARED_MEMORY_PREFIX,
    START_METHODS,
    collect_garbage,
    direct_children,
    long_lived_helper_pids,
    shm_entries,
)

# This session's names in /dev/shm carry its pid (see tests/support.py); the
# children inherit the prefixes with the rest of the process configuration.
mp_core.current_process()._config["semprefix"] = SEMAPHORE_PREFIX
mp_core.current_process()._config["shmprefix"] = SHARED_MEMORY_PREFIX
# A child under spawn or forkserver imports the test module its target
# lives in, and with it pytest: the session's children get a light one
# (tests/_child_pytest.py), and the fork server imports what every such
# module imports once, before it forks any child.  (Tests of preloading
# itself run programs of their own.)
os.environ[_child_pytest.ENV] = "1"
mp_core.set_forkserver_preload(["__main__", "tests.support"])


@pytest.fixture(params=START_METHODS)
def start_method(request: pytest.FixtureRequest) -> str:
    """Each start method available on this platform, in turn."""
    return request.param


@pytest.fixture
def ctx(start_method: str) -> mp_core.context.BaseContext:
    """The context of each start method, in turn."""
    return mp_core.get_context(start_method)


@pytest.fixture
def start(ctx: mp_core.context.BaseContext) -> Iterator[Callable[..., Any]]:
    """``start(target, *args)``: start a daemonic child of ``ctx`` and return it.

    Every child is joined when the test ends, and killed if it has not
    finished 10 seconds later, so a failing test cannot leave one behind.
    The process objects are dropped then too: a semaphore pickled for a
    child lives as long as the child's process object, and the leak check
    that follows must see it gone.
    """
    started: list[Any] = []

    def _start(target: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        proc = ctx.Process(target=target, args=args, kwargs=kwargs, daemon=True)
        proc.start()
        started.append(proc)
        return proc

    yield _start
    for proc in started:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(10)
    started.clear()


@pytest.fixture(autouse=True)
def no_leaked_processes_or_segments() -> Iterator[None]:
    shm_before = shm_entries()
    yield
    leftovers = mp_core.active_children()
    for proc in leftovers:
        proc.kill()
        proc.join(10)
    deadline = time.monotonic() + 30
    while True:
        helpers = long_lived_helper_pids()
        stray = {pid: state for pid, state in direct_children().items() if pid not in helpers}
        if not stray or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for pid in stray:
        # Not ours to keep: reap zombies, kill the living (by pid, never by name).
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    assert not leftovers, f"the test left running processes: {leftovers}"
    assert not stray, f"the test left child processes (pid: state): {stray}"
    segments = sys.modules.get("mp_core._segments")
    if segments is not None:
        segments.drop_warm()  # kept for reuse by this process until it ends: not a leak
    leaked = shm_entries() - shm_before
    deadline = time.monotonic() + 30
    while leaked and time.monotonic() < deadline:
        # A semaphore or segment lives as long as its Python object: until a
        # collection when a reference cycle keeps it (an exception's traceback
        # holding a frame...) or on an interpreter without reference counting (PyPy).
        collect_garbage()
        time.sleep(0.1)
        leaked = shm_entries() - shm_before
    assert not leaked, f"the test left /dev/shm entries: {sorted(leaked)}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the long-lived helpers; they must go quietly and leave nothing of ours in /dev/shm."""
    try:
        from mp_core import forkserver

        forkserver._forkserver._stop()
    except ImportError:
        pass
    try:
        from mp_core import resource_tracker

        stop = getattr(resource_tracker._resource_tracker, "_stop", None)
        if stop is not None:
            stop()
    except ImportError:
        pass
    deadline = time.monotonic() + 10
    while shm_entries() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = shm_entries()
    if left:
        print(f"\nthe test session left /dev/shm entries: {sorted(left)}", flush=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

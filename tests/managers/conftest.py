"""Fixtures for the mp_managers tests (``ctx``/``start_method`` come from tests/conftest.py)."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from mp_managers.managers import SyncManager


@pytest.fixture
def manager(ctx: Any) -> Iterator[SyncManager]:
    """A ``SyncManager`` started with ``ctx``; shut down when the test ends."""
    m = SyncManager(ctx=ctx)
    m.start()
    yield m
    m.shutdown()


class Children:
    """Children of one context, started together and always reaped."""

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx
        self._procs: list[Any] = []

    def start(self, target: Callable[..., Any], args_list: list) -> list:
        """Start one child per argument tuple; return the process objects."""
        procs = [self._ctx.Process(target=target, args=args) for args in args_list]
        self._procs.extend(procs)
        for proc in procs:
            proc.start()
        return procs

    def join(self, timeout: float = 60) -> list:
        """Wait for every child (``timeout`` seconds in all); return their exit codes."""
        for proc in self._procs:
            proc.join(timeout)
        return [proc.exitcode for proc in self._procs]

    def run(self, target: Callable[..., Any], args_list: list, timeout: float = 60) -> list:
        """``start`` then ``join``."""
        self.start(target, args_list)
        return self.join(timeout)

    def reap(self) -> None:
        for proc in self._procs:
            if proc._popen is not None and proc.is_alive():
                proc.kill()
            if proc._popen is not None:
                proc.join(10)
        self._procs.clear()


@pytest.fixture
def children(ctx: Any) -> Iterator[Children]:
    """Start children of ``ctx``; any still running when the test ends is killed."""
    group = Children(ctx)
    yield group
    group.reap()

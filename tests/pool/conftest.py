"""Fixtures for the pool tests (``start_method``/``ctx`` come from tests/conftest.py)."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from mp_pool import Pool
from mp_pool.futures import ProcessPoolExecutor

from . import helpers


@pytest.fixture
def make_pool(ctx: Any) -> Iterator[Callable[..., Pool]]:
    """``make_pool(processes, ...)``: a ``Pool`` of the test's context, terminated and joined at the end."""
    pools: list[Pool] = []

    def make(*args: Any, **kwds: Any) -> Pool:
        kwds.setdefault("context", ctx)
        pool = Pool(*args, **kwds)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.terminate()
        pool.join()
    # pytest keeps ``make`` (and so this list) until after the leak check:
    # the pools and what they hold (initargs' semaphores) must go now.
    pools.clear()


@pytest.fixture
def make_executor(ctx: Any) -> Iterator[Callable[..., ProcessPoolExecutor]]:
    """``make_executor(max_workers, ...)``: an executor of the test's context, its workers killed at the end."""
    made: list[ProcessPoolExecutor] = []

    def make(*args: Any, **kwds: Any) -> ProcessPoolExecutor:
        kwds.setdefault("mp_context", ctx)
        executor = ProcessPoolExecutor(*args, **kwds)
        made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.kill_workers()
    made.clear()


class Gate:
    """The test's side of ``helpers.gated``: know when tasks started, let them through one by one.

    ``make_pool(n, **gate.pool_args)`` installs it in every worker.
    """

    def __init__(self, ctx: Any) -> None:
        self.started = ctx.Semaphore(0)
        self.gate = ctx.Semaphore(0)
        self.pool_args = {"initializer": helpers.install_gate, "initargs": (self.started, self.gate)}

    def wait_started(self, count: int = 1, timeout: float = 60) -> None:
        """Return once ``count`` more gated tasks have started (fail after ``timeout`` seconds)."""
        for done in range(count):
            assert self.started.acquire(timeout=timeout), f"only {done} of {count} gated tasks started"

    def open(self, count: int = 1) -> None:
        """Let ``count`` gated tasks through."""
        for _ in range(count):
            self.gate.release()


@pytest.fixture
def gate(ctx: Any) -> Iterator[Gate]:
    """A ``Gate`` made with the test's context; its semaphores are dropped when the test ends."""
    made = Gate(ctx)
    yield made
    # (pytest holds the fixture's value until after the leak check.)
    del made.started, made.gate, made.pool_args

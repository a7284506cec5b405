"""Fixtures for the mp_core tests (the start-method ``ctx`` fixture is in tests/conftest.py)."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest


@pytest.fixture
def start(ctx: Any) -> Iterator[Callable[..., Any]]:
    """``start(target, *args)``: start a daemonic child of ``ctx`` and return it.

    Every child is joined when the test ends, and killed if it has not
    finished 10 seconds later, so a failing test cannot leave one behind.
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

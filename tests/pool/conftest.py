"""Fixtures for the pool tests (``start_method``/``ctx`` come from tests/conftest.py)."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from mp_pool import Pool


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

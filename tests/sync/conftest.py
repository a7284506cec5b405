"""Fixtures for the mp_sync tests (``ctx``/``start_method`` come from tests/conftest.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any, Callable, Iterator

import pytest


@pytest.fixture
def start(ctx: Any) -> Iterator[Callable[..., Any]]:
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


def run_script(path: Any, code: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """Write ``code`` to the file ``path`` and run it as a program (its ``__main__``)."""
    path.write_text(textwrap.dedent(code))
    return subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, timeout=timeout)


def run_python(code: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """Run ``code`` with ``python -c``: a ``__main__`` that no child can import again."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=timeout)

"""Helpers for the mp_sync tests (the fixtures ``ctx``, ``start_method`` and ``start`` are in tests/conftest.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any


def run_script(path: Any, code: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """Write ``code`` to the file ``path`` and run it as a program (its ``__main__``)."""
    path.write_text(textwrap.dedent(code))
    return subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, timeout=timeout)


def run_python(code: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """Run ``code`` with ``python -c``: a ``__main__`` that no child can import again."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, timeout=timeout
    )

"""The Python interpreter that spawned children and the package's helper processes run.

A leaf: ``spawn`` re-exports ``set_executable``/``get_executable`` (the
stdlib's names and place); the resource tracker, which ``spawn`` itself
uses, starts its process with it without importing ``spawn``.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Optional

__all__ = ["WINEXE", "WINSERVICE", "set_executable", "get_executable"]

if sys.platform != "win32":
    WINEXE = False
    WINSERVICE = False
else:  # pragma: no cover - Windows is designed in, untested here
    WINEXE = getattr(sys, "frozen", False)
    WINSERVICE = sys.executable.lower().endswith("pythonservice.exe")

_python_exe: Optional[str] = sys.executable
if sys.platform == "win32" and not WINEXE:  # pragma: no cover - the venv's base interpreter, as the stdlib
    _python_exe = sys._base_executable


def set_executable(exe: str) -> None:
    """Use ``exe`` as the Python interpreter for spawned children."""
    global _python_exe
    _python_exe = os.fsdecode(exe) if exe is not None else None


def get_executable() -> Optional[str]:
    """The interpreter that spawned children run."""
    return _python_exe

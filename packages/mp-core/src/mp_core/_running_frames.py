"""Refusing objects that hold a running frame (generators, coroutines), as CPython does.

CPython's picklers (C pickle, and dill) refuse them with "TypeError: cannot
pickle 'generator' object"; PyPy's pure-Python pickler gives another reason,
and dill there "succeeds" with a payload that fails to load in the receiver.
There (only: the C pickler already refuses them) both halves of the
serialization layer -- ``reduction`` and the lazily loaded ``_dill_bridge`` --
refuse them up front, with CPython's error, so that such a send fails at the
sender everywhere.  A leaf, so that the dill half need not import
``reduction``, which loads it.
"""

from __future__ import annotations

import sys
import types

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any

__all__ = ["REFUSE_RUNNING_FRAMES", "refuse_running_frame"]

_RUNNING_FRAME_TYPES = frozenset({types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType})
REFUSE_RUNNING_FRAMES = sys.implementation.name != "cpython"


def refuse_running_frame(obj: Any) -> None:
    """Raise CPython's ``TypeError`` for a generator, coroutine or async generator."""
    if type(obj) in _RUNNING_FRAME_TYPES:
        raise TypeError(f"cannot pickle {type(obj).__name__!r} object")

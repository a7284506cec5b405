"""mp_core: processes, start methods, connections and the serialization layer.

The module-level API is that of ``multiprocessing``: every public name is a
method of the default context (``mp_core.Process``, ``mp_core.get_context``,
``mp_core.Lock``...).  Names whose implementation lives in another
distribution (``Lock`` in mp-sync, ``Pool`` in mp-pool, ``Manager`` in
mp-managers) import it on first call, and raise ``ImportError`` naming the
distribution to install when it is missing.
"""

from __future__ import annotations

import sys as _sys

from . import context as _context

__all__ = [name for name in _context._default_context.__all__]  # type: ignore[attr-defined]
globals().update((name, getattr(_context._default_context, name)) for name in __all__)

# Stdlib-compatible logging levels (util's, written out: importing util here
# would cost every ``import multiprocess``); ``multiprocess`` re-exports them.
SUBDEBUG = 5
SUBWARNING = 25

# A spawned child sees the parent's main module under this name as well.
if "__mp_main__" not in _sys.modules:
    _sys.modules["__mp_main__"] = _sys.modules["__main__"]

__all__ += ["SUBDEBUG", "SUBWARNING", "__version__"]


def __getattr__(name: str) -> str:
    # The version is read on first use: a module fewer for every import.
    if name == "__version__":
        from .__about__ import __version__

        return __version__
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "__version__"})

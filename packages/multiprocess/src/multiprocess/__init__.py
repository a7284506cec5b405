"""multiprocess: ``multiprocessing``'s API, serialized with dill.

Replace ``import multiprocessing`` with ``import multiprocess``: every public
name and submodule of the standard library package is here, and lambdas,
closures and interactively defined functions now work under every start
method.  This package holds no logic: the module-level functions are the
methods of mp-core's default context, and ``multiprocess.<submodule>`` is
the owning distribution's module object itself (``multiprocess.pool`` *is*
``mp_pool.pool``, answered from the owner table by ``_aliases``).
Submodules are imported on first use, so importing ``multiprocess`` stays
cheap.  Type checkers read ``__init__.pyi`` and the submodule stubs beside
it, generated from the same table by ``python -m tools.stubs``.
"""

from __future__ import annotations

from types import ModuleType as _ModuleType

import mp_core as _mp_core
from mp_core import context as context  # the modules the stdlib imports eagerly too
from mp_core import process as process
from mp_core import reduction as reduction
from mp_core._owners import SUBMODULES as _SUBMODULES
from mp_core._owners import import_module as _import_module

from . import _aliases

_aliases.install()

# mp_core's names (its default context's methods, the logging levels) and its
# set-up (``__mp_main__``), all but its own version.
__all__ = [name for name in _mp_core.__all__ if name != "__version__"]
globals().update((name, getattr(_mp_core, name)) for name in __all__)


def __getattr__(name: str) -> _ModuleType | str:
    # ``multiprocess.pool`` works without ``import multiprocess.pool``, but
    # only costs an import when it is first touched; so does the version.
    if name in _SUBMODULES:
        return _import_module(f"{__name__}.{name}")
    if name == "__version__":
        from .__about__ import __version__

        return __version__
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "__version__"})

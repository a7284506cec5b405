"""mp_pool: process and thread pools for multiprocess.

The door of the distribution.  ``mp_pool.pool`` is ``multiprocess.pool``
(``Pool``, ``ThreadPool``, the result types and the pool's errors);
``mp_pool.dummy`` is ``multiprocess.dummy`` (the multiprocessing API on
threads).  The names below load ``mp_pool.pool`` on first access, so that
a spawned worker, which needs only ``mp_pool._worker``, starts quickly.
"""

from __future__ import annotations

from .__about__ import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time (a spawned worker imports this package); annotations are strings
    from typing import Any

    from .pool import ApplyResult as ApplyResult
    from .pool import AsyncResult as AsyncResult
    from .pool import BrokenPoolError as BrokenPoolError
    from .pool import IMapIterator as IMapIterator
    from .pool import IMapUnorderedIterator as IMapUnorderedIterator
    from .pool import MapResult as MapResult
    from .pool import MaybeEncodingError as MaybeEncodingError
    from .pool import Pool as Pool
    from .pool import PoolTerminatedError as PoolTerminatedError
    from .pool import RemoteTraceback as RemoteTraceback
    from .pool import ThreadPool as ThreadPool
    from .pool import WorkerLostError as WorkerLostError

__all__ = [
    "ApplyResult",
    "AsyncResult",
    "BrokenPoolError",
    "IMapIterator",
    "IMapUnorderedIterator",
    "MapResult",
    "MaybeEncodingError",
    "Pool",
    "PoolTerminatedError",
    "RemoteTraceback",
    "ThreadPool",
    "WorkerLostError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import pool

        value = getattr(pool, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

"""mp_dask: the ``multiprocess`` Pool API on a dask.distributed cluster.

The door of the distribution.  ``mp_dask.pool`` is ``multiprocess.dask``:
``Pool`` (``multiprocess.pool.Pool``'s API, run on a ``distributed.Client``),
with ``multiprocess.pool``'s result types and errors.
"""

from __future__ import annotations

from .__about__ import __version__ as __version__
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
from .pool import TimeoutError as TimeoutError
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
    "TimeoutError",
    "WorkerLostError",
    "__version__",
]

"""``distributed``, imported without changing how every exception pickles in this process.

``import distributed`` runs ``tblib.pickling_support.install()``: from then
on every exception class of the process pickles through tblib, which
rebuilds a class that has its own ``__init__`` without calling it, so that
``SystemExit(4).code``, ``StopIteration(5).value`` or ``ImportError.name``
come back ``None``.  A program that imports ``multiprocess.dask`` would see
its local pools, queues and forked children send such exceptions changed.
distributed does not need the process-wide registration: before it sends
an error it registers that error's classes itself
(``distributed.core.error_message``).  So the import here removes what
tblib registered for exception classes and tracebacks during it, and only
that: registrations made before (by the program, or by an earlier import of
distributed) are left as they are.
"""

from __future__ import annotations

import copyreg
import types
from typing import TYPE_CHECKING, Any

__all__ = ["distributed"]


def _tblib_reducer(reducer: Any) -> bool:
    function = getattr(reducer, "func", reducer)  # the traceback's reducer is a functools.partial
    return str(getattr(function, "__module__", "")).startswith("tblib")


def _import_quietly() -> types.ModuleType:
    before = dict(copyreg.dispatch_table)
    import distributed

    for cls, reducer in list(copyreg.dispatch_table.items()):
        if before.get(cls) is reducer or not _tblib_reducer(reducer):
            continue
        if cls is types.TracebackType or (isinstance(cls, type) and issubclass(cls, BaseException)):
            if cls in before:
                copyreg.dispatch_table[cls] = before[cls]
            else:
                del copyreg.dispatch_table[cls]
    return distributed


if TYPE_CHECKING:  # type checkers see the module itself
    import distributed as distributed
else:
    distributed = _import_quietly()

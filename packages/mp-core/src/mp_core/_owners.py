"""The one table of who owns what: API names and submodules by distribution.

``multiprocess`` is reassembled from separately installed distributions.
The context's factory methods (``ctx.Lock()``, ``ctx.Pool()``...), the
``multiprocess.*`` submodule aliases and the parity tests are all derived
from the two tables below, so adding a name means adding one line here.
"""

from __future__ import annotations

import sys
from types import ModuleType

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any

#: stdlib-shaped submodule name -> (owning module, distribution that ships it)
SUBMODULES: dict[str, tuple[str, str]] = {
    "connection": ("mp_core.connection", "mp-core"),
    "context": ("mp_core.context", "mp-core"),
    "forkserver": ("mp_core.forkserver", "mp-core"),
    "popen_fork": ("mp_core.popen_fork", "mp-core"),
    "popen_forkserver": ("mp_core.popen_forkserver", "mp-core"),
    "popen_spawn_posix": ("mp_core.popen_spawn_posix", "mp-core"),
    "popen_spawn_win32": ("mp_core.popen_spawn_win32", "mp-core"),
    "process": ("mp_core.process", "mp-core"),
    "reduction": ("mp_core.reduction", "mp-core"),
    "resource_sharer": ("mp_core.resource_sharer", "mp-core"),
    "resource_tracker": ("mp_core.resource_tracker", "mp-core"),
    "spawn": ("mp_core.spawn", "mp-core"),
    "util": ("mp_core.util", "mp-core"),
    "synchronize": ("mp_sync.synchronize", "mp-sync"),
    "queues": ("mp_sync.queues", "mp-sync"),
    "pool": ("mp_pool.pool", "mp-pool"),
    "dummy": ("mp_pool.dummy", "mp-pool"),
    "futures": ("mp_pool.futures", "mp-pool"),
    "managers": ("mp_managers.managers", "mp-managers"),
    "sharedctypes": ("mp_managers.sharedctypes", "mp-managers"),
    "heap": ("mp_managers.heap", "mp-managers"),
    "shared_memory": ("mp_managers.shared_memory", "mp-managers"),
    # The Pool API on a dask.distributed cluster: an optional distribution
    # (multiprocess[dask]; CPython 3.10+, as distributed), not a stdlib name.
    "dask": ("mp_dask.pool", "mp-dask"),
}

#: context factory name -> (submodule in SUBMODULES, attribute of that module)
FACTORIES: dict[str, tuple[str, str]] = {
    "Pipe": ("connection", "Pipe"),
    "Lock": ("synchronize", "Lock"),
    "RLock": ("synchronize", "RLock"),
    "Condition": ("synchronize", "Condition"),
    "Semaphore": ("synchronize", "Semaphore"),
    "BoundedSemaphore": ("synchronize", "BoundedSemaphore"),
    "Event": ("synchronize", "Event"),
    "Barrier": ("synchronize", "Barrier"),
    "Queue": ("queues", "Queue"),
    "JoinableQueue": ("queues", "JoinableQueue"),
    "SimpleQueue": ("queues", "SimpleQueue"),
    "Pool": ("pool", "Pool"),
    "Manager": ("managers", "SyncManager"),
    "RawValue": ("sharedctypes", "RawValue"),
    "RawArray": ("sharedctypes", "RawArray"),
    "Value": ("sharedctypes", "Value"),
    "Array": ("sharedctypes", "Array"),
}


def import_module(module_name: str) -> ModuleType:
    """``importlib.import_module`` for an absolute name, without importing importlib (and warnings) first."""
    module = sys.modules.get(module_name)
    if module is None:
        __import__(module_name)
        module = sys.modules[module_name]
    return module


def import_submodule(name: str) -> ModuleType:
    """Import the module that implements ``multiprocess.<name>``.

    Raises ``ImportError`` naming the distribution to install when the
    owning distribution is missing.
    """
    module_name, dist = SUBMODULES[name]
    try:
        return import_module(module_name)
    except ModuleNotFoundError as exc:
        top = module_name.partition(".")[0]
        if exc.name != top:
            raise
        raise ImportError(
            f"multiprocess.{name} is provided by the {dist!r} distribution, which is not installed: pip install {dist}",
            name=module_name,
        ) from exc


def load_factory(name: str) -> Any:
    """Return the class or function behind the context factory ``name``."""
    submodule, attribute = FACTORIES[name]
    return getattr(import_submodule(submodule), attribute)

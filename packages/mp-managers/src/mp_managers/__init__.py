"""mp_managers: managers, proxies and shared memory for multiprocess.

The door of the distribution: the public names below, each from the module
that implements it.  A name is imported on first use, so that a manager's
server process (or a child that unpickles a proxy) never loads ctypes and
the shared heap, and a child that only maps a shared ``Value`` never loads
the managers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .__about__ import __version__

#: public name -> the module of this distribution that defines it
_EXPORTS: dict[str, str] = {
    # managers (multiprocess.managers)
    "BaseManager": "managers",
    "SyncManager": "managers",
    "SharedMemoryManager": "managers",
    "BaseProxy": "managers",
    "AutoProxy": "managers",
    "MakeProxyType": "managers",
    "Token": "managers",
    "RemoteError": "managers",
    "Server": "managers",
    "Namespace": "managers",
    "AcquirerProxy": "managers",
    "ArrayProxy": "managers",
    "BarrierProxy": "managers",
    "BaseListProxy": "managers",
    "ConditionProxy": "managers",
    "DictProxy": "managers",
    "EventProxy": "managers",
    "IteratorProxy": "managers",
    "ListProxy": "managers",
    "NamespaceProxy": "managers",
    "PoolProxy": "managers",
    "SetProxy": "managers",
    "ValueProxy": "managers",
    # shared ctypes (multiprocess.sharedctypes)
    "RawValue": "sharedctypes",
    "RawArray": "sharedctypes",
    "Value": "sharedctypes",
    "Array": "sharedctypes",
    "copy": "sharedctypes",
    "synchronized": "sharedctypes",
    # named shared memory (multiprocess.shared_memory)
    "SharedMemory": "shared_memory",
    "ShareableList": "shared_memory",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(__all__) | {name for name in globals() if name.startswith("__")})


if TYPE_CHECKING:  # what static tools see is what runtime gives
    from ._protocol import RemoteError, Token  # noqa: F401
    from ._proxy import AutoProxy, BaseProxy, MakeProxyType  # noqa: F401
    from ._proxytypes import (  # noqa: F401
        AcquirerProxy,
        ArrayProxy,
        BarrierProxy,
        BaseListProxy,
        ConditionProxy,
        DictProxy,
        EventProxy,
        IteratorProxy,
        ListProxy,
        Namespace,
        NamespaceProxy,
        PoolProxy,
        SetProxy,
        ValueProxy,
    )
    from ._server import Server  # noqa: F401
    from .managers import BaseManager, SharedMemoryManager, SyncManager  # noqa: F401
    from .shared_memory import ShareableList, SharedMemory  # noqa: F401
    from .sharedctypes import Array, RawArray, RawValue, Value, copy, synchronized  # noqa: F401

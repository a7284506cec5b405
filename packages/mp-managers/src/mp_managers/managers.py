"""Managers: objects shared between processes through a server process.

``multiprocess.managers`` is this module.  A manager runs a server that
holds objects; other processes (children, or unrelated programs that
connect over TCP with the authkey) use them through proxies.  The work is
done in private modules, each with one job::

    _protocol       messages, tokens, remote errors
    _server         Server: authenticates clients, runs exposed methods, counts references
    _proxy          BaseProxy, AutoProxy, MakeProxyType: calls, connections, references
    _base_manager   BaseManager: start/connect/shutdown, register()
    _proxytypes     the proxies and plain objects of SyncManager
    _shm_manager    SharedMemoryManager

``SyncManager`` (what ``multiprocess.Manager()`` returns) is assembled here.
"""

from __future__ import annotations

import importlib.util
import queue
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

import mp_core

# The standard library's public names, re-exported from where they live.
from ._base_manager import BaseManager as BaseManager
from ._protocol import RemoteError as RemoteError
from ._protocol import State as State
from ._protocol import Token as Token
from ._protocol import all_methods as all_methods
from ._protocol import convert_to_error as convert_to_error
from ._protocol import dispatch as dispatch
from ._protocol import listener_client as listener_client
from ._protocol import public_methods as public_methods
from ._proxy import AutoProxy as AutoProxy
from ._proxy import BaseProxy as BaseProxy
from ._proxy import MakeProxyType as MakeProxyType
from ._proxy import RebuildProxy as RebuildProxy
from ._proxytypes import AcquirerProxy as AcquirerProxy
from ._proxytypes import Array as Array
from ._proxytypes import ArrayProxy as ArrayProxy
from ._proxytypes import BarrierProxy as BarrierProxy
from ._proxytypes import BaseListProxy as BaseListProxy
from ._proxytypes import BasePoolProxy as BasePoolProxy
from ._proxytypes import ConditionProxy as ConditionProxy
from ._proxytypes import DictProxy as DictProxy
from ._proxytypes import EventProxy as EventProxy
from ._proxytypes import IteratorProxy as IteratorProxy
from ._proxytypes import ListProxy as ListProxy
from ._proxytypes import Namespace as Namespace
from ._proxytypes import NamespaceProxy as NamespaceProxy
from ._proxytypes import PoolProxy as PoolProxy
from ._proxytypes import ServerBoundedSemaphore as _ServerBoundedSemaphore
from ._proxytypes import ServerRLock as _ServerRLock
from ._proxytypes import ServerSemaphore as _ServerSemaphore
from ._proxytypes import SetProxy as SetProxy
from ._proxytypes import Value as Value
from ._proxytypes import ValueProxy as ValueProxy
from ._server import Server as Server
from ._shm_manager import SharedMemoryManager as SharedMemoryManager
from ._shm_manager import SharedMemoryServer as SharedMemoryServer

__all__ = ["BaseManager", "SyncManager", "BaseProxy", "Token", "SharedMemoryManager"]

#: Shared memory is available (always, here; the standard library's flag).
HAS_SHMEM = True


class SyncManager(BaseManager):
    """The manager behind ``multiprocess.Manager()``.

    Shares ``dict``, ``list``, ``set`` (Python 3.14's), ``Namespace``, ``Value``, ``Array``,
    ``Queue``/``JoinableQueue`` (``queue.Queue`` objects in the server),
    ``Lock``, ``RLock``, ``Semaphore``, ``BoundedSemaphore``, ``Condition``,
    ``Event``, ``Barrier`` (``threading`` objects in the server) and, when
    mp-pool is installed, ``Pool``.
    """

    if TYPE_CHECKING:
        # ``register`` below adds these methods at run time; type checkers
        # learn them here.  Last in the class: ``dict``/``list`` shadow the
        # builtins in its namespace.
        def Barrier(
            self, parties: int, action: Optional[Callable[[], object]] = None, timeout: Optional[float] = None
        ) -> BarrierProxy: ...
        def BoundedSemaphore(self, value: int = 1) -> AcquirerProxy: ...
        def Condition(self, lock: Optional[AcquirerProxy] = None) -> ConditionProxy: ...
        def Event(self) -> EventProxy: ...
        def Lock(self) -> AcquirerProxy: ...
        def RLock(self) -> AcquirerProxy: ...
        def Semaphore(self, value: int = 1) -> AcquirerProxy: ...
        # An AutoProxy forwarding queue.Queue's public methods (typeshed's shape).
        def Queue(self, maxsize: int = 0) -> queue.Queue[Any]: ...
        def JoinableQueue(self, maxsize: int = 0) -> queue.Queue[Any]: ...
        def Pool(
            self,
            processes: Optional[int] = None,
            initializer: Optional[Callable[..., object]] = None,
            initargs: Iterable[Any] = (),
            maxtasksperchild: Optional[int] = None,
        ) -> PoolProxy: ...
        def Namespace(self, **kwds: Any) -> NamespaceProxy: ...
        def Value(self, typecode: Any, value: Any, lock: Any = True) -> ValueProxy: ...
        def Array(self, typecode: str, sequence: Iterable[Any], lock: Any = True) -> ArrayProxy: ...
        def set(self, iterable: Iterable[Any] = ()) -> SetProxy: ...
        def list(self, sequence: Iterable[Any] = ()) -> ListProxy: ...
        def dict(self, *args: Any, **kwds: Any) -> DictProxy: ...


def _pool(*args: Any, **kwds: Any) -> Any:
    # Through the context when a pool is created, in the server: mp-pool is
    # optional (and named in the ImportError if it is missing), and the pool
    # uses the server's start method, which is the manager's.
    return mp_core.get_context().Pool(*args, **kwds)


SyncManager.register("Queue", queue.Queue)
SyncManager.register("JoinableQueue", queue.Queue)
SyncManager.register("Event", threading.Event, EventProxy)
SyncManager.register("Lock", threading.Lock, AcquirerProxy)
# Lock, RLock and the semaphores answer AcquirerProxy.locked() on every version.
SyncManager.register("RLock", _ServerRLock, AcquirerProxy)
SyncManager.register("Semaphore", _ServerSemaphore, AcquirerProxy)
SyncManager.register("BoundedSemaphore", _ServerBoundedSemaphore, AcquirerProxy)
SyncManager.register("Condition", threading.Condition, ConditionProxy)
SyncManager.register("Barrier", threading.Barrier, BarrierProxy)
if importlib.util.find_spec("mp_pool") is not None:
    SyncManager.register("Pool", _pool, PoolProxy)
SyncManager.register("list", list, ListProxy)
SyncManager.register("dict", dict, DictProxy)
SyncManager.register("set", set, SetProxy)
SyncManager.register("Value", Value, ValueProxy)
SyncManager.register("Array", Array, ArrayProxy)
SyncManager.register("Namespace", Namespace, NamespaceProxy)
# Types of objects returned by methods of the proxies above.
SyncManager.register("Iterator", proxytype=IteratorProxy, create_method=False)
SyncManager.register("AsyncResult", create_method=False)

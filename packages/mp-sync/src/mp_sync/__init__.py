"""mp_sync: process-shared synchronization primitives and queues for multiprocess.

The door of the distribution: the public names, re-exported from
``mp_sync.synchronize`` (locks, semaphores, conditions, events, barriers)
and ``mp_sync.queues`` (``Queue``, ``JoinableQueue``, ``SimpleQueue``).
Each takes a ``ctx`` keyword, the ``mp_core`` context whose start method
the object is made for (default: the default context).
"""

from .__about__ import __version__
from .queues import JoinableQueue as JoinableQueue
from .queues import Queue as Queue
from .queues import SimpleQueue as SimpleQueue
from .synchronize import Barrier as Barrier
from .synchronize import BoundedSemaphore as BoundedSemaphore
from .synchronize import BrokenBarrierError as BrokenBarrierError
from .synchronize import Condition as Condition
from .synchronize import Event as Event
from .synchronize import Lock as Lock
from .synchronize import RLock as RLock
from .synchronize import Semaphore as Semaphore

__all__ = [
    "Barrier",
    "BoundedSemaphore",
    "BrokenBarrierError",
    "Condition",
    "Event",
    "JoinableQueue",
    "Lock",
    "Queue",
    "RLock",
    "Semaphore",
    "SimpleQueue",
    "__version__",
]

"""``multiprocess.dummy``: the multiprocessing API on threads of this process.

For code written against the multiprocessing API that should run on threads
instead (I/O-bound work, or to debug without processes): ``Process`` is a
thread (``DummyProcess``), ``Pool`` is ``ThreadPool``, queues are
``queue.Queue``, the synchronization primitives are ``threading``'s, and
``Manager()`` returns this module, whose ``Value``/``Array``/``Namespace``/
``dict``/``list`` are plain in-process objects.
"""

from __future__ import annotations

import array
import queue
import sys
import threading
from typing import Any, Callable, Iterable, Optional

# Manager() answers this module: its Namespace is the managers' one (mp_core holds it for both).
from mp_core._namespace import Namespace as Namespace

from .._dummy_process import DummyProcess, active_children, current_process
from ..pool import ThreadPool
from .connection import Pipe

__all__ = [
    "Process",
    "current_process",
    "active_children",
    "freeze_support",
    "Lock",
    "RLock",
    "Semaphore",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "Barrier",
    "Queue",
    "Manager",
    "Pipe",
    "Pool",
    "JoinableQueue",
]

Process = DummyProcess
Lock = threading.Lock
RLock = threading.RLock
Semaphore = threading.Semaphore
BoundedSemaphore = threading.BoundedSemaphore
Condition = threading.Condition
Event = threading.Event
Barrier = threading.Barrier
Queue = queue.Queue
JoinableQueue = queue.Queue
dict = dict
list = list


def freeze_support() -> None:
    """Nothing to do for threads (kept for API compatibility)."""


class Value:
    """A value with a ``typecode`` and a ``value`` attribute; not shared with other processes."""

    def __init__(self, typecode: Any, value: Any, lock: Any = True) -> None:
        self._typecode = typecode
        self._value = value

    @property
    def value(self) -> Any:
        return self._value

    @value.setter
    def value(self, value: Any) -> None:
        self._value = value

    def __repr__(self) -> str:
        return f"<{type(self).__name__}({self._typecode!r}, {self._value!r})>"


def Array(typecode: str, sequence: Iterable[Any], lock: Any = True) -> array.array:
    """An ``array.array`` of ``typecode`` holding ``sequence`` (``lock`` is ignored)."""
    return array.array(typecode, sequence)


def Manager() -> Any:
    """This module: its ``Value``, ``Array``, ``Namespace``, ``dict``, ``list``, queues and locks."""
    return sys.modules[__name__]


def shutdown() -> None:
    """Nothing to shut down (the dummy manager is this module)."""


def Pool(
    processes: Optional[int] = None, initializer: Optional[Callable[..., Any]] = None, initargs: Iterable[Any] = ()
) -> ThreadPool:
    """A ``ThreadPool`` of ``processes`` threads."""
    return ThreadPool(processes, initializer, tuple(initargs))

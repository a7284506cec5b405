"""Recycling pool workers by memory: the limit, and reading a worker's resident memory cheaply.

The parent checks ``max_memory_per_child`` and picks how workers will
measure themselves (``MemoryLimit.from_argument``), before any worker
starts; each worker then reads its own resident set size after every task
(``MemoryLimit.open_reader``):

* on Linux, ``/proc/self/statm`` is opened once per worker and read with
  ``os.pread`` (resident pages times the page size): one system call per
  check, no open, no allocation beyond a short ``bytes``;
* elsewhere, with psutil installed, ``psutil.Process().memory_info().rss``;
* with neither, the pool refuses the argument with an ``ImportError``
  naming psutil, rather than accept a limit it could never enforce.

What a worker over the limit does is ``_worker``'s and ``_engine``'s
business (the ``RETIRING`` flag of ``_wire``).
"""

from __future__ import annotations

import math
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, Callable, Optional

__all__ = ["MIB", "MemoryLimit"]

#: Bytes in a mebibyte: the unit of ``max_memory_per_child``.
MIB = 1 << 20
#: Where Linux tells a process its own memory (size, resident, shared, ... in pages).
STATM_PATH = "/proc/self/statm"

STATM, PSUTIL = "statm", "psutil"
#: Bytes per second faster than a process's resident memory can grow by writing to memory
#: (the kernel zeroes every new anonymous page, at a few tens of GB/s at best): a reading
#: is skipped while the time since the last one could not have closed the gap to the limit.
FASTEST_GROWTH = 256 << 30


class MemoryLimit:
    """The resident memory (bytes) above which a worker retires, and how workers measure theirs.

    Built in the parent, sent to each worker with its other start-up
    arguments (so under spawn and forkserver too): plain data that pickles
    by value.
    """

    __slots__ = ("limit", "method")

    def __init__(self, limit: int, method: str) -> None:
        self.limit = limit
        self.method = method

    def __repr__(self) -> str:
        return f"MemoryLimit({self.limit / MIB:g} MiB, read with {self.method})"

    def __reduce__(self) -> Any:
        return MemoryLimit, (self.limit, self.method)

    @classmethod
    def from_argument(cls, max_memory_per_child: Any, argument: str = "max_memory_per_child") -> Optional[MemoryLimit]:
        """The limit for ``max_memory_per_child`` (MiB, a positive number) or ``None`` for none.

        Raises ``TypeError`` for what is not a real number (``bool``
        included), ``ValueError`` for a number that is not positive and
        finite, and ``ImportError`` when this platform offers no way to read
        a process's resident memory (no ``/proc/self/statm``, no psutil).
        """
        if max_memory_per_child is None:
            return None
        given = max_memory_per_child
        import numbers  # (only when a pool is given a limit: a spawned worker need not load it)

        if isinstance(given, bool) or not isinstance(given, numbers.Real):
            raise TypeError(f"{argument} must be a number of MiB or None, not {type(given).__name__}")
        value = float(given)
        if not 0 < value < math.inf:  # NaN fails both
            raise ValueError(f"{argument} must be a positive, finite number of MiB or None, not {given!r}")
        return cls(max(1, int(value * MIB)), _measurement_method(argument))

    def over_limit_check(self, read: Callable[[], int]) -> Callable[[], bool]:
        """In a worker: a function that is true the first time this process is found over the limit, given ``read``.

        Once true, it is false ever after without reading: the worker says
        it is retiring once, and is replaced once.

        It reads only when enough time has passed since the last reading
        for the memory to have grown past the limit at ``FASTEST_GROWTH``:
        tiny tasks far below the limit cost a clock read, not a system call.
        (Mapping gigabytes of files already cached, which can be faster than
        writing memory, may then be noticed a few milliseconds late.)
        """
        limit = self.limit
        clock = time.monotonic
        next_reading = 0.0

        def over() -> bool:
            nonlocal next_reading
            now = clock()
            if now < next_reading:
                return False
            size = read()
            if size > limit:
                next_reading = math.inf
                return True
            next_reading = now + (limit - size) / FASTEST_GROWTH
            return False

        return over

    def open_reader(self) -> Callable[[], int]:
        """In a worker: a function returning this process's resident memory in bytes, cheap to call."""
        if self.method == STATM:
            return _statm_reader()
        import psutil  # the parent checked that it imports

        memory_info = psutil.Process().memory_info
        return lambda: memory_info().rss


def _measurement_method(argument: str) -> str:
    """How workers will read their resident memory here; ``ImportError`` if they cannot."""
    try:
        fd = os.open(STATM_PATH, os.O_RDONLY)
        try:
            if _statm_resident(fd) <= 0:
                raise ValueError("no resident memory reported")
        finally:
            os.close(fd)
    except (OSError, ValueError, IndexError):
        pass
    else:
        return STATM
    try:
        import psutil

        psutil.Process().memory_info()
    except ImportError:
        raise ImportError(
            f"{argument} needs a way to read a worker's resident memory: on {sys.platform} there is no "
            f"{STATM_PATH}, and psutil is not installed (pip install psutil)"
        ) from None
    return PSUTIL


def _statm_reader() -> Callable[[], int]:
    # /proc/self is resolved when the file is opened: each worker opens its
    # own (a descriptor inherited through fork would describe the parent).
    # (Opened once, kept for the worker's whole life: a check is one pread.)
    fd = os.open(STATM_PATH, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    return lambda: _statm_resident(fd)


try:
    _PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
except (AttributeError, ValueError, OSError):
    _PAGE_SIZE = 0  # (no sysconf: no /proc/self/statm either)


def _statm_resident(fd: int) -> int:
    # "size resident shared text lib data dt", in pages.
    return int(os.pread(fd, 128, 0).split()[1]) * _PAGE_SIZE

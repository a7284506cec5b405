"""In a worker: stop an item that runs past its job's ``task_timeout``, at no cost per item.

A timed task's items run as they always do, in C (``values.extend(map(func,
chunk))``), with nothing done between two items.  A periodic real-time
timer (``setitimer``, armed for the task, disarmed after it) runs a signal
handler every *tick*; the handler reads how far the task has come from the
length of the list being filled (``list.extend`` grows it item by item)
and raises ``ItemTimedOut`` in the running item when the same item has
been running for at least the limit.  The item's start is known to within
one tick, from the first tick that saw it running (nothing is read from a
clock per task), so an item is never stopped early and at most one tick
late.

The timer stays armed while the worker holds a job with a limit (no
system call per task) and is disarmed when it holds none.

The exception unwinds the item's code (signal handlers run between
bytecodes and interrupt sleeps and blocking I/O); the worker then reports
what finished and exits, since the item's state may be half-done.  Code
that keeps Python from running signal handlers for long (a C extension
holding the GIL, blocked signals) is stopped by the parent instead, which
keeps a deadline for the whole task (``mp_pool._engine``).  A task that
uses ``SIGALRM`` or ``setitimer(ITIMER_REAL)`` itself, under a time limit,
competes with this watch.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, Optional

__all__ = ["ItemTimedOut", "ItemWatch", "tick_for"]

_clock = time.monotonic


class ItemTimedOut(BaseException):
    """Raised in an item that ran past its limit (a ``BaseException``: ``except Exception`` does not stop it)."""


def tick_for(limit: float) -> float:
    """How often to look at the running item for a limit of ``limit`` seconds."""
    return min(max(limit / 20.0, 0.005), 0.25)


class ItemWatch:
    """The timer of one worker process; ``watch`` a task's list of values while its items run."""

    # (The signal module is imported where it is used: an ItemWatch is made
    # by a worker's first timed task, and signal's import (enum) would cost
    # every worker's start milliseconds.)
    def __init__(self) -> None:
        import signal

        self.available = hasattr(signal, "setitimer")
        self._installed = False
        self._tick = 0.0  # the armed timer's interval (0: disarmed)
        self._values: Optional[list[Any]] = None
        self._span = 0
        self._limit = 0.0
        self._index = -1  # the item seen running at the last tick (-1: none yet)
        self._seen = 0.0  # when a tick first saw it

    def watch(self, values: list[Any], span: int, limit: float) -> None:
        """Start watching: ``values`` will grow by one per finished item, up to ``span``.

        The timer stays armed after the task (``stop`` only stops looking),
        so a job's tasks cost no system call each; ``disarm`` it when no
        timed task is to come.
        """
        if not self.available:
            return
        import signal

        if not self._installed:
            signal.signal(signal.SIGALRM, self._on_tick)
            self._installed = True
        self._span = span
        self._index = -1
        self._values = values
        if limit != self._limit or not self._tick:
            self._limit = limit
            tick = tick_for(limit)
            if tick != self._tick:
                self._tick = tick
                signal.setitimer(signal.ITIMER_REAL, tick, tick)

    def stop(self) -> None:
        """Stop watching (a tick that comes now finds nothing to do)."""
        self._values = None

    def disarm(self) -> None:
        """Stop the timer: no timed task is expected."""
        self._values = None
        if self._tick:
            import signal

            self._tick = 0.0
            signal.setitimer(signal.ITIMER_REAL, 0.0)

    def running_for(self) -> float:
        """Seconds the current item has been seen running (a lower bound of its run time; 0 if no tick saw it)."""
        return 0.0 if self._index < 0 else _clock() - self._seen

    def _on_tick(self, signum: int, frame: Any) -> None:
        values = self._values
        if values is None:
            return
        done = len(values)
        if done >= self._span:
            return  # every item has finished: the worker is past them
        now = _clock()
        if done != self._index:
            self._index = done
            self._seen = now
        elif now - self._seen >= self._limit:
            raise ItemTimedOut

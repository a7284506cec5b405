"""Child side: timing loops shared by the sections.

Standard library only: this module also runs under the upstream venv's
interpreter.  Two shapes:

* ``calibrate`` + a *loop function* ``loop(n) -> seconds per op`` for
  operations of a microsecond or less (a ``Lock`` acquire+release, a
  ``Value`` increment): the loop runs ~``target_time`` seconds, the
  garbage collector off, as ``timeit`` does; ``best_of`` takes the fastest
  of several such loops;
* ``median_per_op`` for operations of tens of microseconds and more (a
  round trip to a manager): each op timed on its own, a sample is the
  median, so a preemption in the middle moves one op, not the sample.
"""

from __future__ import annotations

import gc
import statistics
import time
from typing import Callable

LoopFn = Callable[[int], float]


def gc_off(loop: LoopFn, loops: int) -> float:
    """``loop(loops)`` with the garbage collector off (restored after)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return loop(loops)
    finally:
        if was_enabled:
            gc.enable()


def calibrate(loop: LoopFn, target_time: float, max_loops: int = 1 << 24) -> int:
    """The number of iterations for which ``loop`` runs about ``target_time`` seconds."""
    loops = 1
    while True:
        per_op = gc_off(loop, loops)
        if per_op * loops >= target_time / 4 or loops >= max_loops:
            return max(1, min(max_loops, int(target_time / per_op))) if per_op else loops
        loops *= 4


def best_of(loop: LoopFn, loops: int, repeat: int) -> float:
    """The fastest of ``repeat`` runs of ``loop(loops)`` (seconds per op), the garbage collector off.

    For operations that cost the same every time (a lock, a counter), the
    fastest run is the one no other process interrupted; a preemption then
    spoils one run, not the sample.
    """
    return min(gc_off(loop, loops) for _ in range(repeat))


def median_per_op(op: Callable[[], object], count: int) -> float:
    """The median time (s) of ``count`` calls of ``op``, each timed on its own."""
    clock = time.perf_counter
    times = []
    for _ in range(count):
        started = clock()
        op()
        times.append(clock() - started)
    return statistics.median(times)

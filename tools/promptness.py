"""How fast the pool notices a lost worker and stops when terminated: measured figures, not test bounds.

The library promises that a worker dying mid-task fails that task at once
(about a second at most) and that ``terminate()`` does not wait for running
tasks.  The tests (tests/pool/test_faults.py) allow a loaded machine 10 to
30 seconds, so that they fail on a hang or a time-out-based detection but
never on a busy machine; the figures themselves are measured here::

    python -m tools.promptness                       # 10 samples per case and start method
    python -m tools.promptness --quick --start-method fork

Cases, each timed from the call to the moment it returns or raises:

* ``apply, worker SIGKILLed``: ``pool.apply`` of a task that kills its worker → ``WorkerLostError``
* ``apply, worker os._exit``: the same with ``os._exit(5)``
* ``apply, worker segfault``: the same with a segmentation fault
* ``terminate, 2 busy workers``: ``pool.terminate()`` while both workers run 60 s tasks

Prints median and maximum per case; a median over the target (1 s) is
flagged and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import ctypes
import faulthandler
import os
import signal
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Sequence

TARGET_SECONDS = 1.0


# ---------------------------------------------------------------- tasks (run in pool workers)


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)


def exit_hard() -> None:
    os._exit(5)


def segfault() -> None:
    faulthandler.disable()  # the crash is the point: no dump on stderr
    ctypes.string_at(0)  # a real invalid read on CPython...
    os.kill(os.getpid(), signal.SIGSEGV)  # ...which PyPy's ctypes survives (it returns None)


def ready(_: Any = None) -> int:
    return os.getpid()


# ---------------------------------------------------------------- cases (run in this process)


def _time_lost_worker(ctx: Any, task: Callable[[], None]) -> float:
    from mp_pool import WorkerLostError

    pool = ctx.Pool(2)
    try:
        pool.map(ready, range(4))  # both workers are up: their start-up is not timed
        began = time.perf_counter()
        try:
            pool.apply(task)
        except WorkerLostError:
            return time.perf_counter() - began
        raise AssertionError(f"{task.__name__} did not lose its worker")
    finally:
        pool.terminate()
        pool.join()


def _time_terminate(ctx: Any) -> float:
    started = ctx.SimpleQueue()
    pool = ctx.Pool(2, initializer=_install_queue, initargs=(started,))
    try:
        pool.map_async(_report_and_sleep, range(4), chunksize=1)
        for _ in range(2):  # both workers are in a 60 s task
            started.get()
        began = time.perf_counter()
        pool.terminate()
        return time.perf_counter() - began
    finally:
        pool.terminate()
        pool.join()
        started.close()


_queue = None


def _install_queue(queue: Any) -> None:
    global _queue
    _queue = queue


def _report_and_sleep(_: Any) -> None:
    _queue.put(os.getpid())  # type: ignore[union-attr]
    time.sleep(60)


CASES: Dict[str, Callable[[Any], float]] = {
    "apply, worker SIGKILLed": lambda ctx: _time_lost_worker(ctx, kill_self),
    "apply, worker os._exit": lambda ctx: _time_lost_worker(ctx, exit_hard),
    "apply, worker segfault": lambda ctx: _time_lost_worker(ctx, segfault),
    "terminate, 2 busy workers": _time_terminate,
}


def measure(method: str, samples: int) -> Dict[str, List[float]]:
    """Seconds of each case, ``samples`` times, under start method ``method``."""
    import mp_core

    ctx = mp_core.get_context(method)
    return {name: [case(ctx) for _ in range(samples)] for name, case in CASES.items()}


def report(method: str, figures: Dict[str, List[float]]) -> List[str]:
    """Print one line per case; return the cases whose median exceeds the target."""
    slow = []
    for name, values in figures.items():
        median = statistics.median(values)
        flag = ""
        if median > TARGET_SECONDS:
            flag = f"  OVER THE {TARGET_SECONDS:g} s TARGET"
            slow.append(f"{method}: {name}")
        print(
            f"{method:<11} {name:<27} median {median * 1000:8.1f} ms   max {max(values) * 1000:8.1f} ms"
            f"   ({len(values)} samples){flag}",
            flush=True,
        )
    return slow


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.promptness", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 samples per case instead of 10")
    parser.add_argument(
        "--start-method",
        action="append",
        choices=["fork", "spawn", "forkserver"],
        default=[],
        help="measure under this start method (repeatable; default: all three)",
    )
    args = parser.parse_args(argv)
    methods = args.start_method or ["fork", "spawn", "forkserver"]
    samples = 2 if args.quick else 10
    try:
        load = " load average {:.2f} {:.2f} {:.2f},".format(*os.getloadavg())
    except OSError:  # pragma: no cover
        load = ""
    print(f"promptness: Python {sys.version.split()[0]},{load} {os.cpu_count()} CPUs", flush=True)
    slow: List[str] = []
    for method in methods:
        slow += report(method, measure(method, samples))
    print(
        "promptness: every median within the target"
        if not slow
        else f"promptness: {len(slow)} case(s) over the target: {'; '.join(slow)}"
    )
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())

"""The soak's measuring process: runs the workloads and writes one JSON line per event to stdout.

Started by ``python -m tools.soak`` (``__main__.py``) in a session of its
own, with ``TMPDIR`` pointing to a private directory; it is not meant to be
run by hand.  Lines: ``{"event": "start", ...}`` (this pid, the prefixes of
the run's ``/dev/shm`` names), one ``{"event": "workload", ...}`` per
workload, ``{"event": "done"}``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from typing import Any, Dict, List, Sequence

from . import RSS_BOUND_PERCENT, probes
from .workloads import BY_NAME, WORKLOADS, Workload

#: How long a workload's children, threads and /dev/shm entries may take to go after its teardown.
SETTLE_SECONDS = 30.0
#: Rounds run before the figures are read (not counted in the operations).
WARM_UP_ROUNDS = 2
#: RSS start and end are the lowest reading of this many rounds at each end.
FLOOR_ROUNDS = 3


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def _settle(
    before: probes.Snapshot, prefixes: Sequence[str], tmp_root: str, counts_only: bool = False
) -> probes.Snapshot:
    """A snapshot once the stragglers are gone (or ``SETTLE_SECONDS`` have passed).

    Stragglers are what exceeds ``before``: descriptors and threads, and
    unless ``counts_only``, children, ``/dev/shm`` entries and temp files.
    """
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        gc.collect()
        now = probes.snapshot(prefixes, tmp_root)
        settled = now.threads <= before.threads and now.fds <= before.fds
        if not counts_only:
            settled = settled and now.children <= before.children and now.shm <= before.shm and now.tmp <= before.tmp
        if settled or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


def measure(
    workload: Workload, ctx: Any, quick: bool, rss_bound: float, prefixes: Sequence[str], tmp_root: str
) -> Dict[str, Any]:
    """Run ``workload`` (warm-up round, then its rounds) and return its figures and broken bounds."""
    sizes = workload.round_sizes(quick)
    before = probes.snapshot(prefixes, tmp_root)
    state = workload.setup(ctx)
    for _ in range(WARM_UP_ROUNDS):  # pools started, buffers and caches at their size
        workload.run(state, sizes[0])
    start = probes.snapshot(prefixes, tmp_root)
    samples = []
    seconds = 0.0
    for size in sizes:
        began = time.perf_counter()
        workload.run(state, size)
        seconds += time.perf_counter() - began
        samples.append(probes.settled_rss_bytes())
    # A pool's join returns while its zygote may still be exiting, reaped by
    # a short-lived thread that holds one descriptor: what is still there
    # once such stragglers had their time is what the rounds left.
    end = _settle(start, prefixes, tmp_root, counts_only=True)
    workload.teardown(state)
    del state
    after = _settle(before, prefixes, tmp_root)

    # The floor of the first rounds against the floor of the last ones: a
    # reading taken while a round's last buffers are still alive, or with
    # one more allocator arena in use, is ~1 MiB off (5% of a 20 MiB
    # parent); what a leak keeps raises the floor.
    rss_start = min(samples[:FLOOR_ROUNDS])
    rss_end = min(samples[-FLOOR_ROUNDS:])
    growth = 100.0 * (rss_end - rss_start) / rss_start
    leftovers: List[str] = []
    leftovers += [f"child {pid}" for pid in sorted(after.children - before.children)]
    leftovers += [f"/dev/shm/{name}" for name in sorted(after.shm - before.shm)]
    leftovers += [f"$TMPDIR/{path}" for path in sorted(after.tmp - before.tmp)]
    broken: List[str] = []
    if growth >= rss_bound:
        broken.append(f"RSS grew {growth:.1f}% (bound {rss_bound:g}%)")
    if end.fds > start.fds:
        broken.append(f"descriptors grew from {start.fds} to {end.fds}")
    if end.threads > start.threads:
        broken.append(f"threads grew from {start.threads} to {end.threads}")
    if after.fds > before.fds:
        broken.append(f"{after.fds - before.fds} descriptor(s) stayed open after the teardown")
    if after.threads > before.threads:
        broken.append(f"{after.threads - before.threads} thread(s) stayed after the teardown")
    if leftovers:
        broken.append("left behind: " + ", ".join(leftovers))
    return {
        "event": "workload",
        "name": workload.name,
        "what": workload.what,
        "ops": sum(sizes),
        "seconds": seconds,
        "rss_start": rss_start,
        "rss_end": rss_end,
        "rss_growth": growth,
        "rss_peak": max(samples),
        "fds": [before.fds, start.fds, end.fds, after.fds],
        "threads": [before.threads, start.threads, end.threads, after.threads],
        "leftovers": leftovers,
        "broken": broken,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.soak.runner")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="")
    parser.add_argument("--start-method", default=None)
    parser.add_argument("--rss-bound", type=float, default=RSS_BOUND_PERCENT)
    args = parser.parse_args(argv)

    import mp_core
    from mp_core import resource_tracker, util

    # Names of this run's shared memory and semaphores carry our pid; our
    # children inherit the prefixes, so the run's leftovers are told apart
    # from anything another program has in /dev/shm.
    me = mp_core.current_process()
    me._config["shmprefix"] = f"/psm_soak{os.getpid()}_"
    me._config["semprefix"] = f"/mp-soak{os.getpid()}"
    prefixes = [f"psm_soak{os.getpid()}_", f"sem.mp-soak{os.getpid()}-"]
    ctx = mp_core.get_context(args.start_method)
    tmp_root = tempfile.gettempdir()
    # The helpers a program keeps for its whole life start now, not inside
    # the first workload that needs them: the tracker, our private temp dir,
    # the fork server when it is the start method.
    resource_tracker.ensure_running()
    util.get_temp_dir()
    if ctx.get_start_method() == "forkserver":
        from mp_core import forkserver

        forkserver.ensure_running()
    # So does the pipe through which a fork asks our threads to step aside
    # (made once per process, by the first thread that waits in poll()).
    from mp_core import _forksafe_threads

    _forksafe_threads.fork_requested_fd()
    emit(
        event="start",
        pid=os.getpid(),
        prefixes=prefixes,
        start_method=ctx.get_start_method(),
        python=sys.version.split()[0],
        tmpdir=tmp_root,
    )
    chosen = [BY_NAME[name] for name in args.only.split(",") if name] or WORKLOADS
    for workload in chosen:
        emit(**measure(workload, ctx, args.quick, args.rss_bound, prefixes, tmp_root))
    emit(event="done")
    return 0


if __name__ == "__main__":
    sys.exit(main())

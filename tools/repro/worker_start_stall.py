"""A replacement pool worker whose READY and results were never read (issue 17, fixed).

Run three at once from the repository root, to keep both cores busy::

    for k in 1 2 3; do python -m tools.repro.worker_start_stall & done; wait

Each makes pools whose every worker retires after each task
(``max_memory_per_child=1``: a fresh worker is already over 1 MiB), so the
pool forks a replacement from its zygote for every task, then checks that
one more ``apply`` completes.  In 2 of 90 attempts here, it did not: the
task had been handed to a replacement worker that never said READY, while
the pool's other worker sat ready and idle.  On a hang this prints the
engine's view of its workers and, when ``py-spy`` is installed, the stuck
worker's stacks; exit status 1.  Without a hang, exit status 0.

The cause, found with it: the retiring worker's task pipe was closed early
(``close_after_outbox``), the replacement's result pipe got the same
descriptor number, and closing the old channel unwatched that number, so
the replacement's READY and results were never read (the worker, in the
py-spy dump, waited for its next task).  ``Transport.unwatch`` now checks
the owner (tests/pool/test_transport.py has the deterministic regression
test); this reproducer stays to check the fix under load.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import mp_core
from mp_core.context import TimeoutError
from mp_pool import Pool


def record_then_keep(path: str, index: int) -> tuple[int, int]:
    with open(path, "a") as f:
        f.write(f"{index}\n")
    return index, os.getpid()


def main(attempts: int = 30) -> int:
    ctx = mp_core.get_context("fork")
    folder = tempfile.mkdtemp(prefix="stall-")
    try:
        for attempt in range(attempts):
            path = os.path.join(folder, f"ran-{attempt}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # "below what a fresh worker already uses"
                pool = Pool(2, context=ctx, max_memory_per_child=1)
                pool.starmap(record_then_keep, [(path, i) for i in range(8)], chunksize=1)
            pending = pool.apply_async(os.getpid)
            try:
                pending.get(20)
            except TimeoutError:
                engine = pool._engine
                print(f"attempt {attempt}: the apply did not complete in 20 s")
                for worker in engine._workers:
                    print(
                        f"  worker {worker.pid}: ready={worker.ready} retiring={worker.retiring} "
                        f"running={[task.id for task in worker.running]} alive={worker.process.is_alive()}"
                    )
                    spy = shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))
                    if not worker.ready and spy:
                        subprocess.run([spy, "dump", "--pid", str(worker.pid)], check=False)
                        subprocess.run(["cat", f"/proc/{worker.pid}/wchan"], check=False)
                pool.terminate()
                return 1
            pool.terminate()
            pool.join()
        print(f"no stall in {attempts} attempts")
        return 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

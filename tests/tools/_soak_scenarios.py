"""Workloads that break the soak's bounds on purpose, measured in a fresh interpreter.

Run by tests/tools/test_soak.py as ``python _soak_scenarios.py NAME TMPDIR``:
prints the row ``tools.soak.runner.measure`` returns, as JSON.  A fresh
interpreter, because the test suite's own process has threads and
descriptors of earlier tests coming and going (the garbage collector that
``measure`` runs closes some), which would shift the exact counts checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

from tools.soak import probes, runner
from tools.soak.workloads import Workload


class Leaky:
    """Leaks two descriptors per operation, a thread and 2 MiB per round, and keeps them."""

    def __init__(self) -> None:
        self.kept: list = []
        self.pipes: list = []
        self.threads: list = []
        self.stop = threading.Event()

    def setup(self, ctx):
        return self

    def run(self, state, n):
        for _ in range(n):
            self.pipes.append(os.pipe())
        thread = threading.Thread(target=self.stop.wait)
        thread.start()
        self.threads.append(thread)
        self.kept.append(b"x" * (2 << 20))

    def teardown(self, state):
        os.close(self.pipes[0][0])  # the rest stay open: a teardown that leaks

    def cleanup(self):
        self.stop.set()
        for thread in self.threads:
            thread.join()


def probe_counts(tmp_root: str) -> dict:
    """How much the probes' counts move for a pipe and a thread made (2 and 1)."""
    fds = probes.open_fds()
    r, w = os.pipe()
    fds_moved = probes.open_fds() - fds
    os.close(r)
    os.close(w)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    threads = probes.thread_count()
    thread.start()
    threads_moved = probes.thread_count() - threads
    stop.set()
    thread.join()
    return {"fds": fds_moved, "threads": threads_moved, "rss_over_1_mib": probes.rss_bytes() > 1 << 20}


def leaky(tmp_root: str) -> dict:
    workload = Leaky()
    try:
        return runner.measure(
            Workload("leaky", 20, 10, workload.setup, workload.run, workload.teardown, ""),
            None,
            quick=False,
            rss_bound=5.0,
            prefixes=["nothing-"],
            tmp_root=tmp_root,
        )
    finally:
        workload.cleanup()


class Stragglers:
    """Each round leaves a thread holding a pipe, which goes once a snapshot has been taken.

    Like a pool's zygote reaper after ``join``: gone soon after the round,
    on its own.  Released by the snapshots (not by time), so a reading
    taken at once still counts every round's straggler.
    """

    def __init__(self) -> None:
        self.waiting: list = []

    def setup(self, ctx):
        return self

    def run(self, state, n):
        release = threading.Event()
        r, w = os.pipe()

        def linger():
            release.wait()
            os.close(r)
            os.close(w)

        threading.Thread(target=linger).start()
        self.waiting.append(release)

    def teardown(self, state):
        pass

    def release_all(self):
        while self.waiting:
            self.waiting.pop().set()


def stragglers(tmp_root: str) -> dict:
    workload = Stragglers()
    take_snapshot = probes.snapshot

    def snapshot_then_release(*args):
        taken = take_snapshot(*args)
        workload.release_all()
        return taken

    probes.snapshot = snapshot_then_release
    runner.SETTLE_SECONDS = 60.0  # they do go: a loaded machine only delays them
    return runner.measure(
        Workload("stragglers", 10, 5, workload.setup, workload.run, workload.teardown, ""),
        None,
        quick=False,
        rss_bound=50.0,
        prefixes=["nothing-"],
        tmp_root=tmp_root,
    )


def leaves_things(tmp_root: str) -> dict:
    prefix = f"soak-test-{os.getpid()}-"
    made = {}

    def teardown(state):
        with open(os.path.join(tmp_root, "left.txt"), "w"):
            pass
        with open(f"/dev/shm/{prefix}segment", "w"):
            pass
        made["child"] = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])

    try:
        row = runner.measure(
            Workload("leaves", 4, 2, lambda ctx: None, lambda state, n: None, teardown, ""),
            None,
            quick=False,
            rss_bound=5.0,
            prefixes=[prefix],
            tmp_root=tmp_root,
        )
    finally:
        if "child" in made:
            made["child"].kill()
            made["child"].wait()
        if os.path.exists(f"/dev/shm/{prefix}segment"):
            os.unlink(f"/dev/shm/{prefix}segment")
    row["child_pid"] = made["child"].pid
    row["prefix"] = prefix
    return row


if __name__ == "__main__":
    runner.SETTLE_SECONDS = 0.5  # what is left is left: no need to wait for it
    scenarios = {"probes": probe_counts, "leaky": leaky, "leaves_things": leaves_things, "stragglers": stragglers}
    scenario = scenarios[sys.argv[1]]
    print(json.dumps(scenario(sys.argv[2])))
    os._exit(0)  # the leaked descriptors and buffers go with the process

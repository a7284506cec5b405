"""Where an mp_dask.Pool runs: its own LocalCluster (and that it goes away), a CLI-started cluster by address."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ..support import direct_children, run_python
from .conftest import NEEDS_DISTRIBUTED, QUIET

pytest.importorskip("mp_dask", reason=NEEDS_DISTRIBUTED)  # before distributed: see mp_dask._distributed

import distributed  # noqa: E402

import mp_dask  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def square(x):
    return x * x


def allowed_failures(dask_scheduler) -> int:
    return dask_scheduler.allowed_failures


def worker_pids(pool) -> set[int]:
    return set(pool.client.run(os.getpid).values())


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Whether process ``pid`` (not our child) is gone within ``timeout`` seconds; waits on a pidfd."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(fd)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- the pool's own cluster


def test_own_cluster_is_gone_after_close_and_join():
    pool = mp_dask.Pool(2, cluster_options=QUIET)
    workers = worker_pids(pool)
    assert len(workers) == 2 and workers <= set(direct_children())
    # A task whose worker dies fails at once (WorkerLostError), never handed to the next worker.
    assert pool.client.run_on_scheduler(allowed_failures) == 0
    assert pool.map(square, range(10)) == [x * x for x in range(10)]
    pool.close()
    pool.join()
    assert not workers & set(direct_children())
    assert all(wait_for_exit(pid, 10) for pid in workers)
    assert pool.client.status == "closed"


def test_own_cluster_is_gone_after_the_with_block():
    with mp_dask.Pool(1, cluster_options=QUIET) as pool:
        workers = worker_pids(pool)
        assert pool.apply(square, (9,)) == 81
    assert not workers & set(direct_children())
    with pytest.raises(ValueError, match="Pool not running"):
        pool.apply(square, (2,))


PROGRAM = """
import json, os, sys
import mp_dask

def helper(x):  # a __main__ function a lambda uses: it travels along
    return x + 1

if __name__ == "__main__":
    base = 10
    pool = mp_dask.Pool(2, cluster_options={"silence_logs": 50})
    print(json.dumps({
        "map": pool.map(lambda x: helper(x) * base, range(5)),
        "starmap": pool.starmap(lambda a, b: a + b + base, [(1, 2)]),
        "workers": sorted(pool.client.run(os.getpid).values()),
    }), flush=True)
    if sys.argv[1] == "close":
        pool.close()
        pool.join()
        print("closed", flush=True)
    else:
        sys.stdin.read()  # wait to be killed
"""


def test_lambdas_and_closures_from_a_python_c_program():
    result = run_python(PROGRAM, "close", timeout=100)
    assert result.returncode == 0, result.stderr
    first, last = result.stdout.splitlines()
    report = json.loads(first)
    assert report["map"] == [10, 20, 30, 40, 50]
    assert report["starmap"] == [13]
    assert last == "closed"
    assert all(wait_for_exit(pid, 10) for pid in report["workers"])


def test_no_orphaned_workers_after_the_owner_is_sigkilled():
    owner = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(PROGRAM), "kill"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = owner.stdout.readline()
        assert line, owner.stderr.read()
        workers = json.loads(line)["workers"]
        assert len(workers) == 2
        owner.kill()
        owner.wait(30)
        # The scheduler ran in the owner; its workers watch a pipe to it.
        assert all(wait_for_exit(pid, 30) for pid in workers), workers
    finally:
        owner.kill()
        owner.wait(30)
        owner.stdin.close()
        owner.stdout.close()
        owner.stderr.close()


# ---------------------------------------------------------------- a cluster started from the command line


def dask_command(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("dask")
    if script.exists():
        return [str(script), *args]
    found = shutil.which("dask")
    if found is None:
        pytest.skip("the dask command is not installed beside this interpreter")
    return [found, *args]


def test_a_cli_started_scheduler_and_two_workers_reached_by_address(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    log = open(tmp_path / "cluster.log", "w")
    started = []

    # A real cluster's workers need the code its tasks name (this test module,
    # for the lambda's globals): they run in the checkout, as workers run
    # where the project is installed.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))

    def start(*args: str) -> None:
        command = dask_command(*args)
        started.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env))

    try:
        start("scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--no-dashboard")
        for _ in range(2):
            start(
                "worker",
                address,
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
                "--local-directory",
                str(tmp_path),
            )
        # The client retries connecting until the scheduler listens (within connect_timeout).
        with mp_dask.Pool(address=address, connect_timeout=30) as pool:
            pool.client.wait_for_workers(2, timeout=60)
            offset = 7
            assert pool.map(lambda x: x + offset, range(12), chunksize=1) == [x + 7 for x in range(12)]
            assert len(worker_pids(pool)) == 2
            assert pool.scheduler_address == address
        # The pool closed its client, never the cluster it does not own.
        assert all(proc.poll() is None for proc in started)
        with distributed.Client(address, timeout=30, set_as_default=False) as client:
            assert client.submit(square, 5).result(timeout=30) == 25
    except BaseException:
        log.flush()
        print((tmp_path / "cluster.log").read_text()[-4000:])
        raise
    finally:
        # Workers first: a worker told to stop while its scheduler is gone
        # keeps trying to reach it instead of exiting.
        workers, scheduler = started[1:], started[:1]
        for group in (workers, scheduler):
            for proc in group:
                proc.send_signal(signal.SIGTERM)
            for proc in group:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(30)
        log.close()


def test_an_unreachable_scheduler_raises_oserror_within_the_connect_timeout():
    address = f"tcp://127.0.0.1:{free_port()}"  # nobody listens there
    started = time.monotonic()
    with pytest.raises(OSError, match="127.0.0.1"):
        mp_dask.Pool(address=address, connect_timeout=2)
    assert time.monotonic() - started < 30

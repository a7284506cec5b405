"""A manager owner SIGKILLed mid-session, for test_faults.

    python _owner_scenario.py METHOD

The reaper (this program, a child subreaper, so that orphans are handed to
it and reaped) starts an *owner* child with METHOD.  The owner starts a
``SyncManager`` and a ``SharedMemoryManager``, creates shared memory
through the latter, reports, and sleeps.  The reaper SIGKILLs the owner,
then watches the two server processes exit by themselves and the shared
memory disappear, reaps every orphan, and prints one JSON line.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

import mp_core
from mp_managers.managers import SharedMemoryManager, SyncManager


def owner(method: str, conn) -> None:
    ctx = mp_core.get_context(method)
    sync = SyncManager(ctx=ctx)
    sync.start()
    shm = SharedMemoryManager(ctx=ctx)
    shm.start()
    block = shm.SharedMemory(128)
    shareable = shm.ShareableList([1, "two", None])
    d = sync.dict(block=block.name)
    conn.send(
        {
            "servers": [sync._process.pid, shm._process.pid],
            "segments": [block.name, shareable.shm.name, d["block"]],
            "address": sync.address,
        }
    )
    time.sleep(120)


def running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:  # gone (ProcessLookupError if it went while we read)
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def reap_orphans() -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(method: str) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        print(json.dumps({"error": "cannot become a subreaper"}))
        return
    # The owner by reference, from this file imported as a module, so that a
    # spawned child imports it rather than receiving it by value.
    from _owner_scenario import owner as importable_owner

    ctx = mp_core.get_context(method)
    reader, writer = mp_core.Pipe(duplex=False)
    proc = ctx.Process(target=importable_owner, args=(method, writer))
    proc.start()
    writer.close()
    info = reader.recv()
    existed = [os.path.exists("/dev/shm/" + name) for name in info["segments"]]
    started = time.monotonic()
    proc.kill()
    proc.join()
    # The owner's temp dir held the servers' sockets; it had no chance to remove it.
    tempdir = os.path.dirname(info["address"]) if isinstance(info["address"], str) else None
    seconds = None
    while time.monotonic() - started < 20:
        reap_orphans()
        servers_up = [pid for pid in info["servers"] if running(pid)]
        left = [name for name in info["segments"] if os.path.exists("/dev/shm/" + name)]
        if not servers_up and not left and not (tempdir and os.path.exists(tempdir)):
            seconds = time.monotonic() - started
            break
        time.sleep(0.02)
    report = {
        "existed": existed,
        "seconds": seconds,
        "servers_running": [pid for pid in info["servers"] if running(pid)],
        "segments_left": [name for name in info["segments"] if os.path.exists("/dev/shm/" + name)],
        "tempdir_left": sorted(os.listdir(tempdir)) if tempdir and os.path.exists(tempdir) else None,
    }
    if tempdir:
        shutil.rmtree(tempdir, ignore_errors=True)
    for pid in report["servers_running"]:
        os.kill(pid, 9)
    # Our own helpers (a fork server, the tracker started to spawn the owner) go too.
    from mp_core import forkserver, resource_tracker

    forkserver._forkserver._stop()
    resource_tracker._resource_tracker._stop(timeout=5)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        reap_orphans()
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        time.sleep(0.05)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])

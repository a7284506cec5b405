"""Helpers the tests share: fresh interpreters, this session's /dev/shm names, garbage collection.

A plain module (pytest's conftest files hold fixtures and hooks only): a
test module imports what it needs from here, and so may a child process
that re-imports a test module under spawn or forkserver.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable

import mp_core

START_METHODS = [m for m in ("fork", "spawn", "forkserver") if m in mp_core.get_all_start_methods()]

# Named semaphores and shared-memory blocks made by this test session (and by
# its children, which inherit the prefixes: tests/conftest.py installs them)
# carry our pid, so that another program using /dev/shm at the same time (a
# second test run, a user's job) cannot make our leak checks fail, and we never
# count its entries as ours.
SEMAPHORE_PREFIX = f"/mp-t{os.getpid()}"
SHARED_MEMORY_PREFIX = f"/psm_t{os.getpid()}_"
# The separators matter: run 123's "sem.mp-t123" is a prefix of run 1234's names.
SHM_PREFIXES = (SHARED_MEMORY_PREFIX[1:], f"sem.{SEMAPHORE_PREFIX[1:]}-")


def run_python(code: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (dedented) with ``python -c``, its ``sys.argv[1:]`` being ``args``; capture the output.

    A fresh interpreter: its ``__main__`` is one that no child can import again.
    """
    return run_interpreter("-c", textwrap.dedent(code), *args, timeout=timeout)


def run_script(path: Path, code: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Write ``code`` (dedented) to the file ``path`` and run it as a program (its ``__main__``)."""
    path.write_text(textwrap.dedent(code))
    return run_interpreter(str(path), *args, timeout=timeout)


def run_interpreter(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` (this interpreter, an unrelated program) and capture its output as text.

    The program runs in a process group of its own: past ``timeout`` the
    whole group is killed (``subprocess.TimeoutExpired`` is raised), so a
    child it started cannot outlive it as an orphan.
    """
    command = [sys.executable, *args]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.communicate()
            raise
        finally:
            if proc.poll() is None:  # an error of our own while waiting: nothing is left behind either
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def collect_garbage() -> None:
    """Collect until what one collection frees has been collected too.

    Dropping an object can free others only at the next collection (the
    values of a ``WeakKeyDictionary`` entry removed by a weakref callback);
    CPython's reference counting frees them at once, PyPy needs a pass each.
    """
    for _ in range(3):
        gc.collect()


def shm_entries() -> set[str]:
    """This session's named semaphores and shared-memory segments now in /dev/shm.

    Only names under this session's prefixes count: a block or semaphore made
    by an unrelated program (or a test's separate interpreter, which reports
    its own names) is not ours to check.
    """
    try:
        names = os.listdir("/dev/shm")
    except OSError:
        return set()
    return {name for name in names if name.startswith(SHM_PREFIXES)}


#: Callables naming the pids of processes that a fixture keeps alive across its
#: tests on purpose (the workers of a module's dask cluster): not leaks while
#: it is registered.  The fixture removes its entry when it stops them.
KEPT_ALIVE: list[Callable[[], set[int]]] = []


def long_lived_helper_pids() -> set[int]:
    """The pids of this process's fork server and resource tracker (ours and the stdlib's), and of ``KEPT_ALIVE``."""
    pids = set()
    for kept in list(KEPT_ALIVE):
        pids |= kept()
    # dask starts its workers with the standard library's spawn, which starts
    # the stdlib's resource tracker once, for the rest of the session.
    stdlib_tracker = sys.modules.get("multiprocessing.resource_tracker")
    pid = getattr(getattr(stdlib_tracker, "_resource_tracker", None), "_pid", None)
    if pid:
        pids.add(pid)
    try:
        from mp_core import forkserver

        if forkserver._forkserver._forkserver_pid:
            pids.add(forkserver._forkserver._forkserver_pid)
    except ImportError:
        pass
    try:
        from mp_core import resource_tracker

        pid = getattr(resource_tracker._resource_tracker, "_pid", None)
        if pid:
            pids.add(pid)
    except ImportError:
        pass
    return pids


def direct_children() -> dict[int, str]:
    """pid -> state letter ('Z' for zombies) of this process's children."""
    me = os.getpid()
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: split after it.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == me:
            children[int(entry)] = fields[0]
    return children

"""Task functions for the pool tests: module-level, so every start method can import them."""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import time

import mp_core


def square(x):
    return x * x


def add(a, b):
    return a + b


def identity(x):
    return x


def pid_of(_=None):
    return os.getpid()


def sleep_then(seconds, value=None):
    time.sleep(seconds)
    return value


# A gate that the test opens, installed in each worker by the pool's
# initializer (semaphores reach pool workers only by inheritance, never in a
# task): a gated task tells the test that it started, then waits to be let
# through, so "the workers are busy" is a handshake, not a sleep.
_semaphores = None


def install_gate(started, gate):
    global _semaphores
    _semaphores = (started, gate)


def gated(value=None):
    """Release ``started``, wait until the test releases ``gate`` (90 s at most), return ``value``."""
    started, gate = _semaphores
    started.release()
    if not gate.acquire(timeout=90):
        raise TimeoutError("the test never opened the gate")
    return value


def raise_value_error(message):
    raise ValueError(message)


def fail_on(x, bad):
    if x == bad:
        raise KeyError(f"bad item {x}")
    return x


def kill_self(sig=signal.SIGKILL):
    os.kill(os.getpid(), sig)
    time.sleep(10)


def exit_hard(code=3):
    os._exit(code)


def segfault():
    faulthandler.disable()  # the crash is the point; no dump on stderr
    ctypes.string_at(0)  # a real invalid read on CPython...
    os.kill(os.getpid(), signal.SIGSEGV)  # ...which PyPy's ctypes survives (it returns None)


def die_on(x, bad, how="kill"):
    """Return x, except for ``bad``, where the worker dies (by SIGKILL or os._exit)."""
    if x == bad:
        if how == "kill":
            kill_self()
        exit_hard(5)
    return x


def return_unpicklable(_=None):
    return (x for x in range(3))  # neither pickle nor dill can carry a generator


def return_lambda(k):
    return lambda x: x + k


class Unloadable(Exception):
    """An exception whose constructor needs two arguments: it pickles, but unpickling fails."""

    def __init__(self, a, b):
        super().__init__(a)
        self.b = b


def raise_unloadable():
    raise Unloadable("a", "b")


_initialized = []


def remember(value):
    _initialized.append(value)


def initialized(_=None):
    return list(_initialized)


def failing_initializer():
    raise RuntimeError("initializer says no")


def exiting_initializer():
    os._exit(7)


def process_gone(pid):
    """Whether ``pid`` has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def worker_identity(_=None):
    proc = mp_core.current_process()
    return proc.name, proc.daemon, os.getpid()


_gate = []


def keep_gate(event):
    """Initializer: remember ``event`` for ``square_after_gate``."""
    _gate[:] = [event]


def square_after_gate(x):
    """``x * x`` once the gate given to ``keep_gate`` is open (at most 60 s)."""
    if not _gate[0].wait(60):
        raise TimeoutError("the gate never opened")
    return x * x


def append_line(path, text):
    """Append ``text`` as a line to the file ``path`` (a side effect the test can see); return ``text``."""
    with open(path, "a") as f:
        f.write(text + "\n")
    return text


def record_then_sleep(x, path, slow, seconds=60):
    """Append 'start x' to ``path``; sleep ``seconds`` if ``x == slow``; append 'end x'; return ``x * x``."""
    append_line(path, f"start-{x}")
    if x == slow:
        time.sleep(seconds)
    append_line(path, f"end-{x}")
    return x * x


def spin_forever(_=None):
    """A pure-Python loop that never ends (only a signal handler's exception stops it)."""
    while True:
        pass


def sleep_with_alarms_blocked(seconds=60):
    """Sleep with SIGALRM blocked: code that keeps the worker's timer from firing."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(seconds)


def catch_everything_and_sleep(seconds=60):
    """A task that swallows Exception and still sleeps: the time-out must get through."""
    try:
        time.sleep(seconds)
    except Exception:
        pass
    return "caught"


# What ``keep_mib`` allocated: held for the worker's life, as a leaking task would.
_kept = []


def keep_mib(mib):
    """Allocate ``mib`` MiB, touch every page (so it is resident) and keep it; return this worker's pid."""
    block = bytearray(mib << 20)
    block[::4096] = b"\1" * len(range(0, len(block), 4096))
    _kept.append(block)
    return os.getpid()


def resident_mib(_=None):
    """This process's resident memory in MiB, from /proc/self/statm."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def record_then_keep(path, index, mib=0):
    """Append ``index`` as a line to ``path``, then keep ``mib`` MiB (``keep_mib``); return ``(index, pid)``."""
    append_line(path, str(index))
    if mib:
        keep_mib(mib)
    return index, os.getpid()


def call_sys_exit(code=4):
    """``sys.exit(code)`` inside a task."""
    import sys

    sys.exit(code)


class ExitWhenPickled:
    """A result whose pickling calls ``sys.exit``."""

    def __reduce__(self):
        import sys

        sys.exit(5)


def return_exit_when_pickled(_=None):
    return ExitWhenPickled()


# A start-up gate: the first worker to run the initializer goes through, the
# others wait in it until the test releases ``held`` (once per worker).  Each
# first sends its pid on ``pids``, the write end of a pipe: one write, no
# lock, so a worker killed right after it leaves nothing held.
def hold_all_but_one(first, held, pids):
    pids.send(os.getpid())
    if not first.acquire(False) and not held.acquire(timeout=90):
        raise TimeoutError("the test never let the held worker start")


# Every worker waits in the initializer until the test releases ``held``.
def hold_every_worker(held, pids):
    pids.send(os.getpid())
    if not held.acquire(timeout=90):
        raise TimeoutError("the test never let the workers start")


def loaded_of(names):
    """Which of the modules ``names`` this worker has imported."""
    import sys

    return sorted(name for name in names if name in sys.modules)


def hold_all_but_one_with_gate(first, held, pids, started, gate):
    """``hold_all_but_one``, then ``install_gate``: the held worker starts late, and ``gated`` works in both."""
    install_gate(started, gate)
    hold_all_but_one(first, held, pids)

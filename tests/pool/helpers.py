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

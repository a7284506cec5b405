"""The spawn start method on Windows (designed in; not tested on this project's CI).

The child is a new interpreter created with ``CreateProcess``; it takes the
read end of an anonymous pipe out of the parent (``steal_handle``) and reads
the preparation data and the process object from it.  The process handle
is the ``sentinel``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from . import reduction, spawn, util

# A name the stdlib's module has, kept for code that reads it there; the pickling is spawn._dump_child's.
from ._spawning import set_spawning_popen  # noqa: F401

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, Optional

__all__ = ["Popen"]

if sys.platform == "win32":  # pragma: no cover - exercised only on Windows
    import _winapi
    import msvcrt

    # The exit code TerminateProcess gives, reported as -SIGTERM like POSIX.
    TERMINATE = 0x10000

    class Popen:
        """A child started as a new interpreter with ``CreateProcess``."""

        method = "spawn"

        def __init__(self, process_obj: Any) -> None:
            prep_data = spawn.get_preparation_data(process_obj._name)
            rhandle, whandle = _winapi.CreatePipe(None, 0)
            wfd = msvcrt.open_osfhandle(whandle, 0)
            cmd = spawn.get_command_line(parent_pid=os.getpid(), pipe_handle=rhandle)
            exe = spawn.get_executable()
            self.returncode: Optional[int] = None
            with open(wfd, "wb", closefd=True) as to_child:
                try:
                    hp, ht, pid, _tid = _winapi.CreateProcess(
                        exe, subprocess.list2cmdline(cmd), None, None, False, 0, None, None, None
                    )
                    _winapi.CloseHandle(ht)
                except BaseException:
                    _winapi.CloseHandle(rhandle)
                    raise
                self.pid = pid
                self._handle = hp
                self.sentinel = int(hp)
                self.finalizer = util.Finalize(self, _close_handles, (self.sentinel, int(rhandle)))
                spawn._dump_child(self, process_obj, to_child, prep_data)

        def duplicate_for_child(self, handle: int) -> int:
            return reduction.duplicate(handle, self.sentinel)

        def wait(self, timeout: Optional[float] = None) -> Optional[int]:
            if self.returncode is None:
                msecs = _winapi.INFINITE if timeout is None else max(0, int(timeout * 1000 + 0.5))
                if _winapi.WaitForSingleObject(int(self._handle), msecs) == _winapi.WAIT_OBJECT_0:
                    code = _winapi.GetExitCodeProcess(self._handle)
                    self.returncode = -signal.SIGTERM if code == TERMINATE else code
            return self.returncode

        def poll(self) -> Optional[int]:
            return self.wait(timeout=0)

        def terminate(self) -> None:
            if self.returncode is not None:
                return
            try:
                _winapi.TerminateProcess(int(self._handle), TERMINATE)
            except PermissionError:
                # The process may have exited between our check and the call.
                if _winapi.GetExitCodeProcess(int(self._handle)) == _winapi.STILL_ACTIVE:
                    raise

        kill = terminate
        # No SIGINT reaches a process without a console of its own.
        interrupt = terminate

        def close(self) -> None:
            self.finalizer()

    def _close_handles(*handles: int) -> None:
        for handle in handles:
            _winapi.CloseHandle(handle)

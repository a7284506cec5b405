"""The fork start method: the child is a copy of the parent.

Two pipes connect parent and child: each side holds the write end of one
and learns that the other has gone when its read end reports EOF.  The
parent's read end is the process ``sentinel``; the child's is the parent
sentinel behind ``parent_process().is_alive()``.
"""

from __future__ import annotations

import os
import signal
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, Optional

from . import util
from ._forksafe_threads import fork

__all__ = ["Popen"]


class Popen:
    """A child started by ``os.fork()``; the base of the other POSIX start methods."""

    method = "fork"

    def __init__(self, process_obj: Any) -> None:
        util._flush_std_streams()
        self.returncode: Optional[int] = None
        self.finalizer: Optional[util.Finalize] = None
        self._parent_only_fds: tuple[int, ...] = ()
        self._launch(process_obj)

    def duplicate_for_child(self, fd: int) -> int:
        return fd

    def poll(self, flag: int = os.WNOHANG) -> Optional[int]:
        """The child's exit code, or ``None`` while it runs (``flag=0`` waits)."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, flag)
            except OSError:
                # Reaped elsewhere (a SIGCHLD handler of the application, say):
                # the status is lost, as with the standard library.
                return None
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """Wait up to ``timeout`` seconds for the child; return its exit code or ``None``."""
        if self.returncode is None:
            if timeout is not None:
                from .connection import wait
                if not wait([self.sentinel], timeout):
                    return None
            # The sentinel is ready: the child is gone and waitpid won't block.
            return self.poll(os.WNOHANG if timeout == 0.0 else 0)
        return self.returncode

    def _send_signal(self, sig: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            except OSError:
                if self.wait(timeout=0.1) is None:
                    raise

    def terminate(self) -> None:
        self._send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self._send_signal(signal.SIGKILL)

    def _launch(self, process_obj: Any) -> None:
        parent_r, child_w = os.pipe()
        child_r, parent_w = os.pipe()
        self.pid = fork()  # our threads step aside (see _forksafe_threads)
        if self.pid == 0:  # the child
            code = 1
            try:
                os.close(parent_r)
                os.close(parent_w)
                code = process_obj._bootstrap(parent_sentinel=child_r)
            finally:
                os._exit(code)
        os.close(child_w)
        os.close(child_r)
        self._parent_only_fds = (parent_r, parent_w)
        self.finalizer = util.Finalize(self, util.close_fds, (parent_r, parent_w))
        self.sentinel = parent_r

    def _close_in_forked_child(self) -> None:
        """Drop, in a forked sibling, the copies of this child's parent-side pipe ends."""
        if self.finalizer is not None:
            self.finalizer.cancel()
        util.close_fds(*self._parent_only_fds)

    def close(self) -> None:
        if self.finalizer is not None:
            self.finalizer()

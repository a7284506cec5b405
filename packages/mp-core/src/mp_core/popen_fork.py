"""The fork start method: the child is a copy of the parent.

Two pipes connect parent and child: each side holds the write end of one
and learns that the other has gone when its read end reports EOF.  The
parent's read end is the process ``sentinel``; the child's is the parent
sentinel behind ``parent_process().is_alive()``.
"""

from __future__ import annotations

import os
import threading

from . import util
from ._forksafe_threads import fork

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, Optional

__all__ = ["Popen"]


class Popen:
    """A child started by ``os.fork()``; the base of the other POSIX start methods."""

    method = "fork"

    def __init__(self, process_obj: Any) -> None:
        util._flush_std_streams()
        self.returncode: Optional[int] = None
        # Held while collecting the exit status: with two threads waiting
        # (join() in one, the pool's manager in another), the one that did
        # not collect it must see it published, never "still running".
        self._collecting = threading.Lock()
        self.finalizer: Optional[util.Finalize] = None
        self._parent_only_fds: tuple[int, ...] = ()
        self._launch(process_obj)

    def duplicate_for_child(self, fd: int) -> int:
        return fd

    def poll(self, flag: int = os.WNOHANG) -> Optional[int]:
        """The child's exit code, or ``None`` while it runs (``flag=0`` waits).

        Safe from several threads: a waiting call (``flag=0``) returns the
        exit code even when another thread collects it; a non-waiting one
        returns ``None`` while another thread is collecting it.
        """
        if self.returncode is None:
            if not self._collecting.acquire(flag != os.WNOHANG):
                return None
            try:
                if self.returncode is None:
                    returncode = self._collect(flag)
                    if returncode is not None:
                        # Before the code is published: whoever sees it
                        # (join() in this thread or another) finds the
                        # sentinel ready.
                        self._settle_sentinel(self._sentinel_grace)
                        self.returncode = returncode
            finally:
                self._collecting.release()
        return self.returncode

    def _collect(self, flag: int) -> Optional[int]:
        """Read the exit status (under ``_collecting``); ``None`` if the child still runs."""
        try:
            pid, status = os.waitpid(self.pid, flag)
        except OSError:
            # Reaped elsewhere (a SIGCHLD handler of the application, say):
            # the status is lost, as with the standard library.
            return None
        if pid == self.pid:
            return os.waitstatus_to_exitcode(status)
        return None

    # Seconds the sentinel may lag behind the exit status in the normal
    # course of things (see _settle_sentinel): none for a child's own pipe.
    _sentinel_grace = 0.0

    def _settle_sentinel(self, grace: float = 0.0) -> None:
        """Once the exit status is known, make sure the sentinel is ready, for good.

        ``wait([p.sentinel], 0)`` must find it once ``join()`` has returned,
        but the sentinel may lag behind the status: the fork server closes
        the socket a moment after sending the exit code (``grace`` is how
        long that may take), and a grandchild may hold the write end of a
        fork or spawn child's pipe.  Only then is the descriptor number made
        to refer to a pipe already at end of file: it stays valid, and ours
        to close.  (Not always: a selector or event loop watching the
        sentinel would lose its registration along with the old file.)
        """
        finalizer = self.finalizer
        if finalizer is None or not finalizer.still_active():
            return  # closed already (or a copy in a forked sibling): not ours to touch
        from ._wait import wait

        if wait([self.sentinel], grace):
            return
        at_eof, write_end = os.pipe()
        os.close(write_end)
        try:
            os.dup2(at_eof, self.sentinel, inheritable=False)
        finally:
            os.close(at_eof)

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """Wait up to ``timeout`` seconds for the child; return its exit code or ``None``."""
        if self.returncode is None:
            if timeout is not None:
                from ._wait import wait

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

    # (The signal module is imported where it is used: its import (enum)
    # would cost every spawned child milliseconds.)
    def interrupt(self) -> None:
        import signal

        self._send_signal(signal.SIGINT)

    def terminate(self) -> None:
        import signal

        self._send_signal(signal.SIGTERM)

    def kill(self) -> None:
        import signal

        self._send_signal(signal.SIGKILL)

    def _launch(self, process_obj: Any) -> None:
        parent_r, child_w = os.pipe()
        child_r, parent_w = os.pipe()
        self.pid = fork()  # our threads step aside (see _forksafe_threads)
        if self.pid == 0:  # the child
            code = 1
            try:
                util._forget_inherited_atexit()
                os.close(parent_r)
                os.close(parent_w)
                code = process_obj._bootstrap(parent_sentinel=child_r)
            finally:
                try:
                    util._run_child_atexit()
                finally:
                    os._exit(code)
        os.close(child_w)
        os.close(child_r)
        self._own_parent_fds(parent_r, parent_w)
        self.sentinel = parent_r

    def _own_parent_fds(self, *fds: int) -> None:
        """Hold ``fds`` (this side's ends of the channels to the child) until ``close()``.

        They are closed by ``close()``, when this object is collected, or in
        a forked sibling (``_close_in_forked_child``), which must not keep
        them: the child's "parent gone" detection depends on it.
        """
        self._parent_only_fds = fds
        self.finalizer = util.Finalize(self, util.close_fds, fds)

    def _close_in_forked_child(self) -> None:
        """Drop, in a forked sibling, the copies of this child's parent-side pipe ends."""
        if self.finalizer is not None:
            self.finalizer.cancel()
        util.close_fds(*self._parent_only_fds)

    def close(self) -> None:
        if self.finalizer is not None:
            self.finalizer()

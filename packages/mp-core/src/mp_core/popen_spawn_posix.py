"""The spawn start method on POSIX: a fresh interpreter runs the child.

The child's command line names a pipe from which it reads the preparation
data and the pickled process object (see ``spawn``).  Descriptors that
pickled objects need (``DupFd``) are passed down to the child explicitly.
"""

from __future__ import annotations

import io
import os

# reduction and set_spawning_popen (util too, in popen_forkserver): names the stdlib's module has,
# kept for code that reads them there; the pickling itself is spawn._dump_child's.
from . import (
    popen_fork,
    reduction,  # noqa: F401
    spawn,
    util,
)
from ._spawning import set_spawning_popen  # noqa: F401

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any

__all__ = ["Popen"]


class _DupFd:
    """A descriptor that reaches a spawned child under the same number."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def detach(self) -> int:
        return self.fd


class Popen(popen_fork.Popen):
    """A child started as a new interpreter."""

    method = "spawn"
    DupFd = _DupFd

    def __init__(self, process_obj: Any) -> None:
        self._fds: list[int] = []
        super().__init__(process_obj)

    def duplicate_for_child(self, fd: int) -> int:
        self._fds.append(fd)
        return fd

    def _launch(self, process_obj: Any) -> None:
        from . import resource_tracker

        executable = spawn.get_executable()
        if executable is None:
            raise ValueError(f"cannot spawn {process_obj!r}: no Python executable (see set_executable())")
        tracker_fd = resource_tracker.getfd()
        self._fds.append(tracker_fd)
        # Pickled before the child exists: errors surface here, in start().
        buf = io.BytesIO()
        spawn._dump_child(self, process_obj, buf)
        parent_r = child_w = child_r = parent_w = None
        try:
            parent_r, child_w = os.pipe()
            child_r, parent_w = os.pipe()
            cmd = spawn.get_command_line(tracker_fd=tracker_fd, pipe_handle=child_r)
            self._fds.extend([child_r, child_w])
            self.pid = util.spawnv_passfds(executable, cmd, self._fds)
            self.sentinel = parent_r
            with open(parent_w, "wb", closefd=False) as to_child:
                to_child.write(buf.getbuffer())
        finally:
            self._own_parent_fds(*(fd for fd in (parent_r, parent_w) if fd is not None))
            for fd in (child_r, child_w):
                if fd is not None:
                    os.close(fd)

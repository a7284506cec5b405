"""The forkserver start method: children are forked by the fork server.

The child's pid and, later, its exit code arrive on a socket from the
server; that socket is the process ``sentinel``.  Descriptors that pickled
objects need travel with the request and are found in the child by index.
"""

from __future__ import annotations

import io
import os

# reduction and set_spawning_popen (util too, in popen_forkserver): names the stdlib's module has,
# kept for code that reads them there; the pickling itself is spawn._dump_child's.
from . import forkserver, popen_fork, reduction, spawn, util  # noqa: F401
from ._spawning import set_spawning_popen  # noqa: F401

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, Optional

__all__ = ["Popen"]


class _DupFd:
    """A descriptor passed to the child with the request; ``ind`` is its position."""

    def __init__(self, ind: int) -> None:
        self.ind = ind

    def detach(self) -> int:
        fds = forkserver.get_inherited_fds()
        assert fds is not None, "not a child of the fork server"
        return fds[self.ind]


class Popen(popen_fork.Popen):
    """A child forked by the fork server."""

    method = "forkserver"
    DupFd = _DupFd
    # The server closes a child's socket right after sending its exit code.
    _sentinel_grace = 1.0

    def __init__(self, process_obj: Any) -> None:
        self._fds: list[int] = []
        super().__init__(process_obj)

    def duplicate_for_child(self, fd: int) -> int:
        self._fds.append(fd)
        return len(self._fds) - 1

    def _launch(self, process_obj: Any) -> None:
        buf = io.BytesIO()
        spawn._dump_child(self, process_obj, buf)
        self.sentinel, data_w = forkserver.connect_to_new_process(self._fds)
        # data_w stays open while we live: the child's parent sentinel.
        self._own_parent_fds(self.sentinel, data_w)
        self.pid = forkserver.read_signed(self.sentinel)
        with open(data_w, "wb", closefd=False) as to_child:
            to_child.write(buf.getbuffer())

    def _collect(self, flag: int) -> Optional[int]:
        from ._wait import wait

        timeout = 0 if flag == os.WNOHANG else None
        if not wait([self.sentinel], timeout):
            return None
        try:
            return forkserver.read_signed(self.sentinel)
        except (OSError, EOFError):
            # The server died before it could tell us: the status is lost.
            return 255

"""Children forked by a zygote (``mp_core._zygote``) on behalf of this process.

The child's pid, then its exit code, arrive on a socket of its own from
the zygote (which forked it and reaps it), as from the fork server: that
socket is the process ``sentinel``, and ``poll`` is the fork server's.
The child's parent sentinel is a pipe whose write end only this process
holds, so ``parent_process()`` in the child is this process.
"""

from __future__ import annotations

from . import popen_forkserver

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, Sequence

    from ._zygote import Zygote

__all__ = ["Popen"]


class Popen(popen_forkserver.Popen):
    """A child forked by a zygote: its pid and exit code arrive on its status socket (the sentinel)."""

    method = "fork"

    def __init__(self, process_obj: Any, zygote: Zygote, fds: Sequence[int], info: Any) -> None:
        self._zygote = zygote
        self._child_fds = list(fds)
        self._info = info
        super().__init__(process_obj)

    def duplicate_for_child(self, fd: int) -> int:
        return fd  # nothing is pickled: the child is built in the zygote

    def _launch(self, process_obj: Any) -> None:
        self.sentinel, keep_w, self.pid = self._zygote._request(self._child_fds, self._info)
        # keep_w stays open while we live: the child's parent sentinel.
        self._own_parent_fds(self.sentinel, keep_w)

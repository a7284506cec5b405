"""``SharedMemoryManager``: shared memory blocks that live as long as a manager.

The client creates each block itself (no data goes through the server) and
tells the server its name; the server unlinks every block it was told about
when it stops: on ``shutdown()``, at the owner's exit, or when the owner
dies without a word (the server watches its parent).
"""

from __future__ import annotations

import os
import threading
from typing import Any, Iterable

from mp_core import util

from ._base_manager import BaseManager
from ._server import Server
from .shared_memory import ShareableList, SharedMemory

__all__ = ["SharedMemoryManager", "SharedMemoryServer"]


class SharedMemoryTracker:
    """The names of the blocks a server must unlink when it stops."""

    def __init__(self, name: str, segment_names: Iterable[str] = ()) -> None:
        self.shared_memory_context_name = name
        self.segment_names = list(segment_names)
        self._lock = threading.Lock()

    def register_segment(self, segment_name: str) -> None:
        with self._lock:
            self.segment_names.append(segment_name)

    def destroy_segment(self, segment_name: str) -> None:
        """Forget ``segment_name`` and unlink the block (if it still exists)."""
        with self._lock:
            try:
                self.segment_names.remove(segment_name)
            except ValueError:
                pass
        try:
            segment = SharedMemory(segment_name)
        except FileNotFoundError:
            return
        segment.close()
        try:
            segment.unlink()
        except FileNotFoundError:
            pass

    def unlink(self) -> None:
        for segment_name in list(self.segment_names):
            try:
                self.destroy_segment(segment_name)
            except OSError as exc:
                util.info("could not unlink shared memory %r: %s", segment_name, exc)

    def __getstate__(self) -> tuple:
        return (self.shared_memory_context_name, list(self.segment_names))

    def __setstate__(self, state: tuple) -> None:
        self.__init__(*state)  # type: ignore[misc]


class SharedMemoryServer(Server):
    """A server that also keeps the names of the blocks its clients created."""

    public = Server.public + ("track_segment", "release_segment", "list_segments")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        address = os.fsdecode(self.address) if isinstance(self.address, bytes) else self.address
        self.shared_memory_context = SharedMemoryTracker(f"shm_{address}_{os.getpid()}")
        util.debug("SharedMemoryServer started by pid %d", os.getpid())

    def on_stop(self) -> None:
        self.shared_memory_context.unlink()

    def track_segment(self, c: Any, segment_name: str) -> None:
        """Unlink ``segment_name`` when the server stops."""
        self.shared_memory_context.register_segment(segment_name)

    def release_segment(self, c: Any, segment_name: str) -> None:
        """Unlink ``segment_name`` now, and forget it."""
        self.shared_memory_context.destroy_segment(segment_name)

    def list_segments(self, c: Any) -> list[str]:
        """The names of the blocks still to be unlinked."""
        return list(self.shared_memory_context.segment_names)


class SharedMemoryManager(BaseManager):
    """A manager whose ``SharedMemory``/``ShareableList`` blocks are unlinked at its ``shutdown()``.

    Takes ``BaseManager``'s arguments.  Blocks are created in the calling
    process, which then owns them like any ``SharedMemory``.
    """

    _Server = SharedMemoryServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if os.name == "posix":
            # The server must share this process's tracker: it unregisters
            # the blocks that this process registered.
            from mp_core import resource_tracker

            resource_tracker.ensure_running()
        super().__init__(*args, **kwargs)
        util.debug("%s created by pid %d", type(self).__name__, os.getpid())

    def SharedMemory(self, size: int) -> SharedMemory:
        """A new ``SharedMemory`` block of ``size`` bytes, unlinked at shutdown."""
        block = SharedMemory(None, create=True, size=size)
        try:
            self._call("track_segment", block.name)
        except BaseException:
            block.close()
            block.unlink()
            raise
        return block

    def ShareableList(self, sequence: Iterable[Any]) -> ShareableList:
        """A new ``ShareableList`` holding ``sequence``, unlinked at shutdown."""
        shareable = ShareableList(sequence)
        try:
            self._call("track_segment", shareable.shm.name)
        except BaseException:
            shareable.shm.close()
            shareable.shm.unlink()
            raise
        return shareable

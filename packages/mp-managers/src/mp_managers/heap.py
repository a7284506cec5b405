"""The shared-memory heap behind ``sharedctypes``: small blocks carved from big arenas.

An *arena* is a shared mapping of an anonymous file: a ``memfd`` on Linux,
an unlinked temporary file elsewhere.  Having no name, it can never leak:
its memory goes when the last process that maps it does.  Children reach
it the way they reach the objects in it::

    fork          inherits the mapping itself
    spawn,        the arena pickles (only while the child is being created)
    forkserver    as its size and a duplicate of its descriptor
                  (``reduction.DupFd``), which the child maps again

``Heap`` hands out blocks (``malloc``) and takes them back (``free``),
merging a freed block with free neighbours; an arena with nothing left in
it is unmapped, except the newest if it is small (at most
``_DISCARD_FREE_SPACE_LARGER_THAN`` bytes), kept for the next allocations.
So the heap's size follows what is in use instead of growing without bound.

A forked child starts with a fresh heap of its own: blocks it inherited
belong to its parent's bookkeeping, and only the parent frees them.
"""

from __future__ import annotations

import bisect
import mmap
import os
import sys
import threading
from typing import Any, NamedTuple, Optional

from mp_core import reduction, util
from mp_core.context import assert_spawning

__all__ = ["Arena", "Heap", "BufferWrapper", "Block", "rebuild_arena", "reduce_arena"]

# Blocks start at multiples of 16 bytes: enough for any ctypes type.
ALIGNMENT = 16
# The first arena's size; each new one is twice the last, up to _MAX_ARENA
# (larger requests get an arena of their own size).
_FIRST_ARENA = 256 * 1024
_MAX_ARENA = 64 * 1024 * 1024


def _round_up(n: int, multiple: int) -> int:
    return (n + multiple - 1) // multiple * multiple


def _anonymous_file(size: int) -> int:
    """A descriptor of a new, nameless, ``size``-byte file for shared mapping."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("mp-heap", os.MFD_CLOEXEC)
    else:
        # /dev/shm keeps the pages in memory, where it exists and has room.
        directory = None
        if os.path.isdir("/dev/shm"):
            try:
                stats = os.statvfs("/dev/shm")
                if stats.f_bavail * stats.f_frsize > 2 * size:
                    directory = "/dev/shm"
            except OSError:
                pass
        import tempfile

        fd, path = tempfile.mkstemp(prefix=f"pym-{os.getpid()}-", dir=directory or util.get_temp_dir())
        os.unlink(path)
    try:
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


class Arena:
    """A shared mapping of ``size`` bytes (of the file ``fd``, else of a new one).

    ``buffer`` is the ``mmap``.  Pickles only while a child is being
    created, as its size and a duplicate of its descriptor.
    """

    def __init__(self, size: int, fd: int = -1) -> None:
        if sys.platform == "win32":  # pragma: no cover - designed in, not implemented yet
            raise NotImplementedError("shared ctypes arenas are not implemented on Windows yet")
        if fd == -1:
            fd = _anonymous_file(size)
        self.size = size
        self.fd = fd
        self.serial = -1  # set by the heap that carves it
        try:
            self.buffer = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            raise
        util.Finalize(self, util.close_fds, args=(fd,))

    def __reduce__(self) -> tuple:
        return reduce_arena(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} size={self.size} fd={self.fd}>"


def reduce_arena(arena: Arena) -> tuple:
    """Pickle ``arena`` for a child being created (``RuntimeError`` otherwise)."""
    assert_spawning(arena)
    return rebuild_arena, (arena.size, reduction.DupFd(arena.fd))


def rebuild_arena(size: int, dupfd: Any) -> Arena:
    """Map, in a child, the arena pickled by ``reduce_arena``."""
    return Arena(size, dupfd.detach())


class Block(NamedTuple):
    """``arena.buffer[start:stop]``, owned by whoever malloc'ed it."""

    arena: Arena
    start: int
    stop: int


class Heap:
    """Allocates blocks from arenas; thread-safe; ``free`` may run in a finalizer.

    The attributes the standard library's heap tests inspect
    (``_arenas``, ``_len_to_seq``, ``_allocated_blocks``,
    ``_pending_free_blocks``, ``_n_mallocs``, ``_n_frees``,
    ``_DISCARD_FREE_SPACE_LARGER_THAN``) are provided as views of this
    heap's own bookkeeping; read them under ``_lock``.
    """

    #: An empty arena larger than this is unmapped even when it is the newest.
    _DISCARD_FREE_SPACE_LARGER_THAN = 4 * 1024 * 1024

    def __init__(self, size: Optional[int] = None) -> None:
        # ``size``: the first arena's size (the standard library's parameter;
        # default 256 KiB); each later arena doubles it, up to a limit.
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._arena_by_serial: dict[int, Arena] = {}
        self._in_use: dict[int, set[tuple[int, int]]] = {}  # arena serial -> allocated (start, stop)
        self._n_mallocs = self._n_frees = 0
        self._newest = -1
        self._next_size = _FIRST_ARENA if size is None else _round_up(max(size, 1), mmap.PAGESIZE)
        # Free space, three ways: sorted by size for best fit, and by either
        # end for merging with a neighbour that is freed later.
        self._by_size: list[tuple[int, int, int]] = []  # (size, serial, start)
        self._by_start: dict[tuple[int, int], int] = {}  # (serial, start) -> stop
        self._by_stop: dict[tuple[int, int], int] = {}  # (serial, stop) -> start
        # Frees that found the lock taken (a finalizer run by the garbage
        # collector inside malloc, say): done at the next malloc or free.
        self._pending: list[Block] = []

    # ------------------------------------------------------------ public

    def malloc(self, size: int) -> Block:
        """A block of at least ``size`` bytes (``ValueError`` if negative)."""
        if size < 0:
            raise ValueError(f"Size {size} out of range")
        if sys.maxsize <= size:
            raise OverflowError(f"Size {size} too large")
        if os.getpid() != self._pid:
            self.__init__()  # type: ignore[misc]  # a forked child: start afresh
        size = _round_up(max(size, 1), ALIGNMENT)
        with self._lock:
            self._free_pending()
            serial, start = self._take(size)
            self._in_use[serial].add((start, start + size))
            self._n_mallocs += 1
            return Block(self._arena_by_serial[serial], start, start + size)

    def free(self, block: Block) -> None:
        """Give ``block`` back (it must come from this heap's ``malloc``)."""
        if os.getpid() != self._pid:
            return  # the parent's block: not ours to free
        if not self._lock.acquire(False):
            self._pending.append(block)
            return
        try:
            self._free_pending()
            self._release(block)
        finally:
            self._lock.release()

    def arena_sizes(self) -> list[int]:
        """The sizes of the arenas currently mapped (for tests and diagnostics)."""
        with self._lock:
            return [arena.size for arena in self._arena_by_serial.values()]

    # ------------------------------------------------------------ views (the standard library's names)

    @property
    def _arenas(self) -> list[Arena]:
        return list(self._arena_by_serial.values())

    @property
    def _len_to_seq(self) -> dict[int, list[tuple[Arena, int, int]]]:
        by_length: dict[int, list[tuple[Arena, int, int]]] = {}
        for length, serial, start in self._by_size:
            by_length.setdefault(length, []).append((self._arena_by_serial[serial], start, start + length))
        return by_length

    @property
    def _allocated_blocks(self) -> dict[Arena, set[tuple[int, int]]]:
        return {self._arena_by_serial[serial]: set(blocks) for serial, blocks in self._in_use.items() if blocks}

    @property
    def _pending_free_blocks(self) -> list[Block]:
        return self._pending

    # ------------------------------------------------------------ internals (lock held)

    def _free_pending(self) -> None:
        while self._pending:
            self._release(self._pending.pop())

    def _take(self, size: int) -> tuple[int, int]:
        index = bisect.bisect_left(self._by_size, (size, -1, -1))
        if index == len(self._by_size):
            self._new_arena(size)
            index = bisect.bisect_left(self._by_size, (size, -1, -1))
        free_size, serial, start = self._by_size.pop(index)
        stop = start + free_size
        del self._by_start[(serial, start)]
        del self._by_stop[(serial, stop)]
        if free_size > size:
            self._add_free(serial, start + size, stop)
        return serial, start

    def _new_arena(self, size: int) -> None:
        arena_size = max(_round_up(size, mmap.PAGESIZE), self._next_size)
        self._next_size = min(self._next_size * 2, _MAX_ARENA)
        arena = Arena(arena_size)
        serial = self._newest = self._newest + 1
        arena.serial = serial
        self._arena_by_serial[serial] = arena
        self._in_use[serial] = set()
        util.info("allocated a new arena of %d bytes", arena_size)
        self._add_free(serial, 0, arena_size)

    def _add_free(self, serial: int, start: int, stop: int) -> None:
        before = self._by_stop.pop((serial, start), None)
        if before is not None:
            self._forget_free(serial, before, start)
            start = before
        after = self._by_start.pop((serial, stop), None)
        if after is not None:
            self._forget_free(serial, stop, after)
            stop = after
        bisect.insort(self._by_size, (stop - start, serial, start))
        self._by_start[(serial, start)] = stop
        self._by_stop[(serial, stop)] = start

    def _forget_free(self, serial: int, start: int, stop: int) -> None:
        self._by_start.pop((serial, start), None)
        self._by_stop.pop((serial, stop), None)
        index = bisect.bisect_left(self._by_size, (stop - start, serial, start))
        del self._by_size[index]

    def _release(self, block: Block) -> None:
        serial = block.arena.serial
        in_use = self._in_use.get(serial)
        if in_use is None or (block.start, block.stop) not in in_use:
            raise ValueError(f"{block!r} was not allocated by this heap (or was freed already)")
        in_use.discard((block.start, block.stop))
        self._n_frees += 1
        self._add_free(serial, block.start, block.stop)
        size = self._arena_by_serial[serial].size
        if not in_use and (serial != self._newest or size > self._DISCARD_FREE_SPACE_LARGER_THAN):
            # Nothing left in it: unmap the arena (once no view of it remains).
            self._forget_free(serial, 0, size)
            del self._arena_by_serial[serial], self._in_use[serial]


def _rebuild_wrapper(state: tuple) -> BufferWrapper:
    wrapper = BufferWrapper.__new__(BufferWrapper)
    wrapper._state = state
    return wrapper


class BufferWrapper:
    """``size`` bytes of shared memory from the process's heap, freed when this object goes.

    Pickles (only while a child is being created) with its arena; the copy
    in the child never frees the block.
    """

    _heap = Heap()

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"Size {size} out of range")
        if sys.maxsize <= size:
            raise OverflowError(f"Size {size} too large")
        block = BufferWrapper._heap.malloc(size)
        self._state: tuple[Block, int] = (block, size)
        util.Finalize(self, BufferWrapper._heap.free, args=(block,))

    def create_memoryview(self) -> memoryview:
        """A writable view of exactly the requested bytes."""
        (arena, start, _stop), size = self._state
        return memoryview(arena.buffer)[start : start + size]

    def __reduce__(self) -> tuple:
        return _rebuild_wrapper, (self._state,)

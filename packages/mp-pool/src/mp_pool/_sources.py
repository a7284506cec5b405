"""Where a job's tasks come from: chunks cut from the caller's input.

A chunk is ``(index, start, items, error)``: its position among the job's
chunks, the position of its first item in the input, the items, and, for
an input iterator that raised, the exception (``items`` is then ``None``
and the chunk stands for one position).

``SequenceSource`` slices a list, tuple or range on demand, in the thread
that dispatches: no user code runs there.  ``IteratorSource`` reads any
other iterable in a thread of its own, a few chunks ahead of the workers,
so that a slow or blocking input (another ``imap``'s results, a socket)
never stalls the pool, and an endless one does not fill memory; that
thread steps aside whenever the process forks (``mp_core._forksafe_threads``).
"""

from __future__ import annotations

import threading
from collections import deque
from itertools import islice
from typing import Any, Callable, Iterable, Optional

from mp_core._forksafe_threads import ForkSafeThread

__all__ = ["Chunk", "SingleSource", "SequenceSource", "SizedSequenceSource", "IteratorSource", "make_source"]

#: What a chunk of a ``map`` without ``chunksize`` should weigh, serialized (bytes).
CHUNK_BYTES = 256 * 1024
#: Items in the first such chunk, cut before anything is known about their size.
FIRST_CHUNK = 4

Chunk = tuple  # (index, start, items, error)


class SingleSource:
    """One task: ``apply``'s call, whose payload the submitter already prepared."""

    __slots__ = ("payload", "exhausted")

    def __init__(self, payload: Any) -> None:
        self.payload = payload
        self.exhausted = False

    @property
    def count(self) -> int:
        return 1

    def take(self) -> Optional[Chunk]:
        if self.exhausted:
            return None
        self.exhausted = True
        payload, self.payload = self.payload, None
        return (0, 0, payload, None)

    def stop(self) -> None:
        self.exhausted = True
        self.payload = None


class SequenceSource:
    """Chunks of ``chunksize`` items sliced from a list, tuple or range."""

    __slots__ = ("_items", "_chunksize", "_next", "_index")

    def __init__(self, items: Any, chunksize: int) -> None:
        self._items = items
        self._chunksize = chunksize
        self._next = 0
        self._index = 0

    @property
    def exhausted(self) -> bool:
        return self._next >= len(self._items)

    @property
    def count(self) -> int:
        """Items handed out so far (all of them once exhausted)."""
        return self._next

    def take(self) -> Optional[Chunk]:
        start = self._next
        if start >= len(self._items):
            return None
        items = self._items[start : start + self._chunksize]
        self._next = start + len(items)
        index = self._index
        self._index = index + 1
        return (index, start, items, None)

    def stop(self) -> None:
        self._next = len(self._items)


class SizedSequenceSource(SequenceSource):
    """Chunks of a sequence sized to weigh about ``CHUNK_BYTES`` serialized, never over ``limit`` items.

    For ``map`` without a ``chunksize``: the standard library's default
    (``limit``) cuts a big payload into a few huge chunks, so the workers
    wait while the parent serializes and the parent waits while they
    compute.  Chunks of a few hundred KiB keep both sides busy; tiny items
    still travel in chunks of ``limit``.  The dispatcher reports each
    chunk's serialized size with ``observe``.
    """

    __slots__ = ("_limit", "_per_item")

    def __init__(self, items: Any, limit: int) -> None:
        super().__init__(items, min(limit, FIRST_CHUNK))
        self._limit = limit
        self._per_item: Optional[float] = None

    def observe(self, span: int, nbytes: int) -> None:
        per_item = nbytes / span
        if self._per_item is not None:
            per_item = 0.5 * (self._per_item + per_item)
        self._per_item = per_item
        self._chunksize = max(1, min(self._limit, int(CHUNK_BYTES / per_item)))


class IteratorSource:
    """Chunks read from an iterator by a feeder thread, at most ``limit`` ahead.

    ``on_ready()`` is called (from the feeder thread) each time a chunk is
    added and when the input ends.  ``take()`` never blocks.  The thread
    starts with ``start()``.
    """

    def __init__(
        self, iterable: Iterable[Any], chunksize: int, on_ready: Callable[[], None], limit: int, name: str
    ) -> None:
        self._iterator = iter(iterable)
        self._chunksize = chunksize
        self._on_ready = on_ready
        self._limit = max(1, limit)
        self._buffer: deque[Chunk] = deque()
        self._room = threading.Condition(threading.Lock())
        self._ended = False  # the feeder has added its last chunk
        self._stopped = False
        self._count = 0
        self._index = 0
        self.thread = ForkSafeThread(self._feed, name=name, wake=self._wake)

    def start(self) -> None:
        """Start reading (once the job is known to the engine that ``on_ready`` tells)."""
        self.thread.start()

    @property
    def exhausted(self) -> bool:
        return self._ended and not self._buffer

    @property
    def count(self) -> int:
        """Positions produced so far (all of them once exhausted)."""
        return self._count

    def take(self) -> Optional[Chunk]:
        buffer = self._buffer
        if not buffer:
            return None
        chunk = buffer.popleft()
        # Wake the feeder only once the buffer is half empty: it then
        # refills it in one go instead of a thread switch per chunk.
        if len(buffer) == self._limit // 2:
            with self._room:
                self._room.notify()
        return chunk

    def stop(self) -> None:
        """Stop reading the input (the feeder ends after the item it is reading)."""
        with self._room:
            self._stopped = True
            self._buffer.clear()
            self._room.notify()

    def _wake(self) -> None:
        with self._room:
            self._room.notify()

    def _feed(self) -> bool:
        """The feeder thread; true when it steps aside for a fork (it is then run again)."""
        iterator = self._iterator
        size = self._chunksize
        thread = self.thread
        pausing = False
        try:
            while True:
                with self._room:
                    while len(self._buffer) > self._limit // 2 and not self._stopped:
                        if thread.pausing:
                            pausing = True
                            return True
                        self._room.wait()
                    if self._stopped:
                        return False
                while len(self._buffer) < self._limit and not self._stopped:
                    if thread.pausing:
                        pausing = True
                        return True
                    # The input is the caller's code: it may block for long
                    # (a fork then goes ahead without waiting for it).
                    thread.blocked = True
                    try:
                        items = list(islice(iterator, size))
                    except BaseException as exc:  # noqa: BLE001 - delivered to the caller at its position
                        # (The items of the chunk being read are lost with
                        # it, as with the standard library.)
                        self._push((self._index, self._count, None, exc), 1)
                        return False
                    finally:
                        thread.blocked = False
                    if items:
                        self._push((self._index, self._count, items, None), len(items))
                        self._index += 1
                    if len(items) < size:
                        return False
        finally:
            if not pausing:
                self._iterator = None  # type: ignore[assignment]
                self._ended = True
                self._on_ready()

    def _push(self, chunk: Chunk, span: int) -> None:
        self._count += span
        self._buffer.append(chunk)
        self._on_ready()


def make_source(iterable: Iterable[Any], chunksize: int, on_ready: Callable[[], None], limit: int, name: str) -> Any:
    """A ``SequenceSource`` for a list, tuple or range; an ``IteratorSource`` for anything else."""
    if type(iterable) in (list, tuple, range):
        return SequenceSource(iterable, chunksize)
    return IteratorSource(iterable, chunksize, on_ready, limit, name)

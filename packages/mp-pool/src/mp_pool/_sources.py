"""Where a job's tasks come from: chunks cut from the caller's input.

A ``Chunk`` is ``(number, start, items, error)``: its position among the
job's chunks, the position of its first item in the input, the items, and,
for an input iterator that raised, the exception (``items`` is then
``None`` and the chunk stands for one position).

How big the chunks are is decided here, and only here: ``map_chunksize``
for ``map`` (the standard library's default, or chunks cut by serialized
size) and ``make_source`` for every kind of input.

``SequenceSource`` slices a list, tuple or range on demand, in the thread
that dispatches: no user code runs there.  ``IteratorSource`` reads any
other iterable in a thread of its own, a few chunks ahead of the workers,
so that a slow or blocking input (another ``imap``'s results, a socket)
never stalls the pool, and an endless one does not fill memory; that
thread steps aside whenever the process forks (``mp_core._forksafe_threads``).
"""

from __future__ import annotations

import threading
from collections import deque, namedtuple
from itertools import islice

from mp_core._forksafe_threads import ForkSafeThread

__all__ = [
    "Chunk",
    "ChunkSource",
    "SEQUENCE_TYPES",
    "SingleSource",
    "SequenceSource",
    "SizedSequenceSource",
    "IteratorSource",
    "ReadAheadWindow",
    "map_chunksize",
    "make_source",
]

#: What a chunk of a ``map`` without ``chunksize`` should weigh, serialized (bytes).
CHUNK_BYTES = 256 * 1024
#: Items in the first such chunk, cut before anything is known about their size.
FIRST_CHUNK = 4

#: The inputs sliced on demand (and measured with ``len``); any other iterable is read by a feeder thread.
SEQUENCE_TYPES = (list, tuple, range)
#: A slice of a range this short goes as a tuple of its ints: C pickle writes a tuple of ints in
#: one pass, where a range is reduced (two calls into the pickler's Python-level hook).
SHORT_RANGE = 16


TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time (a program's first Pool imports this); annotations are strings
    from typing import Any, Callable, Iterable, NamedTuple, Optional

    class Chunk(NamedTuple):
        """A piece of a job's input, the unit a task carries."""

        number: int  # its position among the job's chunks
        start: int  # the position of its first item in the input
        items: Any  # the items (for ``apply``, the call); ``None`` for an input error
        error: Optional[BaseException]  # what the input iterator raised here, if it did

else:
    # (collections' named tuple: the same fields, without importing typing)
    Chunk = namedtuple("Chunk", ("number", "start", "items", "error"))
    Chunk.__doc__ = "A piece of a job's input, the unit a task carries."


class ChunkSource:
    """What every source offers the engines.

    ``take()`` returns the next chunk, or ``None`` when none is ready (or
    none is left: then ``exhausted`` is true and ``count`` is the number of
    positions handed out); ``stop()`` drops the rest.  The defaults below
    serve the sources that need no thread and no feedback.
    """

    __slots__ = ()

    #: The feeder thread reading the input, for a source that has one.
    thread: Optional[ForkSafeThread] = None
    #: Whether the source wants ``observe`` calls (it sizes chunks by bytes).
    sized = False

    @property
    def exhausted(self) -> bool:
        raise NotImplementedError

    @property
    def count(self) -> int:
        raise NotImplementedError

    def take(self) -> Optional[Chunk]:
        raise NotImplementedError

    def waiting(self, at_most: int) -> int:
        """How many chunks ``take()`` would hand out now, counting no further than ``at_most``."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        """Start reading the input (once the engine knows the job); nothing to do by default."""

    def observe(self, span: int, nbytes: int) -> None:
        """A chunk of ``span`` items weighed ``nbytes`` serialized; only ``sized`` sources care."""


class SingleSource(ChunkSource):
    """One task: ``apply``'s call, whose payload the submitter already prepared.

    ``discard(payload)`` runs if the call is dropped before it was taken
    (the process engine's payload is a serialized frame whose large
    arguments' shared memory must go; a thread engine's is the call itself).
    """

    __slots__ = ("payload", "_taken", "_discard")

    def __init__(self, payload: Any, discard: Optional[Callable[[Any], None]] = None) -> None:
        self.payload = payload
        self._taken = False
        self._discard = discard

    @property
    def exhausted(self) -> bool:
        return self._taken

    @property
    def count(self) -> int:
        return 1

    def waiting(self, at_most: int) -> int:
        return 0 if self._taken else min(1, at_most)

    def take(self) -> Optional[Chunk]:
        if self._taken:
            return None
        self._taken = True
        payload, self.payload = self.payload, None
        return Chunk(0, 0, payload, None)

    def stop(self) -> None:
        payload, self.payload = self.payload, None
        if not self._taken and payload is not None and self._discard is not None:
            self._discard(payload)  # never sent
        self._taken = True


class SequenceSource(ChunkSource):
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

    def waiting(self, at_most: int) -> int:
        left = len(self._items) - self._next
        return min(at_most, -(-left // self._chunksize)) if left > 0 else 0

    def take(self) -> Optional[Chunk]:
        start = self._next
        if start >= len(self._items):
            return None
        items = self._items[start : start + self._chunksize]
        self._next = start + len(items)
        if type(items) is range and len(items) <= SHORT_RANGE:
            items = tuple(items)
        index = self._index
        self._index = index + 1
        return Chunk(index, start, items, None)

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

    sized = True

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


class ReadAheadWindow:
    """How many chunks a feeder may read ahead of the caller who consumes the results.

    ``Executor.map(..., buffersize=n)``: the input is read one chunk per
    credit; the window starts with ``n`` credits and the consumer gives one
    back (``release``) each time it has taken a chunk's results, so an
    endless input is never read more than ``n`` chunks ahead of it.
    ``close(error)`` ends the reading: the feeder stops, and with an
    ``error`` (the executor was shut down while input was left) the error
    takes the place of the next chunk, if the input has one.  With
    ``keep_credits`` the credits already granted are still used first:
    the standard library's map has submitted those calls before a
    shutdown, so they run, and an input that ends within them is no error.
    """

    def __init__(self, credits: int) -> None:
        self._credits = credits
        self._cond = threading.Condition(threading.Lock())
        self._closed = False
        self.error: Optional[BaseException] = None

    def acquire(self) -> bool:
        """Wait for a credit and take it; false once the window is closed (and its kept credits used)."""
        with self._cond:
            while self._credits <= 0 and not self._closed:
                self._cond.wait()
            if self._credits <= 0:
                return False
            self._credits -= 1
            return True

    def release(self) -> None:
        """The consumer has taken one more chunk's results: one more chunk may be read (unless closed)."""
        with self._cond:
            if not self._closed:
                self._credits += 1
                self._cond.notify()

    def close(self, error: Optional[BaseException] = None, keep_credits: bool = False) -> None:
        """No more chunks are to be read beyond the credits kept (``error``: what stands for the rest of the input)."""
        with self._cond:
            if not self._closed:
                self._closed = True
                self.error = error
            if not keep_credits:
                self._credits = 0
            self._cond.notify_all()


class IteratorSource(ChunkSource):
    """Chunks read from an iterator by a feeder thread, at most ``limit`` ahead.

    ``on_ready()`` is called (from the feeder thread) each time a chunk is
    added and when the input ends.  ``take()`` never blocks.  The thread
    starts with ``start()``.  With a ``window``, each chunk also waits for a
    credit of the consumer's (``ReadAheadWindow``).
    """

    def __init__(
        self,
        iterable: Iterable[Any],
        chunksize: int,
        on_ready: Callable[[], None],
        limit: int,
        name: str,
        window: Optional[ReadAheadWindow] = None,
    ) -> None:
        self._window = window
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
        self.thread: ForkSafeThread = ForkSafeThread(self._feed, name=name, wake=self._wake)

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

    def waiting(self, at_most: int) -> int:
        return min(at_most, len(self._buffer))

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
        if self._window is not None:
            self._window.close()

    def _wake(self) -> None:
        with self._room:
            self._room.notify()

    def _feed(self) -> bool:
        """The feeder thread; true when it steps aside for a fork (it is then run again)."""
        iterator = self._iterator
        size = self._chunksize
        window = self._window
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
                    # (a fork then goes ahead without waiting for it); so may
                    # the consumer the window waits for.
                    thread.blocked = True
                    try:
                        if window is not None and not window.acquire():
                            self._window_closed(window, iterator)
                            return False
                        items = list(islice(iterator, size))
                    except BaseException as exc:  # noqa: BLE001 - delivered to the caller at its position
                        # (The items of the chunk being read are lost with
                        # it, as with the standard library.)
                        self._push(Chunk(self._index, self._count, None, exc), 1)
                        return False
                    finally:
                        thread.blocked = False
                    if items:
                        self._push(Chunk(self._index, self._count, items, None), len(items))
                        self._index += 1
                    if len(items) < size:
                        return False
        finally:
            if not pausing:
                self._iterator = None  # type: ignore[assignment]
                self._ended = True
                self._on_ready()

    def _window_closed(self, window: ReadAheadWindow, iterator: Any) -> None:
        # Closed with an error (the executor was shut down): the error takes
        # the next chunk's place if there is one, as the standard library's
        # map raises when it cannot submit the next call.  (One item is
        # read to know; it is lost, as there.)
        if window.error is None or self._stopped:
            return
        for _item in iterator:
            self._push(Chunk(self._index, self._count, None, window.error), 1)
            break

    def _push(self, chunk: Chunk, span: int) -> None:
        self._count += span
        self._buffer.append(chunk)
        self._on_ready()


def map_chunksize(length: int, chunksize: Optional[int], processes: int) -> tuple[int, bool]:
    """The chunk size of a ``map`` over ``length`` items, and whether chunks are to be cut by serialized size.

    An explicit ``chunksize`` is used as it is.  Without one, the standard
    library's default (about four chunks per worker) becomes the upper
    bound of chunks sized by bytes (``SizedSequenceSource``).
    """
    if chunksize is not None:
        return chunksize, False
    chunksize, extra = divmod(length, processes * 4)
    return chunksize + (1 if extra else 0), True


def make_source(
    iterable: Iterable[Any],
    chunksize: int,
    on_ready: Callable[[], None],
    limit: int,
    name: str,
    sized: bool = False,
    window: Optional[ReadAheadWindow] = None,
) -> ChunkSource:
    """Where the chunks of a job over ``iterable`` come from.

    A list, tuple or range is sliced on demand: in chunks of ``chunksize``,
    or, with ``sized``, in chunks weighing about ``CHUNK_BYTES`` of at most
    ``chunksize`` items.  Any other iterable is read by a feeder thread
    (``IteratorSource``, at most ``limit`` chunks ahead, calling
    ``on_ready``; the thread is named ``name``), and, with a ``window``, no
    further ahead of the consumer than it allows.
    """
    if window is not None:
        return IteratorSource(iterable, chunksize, on_ready, limit, name, window)
    if type(iterable) in SEQUENCE_TYPES:
        return SizedSequenceSource(iterable, chunksize) if sized else SequenceSource(iterable, chunksize)
    return IteratorSource(iterable, chunksize, on_ready, limit, name)

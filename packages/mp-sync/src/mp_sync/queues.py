"""Queues between processes: ``Queue``, ``JoinableQueue``, ``SimpleQueue``.

The path of an item through a ``Queue``::

    put(obj) ── serialize (mp_core.reduction; errors raise here) ──┐
       │ takes a slot of the bounded semaphore (maxsize)           │
       v                                                           v
    buffer (deque, this process) ── feeder thread ── wlock ── pipe ── rlock ── get()
                                     one per process            (OS)          frees the slot,
                                     and queue, started                       deserializes
                                     by the first put

``put`` never blocks on the pipe: the feeder thread writes in the
background, so a producer can outrun its consumers by the pipe's buffer and
then some.  Serializing in ``put`` (the standard library does it in the
feeder) makes an unpicklable object raise in the caller, freezes the object
as it was when put, and keeps the feeder's work down to writing bytes.

At exit (or when the queue is closed or collected) the feeder is told to
stop once the buffer is flushed, and the process waits for it: everything a
process put is delivered even if it exits right away — unless
``cancel_join_thread()`` was called, in which case buffered items may be
lost but the exit never waits on a full pipe.  The ``rlock``/``wlock``
keep messages whole when several processes read or write the same pipe.
"""

from __future__ import annotations

import collections
import errno
import sys
import threading
import time
import types
import weakref
from queue import Empty, Full
from typing import Any, Callable, Generic, Optional, TypeVar

from mp_core import reduction, util
from mp_core._forksafe_threads import ForkSafeThread
from mp_core.connection import Pipe
from mp_core.context import BaseContext, assert_spawning

from ._feed_writer import FeedState, private_nonblocking_end, write_blocking, write_out
from .synchronize import SEM_VALUE_MAX, BoundedSemaphore, Condition, Lock, Semaphore, _resolve

__all__ = ["Queue", "SimpleQueue", "JoinableQueue", "Empty", "Full"]

# Tells the feeder thread to flush what it has and stop.
_SENTINEL = object()

# The feeder writes the small payloads it finds buffered with one system
# call (up to this many bytes at a time); a large payload goes alone,
# without being copied.
_BATCH_BYTES = 256 * 1024
_LARGE_PAYLOAD = 64 * 1024

#: The type of the items a queue carries (``Queue[int]``); unchecked at run time.
_T = TypeVar("_T")


def _take_batch(buffer: collections.deque) -> tuple[list, bool]:
    """Pop the payloads to write together; also say whether the sentinel came.

    Only the feeder pops, so the head of the deque is stable between a
    peek and a pop even while producers append.
    """
    batch: list = []
    size = 0
    while buffer and size < _BATCH_BYTES:
        head = buffer[0]
        if head is _SENTINEL:
            buffer.popleft()
            return batch, True
        if batch and len(head) > _LARGE_PAYLOAD:
            break
        batch.append(buffer.popleft())
        size += len(head)
    return batch, False


def _notify(condition: threading.Condition) -> None:
    with condition:
        condition.notify()


def _message(obj: Any, serializer: Optional[reduction.Serializer]) -> bytes:
    """``reduction.dumps(obj, serializer=serializer, oob=True)``, with this thread's kept pickler.

    The same bytes and errors, without the layers of ``dumps`` between: a
    put of a small item is mostly their cost.
    """
    return reduction._encode_message(obj, serializer or reduction.get_serializer())


class Queue(Generic[_T]):
    """A multi-producer, multi-consumer FIFO queue between processes (``queue.Queue``).

    Items put by one process arrive in the order they were put.  ``maxsize``
    <= 0 means unbounded.  ``serializer`` (an ``mp_core.reduction.Serializer``)
    overrides the process-wide serialization settings for this queue.

    Share it with a child by passing it to ``Process`` (any start method);
    pickling it otherwise raises ``RuntimeError``.
    """

    def __init__(
        self, maxsize: int = 0, *, ctx: Optional[BaseContext] = None, serializer: Optional[reduction.Serializer] = None
    ) -> None:
        ctx = _resolve(ctx)
        if maxsize <= 0:
            maxsize = SEM_VALUE_MAX
        self._maxsize = maxsize
        self._reader, self._writer = Pipe(duplex=False)
        self._rlock = Lock(ctx=ctx)
        # Windows pipes deliver each message whole; POSIX writers need a lock.
        self._wlock: Optional[Lock] = None if sys.platform == "win32" else Lock(ctx=ctx)
        self._sem = BoundedSemaphore(maxsize, ctx=ctx)
        self._serializer = serializer
        self._ignore_epipe = False
        self._reset()
        util.register_after_fork(self, Queue._after_fork)

    def __getstate__(self) -> tuple:
        assert_spawning(self)
        return (
            self._ignore_epipe,
            self._maxsize,
            self._reader,
            self._writer,
            self._rlock,
            self._wlock,
            self._sem,
            self._serializer,
        )

    def __setstate__(self, state: tuple) -> None:
        (
            self._ignore_epipe,
            self._maxsize,
            self._reader,
            self._writer,
            self._rlock,
            self._wlock,
            self._sem,
            self._serializer,
        ) = state
        self._reset()
        util.register_after_fork(self, Queue._after_fork)

    def _after_fork(self) -> None:
        util.debug("Queue._after_fork()")
        self._reset()

    def _reset(self) -> None:
        # The per-process half of the queue: a forked child must not believe
        # it has the parent's feeder thread or its buffered items (nor keep
        # its descriptor for the pipe, nor the write lock it may hold).
        inherited = getattr(self, "_feed_state", None)
        if inherited is not None:
            inherited.close()
        self._feed_state = FeedState()
        self._notempty = threading.Condition(threading.Lock())
        self._buffer: collections.deque = collections.deque()
        self._thread: Optional[ForkSafeThread] = None
        self._feeding = False  # the feeder is started and its finalizers registered (see _enqueue)
        self._jointhread: Optional[util.Finalize] = None
        self._joincancelled = False
        self._closed = False
        self._close: Optional[util.Finalize] = None
        self._send_bytes = self._writer.send_bytes
        self._recv_bytes = self._reader.recv_bytes
        self._poll = self._reader.poll

    # ------------------------------------------------------------ putting

    def put(self, obj: _T, block: bool = True, timeout: Optional[float] = None) -> None:
        """Put ``obj`` in the queue.

        Serializes ``obj`` at once: an object that cannot be serialized
        raises here (``TypeError``/``PicklingError``/...) and nothing is
        queued -- unless a subclass overrides ``_on_queue_feeder_error``:
        then that hook is called with the exception and ``obj``, and ``put``
        returns without queueing anything.  If the queue is full, waits
        (``block``) up to ``timeout`` seconds for a free slot, then raises
        ``queue.Full``.  Raises ``ValueError`` if the queue was closed in
        this process.
        """
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        try:
            payload = _message(obj, self._serializer)
        except Exception as exc:
            # A subclass that overrides the hook expects serialization errors
            # to reach it rather than its caller (as where the feeder thread
            # serializes, in the standard library).
            if type(self)._on_queue_feeder_error is Queue._on_queue_feeder_error:
                raise
            self._on_queue_feeder_error(exc, obj)
            return
        if not self._sem.acquire(block, timeout):
            reduction.discard(payload)  # its shared-memory segments, if it has any
            raise Full
        self._enqueue(payload)

    def put_nowait(self, obj: _T) -> None:
        """``put(obj, block=False)``."""
        self.put(obj, False)

    def _enqueue(self, payload: Any) -> None:
        if not self._feeding:
            # (Not ``_thread``: it is set before the finalizers that flush
            # at close and at exit; another thread's put must wait for them.)
            with self._notempty:
                if not self._feeding:
                    self._start_thread()
        self._buffer.append(payload)
        # The feeder is woken only if it sleeps: it says so (``waiting``)
        # before it last looks at the buffer, holding the condition's lock,
        # so an item appended after that look finds the flag set, and the
        # notify waits for the lock until the feeder is in ``wait()``.  A
        # burst of puts to a busy feeder takes no lock.
        if self._feed_state.waiting:
            with self._notempty:
                self._notempty.notify()

    def _start_thread(self) -> None:
        util.debug("Queue._start_thread()")
        # The feeder steps aside whenever this process forks (see
        # mp_core._forksafe_threads), leaving what it has not written in
        # the buffer; it holds no reference to the queue.
        args = (
            self._buffer,
            self._notempty,
            self._writer,
            self._wlock,
            self._reader.close,
            self._writer.close,
            self._ignore_epipe,
            self._feeder_error_hook(),
            self._sem,
        )
        notempty, state = self._notempty, self._feed_state
        feeder = ForkSafeThread(
            lambda: Queue._feed(*args, feeder, state), name="QueueFeederThread", wake=lambda: _notify(notempty)
        )
        self._thread = feeder
        try:
            self._thread.start()
        except BaseException:
            self._thread = None
            raise
        if not self._joincancelled:
            # Priority below that of the children's join: the feeder may
            # need a child to read before it can finish writing.
            self._jointhread = util.Finalize(
                self._thread, Queue._finalize_join, [weakref.ref(self._thread)], exitpriority=-5
            )
        # Collected or exiting: let the feeder flush and stop.
        self._close = util.Finalize(self, Queue._finalize_close, [self._buffer, self._notempty], exitpriority=10)
        self._feeding = True

    def _feeder_error_hook(self) -> Callable[[BaseException, Any], None]:
        """``_on_queue_feeder_error`` in a form the feeder thread can hold."""
        hook = self._on_queue_feeder_error
        if not isinstance(hook, types.MethodType):
            return hook  # a staticmethod (as the default): no reference to the queue
        # An override that is a plain method is bound to the queue; held by
        # the feeder, it would keep the queue alive, and the feeder only
        # stops once the queue is gone.
        weak_hook = weakref.WeakMethod(hook)

        def call_hook(exc: BaseException, obj: Any) -> None:
            (weak_hook() or Queue._on_queue_feeder_error)(exc, obj)

        return call_hook

    @staticmethod
    def _finalize_join(thread_ref: weakref.ref[ForkSafeThread]) -> None:
        thread = thread_ref()
        if thread is not None:
            util.debug("joining queue thread")
            thread.join()

    @staticmethod
    def _finalize_close(buffer: collections.deque, notempty: threading.Condition) -> None:
        with notempty:
            buffer.append(_SENTINEL)
            notempty.notify()

    @staticmethod
    def _feed(
        buffer: collections.deque,
        notempty: threading.Condition,
        writer: Any,
        writelock: Optional[Lock],
        reader_close: Callable[[], None],
        writer_close: Callable[[], None],
        ignore_epipe: bool,
        onerror: Callable[[BaseException, Any], None],
        queue_sem: BoundedSemaphore,
        thread: ForkSafeThread,
        state: FeedState,
    ) -> bool:
        """The feeder thread: write buffered payloads to the pipe until the sentinel.

        Returns true to step aside for a fork (``thread.pausing``), leaving
        the rest in the buffer, or in ``state`` with the write lock held
        when it stops in the middle of a batch (see ``_feed_writer``); it is
        then called again.
        """

        def failed(exc: BaseException, batch: list) -> bool:
            """Report a write that failed; true if the feeder must end."""
            if ignore_epipe and getattr(exc, "errno", 0) == errno.EPIPE:
                return True
            if util.is_exiting():
                util.info("error in queue thread: %s", exc)
                return True
            for payload in batch:
                # The item never reached the pipe: give its slot back.
                queue_sem.release()
                onerror(exc, payload)
            return False

        if state.fd is None:
            state.fd = private_nonblocking_end(writer.fileno()) if writelock is not None else -1
        paused = False
        try:
            while True:
                if state.parts is None:
                    if not buffer:
                        with notempty:
                            state.waiting = True  # (before the look at the buffer: see _enqueue)
                            try:
                                while not buffer:
                                    if thread.pausing:
                                        paused = True
                                        return True
                                    notempty.wait()
                            finally:
                                state.waiting = False
                    if thread.pausing:
                        paused = True
                        return True
                    batch, stop = _take_batch(buffer)
                    if batch and state.fd < 0:
                        # Blocking writes: a full pipe can hold one for as
                        # long as nobody reads (the reader may be the child
                        # about to be forked); a fork does not wait for it.
                        thread.blocked = True
                        try:
                            if writelock is None:
                                write_blocking(writer, batch)
                            else:
                                with writelock:
                                    write_blocking(writer, batch)
                        except Exception as exc:
                            if failed(exc, batch):
                                return False
                        finally:
                            thread.blocked = False
                    elif batch:
                        state.begin(batch, stop, writelock)
                if state.parts is not None:
                    try:
                        if writer.closed:
                            # (Our own descriptor would still write.)
                            raise OSError(errno.EBADF, "handle is closed")
                        if write_out(state, thread):
                            paused = True
                            return True
                    except Exception as exc:
                        # (batch is set whenever parts are: begin() sets both.)
                        batch, stop = state.batch or [], state.stop
                        state.finish()
                        if failed(exc, batch):
                            return False
                    else:
                        stop = state.stop
                        state.finish()
                if stop:
                    util.debug("feeder thread got sentinel -- exiting")
                    reader_close()
                    writer_close()
                    return False
        finally:
            if not paused:
                state.close()

    @staticmethod
    def _on_queue_feeder_error(exc: BaseException, obj: Any) -> None:
        """Called when an item cannot be delivered; override to handle.

        In the feeder thread when writing fails (``obj`` is then the item's
        serialized form).  When serializing fails in ``put``, it is called
        there, with the item itself, only if a subclass overrides it (by
        default ``put`` raises).  The default prints the traceback.
        """
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__)

    # ------------------------------------------------------------ getting

    def get(self, block: bool = True, timeout: Optional[float] = None) -> _T:
        """Remove and return the next item.

        Waits (``block``) up to ``timeout`` seconds for one, then raises
        ``queue.Empty``.  Raises ``ValueError`` if the queue was closed in
        this process, ``EOFError``/``OSError`` if the pipe broke.
        """
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        if block and timeout is None:
            with self._rlock:
                data = self._recv_bytes()
            self._sem.release()
        else:
            deadline = time.monotonic() + timeout if block and timeout is not None else None
            if not self._rlock.acquire(block, timeout):
                raise Empty
            try:
                if deadline is not None:
                    if not self._poll(max(0.0, deadline - time.monotonic())):
                        raise Empty
                elif not self._poll():
                    raise Empty
                data = self._recv_bytes()
                self._sem.release()
            finally:
                self._rlock.release()
        return reduction.loads(data)

    def get_nowait(self) -> _T:
        """``get(block=False)``."""
        return self.get(False)

    # ------------------------------------------------------------ state

    def qsize(self) -> int:
        """The approximate number of items in the queue.

        Raises ``NotImplementedError`` where semaphores cannot be read (macOS).
        """
        return self._maxsize - self._sem._semlock._get_value()

    def empty(self) -> bool:
        """Whether no item is ready to be read (approximate, like ``queue.Queue``)."""
        return not self._poll()

    def full(self) -> bool:
        """Whether ``maxsize`` items are in the queue (approximate)."""
        return self._sem._semlock._is_zero()

    # ------------------------------------------------------------ closing

    def close(self) -> None:
        """This process will neither put nor get any more.

        Buffered items are still flushed to the pipe by the feeder thread,
        which then closes this process's ends of it.  Later ``put``/``get``
        raise ``ValueError``.  A queue this process never put to has no
        feeder: closing it only marks it closed (``empty()`` still answers,
        as in every version of the standard library), and its pipe ends go
        when the queue is collected.
        """
        self._closed = True
        close = self._close
        if close is not None:
            self._close = None
            close()

    def join_thread(self) -> None:
        """Wait for the feeder thread to flush and exit; only after ``close()``.

        Raises ``AssertionError`` if the queue is not closed.
        """
        util.debug("Queue.join_thread()")
        if not self._closed:
            raise AssertionError(f"Queue {self!r} not closed")
        if self._jointhread is not None:
            self._jointhread()

    def cancel_join_thread(self) -> None:
        """Do not wait for the feeder thread when this process exits.

        Buffered items not yet written may be lost; use it when the exit
        must not wait for consumers (a pipe with no reader left, say).
        """
        util.debug("Queue.cancel_join_thread()")
        self._joincancelled = True
        if self._jointhread is not None:
            self._jointhread.cancel()
            self._jointhread = None


class JoinableQueue(Queue[_T]):
    """A ``Queue`` whose consumers report completed items (``queue.Queue.join``).

    Each ``put`` adds an unfinished task; ``task_done()`` finishes one;
    ``join()`` blocks until none is left.
    """

    def __init__(
        self, maxsize: int = 0, *, ctx: Optional[BaseContext] = None, serializer: Optional[reduction.Serializer] = None
    ) -> None:
        ctx = _resolve(ctx)
        super().__init__(maxsize, ctx=ctx, serializer=serializer)
        self._unfinished_tasks = Semaphore(0, ctx=ctx)
        self._cond = Condition(ctx=ctx)

    def __getstate__(self) -> tuple:
        return Queue.__getstate__(self) + (self._cond, self._unfinished_tasks)

    def __setstate__(self, state: tuple) -> None:
        Queue.__setstate__(self, state[:-2])
        self._cond, self._unfinished_tasks = state[-2:]

    def _enqueue(self, payload: Any) -> None:
        # Counted before it can be seen, so that a consumer's task_done()
        # can never run ahead of the count.
        self._unfinished_tasks.release()
        super()._enqueue(payload)

    def task_done(self) -> None:
        """Mark one item taken with ``get`` as processed.

        Raises ``ValueError`` if called more times than items were put.
        """
        with self._cond:
            if not self._unfinished_tasks.acquire(False):
                raise ValueError("task_done() called too many times")
            if self._unfinished_tasks._semlock._is_zero():
                self._cond.notify_all()

    def join(self) -> None:
        """Block until every item put has been marked done with ``task_done``."""
        with self._cond:
            self._cond.wait_for(self._unfinished_tasks._semlock._is_zero)


class SimpleQueue(Generic[_T]):
    """A plain locked pipe: ``put`` writes at once, ``get`` reads (no feeder thread, no size).

    An object that cannot be serialized raises in ``put``.  Share it with a
    child by passing it to ``Process``; pickling it otherwise raises
    ``RuntimeError``.
    """

    def __init__(self, *, ctx: Optional[BaseContext] = None, serializer: Optional[reduction.Serializer] = None) -> None:
        ctx = _resolve(ctx)
        self._reader, self._writer = Pipe(duplex=False)
        self._rlock = Lock(ctx=ctx)
        self._wlock: Optional[Lock] = None if sys.platform == "win32" else Lock(ctx=ctx)
        self._serializer = serializer
        self._make_methods()

    def __getstate__(self) -> tuple:
        assert_spawning(self)
        return self._reader, self._writer, self._rlock, self._wlock, self._serializer

    def __setstate__(self, state: tuple) -> None:
        self._reader, self._writer, self._rlock, self._wlock, self._serializer = state
        self._make_methods()

    def _make_methods(self) -> None:
        self._poll = self._reader.poll

    def close(self) -> None:
        """Close this process's ends of the pipe; later calls raise ``OSError``."""
        self._reader.close()
        self._writer.close()

    def empty(self) -> bool:
        """Whether no item is ready to be read."""
        return not self._poll()

    def get(self) -> _T:
        """Remove and return the next item, waiting for one."""
        with self._rlock:
            data = self._reader.recv_bytes()
        return reduction.loads(data)

    def put(self, obj: _T) -> None:
        """Put ``obj`` in the queue (serialization errors raise here)."""
        payload = _message(obj, self._serializer)
        if self._wlock is None:
            self._writer.send_bytes(payload)
        else:
            with self._wlock:
                self._writer.send_bytes(payload)

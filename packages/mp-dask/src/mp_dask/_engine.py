"""How a pool's work travels to the dask cluster and back.

::

    caller thread: apply_async / map_async          caller's imap: a feeder thread reads the input
      serialize func once, items per chunk            lazily, one chunk per free slot of the job's
      (mp_core.reduction); client.map                 window (a slot frees when a chunk comes back)
            |                                                       |
            v                                                       v
    dask workers: run_chunk(items, token, init, func, kind): the pool's initializer once per
      worker, func over the items, the answer as bytes (never raises for the user's errors)
            |
            v
    client's event loop: _track (a chunk ended) -> _collect (one gather for every chunk that
      ended meanwhile)
            |
            v
    pool's delivery thread: _answer decodes, result._deliver(...): callbacks run, get(),
      await and async for wake up

One dask task per chunk; the results are mp_pool's own result types
(``ApplyResult``, ``MapResult``, ``IMapIterator``...), filled through
their engine seam (``_deliver``, ``_set_length``, ``_abort``), so
``get``/``wait``/``ready``/``successful``, callbacks, ``await`` and
``async for`` behave exactly as with ``multiprocess.Pool``; this engine is
the results' owner (``mp_pool._results.ResultOwner``).

The answers are fetched in batches: on the client's event loop, every
chunk that finished while the previous fetch was in flight is gathered with
one request (as ``client.gather`` does for a list), instead of a round trip
per chunk; a thread of the pool's own decodes them and delivers them, one
at a time, so that a slow callback never holds up dask's event loop.

A worker that dies running a chunk makes the scheduler fail the chunk's
task (at once on a pool's own cluster: see ``_cluster``); its items fail
with ``WorkerLostError`` naming the worker's address, and the pool goes on
on the other workers.  An initializer that raises breaks the pool
(``BrokenPoolError`` for what is pending and what comes), as in
``multiprocess.Pool``.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections import deque
from typing import Any, Callable, Iterable, Optional

from mp_core import reduction
from mp_pool.pool import BrokenPoolError, PoolTerminatedError, WorkerLostError, rebuild_exc

from . import _trampoline
from ._cluster import Cluster
from ._distributed import distributed

__all__ = ["DaskEngine", "Job"]


class Job:
    """One call's bookkeeping: its result, its chunks on the cluster, and (for ``imap``) its feeder."""

    __slots__ = ("id", "name", "result", "kind", "futures", "feeding", "window", "stopped", "progress")

    def __init__(self, job_id: int, name: str, result: Any, kind: str, progress: Any) -> None:
        self.id = job_id
        self.name = name
        self.result = result
        self.kind = kind
        self.futures: dict[int, Any] = {}  # chunk index -> distributed.Future still pending
        self.feeding = False  # an imap feeder is still reading the input
        self.window: Optional[threading.Semaphore] = None
        self.stopped = False  # terminated or cancelled: later answers are dropped
        self.progress = progress

    def active(self) -> bool:
        return bool(self.futures) or self.feeding


class _Chunk:
    """One chunk on the cluster: where its items go in the job's result, and its dask future."""

    __slots__ = ("job", "index", "start", "span", "future")

    def __init__(self, job: Job, index: int, start: int, span: int, future: Any) -> None:
        self.job = job
        self.index = index
        self.start = start
        self.span = span
        self.future = future


class _FetchFailed:
    """The answer of a finished chunk could not be fetched from the cluster (its worker died meanwhile...)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


#: What the delivery thread gets for a chunk that did not finish (error, cancelled): no answer to fetch.
_NO_ANSWER = object()
#: Tells the delivery thread to stop.
_STOP = object()


def _copy_broken(error: BrokenPoolError) -> BrokenPoolError:
    copy = BrokenPoolError(*error.args)
    copy.__cause__ = error.__cause__
    return copy


class DaskEngine:
    """Submits a pool's chunks to its cluster and delivers their answers to its results.

    ``token`` identifies the pool on the workers (its initializer runs once
    per worker for it); ``init_payload`` is the serialized
    ``(initializer, initargs)`` or ``None``; ``window``: how many chunks of
    one ``imap`` may be on the cluster at once.
    """

    def __init__(
        self,
        cluster: Cluster,
        token: str,
        init_payload: Optional[bytes],
        serializer: Optional[reduction.Serializer],
        window: int,
        describe_initializer: str,
    ) -> None:
        self._cluster = cluster
        self._client = cluster.client
        self._token = token
        self._init_payload = init_payload
        self._serializer = serializer
        self.window = window
        self._describe_initializer = describe_initializer
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._jobs: dict[int, Job] = {}
        self._job_ids = itertools.count()
        self._delivering = threading.local()
        self._terminated = False
        self.broken: Optional[BrokenPoolError] = None
        # On the client's event loop only: the chunks that finished and wait
        # for the next gather, and whether one is in flight.
        self._landed: deque[_Chunk] = deque()
        self._collecting = False
        self._answers: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._delivery = threading.Thread(target=self._deliver_answers, name="mp_dask pool delivery", daemon=True)
        self._delivery.start()

    # ------------------------------------------------------------ ResultOwner

    def delivers_in_current_thread(self) -> bool:
        return bool(getattr(self._delivering, "active", False))

    def forget_result(self, job_id: int) -> None:
        # The result is ready; the job's record stays until its last chunk
        # is back (a failed map's other chunks run on), so that join() waits.
        pass

    def cancel_now(self, job_id: int, error: BaseException, kill_running: Optional[bool], force: bool) -> bool:
        if kill_running:
            raise NotImplementedError(
                "mp_dask cannot stop a chunk that a dask worker is running (a worker thread cannot be "
                "interrupted); cancel() drops what has not run and discards the rest"
            )
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.stopped:
                return False
            job.stopped = True
            futures = list(job.futures.values())
        self._release_window(job)
        self._cancel_futures(futures)
        job.result._abort(error, True)
        self._close_progress(job)
        return True

    # ------------------------------------------------------------ submission

    def new_job(self, name: str, result: Any, kind: str, progress: Any = None) -> Job:
        """File a call's result under a fresh job id (the result's owner is this engine)."""
        with self._lock:
            if self._terminated:
                raise ValueError("Pool not running")
            job = Job(next(self._job_ids), name, result, kind, progress)
            self._jobs[job.id] = job
        result._opened(job.id, self)
        return job

    def serialize(self, obj: Any) -> bytes:
        return bytes(reduction.dumps(obj, serializer=self._serializer))

    def submit_chunks(self, job: Job, func_payload: bytes, chunks: list[tuple[int, int, int, bytes]]) -> None:
        """Send ``(index, start, span, items bytes)`` chunks of ``job`` to the cluster, one dask task each."""
        if not chunks:
            return
        keys = [f"mp_dask-{job.name}-{self._token}-{job.id}-{index}" for index, _, _, _ in chunks]
        futures = self._client.map(
            _trampoline.run_chunk,
            [payload for _, _, _, payload in chunks],
            key=keys,
            pure=False,
            retries=0,
            token=self._token,
            init_payload=self._init_payload,
            func_payload=func_payload,
            kind=job.kind,
            serializer=self._serializer,
        )
        with self._lock:
            for (index, _, _, _), future in zip(chunks, futures):
                job.futures[index] = future
        loop = self._client.loop
        if loop is None:  # the client was closed under the pool
            raise ValueError("Pool not running: its dask client is closed")
        for (index, start, span, _), future in zip(chunks, futures):
            loop.add_callback(self._track, _Chunk(job, index, start, span, future))

    def feed_lazily(self, job: Job, func_payload: bytes, iterable: Iterable[Any], chunksize: int) -> threading.Thread:
        """Start the thread that reads ``iterable`` a chunk per free slot of the job's window (``imap``)."""
        job.window = threading.Semaphore(self.window)
        job.feeding = True
        thread = threading.Thread(
            target=self._feed,
            args=(job, func_payload, iterable, chunksize),
            name=f"mp_dask feeder of job {job.id} ({job.name})",
            daemon=True,
        )
        thread.start()
        return thread

    def _feed(self, job: Job, func_payload: bytes, iterable: Iterable[Any], chunksize: int) -> None:
        start = index = 0
        window = job.window
        assert window is not None
        try:
            iterator = iter(iterable)
            for index in itertools.count():
                window.acquire()
                if job.stopped:
                    return
                chunk = list(itertools.islice(iterator, chunksize))
                if not chunk:
                    window.release()
                    break
                try:
                    payload = self.serialize(chunk)
                except Exception as exc:
                    window.release()
                    self._deliver(job, index, start, len(chunk), False, exc)
                else:
                    self.submit_chunks(job, func_payload, [(index, start, len(chunk), payload)])
                start += len(chunk)
        except Exception as exc:
            # The input raised: the iterator raises it at that position, then ends.
            self._deliver(job, index, start, 1, False, exc)
            start += 1
        finally:
            job.result._set_length(start)
            with self._lock:
                job.feeding = False
            self._job_step(job)

    # ------------------------------------------------------------ answers

    async def _track(self, chunk: _Chunk) -> None:
        # On the client's event loop: wait for the chunk's task to end.
        state = getattr(chunk.future, "_state", None)
        if state is not None:
            await state.wait()
        else:  # an older or newer distributed: its public path
            await chunk.future._result(raiseit=False)
        self._landed.append(chunk)
        if not self._collecting:
            self._collecting = True
            await self._collect()

    async def _collect(self) -> None:
        # One gather for every finished chunk that landed since the last one.
        try:
            while self._landed:
                batch = list(self._landed)
                self._landed.clear()
                finished = [chunk for chunk in batch if chunk.future.status == "finished"]
                answers: dict[int, Any] = {}
                if finished:
                    try:
                        values = await self._client._gather([chunk.future for chunk in finished])
                        answers = {id(chunk): value for chunk, value in zip(finished, values)}
                    except Exception:
                        for chunk in finished:  # which one failed: fetch them one by one
                            try:
                                answers[id(chunk)] = await chunk.future._result()
                            except Exception as exc:
                                answers[id(chunk)] = _FetchFailed(exc)
                for chunk in batch:
                    self._answers.put((chunk, answers.get(id(chunk), _NO_ANSWER)))
        finally:
            self._collecting = False

    def _deliver_answers(self) -> None:
        # The pool's delivery thread: decode each answer and hand it to its result.
        while True:
            item = self._answers.get()
            if item is _STOP:
                return
            chunk, answer = item
            try:
                self._answer(chunk, answer)
            except Exception:
                import traceback

                traceback.print_exc()  # never let one answer stop the deliveries of the others

    def _answer(self, chunk: _Chunk, answer: Any) -> None:
        job = chunk.job
        with self._lock:
            job.futures.pop(chunk.index, None)
        if job.window is not None:
            job.window.release()
        if not job.stopped:
            ok, value = self._decode(chunk, answer)
            if ok is not None:
                self._deliver(job, chunk.index, chunk.start, chunk.span, ok, value)
        chunk.future.release()  # the answer is ours now: the cluster may forget it
        self._job_step(job)

    def _decode(self, chunk: _Chunk, answer: Any) -> tuple[Optional[bool], Any]:
        """(ok, value) of a chunk that ended; ``(None, None)`` when nothing is to be delivered."""
        job, index, future = chunk.job, chunk.index, chunk.future
        status = future.status
        if isinstance(answer, _FetchFailed):
            return False, answer.error
        if answer is not _NO_ANSWER:
            try:
                outcome, value = reduction.loads(answer)
            except Exception as exc:
                return False, exc
            if outcome == _trampoline.OK:
                return True, value[0] if job.kind == _trampoline.APPLY else value
            if outcome == _trampoline.TASK_FAILED:
                return False, rebuild_exc(*value)
            if outcome == _trampoline.INIT_FAILED:
                self._break(rebuild_exc(*value))
                return None, None
            return False, value  # NOT_SENT: a MaybeEncodingError
        if status == "error":
            try:
                error = future.exception(timeout=30)
            except Exception as exc:  # the client went away meanwhile
                error = exc
            if isinstance(error, distributed.scheduler.KilledWorker):
                worker = getattr(error.last_worker, "address", error.last_worker)
                return False, WorkerLostError(
                    f"the dask worker {worker} died while running chunk {index} of {job.name} (job {job.id})",
                    task=job.name,
                )
            return False, error
        # Cancelled or lost without our asking (the client or cluster closed under the pool).
        return False, PoolTerminatedError(f"the cluster dropped chunk {index} of {job.name} (job {job.id}): {status}")

    def _deliver(self, job: Job, index: int, start: int, span: int, ok: bool, value: Any) -> None:
        self._delivering.active = True
        try:
            if job.progress is not None:
                job.progress.advance(span)
            job.result._deliver(index, start, span, ok, value)
        finally:
            self._delivering.active = False

    def _job_step(self, job: Job) -> None:
        with self._lock:
            if job.active() or self._jobs.get(job.id) is not job:
                return
            del self._jobs[job.id]
            self._idle.notify_all()
        self._close_progress(job)

    @staticmethod
    def _close_progress(job: Job) -> None:
        if job.progress is not None:
            job.progress.close()

    @staticmethod
    def _release_window(job: Job) -> None:
        if job.window is not None:
            job.window.release()  # wakes the feeder, which sees ``stopped``

    def _cancel_futures(self, futures: list[Any]) -> None:
        if futures:
            try:
                self._client.cancel(futures)
            except Exception:
                pass  # the client is closing: nothing runs for us any more

    # ------------------------------------------------------------ failure and life cycle

    def _break(self, cause: BaseException) -> None:
        with self._lock:
            if self.broken is None:
                error = BrokenPoolError(
                    f"the pool's initializer {self._describe_initializer} raised on a dask worker: {cause!r}"
                )
                error.__cause__ = cause
                self.broken = error
        self.stop_all(lambda: _copy_broken(self.broken))  # type: ignore[arg-type]

    def stop_all(self, make_error: Callable[[], BaseException], terminate: bool = False) -> None:
        """End every pending result with ``make_error()`` and drop their chunks from the cluster."""
        with self._lock:
            if terminate:
                self._terminated = True
            jobs = [job for job in self._jobs.values() if not job.stopped]
            futures: list[Any] = []
            for job in jobs:
                job.stopped = True
                futures.extend(job.futures.values())
        for job in jobs:
            self._release_window(job)
        self._cancel_futures(futures)
        for job in jobs:
            self._delivering.active = True
            try:
                job.result._abort(make_error(), True)
            finally:
                self._delivering.active = False
            self._close_progress(job)
        if terminate:
            with self._lock:
                self._jobs.clear()
                self._idle.notify_all()
            self._answers.put(_STOP)
            if threading.current_thread() is not self._delivery:
                self._delivery.join(30)

    def wait_idle(self, timeout: Optional[float] = None) -> bool:
        """Wait until every submitted chunk is back (and every ``imap`` input read); whether it happened."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._jobs, timeout)

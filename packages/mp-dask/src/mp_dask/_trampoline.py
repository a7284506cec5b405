"""The worker side: what a dask worker runs for every chunk of a pool's work.

dask serializes a task's function by reference, so the one function it
ever sees from us is ``run_chunk``, a plain module-level function that a
worker imports from this module (the workers need ``mp-dask`` installed,
as every dask worker needs the code of the tasks it runs).  Everything of
the user's (the mapped function, the items, the initializer, the results
and the exceptions) travels as bytes made by ``mp_core.reduction``, so
lambdas, closures and ``__main__`` definitions reach the cluster exactly
as they reach a local pool's workers.

A chunk's answer is the bytes of ``(status, value)``:

* ``OK``: the list of the chunk's results, in input order;
* ``TASK_FAILED``: ``(exception, remote traceback text)`` of the first item
  that raised (the chunk stops there, as the standard library's does);
* ``INIT_FAILED``: the same for the pool's initializer;
* ``NOT_SENT``: a ``MaybeEncodingError`` (results or exception that could
  not be serialized back).

The initializer runs once per worker process and pool, before the first
chunk of that pool the worker runs (``_Initialized``): a worker that joins
the cluster later runs it too, with no plugin to register on (and remove
from) a cluster the pool may share with others.
"""

from __future__ import annotations

import itertools
import threading
import traceback
from collections import OrderedDict
from typing import Any, Callable, Optional

from mp_core import reduction
from mp_pool.pool import MaybeEncodingError

__all__ = ["INIT_FAILED", "KINDS", "NOT_SENT", "OK", "TASK_FAILED", "run_chunk"]

OK = 0
TASK_FAILED = 1
INIT_FAILED = 2
NOT_SENT = 3

#: How a chunk's items are passed to the function: ``func(item)``,
#: ``func(*item)``, or ``func(*args, **kwds)`` for an item ``(args, kwds)``.
MAP, STARMAP, APPLY = "map", "starmap", "apply"
KINDS = (MAP, STARMAP, APPLY)

#: Functions already rebuilt in this worker, by their bytes: a map's chunks
#: carry the same bytes, and rebuilding a closure each time would cost what
#: the chunk's work costs for tiny items.
_FUNCTION_CACHE_SIZE = 64
_functions: OrderedDict[bytes, Callable[..., Any]] = OrderedDict()
_functions_lock = threading.Lock()


def format_remote(exc: BaseException) -> str:
    """The traceback text of ``exc`` as this worker saw it (the caller gets it as ``__cause__``)."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _function(payload: bytes) -> Callable[..., Any]:
    with _functions_lock:
        func = _functions.get(payload)
        if func is not None:
            _functions.move_to_end(payload)
            return func
    func = reduction.loads(payload)
    with _functions_lock:
        _functions[payload] = func
        while len(_functions) > _FUNCTION_CACHE_SIZE:
            _functions.popitem(last=False)
    return func


class _Initialized:
    """Which pools' initializers this worker process has run (a worker may run several threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # pool token -> None when the initializer returned, else (exception, traceback text)
        self._done: dict[str, Optional[tuple[BaseException, str]]] = {}
        self._running: dict[str, threading.Lock] = {}

    def ensure(self, token: str, payload: Optional[bytes]) -> Optional[tuple[BaseException, str]]:
        """Run pool ``token``'s initializer here unless done; its failure, if it failed."""
        if payload is None:
            return None
        with self._lock:
            if token in self._done:
                return self._done[token]
            running = self._running.setdefault(token, threading.Lock())
        # Another thread of this worker may be running it: wait for it, so
        # that no chunk of the pool runs before its initializer finished.
        with running:
            with self._lock:
                if token in self._done:
                    return self._done[token]
            outcome: Optional[tuple[BaseException, str]] = None
            try:
                initializer, initargs = reduction.loads(payload)
                initializer(*initargs)
            except BaseException as exc:  # noqa: B036 - reported to the caller, as a task's error
                outcome = (exc, format_remote(exc))
            with self._lock:
                self._done[token] = outcome
                self._running.pop(token, None)
            return outcome


_initialized = _Initialized()


def _answer(status: int, value: Any, serializer: Optional[reduction.Serializer]) -> bytes:
    try:
        return bytes(reduction.dumps((status, value), serializer=serializer))
    except Exception as exc:
        shown = value[0] if status in (TASK_FAILED, INIT_FAILED) else value
        return bytes(reduction.dumps((NOT_SENT, MaybeEncodingError(exc, shown))))


def run_chunk(
    items_payload: bytes,
    token: str,
    init_payload: Optional[bytes],
    func_payload: bytes,
    kind: str,
    serializer: Optional[reduction.Serializer],
) -> bytes:
    """Run one chunk of pool ``token``'s work on this worker; the answer's bytes (see the module docstring).

    Never raises for the user's errors: they travel back in the answer, so
    that dask never retries a chunk because its function failed.
    """
    failed = _initialized.ensure(token, init_payload)
    if failed is not None:
        return _answer(INIT_FAILED, failed, serializer)
    try:
        func = _function(func_payload)
        items = reduction.loads(items_payload)
        if kind == MAP:
            results = list(map(func, items))
        elif kind == STARMAP:
            results = list(itertools.starmap(func, items))
        else:
            results = [func(*args, **kwds) for args, kwds in items]
    except BaseException as exc:  # noqa: B036 - KeyboardInterrupt, SystemExit too: the caller gets them
        return _answer(TASK_FAILED, (exc, format_remote(exc)), serializer)
    return _answer(OK, results, serializer)

"""What travels on a worker's two pipes: fixed binary headers, then a pickle.

Every message is one frame of ``mp_core._framing``'s wire format (a size,
then the payload), built as a list of buffers and written with ``writev``
where the interpreter has it (``_transport`` in the parent, ``_io`` in the
worker).  The payload starts with a small fixed header, read with ``struct`` before any
unpickling: a body that fails to unpickle can still be blamed on the right
task, and control messages cost no pickle at all.

Parent -> worker (``TASK_HEAD``: kind, task id, job id)::

    CALL     body = pickle of (func, args, kwds)          apply / apply_async
    MAP      body = pickle of the chunk's items           func: the job's FUNC
    STARMAP  body = pickle of the chunk's argument tuples func: the job's FUNC
    FUNC     body = pickle of the job's function          sent once per job and worker
    FORGET   no body                                       drop the job's function (and its limit)
    STOP     no body                                       exit (the pool is closing)
    LIMIT    body = the job's task_timeout, a packed double  sent before the job's first task

Worker -> parent (``RESULT_HEAD``: task id, status, seconds spent)::

    OK       body = pickle of the value (a list for a chunk)
    ERROR    body = pickle of (exception, formatted traceback or None)
    TIMED_OUT  body = pickle of the values of the items that finished; the next
             one ran past the job's limit, and the worker exits
    READY    task id -1, no body: the initializer ran, tasks may follow
    INIT_FAILED  task id -1, body = pickle of (exception, traceback)

    RETIRING, a flag or-ed into the status of a worker of a pool with
    ``max_memory_per_child`` (``_memory``): on OK or ERROR, this task left
    the worker over the limit, it will send no more ``RETIRING`` flags and
    exits after answering the tasks it holds (the parent sends it STOP);
    on READY (body = pickle of its resident bytes), the worker is over the
    limit before running any task.
"""

from __future__ import annotations

import io
import struct

from mp_core import reduction
from mp_core._framing import SHORT_HEADER_SIZE, message_header

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, Optional

__all__ = [
    "TASK_HEAD",
    "RESULT_HEAD",
    "CALL",
    "MAP",
    "STARMAP",
    "FUNC",
    "FORGET",
    "STOP",
    "LIMIT",
    "LIMIT_BODY",
    "OK",
    "ERROR",
    "READY",
    "INIT_FAILED",
    "TIMED_OUT",
    "RETIRING",
    "NO_TASK",
    "Frame",
    "task_frame",
    "task_frame_of_pickle",
    "result_frame",
    "frame_size",
    "discard_frame",
    "limit_frame",
    "STOP_FRAME",
]

TASK_HEAD = struct.Struct("!Bqq")
RESULT_HEAD = struct.Struct("!qBd")
#: Both heads have the same size: where the body of any frame starts, after its size header.
HEAD_SIZE = TASK_HEAD.size
if RESULT_HEAD.size != HEAD_SIZE:  # pragma: no cover - a guard for whoever edits the formats
    raise ImportError("mp_pool._wire: the task and result heads must have the same size")

LIMIT_BODY = struct.Struct("!d")

CALL, MAP, STARMAP, FUNC, FORGET, STOP, LIMIT = 1, 2, 3, 4, 5, 6, 7
OK, ERROR, READY, INIT_FAILED, TIMED_OUT = 0, 1, 2, 3, 4
RETIRING = 0x80
NO_TASK = -1


class Frame:
    """One wire frame as the list of buffers that make it up, size header first.

    The pickler writes into it as into a binary file; the blocks it hands
    over are kept, not copied into one growing buffer (which would cost a
    copy of every payload, and more as the buffer is reallocated), and go
    out with one ``writev`` (``mp_core._io``).  ``Frame`` supports what
    ``mp_core.reduction.Serializer.dump`` needs to fall back to dill after
    a failed attempt: ``tell``, then ``seek`` back and ``truncate``.
    """

    __slots__ = ("parts", "size", "_cut")

    def __init__(self, head: bytes) -> None:
        self.parts: list[Any] = [head]
        self.size = len(head)
        self._cut: Optional[int] = None

    # -- the binary-file interface the picklers use

    def write(self, data: Any) -> int:
        if type(data) is not bytes:
            # A view of a caller's (possibly mutable) buffer: freeze it now,
            # as the frame may be written out later.
            data = bytes(data)
        if self._cut is not None:
            raise io.UnsupportedOperation("write after seek without truncate")
        self.parts.append(data)
        self.size += len(data)
        return len(data)

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.size if self._cut is None else self._cut

    def seek(self, position: int, whence: int = 0) -> int:
        if whence != 0 or not 0 <= position <= self.size:
            raise io.UnsupportedOperation("Frame only seeks back to an absolute position")
        self._cut = position
        return position

    def truncate(self, size: Optional[int] = None) -> int:
        cut = self.tell() if size is None else size
        parts = self.parts
        while self.size > cut:
            last = parts.pop()
            self.size -= len(last)
            if self.size < cut:
                parts.append(last[: cut - self.size])
                self.size = cut
        self._cut = None
        return cut

    # -- finishing

    def seal(self) -> list[Any]:
        """Put the size header (short or long form) in front; return the buffers."""
        self.parts[0] = message_header(self.size) + self.parts[0]  # the small fixed head: a cheap join
        return self.parts


#: A frame whose head and pickle together are at most this long goes out as
#: one buffer: a copy of a few hundred bytes costs less than an iovec entry.
JOIN_BELOW = 4096


def _framed(head: bytes, body: Any, serializer: Optional[reduction.Serializer]) -> list[Any]:
    """The frame of ``head`` followed by ``body`` pickled (out of band as the serializer says), as buffers."""
    serializer = serializer or reduction.get_serializer()
    if serializer.oob_threshold is None:
        # In band only: the pickler writes into the frame's own blocks (no
        # copy of a large pickle), and a dill fallback rewinds them.
        in_band = Frame(head)
        serializer.dump(body, in_band)
        return in_band.seal()
    parts = serializer.message_parts(body)
    if len(parts) == 1:
        payload = parts[0]
        if type(payload) is not bytes:
            payload = bytes(payload)  # a view of a buffer that may change before the frame is written
        size = len(head) + len(payload)
        if size <= JOIN_BELOW:
            return [message_header(size) + head + payload]
        return [message_header(size) + head, payload]
    # Several parts (large buffers' envelopes; PyPy's pure-Python pickler also
    # hands a short pickle over in pieces), each copied as above.
    parts = [part if type(part) is bytes else bytes(part) for part in parts]
    size = len(head) + sum(map(len, parts))
    if size <= JOIN_BELOW:
        return [message_header(size) + head + b"".join(parts)]
    return [message_header(size) + head, *parts]


def task_frame(
    kind: int,
    task_id: int,
    job_id: int,
    body: Any = None,
    has_body: bool = False,
    serializer: Optional[reduction.Serializer] = None,
) -> list[Any]:
    """A complete wire frame for a parent -> worker message, as buffers to write in order.

    Serialization errors propagate to the caller with the object named by
    ``mp_core.reduction``.
    """
    head = TASK_HEAD.pack(kind, task_id, job_id)
    if has_body:
        return _framed(head, body, serializer)
    return [message_header(len(head)) + head]


def task_frame_of_pickle(kind: int, task_id: int, job_id: int, pickled: bytes) -> list[Any]:
    """As ``task_frame``, for a body already pickled (``pickled``: the bytes ``pickle.loads`` reads)."""
    head = TASK_HEAD.pack(kind, task_id, job_id)
    return [message_header(len(head) + len(pickled)) + head + pickled]


def result_frame(
    task_id: int,
    status: int,
    elapsed: float,
    body: Any = None,
    has_body: bool = True,
    serializer: Optional[reduction.Serializer] = None,
) -> list[Any]:
    """A complete wire frame for a worker -> parent message, as buffers to write in order."""
    head = RESULT_HEAD.pack(task_id, status, elapsed)
    if has_body:
        return _framed(head, body, serializer)
    return [message_header(len(head)) + head]


def discard_frame(parts: list[Any]) -> None:
    """Free the shared memory of the large buffers of a frame that will not be sent (``reduction.discard``)."""
    if len(parts) == 1:
        # Joined (``JOIN_BELOW``): a short size header, the head, then the
        # body if there is one; a short envelope may still name segments.
        body_at = SHORT_HEADER_SIZE + HEAD_SIZE
        if len(parts[0]) > body_at:
            reduction.discard(memoryview(parts[0])[body_at:])
        return
    for part in parts[1:]:  # the first part is the head: size header and task or result head
        reduction.discard(part)


def frame_size(parts: list[Any]) -> int:
    """The number of bytes of a frame given as buffers."""
    return sum(map(len, parts))


def limit_frame(job_id: int, seconds: float) -> list[Any]:
    """The frame that gives job ``job_id`` a time limit per item (``task_timeout``) in the worker."""
    head = TASK_HEAD.pack(LIMIT, 0, job_id) + LIMIT_BODY.pack(seconds)
    return [message_header(len(head)) + head]


#: Tells a worker to exit; the same immutable buffers serve every worker.
STOP_FRAME: list[Any] = task_frame(STOP, 0, 0)

"""What travels on a worker's two pipes: fixed binary headers, then a pickle.

Every message is one frame of ``mp_core.connection``'s wire format (a size,
then the payload), so a worker reads with ``Connection.recv_bytes``.  The
payload starts with a small fixed header, read with ``struct`` before any
unpickling: a body that fails to unpickle can still be blamed on the right
task, and control messages cost no pickle at all.

Parent -> worker (``TASK_HEAD``: kind, task id, job id)::

    CALL     body = pickle of (func, args, kwds)          apply / apply_async
    MAP      body = pickle of the chunk's items           func: the job's FUNC
    STARMAP  body = pickle of the chunk's argument tuples func: the job's FUNC
    FUNC     body = pickle of the job's function          sent once per job and worker
    FORGET   no body                                       drop the job's function

Worker -> parent (``RESULT_HEAD``: task id, status, seconds spent)::

    OK       body = pickle of the value (a list for a chunk)
    ERROR    body = pickle of (exception, formatted traceback or None)
    READY    task id -1, no body: the initializer ran, tasks may follow
    INIT_FAILED  task id -1, body = pickle of (exception, traceback)
"""

from __future__ import annotations

import io
import struct
from typing import Any, Optional

from mp_core import reduction

__all__ = [
    "TASK_HEAD", "RESULT_HEAD", "CALL", "MAP", "STARMAP", "FUNC", "FORGET",
    "OK", "ERROR", "READY", "INIT_FAILED", "NO_TASK", "task_frame", "result_payload",
]

TASK_HEAD = struct.Struct("!Bqq")
RESULT_HEAD = struct.Struct("!qBd")

CALL, MAP, STARMAP, FUNC, FORGET = 1, 2, 3, 4, 5
OK, ERROR, READY, INIT_FAILED = 0, 1, 2, 3
NO_TASK = -1

_SHORT = struct.Struct("!i")
_LONG = struct.Struct("!iQ")
_MAX_SHORT = 0x7FFFFFFF
# Room for the longest size header in front of the payload, so that a frame
# is one contiguous buffer, written without joining header and payload.
_ROOM = _LONG.size


def task_frame(kind: int, task_id: int, job_id: int, body: Any = None, has_body: bool = False,
               serializer: Optional[reduction.Serializer] = None) -> memoryview:
    """A complete wire frame (size header included) for a parent -> worker message.

    Serialization errors propagate to the caller with the object named by
    ``mp_core.reduction``.
    """
    buf = io.BytesIO()
    buf.write(bytes(_ROOM))
    buf.write(TASK_HEAD.pack(kind, task_id, job_id))
    if has_body:
        (serializer or reduction.get_serializer()).dump(body, buf)
    view = buf.getbuffer()
    size = len(view) - _ROOM
    if size <= _MAX_SHORT:
        start = _ROOM - _SHORT.size
        _SHORT.pack_into(view, start, size)
        return view[start:]
    _LONG.pack_into(view, 0, -1, size)
    return view


def result_payload(task_id: int, status: int, elapsed: float, body: Any = None, has_body: bool = True,
                   serializer: Optional[reduction.Serializer] = None) -> memoryview:
    """The payload of a worker -> parent message (``Connection.send_bytes`` adds the size)."""
    buf = io.BytesIO()
    buf.write(RESULT_HEAD.pack(task_id, status, elapsed))
    if has_body:
        (serializer or reduction.get_serializer()).dump(body, buf)
    return buf.getbuffer()

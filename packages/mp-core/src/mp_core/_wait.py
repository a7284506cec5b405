"""``wait``: block until any of several connections, sockets or sentinels is ready."""

from __future__ import annotations

import math
import select
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, Iterable, Optional

__all__ = ["wait"]


def _fileno(obj: Any) -> int:
    return obj if isinstance(obj, int) else obj.fileno()


def wait(object_list: Iterable[Any], timeout: Optional[float] = None) -> list[Any]:
    """Wait until at least one object of ``object_list`` is ready; return the ready ones.

    Objects are ``Connection`` objects, sockets, process sentinels (plain
    ``int`` descriptors) and anything else with a ``fileno()`` method.  An
    object is ready when a read would not block: data has arrived, or the
    other end has closed (a process sentinel becomes ready when its process
    exits).  Ready objects are returned in the order of ``object_list``.
    Waits at most ``timeout`` seconds (``None``: without limit; ``0`` or
    less: not at all) and returns ``[]`` on timeout; with no objects at
    all it just waits out the timeout and returns ``[]``.  Signals do not cut the
    wait short unless their handler raises.
    """
    objects = list(object_list)
    if not objects:
        # Nothing can become ready: the wait is the timeout (as Python 3.15
        # specifies for every platform; select() refuses an empty set on
        # Windows).  time.sleep resumes after a signal with the time left.
        if timeout is None:
            while True:
                time.sleep(3600)
        time.sleep(max(timeout, 0.0))
        return []
    by_fd: dict[int, list[Any]] = {}
    for obj in objects:
        by_fd.setdefault(_fileno(obj), []).append(obj)
    deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
    while True:
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        try:
            ready = _ready_fds(by_fd, remaining)
        except InterruptedError:
            # Python retries EINTR itself (PEP 475); this covers runtimes that
            # do not, with the timeout recomputed from the deadline.
            continue
        break
    return [obj for obj in objects if _fileno(obj) in ready]


if hasattr(select, "poll"):
    _WANTED = select.POLLIN | select.POLLPRI

    def _ready_fds(fds: Iterable[int], timeout: Optional[float]) -> set[int]:
        poller = select.poll()
        for fd in fds:
            poller.register(fd, _WANTED)
        # poll() takes milliseconds; round up so a short wait is not a spin.
        events = poller.poll(None if timeout is None else math.ceil(timeout * 1000))
        # Any event counts: POLLHUP/POLLERR mean a read returns at once (EOF or
        # error), and POLLNVAL a closed descriptor, which must not hang us.
        return {fd for fd, _event in events}
else:  # pragma: no cover - Windows needs WaitForMultipleObjects; not implemented yet

    def _ready_fds(fds: Iterable[int], timeout: Optional[float]) -> set[int]:
        return set(select.select(list(fds), [], [], timeout)[0])

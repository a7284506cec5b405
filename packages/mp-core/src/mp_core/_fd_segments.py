"""Large buffers in anonymous memory files whose descriptors travel with the message (``Pipe()``).

Where the channel is a Unix socket pair whose ends are both ours (``Pipe()``,
duplex), a buffer above the out-of-band threshold is written once into a
memory file (``memfd_create``: no name anywhere, nothing in /dev/shm) and
its descriptor rides with the message (``SCM_RIGHTS``); the message refers
to it by its position among the message's descriptors, and the receiver
maps it: zero copies on receive, as with named segments
(``mp_core._segments``), which the other channels use::

    sender                                          receiver
    memfd_create, write the bytes once
    open a description of its own for this message
      (/proc/self/fd/N), shared flock on it
    sendmsg(frame, SCM_RIGHTS) ──────────────────── recvmsg: the description, with its lock
    close it                                        map it: the objects received are views on it

The kernel counts every reference: a descriptor in flight in the socket, a
descriptor or a mapping in any process (a forked child's included).  The
memory goes with the last of them, whoever dies first and however, so
there is nothing for the resource tracker to clean up and no name to leak.

Warm files: as with named segments, writing into a new memory file costs
the kernel more than the copy, so the process that created one keeps it for
its next buffer that fits (within ``_segments.warm_limit()`` bytes and
``_segments.WARM_SEGMENTS`` files, least recently used dropped first).  Its
own description holds no lock, and every message's description holds a
shared one for as long as it lives (in flight, or mapped by a receiver or
its forked children): an exclusive lock on the creator's description,
taken without waiting, succeeds only when none is left, and only then is
the file written again.

A received file's descriptor is kept while it is mapped (at most
``MAX_KEPT_DESCRIPTORS`` of them per process), so that a received array
sent on through a ``Pipe()`` travels by reference: one more description
of the same file, no copy.  Through a channel without descriptors (a
queue, a pool) it is copied into a named segment.

Bounded: the bytes of memory files sent through one connection since its
receiver was last seen to have read everything (``SIOCOUTQ`` at zero) are
limited by ``_segments.in_flight_limit()``; past it, a buffer goes through a
named segment, which has its own limit, and then in band.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import struct
import sys
import threading
import warnings

from . import _segments
from ._framing import MAX_FRAME_DESCRIPTORS

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, Optional, Tuple

    from ._out_of_band import Carrier

    #: ``(index among the message's descriptors, file size, offset of the buffer, its size in bytes)``.
    FdRef = Tuple[int, int, int, int]

__all__ = [
    "AVAILABLE",
    "FdSegmentMap",
    "MAX_DESCRIPTORS",
    "MAX_KEPT_DESCRIPTORS",
    "drop_warm",
    "enabled",
    "is_fd_segment",
    "receive",
    "set_enabled",
    "store",
    "store_reference",
    "trim_warm",
]

AVAILABLE = sys.platform.startswith("linux") and hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")
#: At most this many descriptors ride with one message; its further buffers go through named segments.
MAX_DESCRIPTORS = MAX_FRAME_DESCRIPTORS
#: At most this many received files keep their descriptor (to be sent on by reference); beyond, a
#: received file is only mapped, and its buffers are copied if sent on.
MAX_KEPT_DESCRIPTORS = 128

_MMAP_KWARGS: dict[str, bool] = {"trackfd": False} if sys.version_info >= (3, 13) else {}
_CLOEXEC = getattr(os, "MFD_CLOEXEC", 1)
_INT = struct.Struct("i")

_enabled = True
_lock = threading.Lock()
_kept = 0  # received files whose descriptor a FdSegmentMap keeps
_warm: list[_WarmFile] = []  # least recently used first
_warned = False


def set_enabled(flag: bool) -> None:
    """Whether this process sends large buffers through ``Pipe()`` as descriptors (else as named segments)."""
    global _enabled
    _enabled = bool(flag)


def enabled() -> bool:
    """What ``set_enabled`` set (default: true where memory files and /proc exist)."""
    return _enabled and AVAILABLE


class FdSegmentMap(mmap.mmap):
    """A mapping of a memory file received as a descriptor; what arrived out of band is a view on it.

    ``fd``: the received descriptor, kept while the mapping lives so the
    file can be sent on by reference (-1 when it was not kept).  The
    mapping itself keeps the file (and the lock of the message's
    description) alive, in this process and in forked children.
    """

    __slots__ = ("fd", "address")
    fd: int
    address: Optional[int]  # of the first byte, once ``_segments.locate`` needed it

    def __del__(self, _close: Any = os.close) -> None:
        fd = getattr(self, "fd", -1)
        if fd < 0:
            return
        self.fd = -1
        try:
            _forget_kept()
        except Exception:  # pragma: no cover - module globals gone at interpreter exit
            pass
        finally:
            _close(fd)


def _forget_kept() -> None:
    global _kept
    with _lock:
        _kept -= 1


_segments.register_mapping_type(FdSegmentMap)


def is_fd_segment(segment: Any) -> bool:
    return isinstance(segment, FdSegmentMap)


# ---------------------------------------------------------------- sending


def _description_for_message(fd: int) -> int:
    """A new open file description of the file ``fd`` refers to, with a shared lock: one message's."""
    message_fd = os.open(f"/proc/self/fd/{fd}", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.flock(message_fd, fcntl.LOCK_SH)
    except BaseException:
        os.close(message_fd)
        raise
    return message_fd


def _unread_bytes(fd: int) -> int:
    """The bytes written to the socket ``fd`` that its peer has not read yet (memory charged, an upper bound)."""
    import termios

    try:
        return int(_INT.unpack(fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0" * _INT.size))[0])
    except OSError:
        return 1  # unknown: assume something is unread


def _reserve(carrier: Carrier, nbytes: int) -> bool:
    limit = _segments.in_flight_limit()
    if carrier.in_flight + nbytes <= limit:
        return True
    if _unread_bytes(carrier.fd) == 0:
        carrier.in_flight = 0
        return nbytes <= limit
    return False


def store(view: memoryview, carrier: Carrier) -> Optional[FdRef]:
    """Copy the bytes of ``view`` (1-D, contiguous) into a memory file whose descriptor joins ``carrier.outgoing``.

    The file is a warm one of this process's that no one uses any more and
    that fits, or a new one (kept warm afterwards, within the limit).
    ``None`` when the buffer should take another way: descriptors are off or
    unavailable, the message has ``MAX_DESCRIPTORS`` already, the
    connection's in-flight bound is reached, or the kernel refused (warned
    once per process).
    """
    global _warned
    nbytes = view.nbytes
    if not (_enabled and AVAILABLE) or len(carrier.outgoing) >= MAX_DESCRIPTORS or not _reserve(carrier, nbytes):
        return None
    entry = _take_warm(nbytes)
    if entry is not None:
        try:
            entry.write(view)
            message_fd = _description_for_message(entry.fd)
        except OSError:
            _discard_warm(entry)
            entry = None
        else:
            with _lock:
                entry.busy = False
                if entry in _warm:  # the most recently used now
                    _warm.remove(entry)
                    _warm.append(entry)
            return _outgoing(carrier, message_fd, entry.size, nbytes)
    try:
        fd = os.memfd_create("mp-oob", _CLOEXEC)
        try:
            _segments._write_all(fd, view)
            message_fd = _description_for_message(fd)
        except BaseException:
            os.close(fd)
            raise
    except OSError as exc:
        if not _warned:
            _warned = True
            warnings.warn(
                f"a buffer of {nbytes} bytes could not go through a memory file ({type(exc).__name__}: {exc}); "
                "it and further ones take a named shared-memory segment (or the channel) instead",
                ResourceWarning,
                stacklevel=5,
            )
        return None
    if _segments.warm_limit() >= nbytes:
        _keep_warm(_WarmFile(fd, nbytes))
    else:
        os.close(fd)  # the message's description keeps the file
    return _outgoing(carrier, message_fd, nbytes, nbytes)


def _outgoing(carrier: Carrier, message_fd: int, size: int, nbytes: int, offset: int = 0) -> FdRef:
    carrier.outgoing.append(message_fd)
    carrier.in_flight += nbytes
    return (len(carrier.outgoing) - 1, size, offset, nbytes)


def store_reference(segment: FdSegmentMap, offset: int, nbytes: int, carrier: Carrier) -> Optional[FdRef]:
    """Send the received file ``segment`` on by reference: a new description of it, no copy (``None``: cannot)."""
    if segment.fd < 0 or not (_enabled and AVAILABLE) or len(carrier.outgoing) >= MAX_DESCRIPTORS:
        return None
    try:
        message_fd = _description_for_message(segment.fd)
    except OSError:
        return None
    carrier.outgoing.append(message_fd)  # (no new memory: not counted in flight)
    return (len(carrier.outgoing) - 1, len(segment), offset, nbytes)


# ---------------------------------------------------------------- warm files


class _WarmFile:
    """A memory file this process created and keeps for reuse: its descriptor (no lock) and, once reused, a mapping."""

    __slots__ = ("fd", "size", "mapping", "busy")

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self.mapping: Optional[mmap.mmap] = None
        self.busy = False

    def idle(self) -> bool:
        """Whether no message's description of the file is left (in flight or mapped anywhere)."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        return True

    def write(self, view: memoryview) -> None:
        mapping = self.mapping
        if mapping is None:
            mapping = self.mapping = mmap.mmap(self.fd, self.size, **_MMAP_KWARGS)
        # (Through a memoryview: PyPy's mmap takes only bytes in a slice assignment.)
        with memoryview(mapping) as target:
            target[: view.nbytes] = view if view.format == "B" else view.cast("B")

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if self.mapping is not None:
            self.mapping.close()
            self.mapping = None
        if fd >= 0:
            os.close(fd)


def _take_warm(nbytes: int) -> Optional[_WarmFile]:
    """An idle warm file of at least ``nbytes`` bytes (and at most twice that), marked busy."""
    if not _warm:
        return None
    with _lock:
        for entry in reversed(_warm):  # the most recently used first: its pages are likeliest mapped
            if entry.busy or not nbytes <= entry.size <= 2 * nbytes:
                continue
            if entry.idle():
                entry.busy = True
                return entry
    return None


def _discard_warm(entry: _WarmFile) -> None:
    with _lock:
        if entry in _warm:
            _warm.remove(entry)
    entry.close()


def _keep_warm(entry: _WarmFile) -> None:
    with _lock:
        _warm.append(entry)
    trim_warm(keep=entry)


def trim_warm(keep: Optional[_WarmFile] = None) -> None:
    """Close the least recently used warm files (not busy, not ``keep``) beyond the limits."""
    with _lock:
        dropped = _segments.take_surplus(_warm, keep)
    for entry in dropped:
        entry.close()


def drop_warm() -> None:
    """Close every warm file of this process (the memory goes with the last description in use)."""
    with _lock:
        dropped = [entry for entry in _warm if not entry.busy]
        for entry in dropped:
            _warm.remove(entry)
    for entry in dropped:
        entry.close()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    # The parent's warm files are the parent's to reuse: the child closes its
    # copies (its mapping of one is the parent's write mapping, never a view
    # the child uses).
    for entry in _warm:
        entry.close()
    _warm.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# ---------------------------------------------------------------- receiving


def receive(ref: FdRef, incoming: Optional[list[int]]) -> memoryview:
    """Map the memory file of ``ref`` (its descriptor taken from ``incoming``); return the view on the buffer."""
    global _kept
    index, size, offset, nbytes = ref
    if incoming is None or not 0 <= index < len(incoming) or incoming[index] < 0:
        raise _segments.SegmentLost(
            errno.EBADF,
            f"the memory file of an out-of-band buffer ({nbytes} bytes) did not arrive with its message: "
            "a message carrying descriptors is loaded by the Connection.recv() that reads it (recv_bytes() "
            "leaves them to the kernel, which closes them), and only once",
        )
    fd = incoming[index]
    incoming[index] = -1
    try:
        mapping = FdSegmentMap(fd, size, **_MMAP_KWARGS)
    except BaseException:
        os.close(fd)
        raise
    mapping.address = None
    with _lock:
        keep = _kept < MAX_KEPT_DESCRIPTORS
        if keep:
            _kept += 1
    if keep:
        mapping.fd = fd
    else:
        mapping.fd = -1
        os.close(fd)  # the mapping keeps the file (and the message's lock)
    view = memoryview(mapping)
    if offset or nbytes != size:
        return view[offset : offset + nbytes]
    return view

"""Shared-memory segments that carry large buffers between processes without copies.

The serialization layer (``mp_core._out_of_band``) puts a buffer above the
out-of-band threshold into a segment and the message carries a reference to
it (``Ref``); the receiver maps the segment and gets a view on it: zero
copies on receive, one (the sender's write) in all.

A segment is a file in /dev/shm with a name of its own (the *anchor*), and
one more hard link per message in flight that refers to it; so its link
count is one plus the messages in flight.  Every process that has it mapped
holds a shared ``flock`` on it (the lock lives as long as the descriptor,
which the mapping keeps)::

    sender                                     receiver
    tracker: REGISTER anchor, message name
    create the anchor, write the bytes once
    link the message name to it, close ─────── open the message name, lock (shared)
                                               unlink the message name; tracker: UNREGISTER it
                                               map: the objects received are views on it
                                               ...
                                               last view gone: lock (exclusive, no wait);
                                               got it and no message in flight (one link)?
                                               unlink the anchor; tracker: UNREGISTER it

So a segment lives while an object or view on it lives in any process and
while a message refers to it, and its name goes with the last of them.  A
buffer that already lies in a mapped segment (an array received earlier, or
one made with ``multiprocess.shared_memory.ndarray``) travels by reference:
one more message name is linked to the anchor, nothing is copied.

What a crash can leave: names in flight (a message sent and never
received) and the anchor of a segment whose last user was killed; the
resource tracker unlinks those when the program ends (its ``oob_segment``
type).  A dead process's mappings go with it.  (Two last users that let go
at the very same moment can each see the other's lock; the anchor then also
waits for the tracker.)

Warm segments: writing a large buffer into a new tmpfs file costs far more
than the copy itself (the kernel allocates and zeroes every page, and frees
them all when the last user lets go: 200 MB takes ~5 times a memcpy to write
and ~2 times to free).  So the process that created a segment with ``store``
keeps it, mapped and with its own shared lock, for the next buffer that fits
(a *warm* segment): while it holds its lock no receiver ever unlinks the
anchor, and it reuses the segment only once no other process has it locked
(an exclusive lock taken without waiting) and no message refers to it (one
link).  At most ``warm_limit()`` bytes in at most four segments are kept
per process (by default 256 MiB in the program's main process and none in
the processes it starts, which a signal may stop: see there; ``0`` turns
it off); the least recently used go first, and all of them when the
process ends (or at ``drop_warm()``).  They are files in /dev/shm while
kept: the resource tracker removes them if the process is killed.  When a
warm segment comes back to its creator (a worker returns the array it was
sent), the view handed out is one on the creator's own mapping (a
*lease*, counted while it lives), whose pages are mapped already.

Bounded: the bytes of the segments a process published and that were not
received yet are limited (``set_in_flight_limit``, 1 GiB by default); past
the limit a buffer goes in band, where the channel's own flow control
holds the sender back, so a producer faster than its consumer cannot fill
/dev/shm.  A full /dev/shm (``ENOSPC``) also sends in band, with a warning.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import sys
import threading
import warnings
import weakref
from collections import deque

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, Optional, Tuple, Union

    #: ``(message name, anchor name, file size, offset of the buffer, its size in bytes)``.
    Ref = Tuple[str, str, int, int, int]
    #: What a view can lie in: a mapping made on receipt, or one of our warm segments (a lease on it).
    Segment = Union["SegmentMap", "_Warm"]

__all__ = [
    "SegmentMap",
    "RTYPE",
    "store",
    "store_reference",
    "receive",
    "release",
    "unlink",
    "locate",
    "segment_of",
    "new_segment",
    "set_in_flight_limit",
    "in_flight_limit",
    "set_warm_limit",
    "warm_limit",
    "drop_warm",
    "SegmentLost",
]

#: The resource tracker's type for a segment name in flight.
RTYPE = "oob_segment"
SHM_DIR = "/dev/shm"

_AVAILABLE = os.name == "posix" and os.path.isdir(SHM_DIR)
_MMAP_KWARGS: dict[str, bool] = {"trackfd": False} if sys.version_info >= (3, 13) else {}

DEFAULT_IN_FLIGHT_LIMIT = 1 << 30
_in_flight_limit = DEFAULT_IN_FLIGHT_LIMIT
_lock = threading.Lock()
_pending: deque[tuple[str, int]] = deque()  # names this process published, not known to be received
_pending_bytes = 0
_warned_in_band = False

DEFAULT_WARM_LIMIT = 256 << 20
WARM_SEGMENTS = 4  # at most this many warm segments per process
_warm_limit: Optional[int] = None  # ``None``: the default, which depends on the process (``warm_limit``)
_warm_lock = threading.Lock()
_warm: list[_Warm] = []  # least recently used first


class SegmentLost(OSError):
    """A message refers to a segment that no longer exists (received already, or cleaned up)."""


class SegmentMap(mmap.mmap):
    """A mapping of a whole segment; what arrives out of band is a view on one.

    Holds the segment's descriptor (``fd``, -1 once closed), with its shared
    lock, and its anchor name (``anchor``); when the mapping is collected
    (no object or view uses it any more) the descriptor is closed, and the
    anchor unlinked if this was the segment's last user.
    """

    __slots__ = ("fd", "anchor", "address")
    fd: int
    anchor: str
    address: Optional[int]  # of the first byte, once ``locate`` needed it

    def __del__(self) -> None:
        fd = getattr(self, "fd", -1)
        if fd < 0:
            return
        self.fd = -1
        try:
            _let_go(fd, self.anchor)
        except Exception:  # pragma: no cover - interpreter shutdown: the tracker cleans up
            pass
        finally:
            os.close(fd)


def _let_go(fd: int, anchor: str) -> None:
    """Unlink ``anchor`` if no other process has the segment and no message refers to it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # someone else has it mapped: theirs to let go
    if os.fstat(fd).st_nlink != 1:
        return  # a message in flight refers to it (or the anchor is gone already)
    try:
        os.unlink(os.path.join(SHM_DIR, anchor))
    except FileNotFoundError:  # pragma: no cover - the tracker was quicker
        pass
    _tracker()._unregister_if_running(anchor, RTYPE)


def _map(fd: int, size: int, anchor: str) -> SegmentMap:
    mapping = SegmentMap(fd, size, **_MMAP_KWARGS)
    mapping.fd = fd
    mapping.anchor = anchor
    mapping.address = None
    _live.add(mapping)
    if not _exit_hook:
        _install_exit_hook()
    return mapping


def release(view: memoryview) -> None:
    """Let go of the segment of ``view`` now, if nothing else uses its mapping (``view`` is released).

    For a buffer copied out on arrival (``bytes``, ``bytearray``): without
    reference counting (PyPy) the mapping would otherwise wait for a
    collection, or for ever in a process that exits first.
    """
    mapping = view.obj
    view.release()
    if not isinstance(mapping, SegmentMap):
        return
    try:
        mapping.close()
    except BufferError:
        return  # another view uses it: collected with the last one
    _let_go_of(mapping)


def _let_go_of(mapping: SegmentMap) -> None:
    fd = mapping.fd
    if fd < 0:
        return
    mapping.fd = -1
    try:
        _let_go(fd, mapping.anchor)
    finally:
        os.close(fd)


# The mappings this process holds: let go of at exit (the views die with the
# process, and an exiting interpreter does not always collect them first).
_live: weakref.WeakSet[SegmentMap] = weakref.WeakSet()
_exit_hook = False


def _install_exit_hook() -> None:
    global _exit_hook
    from . import util

    _exit_hook = True
    util.Finalize(None, _let_go_of_all, exitpriority=0)


def _let_go_of_all() -> None:
    for mapping in list(_live):
        try:
            _let_go_of(mapping)
        except Exception:  # pragma: no cover - the tracker cleans up what is left
            pass
    drop_warm()
    _let_go_of_inherited()


# ---------------------------------------------------------------- in-flight accounting


def set_in_flight_limit(nbytes: int) -> None:
    """Limit the bytes of segments this process has sent and that were not received yet."""
    global _in_flight_limit
    if nbytes < 0:
        raise ValueError(f"in-flight limit must be >= 0, not {nbytes!r}")
    _in_flight_limit = nbytes


def in_flight_limit() -> int:
    """The limit ``set_in_flight_limit`` set (default 1 GiB)."""
    return _in_flight_limit


def _reserve(nbytes: int) -> bool:
    """Whether ``nbytes`` more may be put in flight; forgets names their receivers took."""
    global _pending_bytes
    with _lock:
        if _pending_bytes + nbytes <= _in_flight_limit:
            return True
        # A receiver unlinks the name as it maps the segment: a name gone is
        # a segment received (or cleaned up).
        kept: deque[tuple[str, int]] = deque()
        total = 0
        for name, size in _pending:
            if os.path.lexists(os.path.join(SHM_DIR, name)):
                kept.append((name, size))
                total += size
        _pending.clear()
        _pending.extend(kept)
        _pending_bytes = total
        return total + nbytes <= _in_flight_limit


def _note_pending(name: str, nbytes: int) -> None:
    global _pending_bytes
    with _lock:
        _pending.append((name, nbytes))
        _pending_bytes += nbytes


def _forget_pending_after_fork() -> None:
    global _lock, _warm_lock, _warm_limit, _pending_bytes, _exit_hook
    _lock = threading.Lock()
    _warm_lock = threading.Lock()
    _warm_limit = None  # a setting is the process's own: the child has its default
    _pending.clear()
    _pending_bytes = 0
    # The parent's warm segments are the parent's to reuse (their locks are
    # on descriptions the parent keeps): the child only closes its copies.
    for entry in _warm:
        entry.forget()
    _warm.clear()
    # A forked child shares its parent's descriptors, and so their locks: the
    # child takes a lock of its own on each segment it inherited a view of,
    # so that the segment's creator does not reuse it under the child's
    # views once the parent lets go.  One whose anchor is gone (no longer
    # reusable) keeps its memory through the inherited mapping alone.
    for mapping in list(_live):
        fd, mapping.fd = mapping.fd, -1
        if fd < 0:
            continue
        mapping.fd = _own_lock(mapping.anchor)
        os.close(fd)
    _exit_hook = False  # the parent's Finalize is not the child's (``_after_fork`` installs the child's)


def _after_fork(_: object) -> None:
    """In a child started by fork (after its finalizers were reset): let go of what it holds at its exit."""
    if len(_live) or _inherited:
        _install_exit_hook()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pending_after_fork)


def _register_after_fork() -> None:
    from . import util

    util.register_after_fork(_after_fork, _after_fork)


_register_after_fork()


# ---------------------------------------------------------------- names


def _new_name() -> str:
    from . import process

    prefix = process.current_process()._config.get("shmprefix") or "/psm_"
    return f"{prefix.lstrip('/')}oob_{os.urandom(8).hex()}"


def _tracker() -> Any:
    from . import resource_tracker

    return resource_tracker._resource_tracker


def _link_message_name(anchor: str) -> str:
    """A new name for the segment ``anchor`` names, for one message, known to the tracker."""
    name = _new_name()
    tracker = _tracker()
    # Registered before it exists: a crash in between leaves the tracker a
    # name to unlink that is not there, never a file nobody knows about.
    tracker.register(name, RTYPE)
    try:
        os.link(os.path.join(SHM_DIR, anchor), os.path.join(SHM_DIR, name))
    except BaseException:
        tracker._unregister_if_running(name, RTYPE)
        raise
    return name


def _create(nbytes: int) -> tuple[int, str]:
    """A new segment file of ``nbytes`` bytes (zero-filled, pages allocated): ``(fd, anchor)``."""
    anchor = _new_name()
    tracker = _tracker()
    tracker.register(anchor, RTYPE)
    path = os.path.join(SHM_DIR, anchor)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    except BaseException:
        tracker._unregister_if_running(anchor, RTYPE)
        raise
    return fd, anchor


def _remove(fd: int, anchor: str) -> None:
    os.close(fd)
    try:
        os.unlink(os.path.join(SHM_DIR, anchor))
    except FileNotFoundError:  # pragma: no cover
        pass
    _tracker()._unregister_if_running(anchor, RTYPE)


def _write_all(fd: int, view: memoryview) -> None:
    offset, size = 0, view.nbytes
    while offset < size:
        offset += os.pwrite(fd, view[offset:], offset)


# ---------------------------------------------------------------- sending


def new_segment(nbytes: int) -> SegmentMap:
    """A new, zero-filled segment of ``nbytes`` bytes, mapped in this process.

    What lives in it travels by reference.  Raises ``OSError`` (``ENOSPC``
    when /dev/shm is full), ``ValueError`` for a size < 1.
    """
    if nbytes < 1:
        raise ValueError(f"a segment needs at least one byte, not {nbytes!r}")
    if not _AVAILABLE:  # pragma: no cover - not POSIX
        raise NotImplementedError(f"shared-memory segments need {SHM_DIR}")
    fd, anchor = _create(nbytes)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        # Allocates the pages now: ENOSPC here, never SIGBUS on first touch.
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, 0, nbytes)
        else:  # pragma: no cover - macOS
            os.ftruncate(fd, nbytes)
        return _map(fd, nbytes, anchor)
    except BaseException:
        _remove(fd, anchor)
        raise


def store(view: memoryview) -> Optional[Ref]:
    """Copy the bytes of ``view`` (1-D, contiguous) into a segment and name it for a receiver.

    The segment is a warm one of this process's that no one uses any more
    and that fits, or a new one (kept warm afterwards, within the limit).
    ``None`` when the buffer should go in band instead: the in-flight limit
    is reached, or /dev/shm is full (warned once per process) or refuses.
    """
    nbytes = view.nbytes
    if not _AVAILABLE or not _reserve(nbytes):
        return None
    entry = _take_warm(nbytes)
    if entry is not None:
        ref = _store_warm(entry, view)
        if ref is not None:
            return ref
    keep = warm_limit() >= nbytes
    try:
        fd, anchor = _create(nbytes)
        try:
            if keep:
                # Before any receiver can see it: with our lock held, no
                # receiver unlinks the anchor of a segment we will reuse.
                fcntl.flock(fd, fcntl.LOCK_SH)
            _write_all(fd, view)
            name = _link_message_name(anchor)
        except BaseException:
            _remove(fd, anchor)
            raise
    except OSError as exc:
        _warn_in_band(nbytes, exc)
        return None
    if keep:
        _keep_warm(_Warm(fd, anchor, nbytes))
    else:
        os.close(fd)
    _note_pending(name, nbytes)
    return (name, anchor, nbytes, 0, nbytes)


# ---------------------------------------------------------------- warm segments


class _Warm:
    """A segment this process created and keeps for reuse: its descriptor (with our shared lock) and anchor.

    ``mapping`` is made at the first reuse: writing through a mapping whose
    pages are already mapped is ~4 times faster than ``pwrite``, but mapping
    them costs as much as ``pwrite`` once.  ``busy``: taken by a ``store``
    (another thread must not write into it too).
    """

    __slots__ = ("fd", "anchor", "size", "mapping", "busy", "leases", "dropped", "address")

    def __init__(self, fd: int, anchor: str, size: int) -> None:
        self.fd = fd
        self.anchor = anchor
        self.size = size
        self.mapping: Optional[mmap.mmap] = None
        self.busy = False
        self.leases = 0  # views on ``mapping`` handed out by ``receive`` that are still alive
        self.dropped = False  # given up while leased: let go when the last lease ends
        self.address: Optional[int] = None  # of the first byte, once ``locate`` needed it

    def __len__(self) -> int:
        return self.size

    def ensure_mapped(self) -> mmap.mmap:
        mapping = self.mapping
        if mapping is None:
            mapping = self.mapping = mmap.mmap(self.fd, self.size, **_MMAP_KWARGS)
        return mapping

    def idle(self) -> Optional[bool]:
        """Whether no other process has it locked and no message refers to it (``None``: its anchor is gone)."""
        fd = self.fd
        try:
            # Converting our shared lock to an exclusive one succeeds only
            # when no other description holds a lock on the file.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            # A failed conversion drops our shared lock (flock(2)): take it
            # back.  In between, a receiver letting go may have removed the
            # anchor (the link count says so).
            fcntl.flock(fd, fcntl.LOCK_SH)
            return None if os.fstat(fd).st_nlink == 0 else False
        try:
            links = os.fstat(fd).st_nlink
        finally:
            fcntl.flock(fd, fcntl.LOCK_SH)
        return True if links == 1 else (None if links == 0 else False)

    def write(self, view: memoryview) -> None:
        # (Through a memoryview: PyPy's mmap takes only bytes in a slice assignment.)
        with memoryview(self.ensure_mapped()) as target:
            target[: view.nbytes] = view if view.format == "B" else view.cast("B")

    def forget(self) -> None:
        """In a forked child: the parent's to reuse.  Close our copies (inherited views keep a lock of the child's)."""
        fd, self.fd = self.fd, -1
        if self.leases:
            # Views on the mapping live on in the child: like an inherited
            # received segment, it holds a lock of its own while they do.
            _hold_inherited(self.anchor)
        elif self.mapping is not None:
            self.mapping.close()
        self.mapping = None
        if fd >= 0:
            os.close(fd)

    def drop(self) -> None:
        """No longer ours to reuse: unlink it if no one else uses it (else the last user does).

        While views on it live in this process (leases), the mapping and our
        lock stay: the last lease lets go.
        """
        if self.leases:
            self.dropped = True
            return
        fd, self.fd = self.fd, -1
        if fd < 0:
            return
        if self.mapping is not None:
            try:
                self.mapping.close()
            except BufferError:  # pragma: no cover - a lease being made right now: unmapped at exit
                pass
            self.mapping = None
        try:
            _let_go(fd, self.anchor)
        finally:
            os.close(fd)


def _take_warm(nbytes: int) -> Optional[_Warm]:
    """An idle warm segment of at least ``nbytes`` bytes (and at most twice that), marked busy."""
    if not _warm:
        return None
    gone: list[_Warm] = []
    chosen = None
    with _warm_lock:
        for entry in reversed(_warm):  # the most recently used first: its pages are likeliest mapped
            if entry.busy or entry.leases or not nbytes <= entry.size <= 2 * nbytes:
                continue
            try:
                state = entry.idle()
            except OSError:
                state = None
            if state is None:
                gone.append(entry)
            elif state:
                entry.busy = True
                chosen = entry
                break
        for entry in gone:
            _warm.remove(entry)
    for entry in gone:
        entry.forget()  # (its anchor is gone: nothing to unlink)
    return chosen


def _store_warm(entry: _Warm, view: memoryview) -> Optional[Ref]:
    """Write ``view`` into the idle warm segment ``entry`` and name it for a receiver (``None``: could not)."""
    try:
        entry.write(view)
        name = _link_message_name(entry.anchor)
    except Exception:
        # Not reusable after all (a failed mapping...): a new segment instead.
        with _warm_lock:
            if entry in _warm:
                _warm.remove(entry)
            entry.busy = False
        entry.drop()
        return None
    except BaseException:
        with _warm_lock:
            entry.busy = False
        raise
    with _warm_lock:
        entry.busy = False
        if entry in _warm:  # the most recently used now
            _warm.remove(entry)
            _warm.append(entry)
    _note_pending(name, view.nbytes)
    return (name, entry.anchor, entry.size, 0, view.nbytes)


def _keep_warm(entry: _Warm) -> None:
    """Keep the new segment ``entry`` for reuse, dropping the least recently used beyond the limits."""
    with _warm_lock:
        _warm.append(entry)
    _trim_warm(keep=entry)
    if not _exit_hook:
        _install_exit_hook()


def _trim_warm(keep: Optional[_Warm] = None) -> None:
    """Drop the least recently used warm segments (not busy, not ``keep``) beyond the limits."""
    with _warm_lock:
        dropped = take_surplus(_warm, keep)
    for kept in dropped:
        kept.drop()


def take_surplus(entries: list[Any], keep: Any = None) -> list[Any]:
    """Remove from ``entries`` those beyond ``warm_limit()`` bytes and ``WARM_SEGMENTS`` entries; return them.

    ``entries`` are kept entries, least recently used first, each with a
    ``size`` and a ``busy`` flag; ``keep`` and busy ones stay.  The caller
    holds the lock that guards ``entries`` (memory files for descriptors
    keep a list of their own: ``mp_core._fd_segments``).
    """
    dropped = []
    total = sum(entry.size for entry in entries)
    limit = warm_limit()
    for entry in list(entries):
        if total <= limit and len(entries) <= WARM_SEGMENTS:
            break
        if entry is keep or entry.busy:
            continue
        entries.remove(entry)
        total -= entry.size
        dropped.append(entry)
    return dropped


def set_warm_limit(nbytes: Optional[int]) -> None:
    """Keep at most ``nbytes`` of warm segments in this process (``0``: none, ``None``: the default).

    The surplus is dropped now.
    """
    global _warm_limit
    if nbytes is not None and nbytes < 0:
        raise ValueError(f"warm limit must be >= 0, not {nbytes!r}")
    _warm_limit = nbytes
    _trim_warm()
    fd_segments = sys.modules.get(__package__ + "._fd_segments")
    if fd_segments is not None:
        fd_segments.trim_warm()


def warm_limit() -> int:
    """The limit ``set_warm_limit`` set in this process, else the default.

    The default is 256 MiB in a program's main process and 0 in the
    processes it starts (workers, children): a child can be stopped by a
    signal (``terminate()``, a pool's end, a task's timeout), and the warm
    segments of a process killed that way would stay in /dev/shm until the
    program ends.
    """
    limit = _warm_limit
    if limit is None:
        from . import process

        limit = DEFAULT_WARM_LIMIT if process.parent_process() is None else 0
    return limit


def drop_warm() -> None:
    """Give up every warm segment of this process: each is unlinked now, or by its last user.

    Memory files kept for descriptors (``mp_core._fd_segments``) go too.
    """
    fd_segments = sys.modules.get(__package__ + "._fd_segments")
    if fd_segments is not None:
        fd_segments.drop_warm()
    with _warm_lock:
        dropped = [entry for entry in _warm if not entry.busy]
        for entry in dropped:
            _warm.remove(entry)
    for entry in dropped:
        try:
            entry.drop()
        except OSError:  # pragma: no cover - the tracker cleans up what is left
            pass


def _warm_entry(anchor: str) -> Optional[_Warm]:
    """This process's warm segment named ``anchor``, leased once more (``None``: not one of ours)."""
    if not _warm:
        return None
    with _warm_lock:
        for entry in _warm:
            if entry.anchor == anchor and entry.fd >= 0:
                entry.leases += 1
                return entry
    return None


_lease_types: dict[int, type] = {}
# A lease is counted while the views on it live, which needs a memoryview
# that refers to the lease itself: PyPy's refers to an internal buffer
# (and the lease would be collected under the views), so there, a segment
# that comes back is mapped anew, as any other.
_LEASES = sys.implementation.name == "cpython"


def _lease(entry: _Warm, offset: int, nbytes: int) -> memoryview:
    """A view on ``entry``'s own mapping (its pages are mapped already), counted until it is collected.

    The view's exporter is a ctypes array over the mapping: a buffer
    whose death we can observe (a memoryview cannot be weakly referenced),
    and that keeps the mapping from being closed while it lives.
    """
    try:
        mapping = entry.ensure_mapped()
        kind = _lease_types.get(entry.size)
        if kind is None:
            import ctypes

            kind = type("SegmentLease", (ctypes.c_char * entry.size,), {})
            if len(_lease_types) >= WARM_SEGMENTS:
                _lease_types.clear()
            _lease_types[entry.size] = kind
        lease = kind.from_buffer(mapping)  # type: ignore[attr-defined]
        lease.warm = entry
        weakref.finalize(lease, _lease_ended, entry)
    except BaseException:
        _lease_ended(entry)
        raise
    view = memoryview(lease).cast("B")
    if offset or nbytes != entry.size:
        return view[offset : offset + nbytes]
    return view


def _lease_ended(entry: _Warm) -> None:
    with _warm_lock:
        entry.leases -= 1
        last = entry.leases == 0 and entry.dropped
    if last:
        entry.dropped = False
        entry.drop()


# Views a forked child inherited on its parent's warm segments: the child's own locks
# (descriptor: anchor), let go at its exit.
_inherited: dict[int, str] = {}


def _own_lock(anchor: str) -> int:
    """A descriptor of our own on the segment ``anchor`` names, with a shared lock (-1: the anchor is gone)."""
    try:
        fd = os.open(os.path.join(SHM_DIR, anchor), os.O_RDWR)
    except OSError:
        return -1
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def _hold_inherited(anchor: str) -> None:
    fd = _own_lock(anchor)
    if fd >= 0:
        _inherited[fd] = anchor


def _let_go_of_inherited() -> None:
    while _inherited:
        fd, anchor = _inherited.popitem()
        try:
            _let_go(fd, anchor)
        except Exception:  # pragma: no cover - the tracker cleans up what is left
            pass
        finally:
            os.close(fd)


def store_reference(segment: Segment, offset: int, nbytes: int) -> Optional[Ref]:
    """Name ``segment`` again for a receiver of the buffer at ``offset``: no copy (``None``: not possible)."""
    if segment.fd < 0:
        return None
    try:
        name = _link_message_name(segment.anchor)
    except OSError:
        return None  # the anchor is gone (the tracker of a program that ended): copy
    return (name, segment.anchor, len(segment), offset, nbytes)


def _warn_in_band(nbytes: int, exc: OSError) -> None:
    global _warned_in_band
    if _warned_in_band:
        return
    _warned_in_band = True
    reason = "/dev/shm is full" if exc.errno in (errno.ENOSPC, errno.ENOMEM) else f"{type(exc).__name__}: {exc}"
    warnings.warn(
        f"a buffer of {nbytes} bytes was sent in band (copied through the channel) instead of through "
        f"shared memory: {reason}; further buffers in this process fall back the same way without a warning",
        ResourceWarning if exc.errno not in (errno.ENOSPC, errno.ENOMEM) else RuntimeWarning,
        stacklevel=4,
    )


# ---------------------------------------------------------------- receiving


def receive(ref: Ref) -> memoryview:
    """Map the segment ``ref`` names, take its name away, and return the view on the buffer.

    A message is received once: a second ``receive`` of the same reference
    raises ``SegmentLost``.
    """
    name, anchor, size, offset, nbytes = ref
    path = os.path.join(SHM_DIR, name)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        raise SegmentLost(
            errno.ENOENT,
            f"the shared-memory segment of an out-of-band buffer ({nbytes} bytes) is gone: a message "
            "carrying large buffers can be received once, and the resource tracker removes what is "
            "left at the end of the program",
            path,
        ) from None
    entry = _warm_entry(anchor) if _LEASES else None
    if entry is not None:
        # One of our warm segments came back (a worker returned the array
        # we sent it): a view on the mapping we write through, whose pages
        # are mapped already, and no new mapping to fault in page by page.
        try:
            os.unlink(path)
        except FileNotFoundError:  # pragma: no cover - a racing receiver of a copied message
            pass
        finally:
            os.close(fd)
        try:
            _tracker()._unregister_if_running(name, RTYPE)
        except Exception:  # pragma: no cover - a reentrant call: the tracker's cleanup tolerates it
            pass
        return _lease(entry, offset, nbytes)
    try:
        # Held while this process has the segment mapped: whoever lets go
        # last sees no other lock and removes the anchor.
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            os.unlink(path)
        except FileNotFoundError:  # pragma: no cover - a racing receiver of a copied message
            pass
        mapping = _map(fd, size, anchor)
    except BaseException:
        os.close(fd)
        raise
    try:
        _tracker()._unregister_if_running(name, RTYPE)
    except Exception:  # pragma: no cover - a reentrant call: the tracker's cleanup tolerates it
        pass
    view = memoryview(mapping)
    if offset or nbytes != size:
        return view[offset : offset + nbytes]
    return view


def unlink(ref: Ref) -> None:
    """Remove the message name ``ref`` carries (a message that will not be received), and the segment if unused."""
    name, anchor = ref[0], ref[1]
    path = os.path.join(SHM_DIR, name)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return  # received after all, or cleaned up
    try:
        os.unlink(path)
        _tracker()._unregister_if_running(name, RTYPE)
        _let_go(fd, anchor)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- where a buffer lives


# What a mapping of a segment can be: ours, and a memory file received as a
# descriptor (mp_core._fd_segments adds its type when it is first used).
_MAPPING_TYPES: tuple[type, ...] = (SegmentMap,)


def register_mapping_type(kind: type) -> None:
    """Let ``segment_of`` and ``locate`` find views on mappings of type ``kind`` too."""
    global _MAPPING_TYPES
    if kind not in _MAPPING_TYPES:
        _MAPPING_TYPES = (*_MAPPING_TYPES, kind)


def segment_of(obj: Any) -> Optional[Segment]:
    """The segment whose memory ``obj`` is a view on (NumPy ``base`` chain, memoryviews); else ``None``."""
    for _ in range(64):  # chains are short; a cycle must not hang us
        if obj is None:
            return None
        if isinstance(obj, _MAPPING_TYPES):
            # (a registered type has what callers use of a SegmentMap: fd, address, len)
            return obj  # type: ignore[return-value]
        warm = getattr(obj, "warm", None)
        if isinstance(warm, _Warm):  # a lease (``_lease``): the warm segment it is a view on
            return warm
        if isinstance(obj, memoryview):
            obj = obj.obj
        else:
            obj = getattr(obj, "base", None)
    return None


def _address(view: memoryview) -> Optional[int]:
    """The address of the first byte of ``view``, where it can be learnt without copying."""
    numpy = sys.modules.get("numpy")
    try:
        if numpy is not None:
            return int(numpy.frombuffer(view, numpy.uint8).__array_interface__["data"][0])
        if not view.readonly:
            import ctypes

            probe = ctypes.c_char.from_buffer(view)
            try:
                return ctypes.addressof(probe)
            finally:
                del probe
    except (TypeError, ValueError, BufferError):
        pass
    return None


def locate(view: memoryview) -> Optional[tuple[Segment, int]]:
    """``(segment, offset)`` if the bytes of ``view`` (1-D, contiguous) lie in one of our segments."""
    segment = segment_of(view.obj)
    if segment is None or segment.fd < 0:
        return None
    size = len(segment)
    if view.nbytes == size:
        return segment, 0  # the whole of it: nothing else fits
    if segment.address is None:
        exporter = segment.mapping if isinstance(segment, _Warm) else segment
        if exporter is None:
            return None
        with memoryview(exporter) as whole:
            segment.address = _address(whole)
    start = _address(view)
    if start is None or segment.address is None:
        return None
    offset = start - segment.address
    if 0 <= offset and offset + view.nbytes <= size:
        return segment, offset
    return None

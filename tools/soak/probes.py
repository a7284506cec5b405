"""What the soak reads about a process: memory, descriptors, threads, children, files of the run."""

from __future__ import annotations

import ctypes
import gc
import os
import threading
from dataclasses import dataclass, field
from typing import Callable, FrozenSet, Iterable, List, Optional

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident memory of this process (``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def _load_malloc_trim() -> Optional[Callable[[int], int]]:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None


_malloc_trim = _load_malloc_trim()


def settled_rss_bytes() -> int:
    """Resident memory once garbage is collected and free heap pages are returned to the system.

    What a leak keeps is still counted; what the allocator merely cached
    (glibc keeps freed memory for reuse) is not, which makes successive
    readings comparable.
    """
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)
    return rss_bytes()


def open_fds() -> int:
    """Open descriptors of this process (the listing's own descriptor not counted)."""
    return len(os.listdir("/proc/self/fd")) - 1


def thread_count() -> int:
    return threading.active_count()


def _stat_fields(pid: int) -> List[str]:
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # The command name may hold spaces and parentheses: split after it.
    return stat[stat.rindex(")") + 2 :].split()


def _living_pids(field: int, value: int) -> FrozenSet[int]:
    """Pids of the non-zombie processes whose /proc stat field ``field`` (after the name) is ``value``."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat_fields(int(entry))
        except (OSError, ValueError, IndexError):
            continue
        if int(fields[field]) == value and fields[0] != "Z":
            found.add(int(entry))
    return frozenset(found)


def living_children(parent: int) -> FrozenSet[int]:
    """Pids of ``parent``'s children that are not zombies."""
    return _living_pids(1, parent)  # ppid


def session_members(sid: int) -> FrozenSet[int]:
    """Pids of the living (non-zombie) processes of session ``sid``."""
    return _living_pids(3, sid)  # session id


def shm_entries(prefixes: Iterable[str]) -> FrozenSet[str]:
    """Entries of ``/dev/shm`` whose names start with one of ``prefixes``."""
    prefixes = tuple(prefixes)
    try:
        names = os.listdir("/dev/shm")
    except OSError:
        return frozenset()
    return frozenset(name for name in names if name.startswith(prefixes))


def files_under(root: str) -> FrozenSet[str]:
    """Every file and directory below ``root``, as paths relative to it."""
    found = set()
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(folder, name), root))
    return frozenset(found)


@dataclass(frozen=True)
class Snapshot:
    """One reading of the process and of what the run has made."""

    rss: int
    fds: int
    threads: int
    children: FrozenSet[int] = field(default_factory=frozenset)
    shm: FrozenSet[str] = field(default_factory=frozenset)
    tmp: FrozenSet[str] = field(default_factory=frozenset)


def snapshot(shm_prefixes: Iterable[str], tmp_root: str) -> Snapshot:
    return Snapshot(
        rss=settled_rss_bytes(),
        fds=open_fds(),
        threads=thread_count(),
        children=living_children(os.getpid()),
        shm=shm_entries(shm_prefixes),
        tmp=files_under(tmp_root),
    )

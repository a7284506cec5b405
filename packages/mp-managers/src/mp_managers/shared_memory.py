"""Named shared memory: ``SharedMemory`` blocks and ``ShareableList``.

A ``SharedMemory`` is a POSIX shared-memory segment (``/dev/shm/psm_*`` on
Linux) mapped into this process.  Any process that knows its name can
attach to it; it exists until someone calls ``unlink()``.  A segment this
process creates or attaches to is registered with the resource tracker
(unless ``track=False``), which unlinks it if every process of the program
dies without doing so, killed or not.  The processes of one program share
one tracker; an unrelated program that attaches has its own, which unlinks
the segment when that program ends -- such a program passes
``track=False`` (Python 3.13's parameter, on every version).

``ShareableList`` keeps a fixed-length list of ``int``, ``float``, ``bool``,
``str``, ``bytes`` and ``None`` in one segment, in the standard library's
layout (so both can attach to each other's lists)::

    offset 0            n, the number of items                  (int64)
    8                   n + 1 cumulative data offsets           (int64 each)
    8 * (n + 2)         the items' data, 8-byte slots; str and bytes take
                        their encoded length rounded up to the next 8 bytes
    after the data      each item's struct format               (8 bytes each)
    after the formats   each item's decoding: 0 plain, 1 str,   (int8 each)
                        2 bytes, 3 None
"""

from __future__ import annotations

import functools
import mmap
import operator
import os
import struct
import sys
import types
from typing import Any, Iterable, Iterator, Literal, Optional

from mp_core import process

__all__ = ["SharedMemory", "ShareableList", "ndarray"]

if sys.platform != "win32":
    import _posixshmem

_USE_POSIX = os.name == "posix"
# Default names stay within 14 characters ("/psm_" + 8 hex digits): macOS's limit is 31.
_SHM_NAME_PREFIX = "/psm_"
_SHM_SAFE_NAME_LENGTH = 14
_MODE = 0o600


def ndarray(shape: Any, dtype: Any = float, order: Literal["C", "F"] = "C") -> Any:
    """A new zero-filled NumPy array that lives in shared memory: sent anywhere without a copy.

    Through any channel (``Pipe``, queues, pool arguments and results,
    manager calls) the array, or a contiguous slice of it, travels by
    reference, above the out-of-band threshold of the sender's serializer
    (``mp_core.reduction.Serializer.oob_threshold``): the receiver gets a
    view on the same memory, and what one process writes into it the others
    see.  The memory is freed when the last array or view on it is gone in
    every process (the resource tracker frees what killed processes leave).
    Needs NumPy (``ImportError`` otherwise); ``TypeError`` for an object
    dtype, whose items are references into one process's memory;
    ``OSError`` (``ENOSPC``) when /dev/shm is full.
    """
    import numpy

    from mp_core import _segments

    dtype = numpy.dtype(dtype)
    if dtype.hasobject:
        raise TypeError(f"a shared-memory array cannot hold Python objects (dtype {dtype})")
    if isinstance(shape, int):
        shape = (shape,)
    shape = tuple(operator.index(n) for n in shape)
    nbytes = functools.reduce(operator.mul, shape, 1) * dtype.itemsize
    segment = _segments.new_segment(max(nbytes, 1))
    return numpy.ndarray(shape, dtype, buffer=segment, order=order)


def _make_filename() -> str:
    """A fresh random name for a new block (``FileExistsError`` on creation means: draw again).

    The prefix is the process's ``_config["shmprefix"]`` when set (children
    inherit it, as they inherit ``semprefix``), else ``_SHM_NAME_PREFIX``.
    """
    prefix = process.current_process()._config.get("shmprefix") or _SHM_NAME_PREFIX
    if not prefix.startswith("/"):
        prefix = "/" + prefix
    # os.urandom, not the random module: a forked child shares the parent's
    # PRNG state and would draw the same names.
    return prefix + os.urandom(4).hex()


def _check_trackable(name: str) -> None:
    """``ValueError`` naming ``name`` if the resource tracker cannot register it."""
    from mp_core import resource_tracker

    try:
        resource_tracker._encode("REGISTER", name, "shared_memory")
    except ValueError as exc:
        reason = "it is not ASCII" if isinstance(exc, UnicodeError) else str(exc)
        raise ValueError(
            f"cannot create shared memory {name[1:]!r} tracked by the resource tracker: "
            f"{reason} (choose another name, or pass track=False)"
        ) from None


def _is_trackable(name: str) -> bool:
    try:
        _check_trackable(name)
    except ValueError:
        return False
    return True


class SharedMemory:
    """A block of shared memory, created or attached to by name.

    ``SharedMemory(create=True, size=n)`` creates a block of ``n`` bytes
    under a fresh name; ``SharedMemory(name)`` attaches to an existing one
    (``FileNotFoundError`` if there is none).  Raises ``ValueError`` for a
    negative size, a zero size with ``create``, no name without ``create``,
    or, with ``create`` and ``track``, a name the resource tracker cannot
    take; ``TypeError`` for a size that is not an integer;
    ``FileExistsError`` when creating under a name that is taken.

    ``track`` (as in Python 3.13): when true (the default) the block, created
    or attached to, is registered with this program's resource tracker, which
    unlinks it if the program ends without doing so.  When false the tracker
    never hears of it: nothing unlinks it at exit, and ``unlink()`` does not
    unregister it -- for a program that uses a block whose life another
    program manages.

    A fresh name is ``psm_`` and 8 random hex digits, as with the standard
    library.  A program that must tell its own blocks from those of other
    programs (a test suite's leak check) sets a prefix of its own, which its
    child processes inherit, the way named semaphores use ``semprefix``::

        mp_core.current_process()._config["shmprefix"] = f"/psm_{os.getpid()}_"

    (keep prefix + 8 characters within the platform's name limit: 31 on macOS).

    ``close()`` unmaps the block from this process (every process should);
    ``unlink()`` destroys it (one process should, once) and, when tracked,
    unregisters it.  Pickles by name: the receiver attaches (tracked).
    """

    # Class-level defaults, so that close() and __del__ work on an instance
    # whose __init__ failed half-way.
    _fd = -1
    _mmap: Optional[mmap.mmap] = None
    _buf: Optional[memoryview] = None
    _name: Optional[str] = None
    _size = 0
    _track = True

    def __init__(self, name: Optional[str] = None, create: bool = False, size: int = 0, *, track: bool = True) -> None:
        try:
            size = operator.index(size)
        except TypeError:
            # (Python 3.9's ftruncate() would take 1.5 for 1.)
            raise TypeError(f"'size' must be an integer, not {type(size).__name__}") from None
        if size < 0:
            raise ValueError("'size' must be a positive integer")
        if create and size == 0:
            raise ValueError("'size' must be a positive number different from zero")
        if name is None and not create:
            raise ValueError("'name' can only be None if create=True")
        if sys.platform == "win32":  # pragma: no cover - designed in, not implemented yet
            raise NotImplementedError("SharedMemory is not implemented on Windows yet")
        self._track = track
        if name is not None:
            name = name if name.startswith("/") else "/" + name
            if create and track:
                # Refused after shm_open, the name would leave the block behind.
                _check_trackable(name)
        flags = os.O_CREAT | os.O_EXCL | os.O_RDWR if create else os.O_RDWR
        if name is None:
            while True:
                candidate = _make_filename()
                try:
                    self._fd = _posixshmem.shm_open(candidate, flags, mode=_MODE)
                except FileExistsError:
                    continue
                break
            self._name = candidate
        else:
            self._name = name
            self._fd = _posixshmem.shm_open(self._name, flags, mode=_MODE)
        try:
            if create:
                os.ftruncate(self._fd, size)
            size = os.fstat(self._fd).st_size
            self._mmap = mmap.mmap(self._fd, size)
            self._size = size
            self._buf = memoryview(self._mmap)
            # Created or attached to, a tracked block is registered (Python
            # 3.13's track); a block another program named so that the tracker
            # cannot take it is only attached to.
            if track and (create or _is_trackable(self._name)):
                from mp_core import resource_tracker

                resource_tracker.register(self._name, "shared_memory")
        except BaseException as exc:
            if isinstance(exc, OSError) and exc.filename is None:
                exc.filename = self._name  # which block could not be sized or mapped
            # Whatever failed (no room for the size, no tracker), a block
            # created here must not outlive the error.
            try:
                self.close()
            finally:
                if create:
                    try:
                        _posixshmem.shm_unlink(self._name)
                    except OSError:
                        pass
            raise

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:
            pass

    def __reduce__(self) -> tuple:
        return (type(self), (self.name, False, self.size))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, size={self.size})"

    @property
    def buf(self) -> memoryview:
        """A writable view of the block's bytes."""
        return self._buf  # type: ignore[return-value]

    @property
    def name(self) -> str:
        """The block's name, as other processes pass it to attach."""
        name = self._name or ""
        return name[1:] if name.startswith("/") else name

    @property
    def size(self) -> int:
        """The block's size in bytes."""
        return self._size

    def close(self) -> None:
        """Unmap the block from this process; it stays available to others.

        Raises ``BufferError`` while views of ``buf`` (numpy arrays...) exist.
        """
        if self._buf is not None:
            self._buf.release()
            self._buf = None
        if self._mmap is not None:
            self._mmap.close()
            self._mmap = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def unlink(self) -> None:
        """Destroy the block (once mapped nowhere, its memory is freed).

        Raises ``FileNotFoundError`` if it was already unlinked.
        """
        if self._name:
            _posixshmem.shm_unlink(self._name)
            if self._track and _is_trackable(self._name):
                from mp_core import resource_tracker

                resource_tracker.unregister(self._name, "shared_memory")


# ---------------------------------------------------------------- ShareableList

_ENCODING = "utf8"
_SLOT = 8
_PLAIN, _STR, _BYTES, _NONE = 0, 1, 2, 3
# Fixed-size formats take one 8-byte slot, padded to keep every slot aligned.
_FIXED_FORMATS = {int: "q", float: "d", bool: "xxxxxxx?", type(None): "xxxxxx?x"}


def _decode_plain(value: Any) -> Any:
    return value


def _decode_str(value: bytes) -> str:
    return value.rstrip(b"\x00").decode(_ENCODING)


def _decode_bytes(value: bytes) -> bytes:
    return value.rstrip(b"\x00")


def _decode_none(value: Any) -> None:
    return None


_DECODERS = {_PLAIN: _decode_plain, _STR: _decode_str, _BYTES: _decode_bytes, _NONE: _decode_none}


def _encode(item: Any) -> tuple[str, int, Any]:
    """``(struct format, decoding code, value to pack)`` of a new item."""
    if isinstance(item, str):
        data = item.encode(_ENCODING)
        # The standard library sizes a str by its characters; its encoding
        # may be longer, and must fit.
        room = _SLOT * (len(item) // _SLOT + 1)
        if len(data) > room:
            room = _SLOT * (len(data) // _SLOT + 1)
        return f"{room}s", _STR, data
    if isinstance(item, bytes):
        return f"{_SLOT * (len(item) // _SLOT + 1)}s", _BYTES, bytes(item)
    kind = type(item)
    fmt = _FIXED_FORMATS.get(kind)
    if fmt is None:
        base = next((t for t in (bool, int, float) if isinstance(item, t)), None)
        if base is None:
            raise TypeError(
                f"ShareableList cannot hold {kind.__name__!r} items (only int, float, bool, str, bytes and None)"
            )
        fmt, item = _FIXED_FORMATS[base], base(item)
    return fmt, (_NONE if item is None else _PLAIN), item


def _slot_size(fmt: str) -> int:
    return int(fmt[:-1]) if fmt[-1] == "s" else _SLOT


class ShareableList:
    """A fixed-length list in shared memory, attachable by name from any process.

    ``ShareableList(sequence)`` creates a new list (and segment);
    ``ShareableList(name=name)`` attaches to an existing one.  Items may be
    replaced but not added or removed; a ``str``/``bytes`` item may be
    replaced by one whose encoding fits the space first allocated for it
    (``ValueError`` otherwise).  ``shm`` is the underlying ``SharedMemory``.
    Pickles by name.
    """

    def __init__(self, sequence: Optional[Iterable[Any]] = None, *, name: Optional[str] = None) -> None:
        if name is None or sequence is not None:
            items = [_encode(item) for item in (sequence or ())]
            for fmt, _code, _value in items:
                if len(fmt) > _SLOT:
                    raise ValueError(
                        f"an item of {_slot_size(fmt)} bytes is too large for a ShareableList "
                        f"(its format {fmt!r} must fit in {_SLOT} characters)"
                    )
            self._list_len = len(items)
            offsets = [0]
            for fmt, _code, _value in items:
                offsets.append(offsets[-1] + _slot_size(fmt))
            self._allocated_offsets = offsets
            size = _SLOT * (self._list_len + 2) + offsets[-1] + _SLOT * self._list_len + self._list_len
            self.shm = SharedMemory(name, create=True, size=size)
            buf = self.shm.buf
            struct.pack_into("q" * (self._list_len + 2), buf, 0, self._list_len, *offsets)
            for position, (fmt, code, value) in enumerate(items):
                struct.pack_into(fmt, buf, self._data_offset(position), value)
                self._write_format(position, fmt, code)
        else:
            self.shm = SharedMemory(name)
            self._list_len = struct.unpack_from("q", self.shm.buf, 0)[0]
            self._allocated_offsets = list(struct.unpack_from("q" * (self._list_len + 1), self.shm.buf, _SLOT))

    # ------------------------------------------------------------ layout

    def _data_offset(self, position: int) -> int:
        return _SLOT * (self._list_len + 2) + self._allocated_offsets[position]

    @property
    def _formats_offset(self) -> int:
        return _SLOT * (self._list_len + 2) + self._allocated_offsets[-1]

    @property
    def _codes_offset(self) -> int:
        return self._formats_offset + _SLOT * self._list_len

    def _read_format(self, position: int) -> str:
        raw = struct.unpack_from("8s", self.shm.buf, self._formats_offset + _SLOT * position)[0]
        return raw.rstrip(b"\x00").decode(_ENCODING)

    _get_packing_format = _read_format  # the standard library's name, which its tests use

    def _write_format(self, position: int, fmt: str, code: int) -> None:
        struct.pack_into("8s", self.shm.buf, self._formats_offset + _SLOT * position, fmt.encode(_ENCODING))
        struct.pack_into("b", self.shm.buf, self._codes_offset + position, code)

    def _position(self, position: Any) -> int:
        position = operator.index(position)
        if position < 0:
            position += self._list_len
        if not 0 <= position < self._list_len:
            raise IndexError("index out of range")
        return position

    # ------------------------------------------------------------ the list

    def __getitem__(self, position: int) -> Any:
        position = self._position(position)
        (value,) = struct.unpack_from(self._read_format(position), self.shm.buf, self._data_offset(position))
        code = struct.unpack_from("b", self.shm.buf, self._codes_offset + position)[0]
        return _DECODERS[code](value)

    def __setitem__(self, position: int, value: Any) -> None:
        position = self._position(position)
        fmt, code, packed = _encode(value)
        room = self._allocated_offsets[position + 1] - self._allocated_offsets[position]
        if fmt[-1] == "s":
            if len(packed) > room:
                raise ValueError("bytes/str item exceeds available storage")
            fmt = f"{room}s"
        self._write_format(position, fmt, code)
        struct.pack_into(fmt, self.shm.buf, self._data_offset(position), packed)

    def __len__(self) -> int:
        return struct.unpack_from("q", self.shm.buf, 0)[0]

    def __iter__(self) -> Iterator[Any]:
        for position in range(self._list_len):
            yield self[position]

    def __reduce__(self) -> tuple:
        return functools.partial(type(self), name=self.shm.name), ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)}, name={self.shm.name!r})"

    @property
    def format(self) -> str:
        """The struct format of all items, concatenated."""
        return "".join(self._read_format(position) for position in range(self._list_len))

    def count(self, value: Any) -> int:
        """How many items equal ``value``."""
        return sum(value == item for item in self)

    def index(self, value: Any) -> int:
        """The position of the first item equal to ``value``; ``ValueError`` if none."""
        for position, item in enumerate(self):
            if value == item:
                return position
        raise ValueError(f"{value!r} not in this container")

    __class_getitem__ = classmethod(types.GenericAlias)  # type: ignore[var-annotated]

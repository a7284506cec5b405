"""ctypes objects in shared memory: ``RawValue``, ``RawArray``, ``Value``, ``Array``.

The objects live in blocks of the shared heap (``heap``), so every process
that has them sees the same bytes.  They reach a child only when it is
created: by inheritance under fork, and pickled (as arena and offset)
while a spawn or forkserver child is being started.  Pickling them at any
other time raises ``RuntimeError``.

``Value`` and ``Array`` wrap the object with a lock (by default a new
process-shared ``RLock`` of the given context): each attribute access or
item access takes it, and ``get_lock()`` (or ``with obj:``) makes a compound
update such as ``+= 1`` atomic.  ``Raw*`` objects have no lock.
"""

from __future__ import annotations

import ctypes
import weakref
from typing import Any, Callable, Optional

import mp_core
from mp_core import reduction
from mp_core.context import assert_spawning

from . import heap

__all__ = ["RawValue", "RawArray", "Value", "Array", "copy", "synchronized"]

typecode_to_type: dict[str, Any] = {
    "c": ctypes.c_char,
    "u": ctypes.c_wchar,
    "b": ctypes.c_byte,
    "B": ctypes.c_ubyte,
    "h": ctypes.c_short,
    "H": ctypes.c_ushort,
    "i": ctypes.c_int,
    "I": ctypes.c_uint,
    "l": ctypes.c_long,
    "L": ctypes.c_ulong,
    "q": ctypes.c_longlong,
    "Q": ctypes.c_ulonglong,
    "f": ctypes.c_float,
    "d": ctypes.c_double,
}


def _ctype(typecode_or_type: Any) -> Any:
    if isinstance(typecode_or_type, str):
        return typecode_to_type.get(typecode_or_type, typecode_or_type)
    return typecode_or_type


# ---------------------------------------------------------------- raw objects


def _new_value(type_: Any) -> Any:
    wrapper = heap.BufferWrapper(ctypes.sizeof(type_))
    return rebuild_ctype(type_, wrapper, None)


def rebuild_ctype(type_: Any, wrapper: heap.BufferWrapper, length: Optional[int]) -> Any:
    """The ctypes object of ``type_`` (an array of ``length`` if given) over ``wrapper``'s memory."""
    if length is not None:
        type_ = type_ * length
    reduction.register(type_, reduce_ctype)
    obj = type_.from_buffer(wrapper.create_memoryview())
    obj._wrapper = wrapper  # the block lives as long as the object
    return obj


def reduce_ctype(obj: Any) -> tuple:
    """Pickle a shared ctypes object for a child being created (``RuntimeError`` otherwise)."""
    assert_spawning(obj)
    if isinstance(obj, ctypes.Array):
        return rebuild_ctype, (obj._type_, obj._wrapper, obj._length_)  # type: ignore[attr-defined]
    return rebuild_ctype, (type(obj), obj._wrapper, None)


def RawValue(typecode_or_type: Any, *args: Any) -> Any:
    """A ctypes object in shared memory, zeroed, then initialized with ``args``.

    ``typecode_or_type`` is an ``array``-module typecode (``'i'``, ``'d'``...)
    or a ctypes type (``ctypes.c_int``, a ``Structure``...).
    """
    type_ = _ctype(typecode_or_type)
    obj = _new_value(type_)
    ctypes.memset(ctypes.addressof(obj), 0, ctypes.sizeof(obj))
    obj.__init__(*args)
    return obj


def RawArray(typecode_or_type: Any, size_or_initializer: Any) -> Any:
    """A ctypes array in shared memory: ``size`` zeros, or a copy of a sequence."""
    type_ = _ctype(typecode_or_type)
    if isinstance(size_or_initializer, int):
        obj = _new_value(type_ * size_or_initializer)
        ctypes.memset(ctypes.addressof(obj), 0, ctypes.sizeof(obj))
        return obj
    initializer = size_or_initializer
    obj = _new_value(type_ * len(initializer))
    obj.__init__(*initializer)
    return obj


def copy(obj: Any) -> Any:
    """A new shared ctypes object holding a copy of ``obj``."""
    new_obj = _new_value(type(obj))
    # A byte copy: PyPy's ctypes copies an array assigned through a pointer
    # (``pointer(new)[0] = obj``) wrongly.
    ctypes.memmove(ctypes.addressof(new_obj), ctypes.addressof(obj), ctypes.sizeof(obj))
    return new_obj


# ---------------------------------------------------------------- synchronized objects


def _lock_for(lock: Any, ctx: Any) -> Any:
    if lock is True or lock is None:
        return (ctx or mp_core.get_context()).RLock()
    if not hasattr(lock, "acquire"):
        raise AttributeError(f"{lock!r} has no method 'acquire'")
    return lock


def Value(typecode_or_type: Any, *args: Any, lock: Any = True, ctx: Any = None) -> Any:
    """A shared ctypes object, wrapped with a lock.

    ``lock=True`` (or ``None``) creates a new ``RLock`` of ``ctx`` (default:
    the default context); ``lock=False`` returns the raw object; any
    object with ``acquire``/``release`` is used as the lock.
    """
    obj = RawValue(typecode_or_type, *args)
    if lock is False:
        return obj
    return synchronized(obj, _lock_for(lock, ctx), ctx=ctx)


def Array(typecode_or_type: Any, size_or_initializer: Any, *, lock: Any = True, ctx: Any = None) -> Any:
    """A shared ctypes array, wrapped with a lock (``lock`` as for ``Value``)."""
    obj = RawArray(typecode_or_type, size_or_initializer)
    if lock is False:
        return obj
    return synchronized(obj, _lock_for(lock, ctx), ctx=ctx)


_synchronized_classes: weakref.WeakKeyDictionary[type, type] = weakref.WeakKeyDictionary()


def synchronized(obj: Any, lock: Any = None, ctx: Any = None) -> SynchronizedBase:
    """Wrap the shared ctypes object ``obj`` with ``lock`` (default: a new ``RLock``).

    A simple value gives a ``Synchronized``, an array a
    ``SynchronizedArray`` (``SynchronizedString`` for ``c_char``), a
    structure a ``Synchronized<Name>`` class with one property per field.
    """
    if isinstance(obj, SynchronizedBase):
        raise AssertionError("object already synchronized")
    if isinstance(obj, ctypes._SimpleCData):
        return Synchronized(obj, lock, ctx)
    if isinstance(obj, ctypes.Array):
        if obj._type_ is ctypes.c_char:
            return SynchronizedString(obj, lock, ctx)
        return SynchronizedArray(obj, lock, ctx)
    cls = type(obj)
    wrapper_class = _synchronized_classes.get(cls)
    if wrapper_class is None:
        namespace = {field[0]: _locked_attribute(field[0]) for field in cls._fields_}
        wrapper_class = type("Synchronized" + cls.__name__, (SynchronizedBase,), namespace)
        _synchronized_classes[cls] = wrapper_class
    return wrapper_class(obj, lock, ctx)


def _locked_attribute(name: str) -> property:
    def get(self: SynchronizedBase) -> Any:
        self.acquire()
        try:
            return getattr(self._obj, name)
        finally:
            self.release()

    def set(self: SynchronizedBase, value: Any) -> None:
        self.acquire()
        try:
            setattr(self._obj, name, value)
        finally:
            self.release()

    return property(get, set, doc=f"``{name}`` of the wrapped object, read and written under the lock.")


class SynchronizedBase:
    """A shared ctypes object and the lock that guards it.

    ``acquire``/``release`` (and ``with``) take the lock; ``get_obj()``
    and ``get_lock()`` return the parts.  Pickles only while a child is
    being created.
    """

    acquire: Callable[..., Any]
    release: Callable[..., Any]

    def __init__(self, obj: Any, lock: Any = None, ctx: Any = None) -> None:
        self._obj = obj
        self._lock = lock if lock is not None else (ctx or mp_core.get_context()).RLock()
        self.acquire = self._lock.acquire
        self.release = self._lock.release

    def __enter__(self) -> Any:
        return self._lock.__enter__()

    def __exit__(self, *exc_info: Any) -> Any:
        return self._lock.__exit__(*exc_info)

    def __reduce__(self) -> tuple:
        assert_spawning(self)
        return synchronized, (self._obj, self._lock)

    def get_obj(self) -> Any:
        """The wrapped ctypes object (no locking)."""
        return self._obj

    def get_lock(self) -> Any:
        """The lock."""
        return self._lock

    def __repr__(self) -> str:
        return f"<{type(self).__name__} wrapper for {self._obj}>"


class Synchronized(SynchronizedBase):
    """A shared simple value; ``value`` is read and written under the lock."""

    @property
    def value(self) -> Any:
        self.acquire()
        try:
            return self._obj.value
        finally:
            self.release()

    @value.setter
    def value(self, value: Any) -> None:
        self.acquire()
        try:
            self._obj.value = value
        finally:
            self.release()


class SynchronizedArray(SynchronizedBase):
    """A shared array; each item (or slice) access takes the lock."""

    def __len__(self) -> int:
        return len(self._obj)

    def __getitem__(self, i: Any) -> Any:
        self.acquire()
        try:
            return self._obj[i]
        finally:
            self.release()

    def __setitem__(self, i: Any, value: Any) -> None:
        self.acquire()
        try:
            self._obj[i] = value
        finally:
            self.release()


class SynchronizedString(SynchronizedArray):
    """A shared ``c_char`` array, with ``value`` and ``raw`` under the lock."""

    value = _locked_attribute("value")
    raw = _locked_attribute("raw")

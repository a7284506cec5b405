"""The serialization layer: dill's reach at C pickle's speed.

Every byte that crosses a process boundary (pipes, queues, pools, managers,
the data a spawned child starts from) is produced here.

How an object is serialized in the default ``auto`` mode::

    obj ──> ForkingPickler (the C pickle.Pickler)
              │  plain data, importable functions and classes: C pickle, by reference
              │
              ├─ reducer_override: a lambda, a nested (<locals>) function or class,
              │  or a function or class of __main__ ──> embedded dill payload
              │      loaded by _load_dill  (dill imported only by a process that
              │      meets one); __main__ objects are looked up by name in the
              │      receiver's __main__ first, so a receiver running the same
              │      program gets the very same object back
              │
              └─ the C pickler fails on the whole object ──> whole-object dill

Receiving is always the C ``pickle.loads``.  The ``dill`` mode serializes
everything with dill (the upstream ``multiprocess`` behaviour) and the
``pickle`` mode never uses dill (the standard library's behaviour).

An object that cannot be serialized at all raises at the sender, with its
type and the reason.
"""

from __future__ import annotations

import copyreg
import io
import os
import sys
import threading
import types

from . import _cpickle, _out_of_band
from ._payload_cache import cached_payload as _cached_payload
from ._running_frames import REFUSE_RUNNING_FRAMES as _REFUSE_RUNNING_FRAMES
from ._running_frames import refuse_running_frame as _refuse_running_frame
from ._spawning import get_spawning_popen

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, Callable, Optional

__all__ = [
    "send_handle",
    "recv_handle",
    "ForkingPickler",
    "register",
    "dump",
    "DupFd",
    "sendfds",
    "recvfds",
    "Serializer",
    "configure",
    "get_serializer",
    "dumps",
    "loads",
    "MessageEncoder",
    "discard",
]

if TYPE_CHECKING:
    import _socket
    import socket

    HAVE_SEND_HANDLE: bool


def __getattr__(name: str) -> bool:
    # HAVE_SEND_HANDLE asks the socket module, whose import costs every
    # ``import multiprocess`` (and every spawned child) milliseconds: it is
    # worked out when first read.
    if name == "HAVE_SEND_HANDLE":
        value = globals()[name] = _have_send_handle()
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "HAVE_SEND_HANDLE"})


def _have_send_handle() -> bool:
    if sys.platform == "win32":
        return True
    import socket

    return hasattr(socket, "CMSG_LEN") and hasattr(socket, "SCM_RIGHTS") and hasattr(socket.socket, "sendmsg")


MODES = ("auto", "dill", "pickle")
DEFAULT_PROTOCOL = _cpickle.HIGHEST_PROTOCOL

# Reducers registered with ForkingPickler.register: consulted before copyreg.
_extra_reducers: dict[type, Callable[[Any], Any]] = {}

# Exceptions with which the C pickler says "I cannot carry this object";
# anything else comes from user code (a __reduce__ that refuses on purpose,
# like a lock outside of process creation) and is passed through untouched.
_CANNOT_PICKLE = (_cpickle.PicklingError, TypeError, AttributeError, RecursionError)

# ---------------------------------------------------------------- settings


class Serializer:
    """Serialization settings that a call site (a pool, a queue) can carry.

    ``mode``: ``'auto'`` (C pickle, dill only where needed), ``'dill'``
    (everything through dill) or ``'pickle'`` (never dill).
    ``recurse``/``byref``: dill's settings for the objects dill handles.
    By default (``None``) a main-module function travels with the globals it
    uses and lands in the receiver's ``__main__`` namespace (see
    ``_dill_bridge``), so interactive code works in a fresh interpreter;
    ``recurse=True`` gives each function a private copy of its globals
    instead, as dill does.  ``byref=None`` follows dill's global setting.
    ``protocol``: the pickle protocol (``None``: the highest).
    ``oob_threshold``: buffers of at least this many bytes (NumPy arrays and
    other protocol-5 buffers, ``bytes``, ``bytearray``, ``memoryview``) that
    a channel sends (``dumps(..., oob=True)``) leave the pickle stream and
    travel through shared memory, the receiver getting a view on it
    (``mp_core._out_of_band``); ``None`` keeps everything in band.  At
    least 256 KiB; 1 MiB by default (chosen by measurement, tools/bench
    section ``zerocopy``).  Needs protocol 5; the ``dill`` mode keeps
    buffers in band.
    """

    __slots__ = ("mode", "recurse", "byref", "protocol", "oob_threshold")

    def __init__(
        self,
        mode: str = "auto",
        recurse: Optional[bool] = None,
        byref: Optional[bool] = None,
        protocol: Optional[int] = None,
        oob_threshold: Optional[int] = _out_of_band.DEFAULT_THRESHOLD,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"serializer mode must be one of {', '.join(MODES)}, not {mode!r}")
        if protocol is not None and not 2 <= protocol <= _cpickle.HIGHEST_PROTOCOL:
            raise ValueError(f"pickle protocol must be between 2 and {_cpickle.HIGHEST_PROTOCOL}, not {protocol!r}")
        self.mode = mode
        self.recurse = recurse
        self.byref = byref
        self.protocol = protocol
        self.oob_threshold = _out_of_band.check_threshold(oob_threshold)

    def replace(self, **changes: Any) -> Serializer:
        """A copy with some settings changed."""
        settings = {name: getattr(self, name) for name in self.__slots__}
        settings.update(changes)
        return Serializer(**settings)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Serializer):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, n) for n in self.__slots__))

    def __repr__(self) -> str:
        settings = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"Serializer({settings})"

    def __reduce__(self) -> tuple:
        return Serializer, tuple(getattr(self, n) for n in self.__slots__)

    def dumps(
        self,
        obj: Any,
        buffer_callback: Optional[Callable[[_cpickle.PickleBuffer], Any]] = None,
        *,
        oob: bool = False,
        carrier: Optional[_out_of_band.Carrier] = None,
    ) -> memoryview:
        """Serialize ``obj``; raise at once, naming its type, if it cannot be.

        ``oob=True``: a message for a channel, received (``pickle.loads``)
        exactly once: buffers of ``oob_threshold`` bytes or more travel
        through shared memory.  Without it the result is a self-contained
        pickle that may be loaded any number of times.  ``carrier``: the
        sending connection's, when it can carry descriptors (``Pipe()``): its
        buffers then travel as memory files (``mp_core._fd_segments``).
        """
        if oob and buffer_callback is None and self.oob_threshold is not None:
            return memoryview(_encode_message(obj, self, carrier=carrier))
        buf = io.BytesIO()
        if self.mode != "auto":
            self.dump(obj, buf, buffer_callback=buffer_callback)
            return buf.getbuffer()
        # The hot path of every send: one C pickler, no seeking.
        pickler = ForkingPickler(buf, self.protocol or DEFAULT_PROTOCOL, buffer_callback=buffer_callback)
        pickler._settings(self)
        try:
            pickler.dump(obj)
        except _CANNOT_PICKLE as exc:
            buf = io.BytesIO()
            try:
                _whole_object_dill(obj, buf, self.protocol or DEFAULT_PROTOCOL, self)
            except Exception as dill_exc:
                raise _cannot_serialize(obj, exc) from dill_exc
        return buf.getbuffer()

    def _message_parts(self, obj: Any, carrier: Optional[_out_of_band.Carrier] = None) -> list[Any]:
        """``obj`` as a message for a channel (``dumps(oob=True)``), with a pickler of its own.

        Without a buffer of ``oob_threshold`` bytes it is the pickle stream,
        byte for byte the one ``dumps`` makes.  (``_encode_message`` reuses a
        pickler per thread where it can.)
        """
        protocol = self.protocol or DEFAULT_PROTOCOL
        threshold = self.oob_threshold
        if threshold is None or protocol < 5 or self.mode == "dill":
            return [self.dumps(obj)]
        collector = _out_of_band.Collector(threshold)
        pickler_class = ForkingPickler if self.mode == "auto" else _PlainForkingPickler
        pickler = pickler_class(collector, protocol, buffer_callback=collector.buffer_callback)
        pickler._settings(self)
        try:
            pickler.dump(obj)
        except _CANNOT_PICKLE as exc:
            if self.mode != "auto":
                raise _cannot_serialize(obj, exc) from exc
            buf = io.BytesIO()
            try:
                _whole_object_dill(obj, buf, protocol, self)
            except Exception as dill_exc:
                raise _cannot_serialize(obj, exc) from dill_exc
            return [buf.getvalue()]
        return collector.message(carrier)

    def message_parts(self, obj: Any) -> list[Any]:
        """What ``dump(obj, file, oob=True)`` writes, as the list of bytes-like parts it writes in order.

        For a framing writer that puts its own head in front: the parts are
        not joined (a large pickle stays in the pickler's blocks).
        """
        if self.oob_threshold is not None:
            return _encode_message(obj, self, joined=False)
        buf = io.BytesIO()
        self.dump(obj, buf)
        return [buf.getvalue()]

    def dump(
        self, obj: Any, file: Any, buffer_callback: Optional[Callable[..., Any]] = None, *, oob: bool = False
    ) -> None:
        """Serialize ``obj`` into the binary file ``file`` (``oob``: as ``dumps``)."""
        if oob and buffer_callback is None and self.oob_threshold is not None:
            # Part by part: a large pickle stays in the pickler's blocks.
            for part in _encode_message(obj, self, joined=False):
                file.write(part)
            return
        protocol = self.protocol or DEFAULT_PROTOCOL
        if self.mode == "dill":
            _whole_object_dill(obj, file, protocol, self)
            return
        pickler_class = ForkingPickler if self.mode == "auto" else _PlainForkingPickler
        start = file.tell() if file.seekable() else None
        pickler = pickler_class(file, protocol, buffer_callback=buffer_callback)
        pickler._settings(self)
        try:
            pickler.dump(obj)
        except _CANNOT_PICKLE as exc:
            if self.mode != "auto" or start is None:
                raise _cannot_serialize(obj, exc) from exc
            file.seek(start)
            file.truncate()
            try:
                _whole_object_dill(obj, file, protocol, self)
            except Exception as dill_exc:
                raise _cannot_serialize(obj, exc) from dill_exc

    @staticmethod
    def loads(data: Any, buffers: Any = None) -> Any:
        """Deserialize what ``dumps`` produced (any mode)."""
        return _cpickle.loads(data, buffers=buffers)


_default_serializer = Serializer()
_settings_lock = threading.Lock()


def get_serializer() -> Serializer:
    """The process-wide default serializer."""
    return _default_serializer


def configure(
    mode: Optional[str] = None,
    *,
    recurse: Any = ...,
    byref: Any = ...,
    protocol: Any = ...,
    oob_threshold: Any = ...,
    oob: Optional[bool] = None,
    oob_cache: Any = ...,
    oob_descriptors: Optional[bool] = None,
) -> Serializer:
    """Change the process-wide default serializer; return the new one.

    Arguments left out keep their current value.  Children started later
    receive objects serialized this way; each process decides how it sends.
    ``oob_threshold``: see ``Serializer``; ``oob=False`` is
    ``oob_threshold=None`` (everything in band), ``oob=True`` restores the
    default threshold.

    ``oob_cache``: how many bytes of shared-memory segments this process
    keeps, once their receivers let go, to write its next large buffers
    into (writing into a new segment costs the kernel several times the
    copy).  By default 256 MiB in a program's main process and ``0`` in the
    processes it starts; ``0`` frees each segment as soon as its last user
    lets go, ``None`` restores the default.  Kept segments are files in
    /dev/shm until they are reused, pushed out, or the process ends.

    ``oob_descriptors``: whether this process sends large buffers through a
    ``Pipe()`` (a Unix socket pair) as anonymous memory files whose
    descriptors travel with the message (``True``, the default where the
    platform has them: nothing ever appears in /dev/shm, and the kernel
    frees the memory with its last user), or as named segments like every
    other channel (``False``).
    """
    global _default_serializer
    if oob_descriptors is not None:
        if type(oob_descriptors) is not bool:
            raise ValueError(f"oob_descriptors must be True or False, not {oob_descriptors!r}")
        _out_of_band._load_fd_segments().set_enabled(oob_descriptors)
    if oob_cache is not ...:
        if oob_cache is not None and (type(oob_cache) is not int or oob_cache < 0):
            raise ValueError(f"oob_cache must be a number of bytes >= 0 or None, not {oob_cache!r}")
        _out_of_band._load_segments().set_warm_limit(oob_cache)
    with _settings_lock:
        changes: dict[str, Any] = {}
        if mode is not None:
            changes["mode"] = mode
        if recurse is not ...:
            changes["recurse"] = recurse
        if byref is not ...:
            changes["byref"] = byref
        if protocol is not ...:
            changes["protocol"] = protocol
        if oob is not None:
            if oob_threshold is not ...:
                raise TypeError("configure() takes oob or oob_threshold, not both")
            oob_threshold = _out_of_band.DEFAULT_THRESHOLD if oob else None
        if oob_threshold is not ...:
            changes["oob_threshold"] = oob_threshold
        _default_serializer = _default_serializer.replace(**changes)
        return _default_serializer


def dumps(
    obj: Any,
    protocol: Optional[int] = None,
    *,
    mode: Optional[str] = None,
    serializer: Optional[Serializer] = None,
    oob: bool = False,
    carrier: Optional[_out_of_band.Carrier] = None,
) -> memoryview:
    """Serialize ``obj`` with the default (or the given) settings (``oob``, ``carrier``: see ``Serializer.dumps``)."""
    if serializer is None and mode is None and protocol is None:
        return _default_serializer.dumps(obj, oob=oob, carrier=carrier)
    chosen = serializer or _default_serializer
    if mode is not None or protocol is not None:
        chosen = chosen.replace(**({"mode": mode} if mode else {}), **({"protocol": protocol} if protocol else {}))
    return chosen.dumps(obj, oob=oob, carrier=carrier)


loads = _cpickle.loads
discard = _out_of_band.discard


class MessageEncoder:
    """``dumps(..., oob=True)`` for a channel that one thread at a time writes to, reusing one pickler.

    Serializes as ``Serializer.dumps`` of ``serializer`` does (``None``: the
    process-wide settings, looked up at each call, so that ``configure``
    applies at once; the same protocol, the same errors, large buffers out of
    band) and returns ``bytes``.  Building a pickler costs about as much as
    pickling a short message, and a manager connection sends nothing but
    short messages: the C pickler of the ``auto`` mode is built once and
    kept while the settings stay the same.  What it cannot carry alone
    (dill's part) and the other modes go through ``Serializer.dumps``.
    Not thread-safe.
    """

    __slots__ = ("_serializer", "_settings", "_collector", "_pickler", "_busy")

    def __init__(self, serializer: Optional[Serializer] = None) -> None:
        self._serializer = serializer
        self._settings: Optional[Serializer] = None  # what _pickler was built for
        self._collector: Optional[_out_of_band.Collector] = None
        self._pickler: Optional[ForkingPickler] = None
        self._busy = False  # encoding: a reentrant call (a __reduce__ sending) gets its own pickler

    def __call__(
        self, obj: Any, settings: Optional[Serializer] = None, carrier: Optional[_out_of_band.Carrier] = None
    ) -> bytes:
        """``obj`` serialized as ``settings.dumps(obj, oob=True, carrier=carrier)`` does (default: its settings)."""
        parts = self.parts(obj, settings, carrier)
        part = parts[0] if len(parts) == 1 else b"".join(parts)
        return part if type(part) is bytes else bytes(part)

    def parts(
        self, obj: Any, settings: Optional[Serializer] = None, carrier: Optional[_out_of_band.Carrier] = None
    ) -> list[Any]:
        """As ``__call__``, the message as the bytes-like parts to send in order (not joined)."""
        if settings is None:
            settings = self._serializer or _default_serializer
        if settings.mode != "auto" or self._busy:
            return settings._message_parts(obj, carrier)
        pickler = self._pickler
        collector = self._collector
        if settings is not self._settings or pickler is None or collector is None:
            protocol = settings.protocol or DEFAULT_PROTOCOL
            threshold = settings.oob_threshold if protocol >= 5 else None
            collector = _out_of_band.Collector(threshold or _out_of_band.DEFAULT_THRESHOLD)
            callback = collector.buffer_callback if threshold is not None else None
            if threshold is None:
                collector.threshold = sys.maxsize  # nothing is cut out of the stream either
            pickler = ForkingPickler(collector, protocol, buffer_callback=callback)
            pickler._settings(settings)
            self._pickler, self._settings, self._collector = pickler, settings, collector
        chunks = collector.chunks
        self._busy = True
        try:
            pickler.dump(obj)
            if collector.kept is None and len(chunks) == 1:
                parts = [chunks[0]]  # a plain message: the pickler's own bytes
            else:
                parts = collector.message(carrier)
        except _CANNOT_PICKLE:
            # dill for the whole object, or the error that names what cannot
            # be serialized; a fresh pickler next time.
            self._pickler = None
            return settings._message_parts(obj, carrier)
        except BaseException:
            self._pickler = None  # left in an unknown state
            raise
        finally:
            self._busy = False
            pickler.clear_memo()
            chunks.clear()
            collector.kept = None
        return parts


class _ThreadState(threading.local):
    encoder: Optional[MessageEncoder] = None


_thread_state = _ThreadState()


def _encode_message(
    obj: Any, settings: Serializer, joined: bool = True, carrier: Optional[_out_of_band.Carrier] = None
) -> Any:
    """``settings.dumps(obj, oob=True)`` with this thread's kept pickler (building one costs as much as a message).

    ``bytes``, or with ``joined=False`` the list of parts.
    """
    encoder = _thread_state.encoder
    if encoder is None:
        encoder = _thread_state.encoder = MessageEncoder()
    return encoder(obj, settings, carrier) if joined else encoder.parts(obj, settings, carrier)


# ---------------------------------------------------------------- naming what cannot be serialized


def describe(obj: Any) -> str:
    """How an error message names ``obj``: its type (module-qualified unless a builtin), and its name if it has one.

    ``'list object'``, ``'_thread.lock object'``, ``"function object 'outer.<locals>.f'"``.
    """
    kind = type(obj)
    what = f"{kind.__module__}.{kind.__qualname__}" if kind.__module__ != "builtins" else kind.__qualname__
    name = getattr(obj, "__qualname__", None)
    return f"{what} object {name!r}" if isinstance(name, str) else f"{what} object"


def serialization_error(message: str, exc: BaseException) -> BaseException:
    """The error a sender sees when something cannot be serialized; ``message`` names it.

    A serializer's own error (``PicklingError``, ``TypeError``,
    ``AttributeError``; anything else pickle gives up with, such as
    ``RecursionError``, as a ``PicklingError``) becomes a new error carrying
    ``message``, caused by the original.  Any other exception was raised on
    purpose by the object (its ``__reduce__``) and goes on as it is, as with
    the standard library, with ``message`` added as a note where Python has
    notes (3.11+).
    """
    if isinstance(exc, _CANNOT_PICKLE):
        kind = type(exc) if type(exc) in (_cpickle.PicklingError, TypeError, AttributeError) else _cpickle.PicklingError
        error = kind(message)
        error.__cause__ = exc
        return error
    add_note = getattr(exc, "add_note", None)
    if add_note is not None:
        add_note(message)
    return exc


def find_unserializable(objects: Any, serializer: Optional[Serializer] = None) -> Optional[tuple[int, Any, Exception]]:
    """The first of ``objects`` that cannot be serialized: ``(its position, it, the error)``; ``None`` if all can be.

    For naming the culprit once a whole payload (a call, a chunk of items
    or results) has failed.
    """
    chosen = serializer or _default_serializer
    for position, obj in enumerate(objects):
        try:
            chosen.dumps(obj)
        except Exception as exc:
            return position, obj, exc
    return None


def _cannot_serialize(obj: Any, exc: BaseException) -> BaseException:
    return serialization_error(f"cannot serialize {describe(obj)}: {exc}", exc)


# ---------------------------------------------------------------- dill bridge


def _bridge() -> types.ModuleType:
    from . import _dill_bridge  # deferred: imports dill, which plain data never needs

    return _dill_bridge


def _load_dill(payload: bytes) -> Any:
    """Rebuild an object that was serialized by dill (called by the unpickler)."""
    return _bridge().load_value(payload)


def _load_main(payload: bytes) -> Any:
    """Rebuild a main-module definition that travelled with its globals."""
    return _bridge().load_main(payload)


def _whole_object_dill(obj: Any, file: Any, protocol: int, serializer: Serializer) -> None:
    payload = _bridge().dumps_value(obj, protocol, serializer, _extra_reducers)
    # Wrapped in a one-call C pickle so that the receiver, which always uses
    # pickle.loads, lets dill's own unpickler read the payload.
    _cpickle.Pickler(file, protocol).dump(_DillPayload(payload))


class _DillPayload:
    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __reduce__(self) -> tuple:
        return _load_dill, (self.payload,)


# ---------------------------------------------------------------- __main__ objects

_MAIN_MODULE_NAMES = ("__main__", "__mp_main__")


def _needs_value(obj: Any) -> bool:
    """Whether pickle's by-reference rule cannot carry this function or class."""
    qualname = getattr(obj, "__qualname__", "")
    return (
        "<locals>" in qualname
        or "<lambda>" in qualname
        or getattr(obj, "__module__", None) in _MAIN_MODULE_NAMES
        or getattr(obj, "__module__", "") is None
    )


def _fingerprint(obj: Any) -> tuple:
    """What must match for the receiver's ``__main__.<name>`` to be this object."""
    if isinstance(obj, types.FunctionType):
        code = obj.__code__
        return ("function", obj.__qualname__, code.co_firstlineno, os.path.basename(code.co_filename))
    return ("class", obj.__qualname__, tuple(sorted(k for k in vars(obj) if not k.startswith("__"))))


def _lookup_main(qualname: str) -> Any:
    obj: Any = sys.modules.get("__main__")
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _load_main_object(qualname: str, fingerprint: tuple, payload: bytes) -> Any:
    """The receiver's own ``__main__.<qualname>`` if it is the same; else the payload's copy."""
    candidate = _lookup_main(qualname)
    if candidate is not None and (
        isinstance(candidate, (type, types.FunctionType)) and _fingerprint(candidate) == fingerprint
    ):
        return candidate
    return _load_main(payload)


# ---------------------------------------------------------------- picklers


class _PlainForkingPickler(_cpickle.Pickler):
    """The C pickler with the registered reducers and nothing else (``pickle`` mode)."""

    # Class-level defaults, so that constructing one costs no Python-level
    # __init__ (it happens once per message) and so that ``ForkingPickler(file,
    # protocol)`` used directly, as with the stdlib, works too.
    _protocol: int = DEFAULT_PROTOCOL
    _serializer: Optional[Serializer] = None

    def _settings(self, serializer: Serializer) -> None:
        if serializer.protocol is not None:
            self._protocol = serializer.protocol
        if serializer is not _default_serializer:
            self._serializer = serializer

    if not _cpickle.C_PICKLER:  # pragma: no cover - PyPy: no C pickler
        import pickle as _pure_pickle

        # The pure-Python pickler looks types up in its class's ``dispatch``,
        # which importing dill fills with dill's own savers (``dill.extend``):
        # "pickle" mode would turn into dill, and "auto" would stop handing
        # whole objects to dill as it does on CPython.  Ours keeps pickle's.
        dispatch = {
            kind: save
            for kind, save in _pure_pickle._Pickler.dispatch.items()
            if getattr(save, "__module__", None) == "pickle"
        }

        def __init__(self, *args: Any, **kwds: Any) -> None:
            # The stdlib ForkingPickler's signature; on CPython the C
            # pickler's __init__ (no Python-level call per message) has none.
            super().__init__(*args, **kwds)

    def reducer_override(self, obj: Any) -> Any:
        reducer = _extra_reducers.get(type(obj))
        if reducer is not None:
            return reducer(obj)
        if _socket_reducer_pending and type(obj).__module__ == "socket":
            return _reduce_if_socket(obj)
        if _REFUSE_RUNNING_FRAMES:
            _refuse_running_frame(obj)
        return NotImplemented


class ForkingPickler(_PlainForkingPickler):
    """The C pickler that hands to dill only what pickle cannot carry.

    Drop-in for the standard library's ``ForkingPickler``: ``register`` adds a
    reducer for a type, ``dumps`` returns a ``memoryview``, ``loads`` is
    ``pickle.loads``.  (The C pickler calls ``reducer_override`` only for
    objects other than plain containers and atoms, so plain data never pays
    for the hook.)
    """

    _extra_reducers = _extra_reducers
    _copyreg_dispatch_table = copyreg.dispatch_table

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        reducer = _extra_reducers.get(kind)
        if reducer is not None:
            return reducer(obj)
        if (kind is types.FunctionType or isinstance(obj, type)) and _needs_value(obj):
            return self._reduce_by_value(obj)
        if kind is memoryview:
            return _out_of_band.reduce_memoryview(obj, self._protocol >= 5)
        if _socket_reducer_pending and kind.__module__ == "socket":
            return _reduce_if_socket(obj)
        if _REFUSE_RUNNING_FRAMES:
            _refuse_running_frame(obj)
        return NotImplemented

    def _reduce_by_value(self, obj: Any) -> tuple:
        serializer = self._serializer or _default_serializer
        bridge = _bridge()
        by_name = getattr(obj, "__module__", None) in _MAIN_MODULE_NAMES and "<" not in obj.__qualname__
        try:
            if not serializer.recurse and bridge.is_main_definition(obj):
                protocol = self._protocol

                def make() -> bytes:
                    return bridge.dumps_main(obj, protocol, serializer, _extra_reducers)

                if type(obj) is types.FunctionType:
                    # A loop of apply_async/submit sends the same function again and again.
                    settings = (protocol, serializer, tuple(sorted(bridge.dill.settings.items())))
                    payload = _cached_payload(obj, settings, make)
                else:
                    payload = make()
                if by_name:
                    return _load_main_object, (obj.__qualname__, _fingerprint(obj), payload)
                return _load_main, (payload,)
            protocol = self._protocol

            def make_value() -> bytes:
                return bridge.dumps_value(obj, protocol, serializer, _extra_reducers)

            if type(obj) is types.FunctionType:
                value_settings = ("value", protocol, serializer, tuple(sorted(bridge.dill.settings.items())))
                return _load_dill, (_cached_payload(obj, value_settings, make_value),)
            return _load_dill, (make_value(),)
        except Exception:
            if not by_name:
                raise
            # dill cannot copy everything (a ctypes Structure's metaclass, say);
            # by name still works for a receiver that runs the same program.
            return NotImplemented

    @classmethod
    def register(cls, type: type, reduce: Callable[[Any], Any]) -> None:
        """Use ``reduce(obj)`` to serialize instances of ``type``."""
        _extra_reducers[type] = reduce

    @classmethod
    def dumps(cls, obj: Any, protocol: Optional[int] = None) -> memoryview:
        """Serialize ``obj`` with the default settings (``protocol`` optional)."""
        return dumps(obj, protocol)

    loads = staticmethod(_cpickle.loads)


register = ForkingPickler.register


def dump(obj: Any, file: Any, protocol: Optional[int] = None) -> None:
    """Serialize ``obj`` into ``file`` with the default settings."""
    serializer = _default_serializer
    if protocol is not None:
        serializer = serializer.replace(protocol=protocol)
    serializer.dump(obj, file)


def load(file: Any) -> Any:
    """Read one object written by ``dump``."""
    return _cpickle.load(file)


# ---------------------------------------------------------------- handles and descriptors

if sys.platform == "win32":  # pragma: no cover - designed in, untested here
    import _winapi

    def duplicate(
        handle: int,
        target_process: Optional[int] = None,
        inheritable: bool = False,
        *,
        source_process: Optional[int] = None,
    ) -> int:
        """Duplicate a Windows handle into ``target_process`` (default: ourselves)."""
        current_process = _winapi.GetCurrentProcess()
        if source_process is None:
            source_process = current_process
        if target_process is None:
            target_process = current_process
        return _winapi.DuplicateHandle(
            source_process, handle, target_process, 0, inheritable, _winapi.DUPLICATE_SAME_ACCESS
        )

    def steal_handle(source_pid: int, handle: int) -> int:
        """Move ``handle`` out of process ``source_pid`` into this one."""
        source_process = _winapi.OpenProcess(_winapi.PROCESS_DUP_HANDLE, False, source_pid)
        try:
            return _winapi.DuplicateHandle(
                source_process,
                handle,
                _winapi.GetCurrentProcess(),
                0,
                False,
                _winapi.DUPLICATE_SAME_ACCESS | _winapi.DUPLICATE_CLOSE_SOURCE,
            )
        finally:
            _winapi.CloseHandle(source_process)

    def send_handle(conn: Any, handle: int, destination_pid: int) -> None:
        """Send ``handle`` over ``conn`` to the process ``destination_pid``."""
        dh = DupHandle(handle, _winapi.DUPLICATE_SAME_ACCESS, destination_pid)
        conn.send(dh)

    def recv_handle(conn: Any) -> int:
        """Receive a handle sent with ``send_handle``."""
        return conn.recv().detach()

    class DupHandle:
        """A handle duplicated into another process, detached on arrival."""

        def __init__(self, handle: int, access: int, pid: Optional[int] = None) -> None:
            if pid is None:
                pid = os.getpid()
            proc = _winapi.OpenProcess(_winapi.PROCESS_DUP_HANDLE, False, pid)
            try:
                self._handle = _winapi.DuplicateHandle(_winapi.GetCurrentProcess(), handle, proc, access, False, 0)
            finally:
                _winapi.CloseHandle(proc)
            self._access = access
            self._pid = pid

        def detach(self) -> int:
            if self._pid == os.getpid():
                return self._handle
            proc = _winapi.OpenProcess(_winapi.PROCESS_DUP_HANDLE, False, self._pid)
            try:
                return _winapi.DuplicateHandle(
                    proc, self._handle, _winapi.GetCurrentProcess(), self._access, False, _winapi.DUPLICATE_CLOSE_SOURCE
                )
            finally:
                _winapi.CloseHandle(proc)

    __all__ += ["DupHandle", "duplicate", "steal_handle"]

else:
    ACKNOWLEDGE = sys.platform == "darwin"

    def sendfds(sock: _socket.socket, fds: list[int]) -> None:
        """Send the file descriptors ``fds`` over the Unix socket ``sock``."""
        import _socket  # (constants: socket.py's import costs ms)
        import array

        fd_array = array.array("i", fds)
        message = bytes([len(fd_array) % 256])
        sock.sendmsg([message], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fd_array)])
        if ACKNOWLEDGE and sock.recv(1) != b"A":
            raise RuntimeError("did not receive acknowledgement of fd")

    def recvfds(sock: _socket.socket, size: int) -> list[int]:
        """Receive exactly ``size`` file descriptors sent with ``sendfds``."""
        import _socket  # (constants: socket.py's import costs ms)
        import array

        fd_array = array.array("i")
        bytes_size = fd_array.itemsize * size
        msg, ancdata, _flags, _addr = sock.recvmsg(1, _socket.CMSG_SPACE(bytes_size))
        if not msg and not ancdata:
            raise EOFError
        try:
            if ACKNOWLEDGE:
                sock.send(b"A")
            if len(ancdata) != 1:
                raise RuntimeError(f"received {len(ancdata)} items of ancdata")
            level, kind, data = ancdata[0]
            if level != _socket.SOL_SOCKET or kind != _socket.SCM_RIGHTS:
                raise RuntimeError("unexpected ancillary data")
            if len(data) % fd_array.itemsize:
                raise ValueError("ancillary data has a partial file descriptor")
            fd_array.frombytes(data)
            if len(fd_array) % 256 != msg[0]:
                raise AssertionError(f"Len is {len(fd_array)} but msg[0] is {msg[0]!r}")
            return list(fd_array)
        except (ValueError, IndexError) as exc:
            raise RuntimeError("invalid data received") from exc

    def _socket_over(conn: Any) -> socket.socket:
        # A socket object over a copy of the connection's descriptor that
        # leaves its (shared) blocking mode alone, whatever the default timeout.
        import socket

        from . import util

        return util.socket_over_fd(os.dup(conn.fileno()), socket.AF_UNIX, socket.SOCK_STREAM)

    def send_handle(conn: Any, handle: int, destination_pid: int) -> None:
        """Send the descriptor ``handle`` over the connection ``conn``."""
        with _socket_over(conn) as sock:
            sendfds(sock, [handle])

    def recv_handle(conn: Any) -> int:
        """Receive a descriptor sent with ``send_handle``; the caller owns it."""
        with _socket_over(conn) as sock:
            return recvfds(sock, 1)[0]

    def DupFd(fd: int) -> Any:
        """Return an object that, once unpickled in another process, yields a copy of ``fd``.

        While a child is being created the descriptor rides along with it;
        otherwise the resource sharer hands it over on request.
        """
        popen_obj = get_spawning_popen()
        if popen_obj is not None:
            return popen_obj.DupFd(popen_obj.duplicate_for_child(fd))
        if _have_send_handle():
            # The one import cycle the platform forces: outside a child's
            # creation a descriptor can only reach another process through a
            # server that sends it over an authenticated connection (the
            # resource sharer: _listener, _handshake, _connection), and
            # connections pickle their messages with this module.  Deferred
            # to here, so that neither side needs the other to load.
            from . import resource_sharer

            return resource_sharer.DupFd(fd)
        raise ValueError("SCM_RIGHTS appears not to be available")


# ---------------------------------------------------------------- sockets


def _reduce_socket(sock: socket.socket) -> tuple:
    df = DupFd(sock.fileno())
    return _rebuild_socket, (df, sock.family, sock.type, sock.proto)


def _rebuild_socket(df: Any, family: int, kind: int, proto: int) -> socket.socket:
    import socket

    fd = df.detach()
    return socket.socket(family, kind, proto, fileno=fd)


def _reduce_if_socket(obj: Any) -> Any:
    """A reducer's result for a socket met before its reducer was registered (else ``NotImplemented``)."""
    _register_socket_reducer()
    reducer = _extra_reducers.get(type(obj))
    return NotImplemented if reducer is None else reducer(obj)


# Sockets have a reducer on POSIX.  The socket module is not imported for
# it (its import costs ``import multiprocess`` milliseconds): the reducer
# is registered at once if the program has imported socket already, else
# by the picklers when they first meet an object of the socket module.
_socket_reducer_pending = False


def _register_socket_reducer() -> None:
    global _socket_reducer_pending
    import socket

    register(socket.socket, _reduce_socket)
    _socket_reducer_pending = False


if sys.platform != "win32":
    if "socket" in sys.modules:
        _register_socket_reducer()
    else:
        _socket_reducer_pending = True


class AbstractReducer:
    """Base for alternative reducers assignable to ``ctx.reducer`` (stdlib API)."""

    ForkingPickler = ForkingPickler
    register = staticmethod(register)
    dump = staticmethod(dump)
    send_handle = staticmethod(send_handle)
    recv_handle = staticmethod(recv_handle)
    if sys.platform != "win32":
        sendfds = staticmethod(sendfds)
        recvfds = staticmethod(recvfds)
        DupFd = staticmethod(DupFd)

    def __init__(self, *args: Any) -> None:
        pass

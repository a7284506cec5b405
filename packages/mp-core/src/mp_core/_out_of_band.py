"""Large buffers beside the pickle stream: what the picklers write a message into, and the envelope.

A message whose buffers are all below the threshold is the plain pickle
stream, byte for byte what it was without this module.  Above it, the
buffers leave the stream (pickle protocol 5's out-of-band buffers) and go
through shared memory (``mp_core._segments``); the message becomes an
*envelope*, itself a tiny pickle, so that every receiver (``pickle.loads``
wherever it is called: connections, queues, pool workers, manager servers)
opens it without knowing about it::

    _load_envelope(refs, stream)
        refs:   one per buffer, in the order the stream asks for them:
                a segment reference (name, size, offset, length), or the
                bytes themselves when the buffer had to stay in band
        stream: the pickle stream, with NEXT_BUFFER where each buffer was

Which buffers leave the stream, found while pickling:

* ``PickleBuffer``s (NumPy arrays and anything else with protocol 5's
  ``__reduce_ex__``): the pickler's ``buffer_callback`` keeps those of at
  least ``threshold`` bytes; NumPy arrays of object dtype have none and stay
  in band, and so do all of a C extension's on PyPy (whose cpyext layer
  keeps a view on a segment alive long after the array that used it);
* ``bytes`` and ``bytearray``, which the C pickler writes itself and never
  shows to ``reducer_override``: both picklers hand a payload of 64 KiB or
  more to the file's ``write`` as the object itself, right behind its
  header (``BINBYTES``/``BINBYTES8``/``BYTEARRAY8``).  ``Collector`` is that
  file (``write`` is a list's ``append``: no Python call per write); a
  payload of at least ``threshold`` bytes is cut out afterwards and its
  header replaced with ``bytes(NEXT_BUFFER)`` (or ``bytearray(...)``): one
  copy on receive, since those types own their memory;
* ``memoryview``s (which pickle itself refuses) are reduced to a
  ``PickleBuffer`` by ``reduction.ForkingPickler`` and arrive as views of
  the same format and shape.

The buffer_callback and the file see events in the order of the stream, so
the buffers' order is rebuilt from where each was met (``_ordered``).

Over a Unix socket pair whose ends are both ours (``Pipe()``, duplex), a
buffer travels as an anonymous memory file whose descriptor rides with the
message (``mp_core._fd_segments``): ``Connection.send`` passes the
connection's ``Carrier`` to the serializer (``dumps(..., carrier=)``),
and ``Connection.recv`` hands the message's descriptors to the envelope's
loader (``receiving_with``: ``pickle.loads`` calls it, so through a
thread-local).  Such a reference is four integers (the
descriptor's position among the message's, the file's size, the buffer's
offset and length); a named segment's starts with its name.
"""

from __future__ import annotations

import io
import struct
import threading

from . import _cpickle

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time (a spawned child loads this module); annotations are strings
    from typing import Any, Callable, Optional

# The shared-memory segments (mp_core._segments, with the tracker and the
# locks) are imported by the first large buffer or envelope, never by a
# process that sends only small messages.
_segments: Any = None


def _load_segments() -> Any:
    global _segments
    if _segments is None:
        from . import _segments as segments

        _segments = segments
    return _segments


_fd_segments: Any = None


def _load_fd_segments() -> Any:
    global _fd_segments
    if _fd_segments is None:
        from . import _fd_segments as fd_segments

        _fd_segments = fd_segments
    return _fd_segments


class Carrier:
    """What one connection that can carry descriptors keeps for them (``Connection._carrier``).

    ``outgoing``: the descriptors of the message being serialized, in the
    order its references name them (the sender closes them once the
    message is written); ``in_flight``: the bytes of the memory files sent
    since the receiver was last seen to have read everything (the bound of
    ``mp_core._fd_segments``); ``fd``: the socket.
    """

    __slots__ = ("fd", "outgoing", "in_flight")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.outgoing: list[int] = []
        self.in_flight = 0


class _Current(threading.local):
    incoming: Optional[list[int]] = None


_current = _Current()


def receiving_with(descriptors: Optional[list[int]]) -> Optional[list[int]]:
    """Make ``descriptors`` those this thread's next envelope loads its references from; return the previous list.

    A descriptor taken by a reference is replaced by -1 in the list; the
    caller closes the others once the message is loaded.
    """
    previous = _current.incoming
    _current.incoming = descriptors
    return previous


__all__ = [
    "Carrier",
    "Collector",
    "DEFAULT_THRESHOLD",
    "MIN_THRESHOLD",
    "check_threshold",
    "discard",
    "is_envelope",
    "reduce_memoryview",
    "rebuild_memoryview",
    "receiving_with",
]

#: Buffers of at least this many bytes go through shared memory by default
#: (measured: below it, creating and mapping a segment costs more than
#: copying through the channel; see tools/bench, section ``zerocopy``).
DEFAULT_THRESHOLD = 8 << 20
#: The smallest threshold accepted: a block the picklers flush on their own
#: is below 128 KiB, so a payload this large cut behind a header is always
#: a bytes object's or a bytearray's own.
MIN_THRESHOLD = 256 * 1024

_PyPickleBuffer = _cpickle.PickleBuffer
_u32 = struct.Struct("<I")
_u64 = struct.Struct("<Q")
#: header opcode -> (header size, size field, the type it writes)
_HEADERS = {
    ord("B"): (5, _u32, bytes),  # BINBYTES
    0x8E: (9, _u64, bytes),  # BINBYTES8
    0x96: (9, _u64, bytearray),  # BYTEARRAY8
}
# STACK_GLOBAL mp_core._out_of_band.<name>, NEXT_BUFFER, TUPLE1, REDUCE: <name>(the buffer).
_CALL_ON_BUFFER = {
    bytes: b"\x8c\x14mp_core._out_of_band\x8c\x0ecopy_out_bytes\x93\x97\x85R",
    bytearray: b"\x8c\x14mp_core._out_of_band\x8c\x12copy_out_bytearray\x93\x97\x85R",
}
# The pure-Python pickler (PyPy) writes in-band buffers as views it releases
# right after: those are copied as they are written.
_PURE_PYTHON_PICKLER = not _cpickle.C_PICKLER
# (mmap is imported only where it is needed: it costs CPython's ``import multiprocess`` time.)
_PYPY_OUT_OF_BAND_EXPORTERS: tuple[type, ...] = (
    (bytes, bytearray, memoryview, __import__("mmap").mmap) if _PURE_PYTHON_PICKLER else ()
)


def check_threshold(threshold: Optional[int]) -> Optional[int]:
    """``threshold`` if it is a valid out-of-band threshold (``None``: off); else ``ValueError``."""
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < MIN_THRESHOLD:
        raise ValueError(f"oob_threshold must be None or an int >= {MIN_THRESHOLD} bytes, not {threshold!r}")
    return threshold


class Collector:
    """The binary file a pickler writes one message into, and its ``buffer_callback``.

    ``message()`` returns the message as a list of bytes-like parts to send
    in order: the pickle stream as written when nothing reached
    ``threshold`` bytes, else one envelope.  ``reset()`` makes it ready for
    the next message (a reused pickler keeps writing into the same list).
    """

    __slots__ = ("chunks", "write", "kept", "threshold")

    def __init__(self, threshold: int) -> None:
        self.chunks: list[Any] = []
        self.write: Callable[[Any], Any]
        if _PURE_PYTHON_PICKLER:
            self.write = self._write_copying_views
        else:
            self.write = self.chunks.append
        self.kept: Optional[list[tuple[int, Any]]] = None  # (chunks written before it, PickleBuffer)
        self.threshold = threshold

    def _write_copying_views(self, data: Any) -> None:  # pragma: no cover - PyPy
        self.chunks.append(bytes(data) if type(data) is memoryview else data)

    def buffer_callback(self, buffer: _cpickle.PickleBuffer) -> bool:
        """Keep ``buffer`` out of band if it is large enough; true means in band."""
        try:
            with buffer.raw() as raw:
                size = raw.nbytes
                exporter = raw.obj
        except BufferError:
            return True  # not contiguous: the pickler says why, in band
        if size < self.threshold:
            return True
        if _PURE_PYTHON_PICKLER and not isinstance(exporter, _PYPY_OUT_OF_BAND_EXPORTERS):
            # PyPy: a C extension's view on a segment (a NumPy array's base)
            # outlives the array by far (cpyext), and the segment with it.
            return True
        kept = self.kept
        if kept is None:
            kept = self.kept = []
        kept.append((len(self.chunks), buffer))
        return False

    def reset(self) -> None:
        self.chunks.clear()
        self.kept = None

    def message(self, carrier: Optional[Carrier] = None) -> list[Any]:
        """The parts of the message written so far (see the class); ``carrier``: see ``_envelope``."""
        chunks = self.chunks
        if self.kept is None:
            if len(chunks) == 1:
                return [chunks[0]]
            cut = self._cut_payloads()
            if cut is None:
                return [_contiguous(chunk) for chunk in chunks]
            stream, payloads = cut
            return [_envelope(stream, _ordered([], payloads), carrier)]
        cut = self._cut_payloads()
        if cut is None:
            stream, payloads = [_contiguous(chunk) for chunk in chunks], []
        else:
            stream, payloads = cut
        return [_envelope(stream, _ordered(self.kept, payloads), carrier)]

    def _cut_payloads(self) -> Optional[tuple[list[Any], list[tuple[int, Any]]]]:
        """The stream with large bytes/bytearray payloads cut out, and those payloads; ``None`` if none."""
        threshold = self.threshold
        chunks = self.chunks
        stream: list[Any] = []
        payloads: list[tuple[int, Any]] = []
        for position, chunk in enumerate(chunks):
            kind = type(chunk)
            if (kind is bytes or kind is bytearray) and stream and len(chunk) >= threshold:
                previous = stream[-1]
                header = _header_before(previous, chunk)
                if header:
                    stream[-1] = memoryview(previous)[:-header]
                    stream.append(_CALL_ON_BUFFER[kind])
                    payloads.append((position, chunk))
                    continue
            stream.append(_contiguous(chunk))
        return (stream, payloads) if payloads else None


def _contiguous(chunk: Any) -> Any:
    # An in-band PickleBuffer of a Fortran-ordered array: its raw bytes.
    return chunk.raw() if type(chunk) is _PyPickleBuffer else chunk


def _header_before(previous: Any, payload: Any) -> int:
    """The size of the header of ``payload`` at the end of ``previous`` (0: it is not one)."""
    size, kind, end = len(payload), type(payload), len(previous)
    for header_size in (5, 9):
        if end < header_size:
            continue
        entry = _HEADERS.get(previous[end - header_size])
        if entry is not None and entry[0] == header_size and entry[2] is kind:
            if entry[1].unpack_from(previous, end - header_size + 1)[0] == size:
                return header_size
    return 0


def _ordered(kept: list[tuple[int, Any]], payloads: list[tuple[int, Any]]) -> list[Any]:
    """The buffers in stream order: a kept buffer met before chunk ``n`` was written precedes payload ``n``."""
    events = [(position, 0, index, buffer) for index, (position, buffer) in enumerate(kept)]
    events += [(position, 1, index, payload) for index, (position, payload) in enumerate(payloads)]
    events.sort(key=lambda event: event[:3])
    return [event[3] for event in events]


def _raw_bytes(raw: memoryview) -> memoryview:
    """``raw`` as 1-D unsigned bytes: PyPy's ``PickleBuffer.raw()`` keeps the exporter's format and shape."""
    if raw.format == "B" and raw.ndim == 1:
        return raw
    if raw.c_contiguous:
        return raw.cast("B")
    return memoryview(raw.tobytes(order="A"))  # Fortran order on PyPy: its bytes in memory order (a copy)


def _envelope(stream: list[Any], buffers: list[Any], carrier: Optional[Carrier] = None) -> bytes:
    """The envelope of ``stream`` and its out-of-band ``buffers``.

    With the ``carrier`` of a connection that can carry descriptors, the
    buffers go into memory files whose descriptors join ``carrier.outgoing``
    (``mp_core._fd_segments``); else, or where that is refused, into named
    segments; else in band.
    """
    refs: list[Any] = []
    fd_segments = _load_fd_segments() if carrier is not None else None
    for buffer in buffers:
        view = _raw_bytes(buffer.raw()) if type(buffer) is _PyPickleBuffer else memoryview(buffer)
        ref = None
        if type(buffer) is _PyPickleBuffer:
            found = _load_segments().locate(view)
            if found is not None:
                segment, offset = found
                if fd_segments is not None and fd_segments.is_fd_segment(segment):
                    ref = fd_segments.store_reference(segment, offset, view.nbytes, carrier)
                elif not _is_fd_segment(segment):
                    ref = _load_segments().store_reference(segment, offset, view.nbytes)
        if ref is None and fd_segments is not None:
            ref = fd_segments.store(view, carrier)
        if ref is None:
            ref = _load_segments().store(view)
        # In band (the limit of bytes in flight, or /dev/shm full): the
        # buffer itself, pickled into the envelope.
        refs.append(ref if ref is not None else buffer)
    return _cpickle.dumps(_Envelope(tuple(refs), b"".join(stream)), 5)


def _is_fd_segment(segment: Any) -> bool:
    # A memory file received as a descriptor cannot be named for a channel
    # without descriptors: its buffer is copied into a named segment.
    return _fd_segments is not None and _fd_segments.is_fd_segment(segment)


class _Envelope:
    __slots__ = ("refs", "stream")

    def __init__(self, refs: tuple, stream: bytes) -> None:
        self.refs = refs
        self.stream = stream

    def __reduce__(self) -> tuple:
        return _load_envelope, (self.refs, self.stream)


def copy_out_bytes(buffer: Any) -> bytes:
    """A ``bytes`` payload that came out of band: copied out of its segment, which goes at once."""
    data = bytes(buffer)
    if type(buffer) is memoryview:
        _load_segments().release(buffer)
    return data


def copy_out_bytearray(buffer: Any) -> bytearray:
    """A ``bytearray`` payload that came out of band: copied out of its segment, which goes at once."""
    data = bytearray(buffer)
    if type(buffer) is memoryview:
        _load_segments().release(buffer)
    return data


def _load_envelope(refs: tuple, stream: bytes) -> Any:
    """Rebuild a message sent with out-of-band buffers (called by the receiver's unpickler)."""
    buffers = []
    for ref in refs:
        if type(ref) is not tuple:
            buffers.append(ref)  # in band
        elif type(ref[0]) is int:
            buffers.append(_load_fd_segments().receive(ref, _current.incoming))
        else:
            buffers.append(_load_segments().receive(ref))
    return _cpickle.loads(stream, buffers=buffers)


# What an envelope starts with: protocol 5, a frame (8-byte size), then its loader.
_ENVELOPE_HEAD = b"\x80\x05\x95"
_ENVELOPE_LOADER = b"\x8c\x14mp_core._out_of_band\x94\x8c\x0e_load_envelope\x94"
_LOADER_AT = len(_ENVELOPE_HEAD) + 8


def is_envelope(message: Any) -> bool:
    """Whether ``message`` (bytes-like) is an envelope (a message with out-of-band buffers)."""
    with memoryview(message) as view:
        head = view[: _LOADER_AT + len(_ENVELOPE_LOADER)].tobytes()
    return head.startswith(_ENVELOPE_HEAD) and head[_LOADER_AT:] == _ENVELOPE_LOADER


def discard(message: Any) -> None:
    """Free the segments of ``message`` (a ``dumps(oob=True)`` result) that will never be received.

    For a sender that drops a message it made (a full queue's ``put``
    timing out, a pool call cancelled before it was sent); nothing happens
    for a message without segments.  Only the envelope's references are
    read: no object of the message is rebuilt.
    """
    if is_envelope(message):
        _Discarder(io.BytesIO(message)).load()


def _unlink_refs(refs: tuple, stream: bytes) -> None:
    for ref in refs:
        if type(ref) is tuple and type(ref[0]) is not int:  # (a descriptor goes with its sender's close)
            _load_segments().unlink(ref)


class _Discarder(_cpickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == __name__ and name == "_load_envelope":
            return _unlink_refs
        # An envelope names nothing else (its stream is bytes, its references
        # tuples of str and int): anything else is not ours to load.
        raise _cpickle.UnpicklingError(f"not an envelope of large buffers: it names {module}.{name}")


# ---------------------------------------------------------------- memoryview


def reduce_memoryview(view: memoryview, protocol_5: bool = True) -> tuple:
    """Reduce a memoryview: its bytes as a ``PickleBuffer`` (out of band when large), its format and shape.

    Before protocol 5 the bytes travel as ``bytes`` (a copy).
    """
    fmt, shape, readonly = view.format, tuple(view.shape or ()), view.readonly
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    elif view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    data = _PyPickleBuffer(view) if protocol_5 else view.tobytes()
    return rebuild_memoryview, (data, fmt, shape, readonly)


def rebuild_memoryview(buffer: Any, fmt: str, shape: tuple, readonly: bool) -> memoryview:
    """The view ``reduce_memoryview`` described, on ``buffer`` (a segment's view when it came out of band).

    A format ``memoryview.cast`` cannot produce (NumPy's ``'<d'``, structs)
    arrives as the bytes (format ``'B'``).
    """
    view = memoryview(buffer)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    if fmt != "B" or shape != (view.nbytes,):
        try:
            any_view: Any = view  # a format typeshed cannot name
            view = any_view.cast(fmt, shape)
        except (TypeError, ValueError):
            pass
    if readonly and not view.readonly:
        view = view.toreadonly()
    return view

"""Strategies for byte streams of the wire format: valid frames, then mutated ones."""

from __future__ import annotations

import struct
import sys
from typing import Optional

from hypothesis import strategies as st

SHORT = struct.Struct("!i")
LONG = struct.Struct("!Q")

#: Headers no honest sender writes: malformed, absurd or merely enormous sizes.
ABSURD_HEADERS = [
    SHORT.pack(-2),
    SHORT.pack(-(2**31)),
    SHORT.pack(2**31 - 1),
    SHORT.pack(512 << 20),
    SHORT.pack(-1) + LONG.pack(2**64 - 1),
    SHORT.pack(-1) + LONG.pack(sys.maxsize + 1),
    SHORT.pack(-1) + LONG.pack(2**62),
    SHORT.pack(-1) + LONG.pack(1 << 40),
    SHORT.pack(-1) + LONG.pack(16 << 30),
    SHORT.pack(-1),  # a long marker with no size behind it
]


def encode(payload: bytes, long_form: bool = False) -> bytes:
    if long_form:
        return SHORT.pack(-1) + LONG.pack(len(payload)) + payload
    return SHORT.pack(len(payload)) + payload


#: Payloads: mostly small, some past the 64 KiB read and 256 KiB read-ahead
#: sizes.  A big one is drawn as its size and made in the test: hypothesis
#: keeps what its strategies return, and must not keep megabytes per case.
payload_specs = st.one_of(st.binary(max_size=200), st.integers(min_value=16 * 1024, max_value=600 * 1024))


def payload(spec) -> bytes:
    return spec if isinstance(spec, bytes) else bytes([spec % 251]) * spec


frame_specs = st.lists(st.tuples(payload_specs, st.booleans()), max_size=5)


@st.composite
def mutations(draw, length: int) -> Optional[tuple]:
    """None (keep the stream) or one mutation of a stream of ``length`` bytes."""
    kind = draw(st.sampled_from(["none", "truncate", "flip", "insert", "header", "replace"]))
    at = draw(st.integers(min_value=0, max_value=length))
    if kind == "none":
        return None
    if kind == "truncate":
        return (kind, at)
    if kind == "flip":
        return (kind, min(at, max(length - 1, 0)), draw(st.integers(min_value=1, max_value=255)))
    if kind == "insert":
        return (kind, at, draw(st.binary(min_size=1, max_size=40)))
    if kind == "header":
        return (kind, at, draw(st.sampled_from(ABSURD_HEADERS)))
    return (kind, draw(st.binary(max_size=300)))


def mutate(stream: bytes, mutation: Optional[tuple]) -> bytes:
    if mutation is None:
        return stream
    kind = mutation[0]
    if kind == "truncate":
        return stream[: mutation[1]]
    if kind == "flip":
        if not stream:
            return stream
        at, mask = mutation[1], mutation[2]
        return stream[:at] + bytes([stream[at] ^ mask]) + stream[at + 1 :]
    if kind in ("insert", "header"):
        at, extra = mutation[1], mutation[2]
        return stream[:at] + extra + stream[at:]
    return mutation[1]


@st.composite
def streams(draw) -> tuple:
    """A stream of frames of the wire format, maybe mutated, as a description (see ``build``)."""
    frames = draw(frame_specs)
    length = sum(
        (12 if long_form else 4)
        + len(payload(spec) if isinstance(spec, bytes) else b"")
        + (spec if isinstance(spec, int) else 0)
        for spec, long_form in frames
    )
    return frames, draw(mutations(length))


def build(case: tuple) -> tuple[list[bytes], bytes, bool]:
    """``(payloads, stream, intact)`` for a description drawn by ``streams()``."""
    frames, mutation = case
    payloads = [payload(spec) for spec, _ in frames]
    stream = b"".join(encode(data, long_form) for data, (_, long_form) in zip(payloads, frames))
    mutated = mutate(stream, mutation)
    return payloads, mutated, mutated == stream


class MemoryWatch:
    """How much this process's resident memory peaked above where it was when the watch started.

    Per case, not per process: the peak is reset (``/proc/self/clear_refs``)
    at the start, so the memory that hypothesis itself keeps does not count.
    Reports 0 where Linux's /proc is not there.
    """

    def __init__(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._start: Optional[int] = self._field("VmRSS")
        except OSError:
            self._start = None

    @staticmethod
    def _field(name: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1]) >> 10
        raise OSError(f"no {name} in /proc/self/status")

    def grown_mib(self) -> int:
        if self._start is None:
            return 0
        return self._field("VmHWM") - self._start

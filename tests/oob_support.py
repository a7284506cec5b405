"""What the zero-copy tests share: the threshold they set in every process, the buffer size, a digest."""

from __future__ import annotations

import hashlib
import sys

import pytest

from mp_core import _out_of_band, _segments, reduction

THRESHOLD = _out_of_band.MIN_THRESHOLD
SIZE = 2 * THRESHOLD

#: PyPy keeps C extensions' buffers (NumPy arrays) in band: see mp_core._out_of_band.
ARRAYS_OUT_OF_BAND = sys.implementation.name != "pypy"


def digest(data) -> str:
    return hashlib.sha256(memoryview(data).cast("B")).hexdigest()


#: How large buffers cross a ``Pipe()``: as memory files' descriptors, or as named segments.
CARRIERS = ["descriptors", "names"]


def use_threshold(in_flight_limit: int = _segments.DEFAULT_IN_FLIGHT_LIMIT, carrier: str = "descriptors") -> None:
    """Set the tests' threshold, in-flight limit and ``Pipe()``'s carrier in this process (also in children)."""
    reduction.configure(oob_threshold=THRESHOLD, oob_descriptors=carrier == "descriptors")
    _segments.set_in_flight_limit(in_flight_limit)


@pytest.fixture(autouse=True)
def threshold():
    """The tests' threshold for the test, the previous one restored after it."""
    before = reduction.get_serializer().oob_threshold
    use_threshold()
    yield
    reduction.configure(oob_threshold=before, oob_descriptors=True)

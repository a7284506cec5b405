"""mp_pool._sources.ReadAheadWindow with the feeder that reads through it: what a shutdown leaves to read."""

from __future__ import annotations

import pytest

from mp_pool._sources import IteratorSource, ReadAheadWindow

pytestmark = pytest.mark.timeout(60)


def read_all(source: IteratorSource) -> list:
    """Start the feeder, wait until it has ended, return its chunks as (items, error) pairs."""
    source.start()
    source.thread.join(30)
    assert not source.thread.is_alive()
    chunks = []
    while True:
        chunk = source.take()
        if chunk is None:
            return chunks
        chunks.append((chunk.items, chunk.error))


def test_a_shutdown_keeps_the_credits_granted_and_an_input_that_ends_within_them_is_no_error():
    window = ReadAheadWindow(4)
    source = IteratorSource(iter(range(2)), 1, lambda: None, 16, "feeder", window)
    window.close(RuntimeError("cannot schedule new futures after shutdown"), keep_credits=True)
    assert read_all(source) == [([0], None), ([1], None)]


def test_past_the_credits_kept_the_error_takes_the_next_position():
    window = ReadAheadWindow(2)
    error = RuntimeError("cannot schedule new futures after shutdown")
    source = IteratorSource(iter(range(10)), 1, lambda: None, 16, "feeder", window)
    window.close(error, keep_credits=True)
    assert read_all(source) == [([0], None), ([1], None), (None, error)]


def test_a_close_without_keeping_credits_reads_nothing_more():
    window = ReadAheadWindow(4)
    error = RuntimeError("stopped")
    source = IteratorSource(iter(range(10)), 1, lambda: None, 16, "feeder", window)
    window.close(error)
    assert read_all(source) == [(None, error)]


def test_credits_given_back_after_a_close_are_not_granted():
    window = ReadAheadWindow(1)
    window.close(RuntimeError("shut down"), keep_credits=True)
    window.release()
    assert window.acquire() is True  # the one kept
    assert window.acquire() is False

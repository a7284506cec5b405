"""The bytes a queue's feeder writes: each payload of a batch arrives as one message, both ways of writing."""

from __future__ import annotations

import os
import threading
from typing import Callable

import pytest

from mp_core._framing import joined_messages
from mp_core.connection import Pipe
from mp_sync._feed_writer import frames, write_blocking

BATCHES = {
    "one small payload": [b"x"],
    "one large payload": [bytes(range(256)) * 512],  # 128 KB: the header travels apart
    "several small ones": [b"first", b"", b"third" * 1000, b"\x00\xff"],
}


def read_back(batch: list, write: Callable[..., None]) -> list:
    """What a reader receives while ``write(writer)`` runs in a thread (a large batch exceeds the pipe)."""
    reader, writer = Pipe(duplex=False)
    try:

        def write_and_close() -> None:
            try:
                write(writer)
            finally:
                writer.close()  # a misframed stream then ends in EOFError, not a hang

        thread = threading.Thread(target=write_and_close)
        thread.start()
        try:
            received = [reader.recv_bytes() for _ in batch]
        finally:
            thread.join(60)
        assert not thread.is_alive()
        with pytest.raises(EOFError):
            reader.recv_bytes()  # and nothing after the batch
        return received
    finally:
        reader.close()
        writer.close()


@pytest.mark.parametrize("name", list(BATCHES))
def test_the_non_blocking_frames_read_back_as_the_batch(name):
    batch = BATCHES[name]
    data = b"".join(bytes(view) for view in frames(batch))
    assert read_back(batch, lambda writer: _write_all(writer.fileno(), data)) == batch


@pytest.mark.parametrize("name", list(BATCHES))
def test_the_blocking_writes_read_back_as_the_batch(name):
    batch = BATCHES[name]
    assert read_back(batch, lambda writer: write_blocking(writer, batch)) == batch


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def test_several_payloads_are_one_buffer_of_short_headed_messages():
    batch = [b"ab", b"", b"cde"]
    expected = b"\x00\x00\x00\x02ab" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x03cde"
    assert joined_messages(batch) == expected
    (only,) = frames(batch)
    assert bytes(only) == expected

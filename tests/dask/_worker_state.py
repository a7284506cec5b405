"""State that lives in a dask worker process, for the tests to look at (imported there by reference)."""

from __future__ import annotations

import os
import time

#: The tags the pools' initializers ran with in this process, in order.
INITIALIZED: list[str] = []


def record_initializer(tag: str) -> None:
    INITIALIZED.append(tag)


def failing_initializer(why: str) -> None:
    raise RuntimeError(why)


def what_this_worker_saw(_item: object) -> tuple[int, list[str]]:
    return os.getpid(), list(INITIALIZED)


def announce_then_block(fifo: str) -> None:
    """Write this worker's pid into the FIFO ``fifo`` (the test waits for it), then block until killed."""
    with open(fifo, "w") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(3600)


def block_until_released(fifo: str) -> str:
    """Wait for a line on the FIFO ``fifo`` (the test writes it) and return it."""
    with open(fifo) as f:
        return f.readline().strip()

"""Functions the soak's child processes run: kept in a module that imports nothing heavy.

A spawned pool worker or queue consumer imports this module by name, so it
costs that child nothing beyond the library under test.
"""

from __future__ import annotations

from typing import Any

#: A queue consumer's signal that a batch is complete: it answers with its count.
BATCH_END = "batch-end"


def add_one(x: int) -> int:
    """The tiny task."""
    return x + 1


def consume(messages: Any, acks: Any) -> None:
    """Count the messages of ``messages``; at ``BATCH_END`` put the count on ``acks``; stop at ``None``."""
    count = 0
    while True:
        item = messages.get()
        if item is None:
            return
        if item == BATCH_END:
            acks.put(count)
            count = 0
        else:
            count += 1

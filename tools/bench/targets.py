"""Targets for the processes that benchmarks start.

Kept in a module that imports nothing, so that a spawned child, which must
import the target's module, pays only for the library under test.
"""


def noop() -> None:
    """The trivial target of the ``start`` section."""

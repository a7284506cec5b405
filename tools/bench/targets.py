"""Targets for the processes and pools that benchmarks start.

Kept in a module that imports nothing, so that a spawned child, which must
import the target's module, pays only for the library under test.
"""


def noop() -> None:
    """The trivial target of the ``start`` section."""


def add_one(x: int) -> int:
    """The tiny task of the ``pool`` section: a named, module-level function (pickled by reference)."""
    return x + 1


def echo(obj: object) -> object:
    """The payload task of the ``pool`` section: return the argument, so it travels there and back."""
    return obj


def make_adder(n: int):  # -> Callable[[int], int]; no typing import here (see above)
    """A real closure over ``n`` (``make_adder.<locals>.add``): C pickle cannot carry it by reference."""

    def add(x: int) -> int:
        return x + n

    return add


def make_lambda():  # -> Callable[[int], int]
    """``lambda x: x + 1``, made afresh: the ``futures`` section's task for ours (C pickle cannot carry it)."""
    return lambda x: x + 1


def worker_pid(_: object) -> int:
    """The pid of the pool worker that ran the task (to tell when every worker of a pool is up)."""
    import os  # loaded at every interpreter's start-up: costs nothing

    return os.getpid()

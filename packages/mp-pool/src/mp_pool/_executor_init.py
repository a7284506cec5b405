"""An executor's initializer as ``concurrent.futures`` runs it: a failure is logged in the worker, then raised.

The standard library's process-pool workers log an initializer's exception
on the ``concurrent.futures`` logger (level CRITICAL, with the traceback)
before the executor breaks; programs and tests capture it there.  Kept
apart from ``mp_pool.futures`` so that a worker loads only this.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["LoggedInitializer"]


class LoggedInitializer:
    """Calls ``func(*args)``; if that raises, logs ``Exception in initializer:`` (``concurrent.futures``), re-raises."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func

    def __call__(self, *args: Any) -> Any:
        try:
            return self.func(*args)
        except BaseException:
            import logging  # only when it failed: a worker does not otherwise need logging

            logging.getLogger("concurrent.futures").critical("Exception in initializer:", exc_info=True)
            raise

    def __reduce__(self) -> tuple:
        return LoggedInitializer, (self.func,)

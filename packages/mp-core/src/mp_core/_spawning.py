"""Which child is being created right now, per thread.

While a start method serializes a new child's process object, objects that
may only travel to a new child (authkeys, semaphores, pipe ends) ask this
module whether such a transfer is under way and which ``Popen`` does it.
"""

from __future__ import annotations

import threading

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, Optional

_tls = threading.local()


def get_spawning_popen() -> Optional[Any]:
    """The ``Popen`` creating a child in this thread, or ``None``."""
    return getattr(_tls, "spawning_popen", None)


def set_spawning_popen(popen: Optional[Any]) -> None:
    """Mark (or, with ``None``, unmark) this thread as creating a child."""
    _tls.spawning_popen = popen


def assert_spawning(obj: Any) -> None:
    """Raise ``RuntimeError`` unless a child is being created in this thread."""
    if get_spawning_popen() is None:
        raise RuntimeError(f"{type(obj).__name__} objects should only be shared between processes through inheritance")

"""The start method in use, for the modules below the context that owns it.

Which start method the module-level API uses is the default context's state
(``mp_core.context``: chosen on first use or by ``set_start_method``).  A
few modules under the context must read or set it: spawn sends the parent's
method with the preparation data and applies it in the child, a child's
bootstrap adopts the method it was started with, and ``util._cleanup_tests``
forgets the choice.  They cannot import the context, which starts processes
through them (an import cycle), so the context registers its accessors here
when it loads: always before any of them runs, since the package imports it.
The state itself stays with the context.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, Callable, Optional

__all__ = ["register", "get", "force"]


def _unregistered(*args: Any) -> Any:
    raise RuntimeError("mp_core.context has not registered the start-method state (import mp_core first)")


_get: Callable[[], Optional[str]] = _unregistered
_force: Callable[[Optional[str]], None] = _unregistered


def register(get: Callable[[], Optional[str]], force: Callable[[Optional[str]], None]) -> None:
    """Called by the owner of the state (the context) once, when it is imported."""
    global _get, _force
    _get, _force = get, force


def get() -> Optional[str]:
    """The start method in use, as ``get_start_method()``: the default one is fixed if none was chosen."""
    return _get()


def force(method: Optional[str]) -> None:
    """Make ``method`` the start method in use, whatever was chosen before; ``None`` forgets the choice."""
    _force(method)

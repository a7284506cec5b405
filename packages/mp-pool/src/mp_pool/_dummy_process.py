"""``DummyProcess``: a thread that looks like a ``Process`` (``multiprocess.dummy.Process``)."""

from __future__ import annotations

import threading
import weakref

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time (a program's first Pool imports this); annotations are strings
    from typing import Any, Callable, Iterable, Mapping, Optional


__all__ = ["DummyProcess", "current_process", "active_children"]


class DummyProcess(threading.Thread):
    """A thread with the parts of the ``Process`` API that make sense for a thread.

    ``exitcode`` is ``None`` until the thread has been started and has
    finished, then ``0``; ``pid`` is ``None``.  Only the thread that created
    it may start it.
    """

    def __init__(
        self,
        group: None = None,
        target: Optional[Callable[..., Any]] = None,
        name: Optional[str] = None,
        args: Iterable[Any] = (),
        kwargs: Optional[Mapping[str, Any]] = None,
        *,
        daemon: Optional[bool] = None,
    ) -> None:
        super().__init__(group, target, name, tuple(args), dict(kwargs or {}), daemon=daemon)
        self._pid = None
        self._children: weakref.WeakKeyDictionary[DummyProcess, None] = weakref.WeakKeyDictionary()
        self._start_called = False
        self._parent = current_process()

    def start(self) -> None:
        current = current_process()
        if self._parent is not current:
            raise RuntimeError(f"Parent is {self._parent!r} but current_process is {current!r}")
        self._start_called = True
        children = getattr(self._parent, "_children", None)
        if children is not None:
            children[self] = None
        super().start()

    @property
    def exitcode(self) -> Optional[int]:
        if self._start_called and not self.is_alive():
            return 0
        return None

    @property
    def pid(self) -> None:
        return self._pid


def current_process() -> threading.Thread:
    """The running thread (the dummy API's notion of a process)."""
    return threading.current_thread()


def active_children() -> list[threading.Thread]:
    """The live ``DummyProcess`` children of the running thread."""
    children = getattr(current_process(), "_children", None)
    if children is None:
        return []
    for child in list(children):
        if not child.is_alive():
            children.pop(child, None)
    return list(children)


# The main thread is the root of the dummy process tree.
threading.main_thread()._children = weakref.WeakKeyDictionary()  # type: ignore[attr-defined]

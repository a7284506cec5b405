"""Progress of a map: turning the ``progress=`` argument into a sink the engine advances.

``map``, ``imap``, ``starmap`` (and their async forms) and the executor's
``map`` accept ``progress=``:

* ``None`` or ``False``: nothing;
* ``True``: a ``tqdm.auto.tqdm`` bar (a terminal bar, or a widget in
  Jupyter) whose ``total`` is the input's length when it is known;
* a dict of ``tqdm`` keyword arguments (``{"desc": "fitting", "unit":
  "model"}``): the same bar made with them (``total`` filled in unless
  given);
* any object with an ``update(n)`` method: a ``tqdm`` instance, a ``rich``
  progress wrapper, a counter of the user's.  It is advanced, never closed.

A bar made here is closed when its job ends: every item finished, or the
pool broke or was terminated, or the job was cancelled.  The engine
advances the sink by a chunk's number of items each time a chunk finishes
(succeeded or failed), in the thread that delivers results, so the
granularity is the chunk (per item with ``chunksize=1``).

tqdm is imported only when a bar is asked for; it is the ``progress``
extra (``pip install mp-pool[progress]``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from ._results import _report_callback_error

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time (a program's first Pool imports this); annotations are strings
    from typing import Any, Optional, Protocol, Union
else:
    from ._generic import Protocol

__all__ = ["Progress", "SupportsUpdate", "make_progress"]  # and, for type checkers, ProgressArgument

#: What to install for ``progress=True`` or a dict of bar arguments.
EXTRA_HINT = "pip install mp-pool[progress] (or multiprocess[progress])"


class SupportsUpdate(Protocol):
    """An object a map can report its progress to: ``update(n)`` adds ``n`` finished items."""

    def update(self, n: int) -> object: ...


if TYPE_CHECKING:
    #: What ``progress=`` accepts (see the module's docstring).
    ProgressArgument = Union[None, bool, Mapping[str, Any], SupportsUpdate]


class Progress:
    """A job's progress sink: ``advance(n)`` reports ``n`` more finished items to its target.

    ``owned``: the target is a bar made here, closed by ``close()`` (and
    once ``total`` items have been counted, so that it is closed before the
    result they complete is handed out); a target of the user's is only
    ever updated.  A target whose ``update()`` raises is reported on
    stderr, as a failing callback is, and not called again for this job:
    the pool carries on.
    """

    __slots__ = ("target", "owned", "total", "count", "closed", "_update", "_lock")

    def __init__(self, target: Any, owned: bool, total: Optional[int]) -> None:
        self.target = target
        self.owned = owned
        self.total = total  # the number of items when known: reaching it closes an owned bar
        self.count = 0  # items reported so far
        self.closed = False  # no more updates go to the target
        self._update = target.update
        self._lock = threading.Lock()  # a bar is closed by the delivering thread or by whoever stops the pool

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Progress {self.count}/{self.total} of {self.target!r} ({'ours' if self.owned else 'yours'}, {state})>"

    def advance(self, n: int) -> None:
        """``n`` more items finished (a chunk, succeeded or failed)."""
        if self.closed:
            return
        try:
            self._update(n)
        except Exception:
            self.closed = True
            _report_callback_error(self.target, "update()")
        self.count += n
        total = self.total
        if total is not None and self.count >= total:
            self.close()

    def set_total(self, total: int) -> None:
        """The input, which had no length, turned out to hold ``total`` items (it has been read to its end)."""
        if self.total is not None:
            return
        self.total = total
        if self.owned and not self.closed:
            try:
                self.target.total = total
                self.target.refresh()
            except Exception:
                _report_callback_error(self.target, "refresh()")
        if self.count >= total:
            self.close()

    def close(self) -> None:
        """The job has ended: close the target if it was made here (once); a target of the user's is left open."""
        if not self.owned:
            return
        with self._lock:
            if self.closed and self.target is None:
                return
            self.closed = True
            target, self.target = self.target, None
        if target is not None:
            try:
                target.close()
            except Exception:
                _report_callback_error(target, "close()")


def make_progress(progress: ProgressArgument, total: Optional[int]) -> Optional[Progress]:
    """The sink for a ``progress=`` argument, ``None`` for none; ``total``: the input's length, if known.

    Raises ``TypeError`` for anything but ``None``, a bool, a dict of bar
    arguments or an object with an ``update`` method, and ``ImportError``
    (naming the extra to install) when a bar is asked for and tqdm is not
    installed.
    """
    if progress is None or progress is False:
        return None
    if progress is True:
        return Progress(_new_bar({}, total), True, total)
    if isinstance(progress, Mapping):
        arguments = dict(progress)
        bar = _new_bar(arguments, total)
        return Progress(bar, True, arguments.get("total", total))
    if isinstance(progress, type):
        raise TypeError(
            f"progress must be an object with an update(n) method, not the class {progress.__name__} "
            "(pass an instance, or True for a tqdm bar)"
        )
    if callable(getattr(progress, "update", None)):
        return Progress(progress, False, total)
    raise TypeError(
        "progress must be None, True/False, a dict of tqdm arguments or an object with an "
        f"update(n) method (a tqdm bar, a counter), not {type(progress).__name__}"
    )


def _new_bar(arguments: dict[str, Any], total: Optional[int]) -> Any:
    """A ``tqdm.auto.tqdm`` bar made with ``arguments`` (``total`` filled in unless given)."""
    try:
        from tqdm.auto import tqdm
    except ImportError as exc:
        raise ImportError(
            f"progress=True or a dict of bar arguments needs tqdm, which is not installed: {EXTRA_HINT}"
        ) from exc
    arguments.setdefault("total", total)
    # Redrawn at most every ``mininterval`` seconds, but looked at on every
    # update: a chunk's update is rare enough, and a bar whose updates slow
    # down is never left stale (what tqdm's monitor thread is for).
    arguments.setdefault("miniters", 1)
    return _bar_class(tqdm)(**arguments)


_bar_classes: dict[type, type] = {}


def _bar_class(base: type) -> type:
    """``base`` (the terminal's or Jupyter's bar) without tqdm's monitor thread.

    tqdm starts a thread with its first bar, which lives on after the bar
    is closed; a pool created later under the fork start method would fork
    a multi-threaded process (CPython 3.12+ warns, and it is what the pool's
    zygote exists to avoid).  Subclasses share tqdm's registry of bars, so
    ours still stack with the program's own.
    """
    made = _bar_classes.get(base)
    if made is None:
        made = _bar_classes[base] = type(base.__name__, (base,), {"monitor_interval": 0, "__module__": __name__})
    return made

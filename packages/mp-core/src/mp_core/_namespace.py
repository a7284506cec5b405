"""``Namespace``: the attribute bag of ``multiprocess.managers`` and ``multiprocess.dummy``.

One class for both: what ``SyncManager.Namespace`` holds in its server and
what ``multiprocess.dummy.Manager().Namespace`` makes in the caller's
process.  Neither distribution (mp-managers, mp-pool) depends on the other,
so it lives here; a pickled one names this module, which both import.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any

__all__ = ["Namespace"]


class Namespace:
    """A bag of attributes given as keywords; its ``repr`` lists the public ones, sorted by name.

    ``Namespace(a=1).a == 1``; any name may be a keyword (``self`` too).
    Attributes whose name starts with ``_`` are left out of the ``repr``.
    """

    def __init__(self, /, **kwds: Any) -> None:
        self.__dict__.update(kwds)

    def __repr__(self) -> str:
        public = sorted((name, value) for name, value in self.__dict__.items() if not name.startswith("_"))
        body = ", ".join(f"{name}={value!r}" for name, value in public)
        return f"{type(self).__name__}({body})"

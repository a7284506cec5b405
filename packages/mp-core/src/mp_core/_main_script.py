"""Running the parent's main script again in a spawned child, as ``runpy.run_path`` does, for less.

A child started by spawn or forkserver runs the parent's main script once
more, as ``__mp_main__``, so that what it defines can be found by name.
``runpy.run_path`` does it, but importing ``runpy`` imports ``pkgutil``
and with it ``importlib.util``, ``typing``, ``re`` and ``enum``: 15-20 ms
of a child's start-up that a plain script does not need.  ``run_script``
does what ``run_path`` is documented to do for a plain source file, and
declines (``None``: the caller uses ``runpy``) for anything else: a
directory or a zip file with a ``__main__``, a compiled ``.pyc``.
"""

from __future__ import annotations

import io
import os
import sys
import types

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time (a spawned child loads this module); annotations are strings
    from typing import Any, Optional

__all__ = ["run_script"]


def run_script(path: str, run_name: str) -> Optional[dict[str, Any]]:
    """Run the source file ``path`` as module ``run_name``; its globals, or ``None`` if not a plain source file.

    As ``runpy.run_path(path, run_name=run_name)`` documents: a fresh
    namespace with ``__name__`` = ``run_name``, ``__file__`` = ``path``,
    ``__package__`` = the part of ``run_name`` before its last dot, and
    ``__spec__``, ``__loader__`` and ``__cached__`` None; while it runs,
    ``sys.argv[0]`` is ``path`` and ``sys.modules[run_name]`` a temporary
    module holding that namespace, both restored afterwards; the result is
    a copy of the namespace.
    """
    if not os.path.isfile(path):
        return None  # a directory (or nothing): runpy says what is wrong
    with io.open_code(os.path.abspath(path)) as file:
        source = file.read()
    if b"\0" in source:
        return None  # not source text: a zip application or a compiled file
    # dont_inherit: the script's own future imports, not this module's.
    code = compile(source, path, "exec", dont_inherit=True)
    module = types.ModuleType(run_name)
    namespace = module.__dict__
    namespace.update(
        __name__=run_name,
        __file__=path,
        __cached__=None,
        __doc__=None,
        __loader__=None,
        __package__=run_name.rpartition(".")[0],
        __spec__=None,
    )
    had_module = run_name in sys.modules
    saved_module = sys.modules.get(run_name)
    saved_argv0 = sys.argv[0] if sys.argv else None
    sys.modules[run_name] = module
    if saved_argv0 is not None:
        sys.argv[0] = path
    try:
        exec(code, namespace)
    finally:
        if had_module:
            sys.modules[run_name] = saved_module  # type: ignore[assignment]  # (None too: an import blocked)
        else:
            sys.modules.pop(run_name, None)
        if saved_argv0 is not None:
            sys.argv[0] = saved_argv0
    return namespace.copy()

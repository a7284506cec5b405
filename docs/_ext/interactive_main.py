"""The doctest builder's samples run as an interactive session runs them, and leave nothing behind.

A session typed at the ``python`` prompt (or a notebook) runs in a
``__main__`` module that has no file: functions defined there cannot be
imported again by a spawned child, and ``multiprocess`` sends them by value
with the globals they use.  Sphinx runs each group of samples in a plain
dict instead, which is no module at all; here each group gets a fresh
file-less ``__main__`` module of its own, put in ``sys.modules`` while its
examples run, so the samples behave exactly as they would at the prompt,
under every start method.

When the doctest build ends, the samples must have left nothing running
and nothing in ``/dev/shm``: no child process, no named semaphore, no
shared-memory segment (the run's own prefixes tell its names from other
programs').  Anything left is a warning, so ``sphinx -W`` fails.
"""

from __future__ import annotations

import os
import sys
import time
import types
from typing import Any, Dict, Optional, Tuple

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

SHM_DIR = "/dev/shm"


class InteractiveMains:
    """One file-less ``__main__`` module per doctest group (per namespace dict Sphinx made)."""

    def __init__(self) -> None:
        self._by_namespace: Dict[int, Tuple[dict, types.ModuleType]] = {}

    def module_for(self, namespace: dict) -> types.ModuleType:
        known = self._by_namespace.get(id(namespace))
        if known is None or known[0] is not namespace:
            module = types.ModuleType("__main__")
            module.__dict__.update(namespace)
            known = (namespace, module)
            # Sphinx keeps its dict alive while the group runs; ours keeps it
            # alive too, so that its id is not reused for another group.
            self._by_namespace[id(namespace)] = known
        return known[1]

    def install(self, runner_class: Any) -> None:
        run = runner_class.run
        mains = self

        def run_in_main(runner: Any, test: Any, *args: Any, **kwargs: Any) -> Any:
            module = mains.module_for(test.globs)
            test.globs = module.__dict__
            saved = sys.modules["__main__"]
            sys.modules["__main__"] = module
            try:
                return run(runner, test, *args, **kwargs)
            finally:
                sys.modules["__main__"] = saved

        runner_class.run = run_in_main


def _prefixes() -> Tuple[str, str]:
    """This build's names for semaphores and segments (inherited by the samples' children)."""
    return f"/mpdocs{os.getpid()}", f"/psm_docs{os.getpid()}_"


def _start(app: Sphinx) -> None:
    if app.builder.name != "doctest":
        return
    from sphinx.ext import doctest

    import mp_core

    InteractiveMains().install(doctest.SphinxDocTestRunner)
    semprefix, shmprefix = _prefixes()
    config = mp_core.current_process()._config  # type: ignore[attr-defined]
    config["semprefix"] = semprefix
    config["shmprefix"] = shmprefix


def _leftovers(deadline: float) -> Tuple[list, list]:
    import mp_core

    semprefix, shmprefix = _prefixes()
    names = ("sem." + semprefix[1:], shmprefix[1:])
    segments = sys.modules.get("mp_core._segments")
    if segments is not None:
        segments.drop_warm()  # kept for reuse by this process until it ends (guide/large-data): not a leak
    while True:
        children = mp_core.active_children()
        left = sorted(n for n in os.listdir(SHM_DIR) if n.startswith(names)) if os.path.isdir(SHM_DIR) else []
        if (not children and not left) or time.monotonic() > deadline:
            return children, left
        time.sleep(0.1)  # a child that was just told to exit, a tracker about to unlink


def _check_nothing_left(app: Sphinx, exception: Optional[BaseException]) -> None:
    if app.builder.name != "doctest" or exception is not None:
        return
    children, segments = _leftovers(time.monotonic() + 10)
    for child in children:
        logger.warning("a doctest left a child process running: %r", child, type="mp_docs", subtype="leak")
    for name in segments:
        logger.warning("a doctest left %s/%s behind", SHM_DIR, name, type="mp_docs", subtype="leak")


def setup(app: Sphinx) -> Dict[str, Any]:
    app.connect("builder-inited", _start)
    app.connect("build-finished", _check_nothing_left)
    return {"parallel_read_safe": True}

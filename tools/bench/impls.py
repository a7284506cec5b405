"""Child side: the API of each implementation under test, imported on demand.

A benchmark worker process loads exactly one implementation, so that the
modules of one never influence the timings of another:

* ``ours``: this repository's ``mp_core`` (editable install);
* ``stdlib``: the standard library's ``multiprocessing``;
* ``upstream``: the ``multiprocess`` release installed in the upstream venv;
* ``loky``: loky's reusable executor, in its own venv (``loky_venv``);
* ``none``: no multiprocessing package at all (raw OS loops, C pickle).

Each adapter imports what a measurement asks for only when it asks, so a
section whose module is missing or broken (``mp_core.connection`` while it
is being written) fails alone.  Standard library only: this module also
runs under the upstream venv's interpreter.
"""

from __future__ import annotations

import importlib
import os
import pickle
from typing import Any, Callable, Dict, Tuple

Dumps = Callable[[Any], Any]
Loads = Callable[[Any], Any]


def _module(name: str) -> Any:
    # Through importlib: "multiprocess" names a different package under each
    # interpreter, so static checkers must not hold it to ours.
    return importlib.import_module(name)


class Api:
    """What the measurements use from one implementation."""

    key = "none"

    def describe(self) -> Dict[str, str]:
        """Version and location of the loaded implementation (for the report)."""
        return {"impl": self.key}

    def get_context(self, method: str) -> Any:
        """The context of start method ``method``."""
        raise NotImplementedError(f"{self.key} has no processes")

    def pipe(self, duplex: bool = True) -> Tuple[Any, Any]:
        """``Pipe(duplex)``."""
        raise NotImplementedError(f"{self.key} has no Pipe")

    def serializer(self) -> Tuple[Dumps, Loads]:
        """The ``(dumps, loads)`` pair of the implementation's serialization layer."""
        raise NotImplementedError(f"{self.key} has no serialization layer")

    def process_pool_executor(self) -> Any:
        """The ``concurrent.futures``-style ``ProcessPoolExecutor`` class."""
        raise NotImplementedError(f"{self.key} has no ProcessPoolExecutor")


class Ours(Api):
    key = "ours"

    def describe(self) -> Dict[str, str]:
        mp_core = _module("mp_core")
        return {"impl": self.key, "version": mp_core.__version__, "file": os.path.dirname(mp_core.__file__)}

    def get_context(self, method: str) -> Any:
        return _module("mp_core").get_context(method)

    def pipe(self, duplex: bool = True) -> Tuple[Any, Any]:
        return _module("mp_core.connection").Pipe(duplex)

    def serializer(self) -> Tuple[Dumps, Loads]:
        reduction = _module("mp_core.reduction")
        return reduction.dumps, reduction.loads

    def process_pool_executor(self) -> Any:
        return _module("mp_pool.futures").ProcessPoolExecutor


class Stdlib(Api):
    key = "stdlib"

    def describe(self) -> Dict[str, str]:
        import multiprocessing

        return {"impl": self.key, "version": "stdlib", "file": os.path.dirname(multiprocessing.__file__)}

    def get_context(self, method: str) -> Any:
        import multiprocessing

        return multiprocessing.get_context(method)

    def pipe(self, duplex: bool = True) -> Tuple[Any, Any]:
        from multiprocessing.connection import Pipe

        return Pipe(duplex)

    def serializer(self) -> Tuple[Dumps, Loads]:
        from multiprocessing.reduction import ForkingPickler

        return ForkingPickler.dumps, pickle.loads

    def process_pool_executor(self) -> Any:
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor


class Upstream(Api):
    key = "upstream"

    def _module(self, name: str = "multiprocess") -> Any:
        multiprocess = _module("multiprocess")
        here = os.path.dirname(os.path.abspath(__file__))
        repo = os.path.dirname(os.path.dirname(here))
        if os.path.abspath(multiprocess.__file__).startswith(repo + os.sep):
            raise RuntimeError(f"'upstream' resolved to this repository's multiprocess ({multiprocess.__file__})")
        return _module(name)

    def describe(self) -> Dict[str, str]:
        mp = self._module()
        return {"impl": self.key, "version": mp.__version__, "file": os.path.dirname(mp.__file__)}

    def get_context(self, method: str) -> Any:
        return self._module().get_context(method)

    def pipe(self, duplex: bool = True) -> Tuple[Any, Any]:
        return self._module("multiprocess.connection").Pipe(duplex)

    def serializer(self) -> Tuple[Dumps, Loads]:
        pickler = self._module("multiprocess.reduction").ForkingPickler
        return pickler.dumps, pickler.loads


class Loky(Api):
    """loky, in its own venv (``loky_venv``; the ``futures`` and ``zerocopy`` sections).

    Its ``ProcessPoolExecutor`` takes a loky context (``context=``), made by
    ``loky.backend.context.get_context``: loky's own start method
    (``"loky"``: fork + exec, its default) and the standard ones it accepts.
    Without a context, the executor is loky's reusable one.
    """

    key = "loky"

    def describe(self) -> Dict[str, str]:
        loky = _module("loky")
        return {"impl": self.key, "version": loky.__version__, "file": os.path.dirname(loky.__file__)}

    def get_context(self, method: str) -> Any:
        return _module("loky.backend.context").get_context(method)

    def process_pool_executor(self) -> Any:
        loky = _module("loky")

        def executor(max_workers: int, mp_context: Any = None) -> Any:
            if mp_context is None:
                return loky.get_reusable_executor(max_workers=max_workers)
            return loky.ProcessPoolExecutor(max_workers=max_workers, context=mp_context)

        return executor


_APIS = {cls.key: cls for cls in (Api, Ours, Stdlib, Upstream, Loky)}


def load(key: str) -> Api:
    """The adapter for implementation ``key`` (``ours``, ``stdlib``, ``upstream``, ``loky`` or ``none``)."""
    try:
        return _APIS[key]()
    except KeyError:
        raise ValueError(f"unknown implementation {key!r}; known: {', '.join(_APIS)}") from None

"""Import hook that makes ``multiprocessing`` *be* ``multiprocess``.

This file is copied into the conformance venv's site-packages as
``_mp_conformance_hook.py`` and imported from a ``.pth`` file, so it runs at
start-up in the test process and in every interpreter the suite starts from
that venv (spawned and forkserver children, ``script_helper`` subprocesses,
even under ``-E``/``-I``, which skip only environment variables and the user
site directory).  It does nothing unless ``MP_CONFORMANCE=1`` is in the
environment, so the same venv also runs the stdlib baseline.

With the hook active, ``import multiprocessing`` gives the ``multiprocess``
module object itself (``sys.modules['multiprocessing'] is multiprocess``) and
``multiprocessing.X`` gives ``multiprocess.X`` (which is the owning
distribution's module, ``mp_pool.pool`` and so on).  The alias keeps the
real module's ``__spec__``, ``__name__`` and ``__file__``.

With ``MP_CONFORMANCE_FUTURES=1`` as well (``--suite futures``), the
standard library's ``concurrent.futures.process`` is loaded as usual and
then has its ``ProcessPoolExecutor`` replaced by ``multiprocess.futures``'s
(so is ``concurrent.futures.ProcessPoolExecutor``, which the package takes
from that module): every way the test suite reaches the executor --
``futures.ProcessPoolExecutor`` at class definition,
``from concurrent.futures import ProcessPoolExecutor`` in a
``script_helper`` subprocess -- gets ours.  The rest of the module
(``BrokenProcessPool``, ``_check_system_limits``...) stays the stdlib's:
ours raises a subclass of its ``BrokenProcessPool``.

Standard library only; must run on every Python the project supports.
"""

import importlib
import importlib.machinery
import json
import os
import sys

ENV_VAR = "MP_CONFORMANCE"
STUBS_VAR = "MP_CONFORMANCE_STUBS"
FUTURES_VAR = "MP_CONFORMANCE_FUTURES"
SOURCE = "multiprocessing"
TARGET = "multiprocess"
#: the stdlib module whose executor is replaced, and the module of ours that replaces it
FUTURES_SOURCE = "concurrent.futures.process"
FUTURES_TARGET = "multiprocess.futures"
EXECUTOR = "ProcessPoolExecutor"


def target_name(fullname):
    """The module that stands in for *fullname*, or ``None`` if it is not ours to map."""
    if fullname == SOURCE:
        return TARGET
    if fullname.startswith(SOURCE + "."):
        return TARGET + fullname[len(SOURCE) :]
    return None


def parse_stubs(environ=None):
    """Diagnostic stubs (``--stub``): ``{(module, attribute): value}``.

    ``MP_CONFORMANCE_STUBS`` holds a JSON object such as
    ``{"multiprocessing.util.abstract_sockets_supported": true}``.  It exists
    only so that one missing name that breaks the import of the whole test
    module can be looked past while the owners fix it; runs that use it say so.
    """
    raw = (os.environ if environ is None else environ).get(STUBS_VAR)
    if not raw:
        return {}
    out = {}
    for name, value in json.loads(raw).items():
        module, _, attr = name.rpartition(".")
        out[(module, attr)] = value
    return out


def apply_stubs(environ=None):
    """Give ours each stubbed attribute it lacks (never replacing one it has)."""
    for (module, attr), value in parse_stubs(environ).items():
        real = target_name(module)
        if real is None:
            continue
        mod = importlib.import_module(real)
        if not hasattr(mod, attr):
            setattr(mod, attr, value)


class _AliasLoader:
    """Hands the import system an already imported module under a second name."""

    def __init__(self, module):
        self._module = module
        self._original_spec = getattr(module, "__spec__", None)

    def create_module(self, spec):
        return self._module

    def exec_module(self, module):
        # The import system stamped our alias spec on the module: give it its
        # own back so that reload(), pickling and spawn see the real origin.
        module.__spec__ = self._original_spec


class MultiprocessingAliasFinder:
    """Meta path finder: ``multiprocessing[.X]`` -> ``multiprocess[.X]``."""

    def find_spec(self, fullname, path=None, target=None):
        real = target_name(fullname)
        if real is None:
            return None
        try:
            module = importlib.import_module(real)
        except ModuleNotFoundError as exc:
            if exc.name == real:  # plain absence: "No module named multiprocessing.X"
                return None
            raise
        if fullname == SOURCE:
            apply_stubs()
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(module), is_package=hasattr(module, "__path__"))

    def __repr__(self):
        return f"<MultiprocessingAliasFinder {SOURCE} -> {TARGET}>"


def ours_executor():
    """``multiprocess.futures.ProcessPoolExecutor``."""
    return getattr(importlib.import_module(FUTURES_TARGET), EXECUTOR)


def replace_executor(process_module):
    """Make *process_module* (the stdlib's ``concurrent.futures.process``) and its package hand out ours.

    The name is resolved lazily, through a module ``__getattr__`` (PEP 562),
    on first use: ours may well import ``concurrent.futures`` while it is
    itself being imported, and must not be asked for its executor then.
    """
    process_module.__dict__.pop(EXECUTOR, None)
    package = sys.modules.get(FUTURES_SOURCE.rpartition(".")[0])
    if package is not None:
        # the package takes the name from this module on first use (its own __getattr__)
        package.__dict__.pop(EXECUTOR, None)

    def __getattr__(name):
        if name != EXECUTOR:
            raise AttributeError(f"module {process_module.__name__!r} has no attribute {name!r}")
        ours = ours_executor()
        setattr(process_module, EXECUTOR, ours)
        return ours

    process_module.__getattr__ = __getattr__


class _ExecutorPatchingLoader:
    """Runs the real loader of ``concurrent.futures.process``, then :func:`replace_executor`."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        replace_executor(module)

    def __getattr__(self, name):  # get_source, get_code... for tracebacks and inspect
        return getattr(self._loader, name)


class ExecutorReplacingFinder:
    """Meta path finder: ``concurrent.futures.process`` as usual, with ours as its ``ProcessPoolExecutor``."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != FUTURES_SOURCE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _ExecutorPatchingLoader(spec.loader)
        return spec

    def __repr__(self):
        return f"<ExecutorReplacingFinder {FUTURES_SOURCE}.{EXECUTOR} -> {FUTURES_TARGET}.{EXECUTOR}>"


def install_futures():
    """Put the executor finder on ``sys.meta_path`` (patching the module now if it is already imported)."""
    if any(isinstance(f, ExecutorReplacingFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, ExecutorReplacingFinder())
    if FUTURES_SOURCE in sys.modules:
        replace_executor(sys.modules[FUTURES_SOURCE])


def install():
    """Put the finder first on ``sys.meta_path`` and forget any stdlib copy already imported."""
    if any(isinstance(f, MultiprocessingAliasFinder) for f in sys.meta_path):
        return
    for name in list(sys.modules):
        if name == SOURCE or name.startswith(SOURCE + "."):
            del sys.modules[name]
    sys.meta_path.insert(0, MultiprocessingAliasFinder())


def active(environ=None):
    return (os.environ if environ is None else environ).get(ENV_VAR) == "1"


def futures_active(environ=None):
    """Whether the executor is replaced too: ``MP_CONFORMANCE=1`` and ``MP_CONFORMANCE_FUTURES=1``."""
    environ = os.environ if environ is None else environ
    return active(environ) and environ.get(FUTURES_VAR) == "1"


if __name__ == "_mp_conformance_hook" and active():
    install()
    if futures_active():
        install_futures()

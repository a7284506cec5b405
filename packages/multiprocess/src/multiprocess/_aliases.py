"""Make ``multiprocess.<sub>.<name>`` the owning distribution's module object.

The first-level aliases (``multiprocess.pool`` is ``mp_pool.pool``) are the
small modules beside this one.  Below that level Python would otherwise load
a second copy: ``multiprocess.dummy`` *is* the package ``mp_pool.dummy``,
and a plain import of ``multiprocess.dummy.connection`` would execute
``mp_pool/dummy/connection.py`` again under the new name.  This finder
answers such imports with the module already known under the owner's name.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
from types import ModuleType

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (and importlib.abc) would cost ``import multiprocess`` time
    from typing import Optional, Sequence

from mp_core._owners import SUBMODULES

__all__ = ["NestedAliasFinder", "install"]

PREFIX = "multiprocess."


class _ExistingModuleLoader:
    def __init__(self, module: ModuleType) -> None:
        self._module = module
        self._original_spec = module.__spec__

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return self._module

    def exec_module(self, module: ModuleType) -> None:
        # The import system stamped our alias spec on the module; give it back
        # its own so that reload(), pickling and spawn see the real origin.
        module.__spec__ = self._original_spec


class NestedAliasFinder:
    """Resolves ``multiprocess.<sub>.<rest>`` to ``<owner of sub>.<rest>``."""

    def find_spec(
        self, fullname: str, path: Optional[Sequence[str]] = None, target: Optional[ModuleType] = None
    ) -> Optional[importlib.machinery.ModuleSpec]:
        if not fullname.startswith(PREFIX):
            return None
        sub, dot, rest = fullname[len(PREFIX) :].partition(".")
        if not dot or sub not in SUBMODULES:
            return None
        real_name = f"{SUBMODULES[sub][0]}.{rest}"
        module = importlib.import_module(real_name)
        spec = importlib.machinery.ModuleSpec(
            fullname, _ExistingModuleLoader(module), is_package=hasattr(module, "__path__")
        )
        return spec


def install() -> None:
    """Put the finder in front of the path finders, once."""
    if not any(isinstance(finder, NestedAliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, NestedAliasFinder())

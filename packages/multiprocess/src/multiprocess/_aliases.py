"""Make ``multiprocess.<sub>[.<rest>]`` the owning distribution's module object.

``multiprocess.pool`` *is* ``mp_pool.pool``: the same module object,
registered under both names, so private names, monkeypatching, pickling and
``isinstance`` behave as users and downstream code expect.  Which module
stands behind which name is the owner table ``mp_core._owners.SUBMODULES``;
this finder answers from it, so no alias module is written by hand.  The
import system calls it before the path finders for every
``multiprocess.<sub>`` (``import multiprocess.pool``, ``from multiprocess
import pool``, ``importlib.import_module``, unpickling, spawn's re-import):

* ``multiprocess.<sub>`` is the owner's module; when the owning
  distribution is not installed the import raises ``ImportError`` naming it
  (``pip install mp-pool``);
* below that level (``multiprocess.dummy.connection``, ``dummy`` being the
  package ``mp_pool.dummy``) it is the module already known under the
  owner's name, never a second copy executed under the alias name.

Static tools see the same names through the stubs beside this module
(``pool.pyi``...), which ``python -m tools.stubs`` generates from the same
table.
"""

from __future__ import annotations

import sys
from types import ModuleType

from mp_core._owners import SUBMODULES, import_module, import_submodule

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (and importlib.abc) would cost ``import multiprocess`` time
    from typing import Optional, Sequence

# The import system's own class (importlib.machinery.ModuleSpec), without
# importing importlib, which imports warnings: ``import multiprocess`` time.
if TYPE_CHECKING or getattr(sys, "__spec__", None) is None:
    from importlib.machinery import ModuleSpec
else:
    ModuleSpec = type(sys.__spec__)

__all__ = ["NestedAliasFinder", "install"]

PREFIX = "multiprocess."


if TYPE_CHECKING:
    from importlib.abc import Loader as _Loader
else:  # the protocol is all the import system needs; importlib.abc costs import time
    _Loader = object


class _ExistingModuleLoader(_Loader):
    """Hands the import system a module that already exists instead of making one."""

    def __init__(self, module: ModuleType) -> None:
        self._module = module
        self._original_spec = module.__spec__

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        return self._module

    def exec_module(self, module: ModuleType) -> None:
        # The import system stamped our alias spec on the module; give it back
        # its own so that reload(), pickling and spawn see the real origin.
        module.__spec__ = self._original_spec


class NestedAliasFinder:
    """Resolves ``multiprocess.<sub>[.<rest>]`` to ``<owner of sub>[.<rest>]`` (see the module docstring)."""

    def find_spec(
        self, fullname: str, path: Optional[Sequence[str]] = None, target: Optional[ModuleType] = None
    ) -> Optional[ModuleSpec]:
        if not fullname.startswith(PREFIX):
            return None
        sub, dot, rest = fullname[len(PREFIX) :].partition(".")
        if sub not in SUBMODULES:
            return None  # multiprocess.tests, multiprocess.__main__...: real files
        if dot:
            module = import_module(f"{SUBMODULES[sub][0]}.{rest}")
        else:
            module = import_submodule(sub)  # ImportError names the distribution to install
        return ModuleSpec(fullname, _ExistingModuleLoader(module), is_package=hasattr(module, "__path__"))


def install() -> None:
    """Put the finder in front of the path finders, once."""
    if not any(isinstance(finder, NestedAliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, NestedAliasFinder())

"""The registry of benchmark sections.

A section is a named measurement with its own report tables
(``Section.run(ctx) -> SectionResult``).  To add one (``sync``, ``pool``,
``managers``...): write ``sections/<module>.py`` that

* defines the child-side measurement functions in a ``MEASURES`` dict
  (called in a worker as ``fn(api, **params)``, returning JSON-able data;
  standard library only at module level, since the module is also imported
  by the upstream venv's interpreter), and
* calls ``register(Section(...))`` for each section it provides,

then add the module name to ``SECTION_MODULES``.  Sections run, and are
listed, in the order of ``SECTION_MODULES``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict

if TYPE_CHECKING:  # pragma: no cover
    from ..report import SectionResult
    from ..runner import BenchContext

#: Modules that provide sections, in the order their sections are run.
SECTION_MODULES = (
    "start",
    "serialize",
    "importtime",
    "connection",
    "sync",
    "pool",
    "paths",
    "pool_options",
    "futures",
    "managers",
    "dask_pool",
    "zerocopy",
)


@dataclass(frozen=True)
class Section:
    """A benchmark section: ``name`` for ``--only``, a one-line ``title``, and ``run``."""

    name: str
    title: str
    run: Callable[[BenchContext], SectionResult]
    issue: int = 0


_registry: Dict[str, Section] = {}


def register(section: Section) -> Section:
    """Add ``section`` to the registry; a second section with the same name is an error."""
    existing = _registry.get(section.name)
    if existing is not None and existing is not section:
        raise ValueError(f"two benchmark sections are named {section.name!r}")
    _registry[section.name] = section
    return section


def all_sections() -> Dict[str, Section]:
    """Every registered section by name, in run order (imports ``SECTION_MODULES``).

    The order is that of ``SECTION_MODULES``, then of registration within a
    module, whatever order the modules happened to be imported in.
    """
    for module in SECTION_MODULES:
        importlib.import_module(f"{__name__}.{module}")
    position = {f"{__name__}.{module}": n for n, module in enumerate(SECTION_MODULES)}
    registered = list(_registry.values())
    ordered = sorted(registered, key=lambda s: (position.get(s.run.__module__, len(position)), registered.index(s)))
    return {section.name: section for section in ordered}

"""Directives of the multiprocess manual.

``.. differs::``
    A "Differs from multiprocessing" admonition, placed in the content of the
    item it is about (an ``autoclass``, ``autofunction``...).  Each one is
    also collected for the list that ``.. differences::`` draws, so every
    difference from the standard library is marked where the item is
    documented and listed, linked, in one place.

``.. differences::``
    That list: one entry per ``differs`` admonition of the whole manual,
    naming the item and linking to it, with the admonition's text.

Coverage
    At the end of reading, every name in the ``__all__`` of ``multiprocess``
    and of each ``multiprocess.<submodule>`` must be documented as
    ``multiprocess[.<submodule>].<name>``, or be listed in the
    ``mp_docs_not_documented`` setting of ``conf.py`` with the reason
    (re-exports documented elsewhere); a missing one is a warning, so
    ``sphinx -W`` fails and a new public name cannot go undocumented.

``.. package-names:: mp_sync``
    The names a distribution's top-level package exports (its ``__all__``).

``.. owner-table::``
    The table of ``multiprocess.<submodule>`` -> owning module ->
    distribution, rendered from ``mp_core._owners.SUBMODULES`` (the one
    table the package itself is wired from), so it cannot drift.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import make_id

TITLE = "Differs from multiprocessing"
logger = logging.getLogger(__name__)


class differs_node(nodes.Admonition, nodes.Element):
    """The admonition; a plain admonition with a class for the style sheet."""


class differences_node(nodes.General, nodes.Element):
    """Placeholder replaced by the list of every ``differs`` admonition."""


class DiffersDirective(SphinxDirective):
    """``.. differs:: [subject]``: the subject defaults to the enclosing Python object."""

    has_content = True
    optional_arguments = 1
    final_argument_whitespace = True

    def run(self) -> list[nodes.Node]:
        subject = self.arguments[0] if self.arguments else self._enclosing_object()
        if not subject:
            raise self.error("differs: no enclosing Python object; name the subject as the argument")
        node = differs_node("\n".join(self.content))
        node["classes"] += ["admonition", "differs"]
        node += nodes.title(TITLE, TITLE)
        self.state.nested_parse(self.content, self.content_offset, node)
        target_id = make_id(self.env, self.state.document, "differs", subject)
        target = nodes.target("", "", ids=[target_id])
        entries = self.env.domaindata.setdefault("mp_docs", {}).setdefault("differences", [])
        entries.append(
            {
                "docname": self.env.docname,
                "lineno": self.lineno,
                "target": target_id,
                "subject": subject,
                "content": [child.deepcopy() for child in node.children[1:]],
            }
        )
        return [target, node]

    def _enclosing_object(self) -> str:
        ctx = self.env.ref_context
        module = ctx.get("py:module") or ""
        classes = list(ctx.get("py:classes") or [])
        objects = self.env.temp_data.get("object")
        name = objects[0] if isinstance(objects, tuple) else objects
        if not name:
            parts = [module, *classes]
        elif classes and (name == ".".join(classes) or name.startswith(".".join(classes) + ".")):
            parts = [module, name]  # the object's name already holds its classes
        else:
            parts = [module, *classes, name]
        return ".".join(p for p in parts if p)


class DifferencesDirective(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        return [differences_node("")]


def _resolve_differences(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    entries = sorted(
        app.env.domaindata.get("mp_docs", {}).get("differences", []),
        # In page order, each page's notes in the order they were read (a
        # note inside autodoc content has no useful line number of its own).
        key=lambda e: e["docname"],
    )
    for placeholder in doctree.findall(differences_node):
        items = nodes.bullet_list()
        for entry in entries:
            ref = nodes.reference("", "", internal=True)
            ref["refuri"] = app.builder.get_relative_uri(docname, entry["docname"]) + "#" + entry["target"]
            ref += nodes.literal(entry["subject"], entry["subject"])
            head = nodes.paragraph()
            head += ref
            item = nodes.list_item()
            item += head
            for child in entry["content"]:
                copy = child.deepcopy()
                # Cross-references in the copy were never resolved (they were
                # copied before that stage): keep their text.
                for xref in list(copy.findall(addnodes.pending_xref)):
                    xref.replace_self([_without_inventory_prefix(child) for child in xref.children])
                item += copy
            items += item
        placeholder.replace_self(items)


def _without_inventory_prefix(node: nodes.Node) -> nodes.Node:
    """The text of a reference as it shows once resolved: no ``python:`` inventory prefix."""
    text = node.astext()
    if isinstance(node, nodes.literal) and text.startswith("python:"):
        return nodes.literal(text[len("python:") :], text[len("python:") :])
    return node


def _purge(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    data = env.domaindata.get("mp_docs", {})
    data["differences"] = [e for e in data.get("differences", []) if e["docname"] != docname]


def _merge(app: Sphinx, env: BuildEnvironment, docnames: Any, other: BuildEnvironment) -> None:
    mine = env.domaindata.setdefault("mp_docs", {}).setdefault("differences", [])
    mine.extend(other.domaindata.get("mp_docs", {}).get("differences", []))


class OwnerTableDirective(SphinxDirective):
    """``.. owner-table::`` with ``:distribution: mp-core`` to show one distribution's submodules."""

    option_spec = {"distribution": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        from mp_core._owners import SUBMODULES

        only = self.options.get("distribution")
        lines = [
            ".. list-table::",
            "   :header-rows: 1",
            "",
            "   * - ``multiprocess.`` name",
            "     - owning module",
            "     - distribution",
        ]
        for name, (module, dist) in SUBMODULES.items():
            if only and dist != only:
                continue
            lines += [
                f"   * - :mod:`multiprocess.{name}`",
                f"     - ``{module}``",
                f"     - ``{dist}``",
            ]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="owner-table"), self.content_offset, container)
        return container.children


class PackageNamesDirective(SphinxDirective):
    """``.. package-names:: mp_sync``: the names a distribution's top-level package exports."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        import importlib

        package = self.arguments[0]
        names = [n for n in importlib.import_module(package).__all__ if not n.startswith("__")]
        text = f"``from {package} import ...``: " + ", ".join(f"``{n}``" for n in names) + "."
        container = nodes.container()
        self.state.nested_parse(StringList([text], source="package-names"), self.content_offset, container)
        return container.children


def _visit_differs(self: Any, node: nodes.Element) -> None:
    self.visit_admonition(node)


def _depart_differs(self: Any, node: nodes.Element) -> None:
    self.depart_admonition(node)


def public_names() -> dict[str, list[str]]:
    """Module name -> the public names (``__all__``) of ``multiprocess`` and its submodules."""
    import importlib

    from mp_core._owners import SUBMODULES

    names = {}
    for module_name in ["multiprocess", *(f"multiprocess.{sub}" for sub in SUBMODULES)]:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # a distribution the docs' environment lacks
            logger.warning("cannot check %s, whose reference needs it importable: %s", module_name, exc, type="mp_docs")
            continue
        names[module_name] = [n for n in getattr(module, "__all__", ()) if not n.startswith("__")]
    return names


def _check_coverage(app: Sphinx, env: BuildEnvironment) -> None:
    documented = set(env.get_domain("py").objects)  # type: ignore[attr-defined]
    exempt: dict[str, str] = app.config.mp_docs_not_documented
    for module_name, names in public_names().items():
        for name in names:
            full = f"{module_name}.{name}"
            if full not in documented and full not in exempt:
                logger.warning(
                    "public name %s is not documented: add it to the reference page of %s "
                    "(or to mp_docs_not_documented in conf.py, with the reason)",
                    full,
                    module_name,
                    type="mp_docs",
                    subtype="coverage",
                )
    for full in sorted(set(exempt) & documented):
        logger.warning("%s is documented but listed in mp_docs_not_documented", full, type="mp_docs")


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("mp_docs_not_documented", {}, "env", types=[dict])
    app.connect("env-check-consistency", _check_coverage)
    app.add_node(
        differs_node,
        html=(_visit_differs, _depart_differs),
        latex=(_visit_differs, _depart_differs),
        text=(_visit_differs, _depart_differs),
    )
    app.add_node(differences_node)
    app.add_directive("differs", DiffersDirective)
    app.add_directive("differences", DifferencesDirective)
    app.add_directive("owner-table", OwnerTableDirective)
    app.add_directive("package-names", PackageNamesDirective)
    app.connect("doctree-resolved", _resolve_differences)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}

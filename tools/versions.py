"""Show, bump and check the versions of the distributions under ``packages/``.

Usage (from the repository root, with the dev requirements installed)::

    python tools/versions.py show
    python tools/versions.py bump mp-core minor --update-ranges
    python tools/versions.py bump mp-core --to 0.2.0 --dry-run
    python tools/versions.py check
    python -m tools.versions --root /some/other/checkout check

Every distribution is a folder ``packages/<dist>/`` with a ``pyproject.toml``
whose version is dynamic and read by hatchling from the file named in
``[tool.hatch.version] path`` (an ``__about__.py`` holding
``__version__ = "X.Y.Z"``).  Distributions are discovered from
``packages/*/pyproject.toml``; nothing here hard-codes the list of folders.
The only hard-coded knowledge is the layering policy (which of our
distributions may depend on which), because that is a design decision, not a
fact that can be read from the tree.

TOML is read with ``tomllib`` (``tomli`` before Python 3.11); versions,
specifiers and requirements are judged by ``packaging``, as pip judges them.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Sequence, Tuple

from packaging.requirements import InvalidRequirement
from packaging.requirements import Requirement as PackagingRequirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

# --------------------------------------------------------------------------
# Layering policy
# --------------------------------------------------------------------------

#: Which of our distributions each distribution may depend on.  Arrows point
#: down only (see DESIGN.md): a lower layer must never need a higher one, or
#: "each distribution installs and works alone" stops being true.  mp-pool
#: needs nothing of mp-sync (its engine has its own channels), so it may not
#: name it: ``pip install mp-core mp-pool`` is a working pool.  mp-dask sits on
#: mp-pool (its result types and errors) and mp-core (serialization); the
#: meta-package reaches it only through its ``dask`` extra.
ALLOWED_INTERNAL_DEPS: Dict[str, frozenset] = {
    "multiprocess": frozenset({"mp-core", "mp-sync", "mp-pool", "mp-managers", "mp-dask"}),
    "mp-dask": frozenset({"mp-core", "mp-pool"}),
    "mp-pool": frozenset({"mp-core"}),
    "mp-managers": frozenset({"mp-core", "mp-sync"}),
    "mp-sync": frozenset({"mp-core"}),
    "mp-core": frozenset(),
}

#: Only these distributions may name dill directly.  Everyone else gets
#: serialization through mp_core.reduction, so that the dill version range is
#: decided in exactly one place.
DILL_ALLOWED: frozenset = frozenset({"mp-core"})

BUMP_PARTS: Tuple[str, ...] = ("major", "minor", "patch")


# --------------------------------------------------------------------------
# Versions and specifiers
# --------------------------------------------------------------------------


def is_valid_version(text: str) -> bool:
    """True if *text* is a PEP 440 version."""
    try:
        Version(text)
    except InvalidVersion:
        return False
    return True


def bump_version(version: str, part: str) -> str:
    """Return *version* with *part* (``major``/``minor``/``patch``) incremented.

    Lower parts reset to zero and the result always has three components:
    ``bump_version("0.1.7", "minor") == "0.2.0"``,
    ``bump_version("1.2", "patch") == "1.2.1"``.  Only plain releases can be
    bumped (``ValueError`` otherwise); a pre-release must be moved with ``--to``.
    """
    if part not in BUMP_PARTS:
        raise ValueError(f"unknown version part {part!r}; use one of {', '.join(BUMP_PARTS)}")
    parsed = Version(version)
    if str(parsed) != ".".join(map(str, parsed.release)):
        raise ValueError(f"{version!r} is not a plain release (N.N.N): set the new version with --to")
    release = list(parsed.release) + [0, 0, 0]
    index = BUMP_PARTS.index(part)
    release[index] += 1
    release[index + 1 :] = [0] * (len(release) - index - 1)
    return ".".join(map(str, release[:3]))


def compatible_range(version: str) -> str:
    """The specifier a sibling should use to accept *version* and its fixes.

    Below 1.0 a minor bump is a breaking change, so the range stops at the
    next minor (``0.2.0`` -> ``>=0.2.0,<0.3``); from 1.0 on it stops at the
    next major (``1.4.2`` -> ``>=1.4.2,<2``).
    """
    release = Version(version).release + (0, 0)
    upper = f"0.{release[1] + 1}" if release[0] == 0 else str(release[0] + 1)
    return f">={version},<{upper}"


def specifier_admits(specifier: str, version: str) -> bool:
    """True if *version* satisfies *specifier* (pre-releases included).

    Raises ``ValueError`` naming both when either cannot be parsed.
    """
    try:
        return SpecifierSet(specifier).contains(Version(version), prereleases=True)
    except (InvalidSpecifier, InvalidVersion) as exc:
        raise ValueError(f"cannot judge {version!r} against {specifier!r}: {exc}") from exc


# --------------------------------------------------------------------------
# Requirements
# --------------------------------------------------------------------------

#: The name and extras that open a requirement; its specifier follows them.
_REQUIREMENT_HEAD_RE = re.compile(r"\s*[A-Za-z0-9._-]+\s*(?:\[[^\]]*\])?\s*")


def normalize_name(name: str) -> str:
    """PEP 503 normalization: ``MP_Core`` and ``mp.core`` both become ``mp-core``."""
    return canonicalize_name(name)


@dataclass(frozen=True)
class Requirement:
    """A dependency string from ``[project] dependencies``.

    ``raw`` is the string exactly as written (used to rewrite it in place);
    ``spec_start``/``spec_end`` delimit the specifier inside ``raw`` so a
    rewrite keeps the name, extras, marker, spacing and quotes untouched.
    """

    raw: str
    name: str
    specifier: str
    marker: str | None
    spec_start: int
    spec_end: int

    @property
    def key(self) -> str:
        """The normalized project name."""
        return normalize_name(self.name)

    def with_specifier(self, specifier: str) -> str:
        """Return ``raw`` with its specifier replaced by *specifier*."""
        return self.raw[: self.spec_start] + specifier + self.raw[self.spec_end :]


def parse_requirement(raw: str) -> Requirement:
    """Parse a PEP 508 dependency string; URL requirements are rejected.

    ``packaging`` validates it; the specifier and marker are kept as written
    (``packaging`` would reorder and requote them).  Raises ``ValueError``.
    """
    try:
        parsed = PackagingRequirement(raw)
    except InvalidRequirement as exc:
        raise ValueError(f"cannot parse requirement {raw!r}: {exc}") from exc
    if parsed.url:
        raise ValueError(f"cannot parse requirement {raw!r}: URL requirements are not ours to version")
    requirement, _, marker = raw.partition(";")
    head = _REQUIREMENT_HEAD_RE.match(requirement)
    assert head is not None, raw  # packaging accepted it, so it starts with a name
    start, end = head.end(), len(requirement.rstrip())
    if raw[start:end].startswith("(") and raw[start:end].endswith(")"):  # the legacy "name (>=1)" form
        start, end = start + 1, end - 1
    return Requirement(
        raw=raw,
        name=parsed.name,
        specifier=raw[start:end].strip(),
        marker=marker.strip() or None,
        spec_start=start,
        spec_end=end,
    )


# --------------------------------------------------------------------------
# Distributions
# --------------------------------------------------------------------------


@dataclass
class Distribution:
    """What one ``packages/<folder>/`` declares.

    ``version`` is ``None`` when ``__about__.py`` is missing or malformed, and
    ``problems`` then says why; problems found while reading the pyproject
    are recorded the same way instead of aborting discovery, so ``show`` and
    ``check`` can still report on everything else.
    """

    folder: Path
    name: str
    import_name: str
    about_path: Path
    version: str | None = None
    requirements: List[Requirement] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The normalized distribution name."""
        return normalize_name(self.name)

    @property
    def pyproject(self) -> Path:
        """Path of this distribution's ``pyproject.toml``."""
        return self.folder / "pyproject.toml"


def find_repo_root(start: Path | None = None) -> Path:
    """The repository root: the parent of the ``tools/`` folder holding this file."""
    return (start or Path(__file__).resolve()).parent.parent


def discover(root: Path) -> List[Distribution]:
    """Read every ``root/packages/*/pyproject.toml``, sorted by folder name."""
    return [read_distribution(path.parent) for path in sorted((root / "packages").glob("*/pyproject.toml"))]


def read_distribution(folder: Path) -> Distribution:
    """Build a :class:`Distribution` from ``folder/pyproject.toml``.

    Never raises for content problems: they land in ``problems``.
    """
    pyproject = folder / "pyproject.toml"
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # tomllib.TOMLDecodeError is a ValueError
        fallback = folder.name.replace("-", "_")
        dist = Distribution(folder, folder.name, fallback, folder / "src" / fallback / "__about__.py")
        dist.problems.append(f"{pyproject}: cannot read: {exc}")
        return dist

    project = data.get("project", {})
    name = project.get("name") or folder.name
    about_path = _about_path(folder, data, name)
    dist = Distribution(folder, name, about_path.parent.name, about_path)
    if "name" not in project:
        dist.problems.append(f"{pyproject}: [project] has no name")
    if "version" in project or "version" not in project.get("dynamic", []):
        dist.problems.append(
            f"{pyproject}: version must be dynamic (read from {_relative(about_path, folder)}), not static"
        )
    for raw in project.get("dependencies", []):
        try:
            dist.requirements.append(parse_requirement(raw))
        except ValueError as exc:
            dist.problems.append(f"{pyproject}: {exc}")
    dist.version, error = read_about_version(about_path)
    if error:
        dist.problems.append(f"{dist.name}: {error}")
    return dist


def _about_path(folder: Path, data: Dict[str, Any], name: str) -> Path:
    """Where hatchling reads the version from; conventional path if unset."""
    hatch_path = data.get("tool", {}).get("hatch", {}).get("version", {}).get("path")
    if hatch_path:
        return folder / hatch_path
    return folder / "src" / normalize_name(name).replace("-", "_") / "__about__.py"


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def read_about_version(path: Path) -> Tuple[str | None, str | None]:
    """Return ``(version, None)`` or ``(None, reason)`` for an ``__about__.py``.

    The file is parsed, never executed: it must contain a top-level
    ``__version__ = "<PEP 440 version>"``.
    """
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, f"{path} is missing"
    except OSError as exc:
        return None, f"{path}: cannot read: {exc}"
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        return None, f"{path}: malformed (syntax error on line {exc.lineno})"
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
        ):
            value = node.value
            if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
                return None, f"{path}: malformed (__version__ is not a string literal)"
            if not is_valid_version(value.value):
                return None, f"{path}: malformed (__version__ = {value.value!r} is not a valid version)"
            return value.value, None
    return None, f'{path}: malformed (no top-level __version__ = "X.Y.Z")'


def find_distribution(dists: Iterable[Distribution], wanted: str) -> Distribution:
    """Look a distribution up by dist name, folder name or import name.

    Raises ``LookupError`` naming the known distributions if none matches.
    """
    dists = list(dists)
    for dist in dists:
        if normalize_name(wanted) in (dist.key, normalize_name(dist.folder.name), normalize_name(dist.import_name)):
            return dist
    known = ", ".join(d.name for d in dists) or "none"
    raise LookupError(f"no distribution named {wanted!r} (known: {known})")


def internal_names(dists: Iterable[Distribution]) -> frozenset:
    """Normalized names that count as ours: discovered dists plus the policy's."""
    return frozenset(d.key for d in dists) | frozenset(ALLOWED_INTERNAL_DEPS)


def internal_requirements(dist: Distribution, names: frozenset) -> List[Requirement]:
    """The requirements of *dist* that name one of our own distributions."""
    return [req for req in dist.requirements if req.key in names]


# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------


def check_discovery(dists: Sequence[Distribution]) -> List[str]:
    """Problems recorded while reading the tree, plus duplicate names."""
    problems = [problem for dist in dists for problem in dist.problems]
    if not dists:
        problems.append("no packages/*/pyproject.toml found")
    seen: Dict[str, Distribution] = {}
    for dist in dists:
        if dist.key in seen:
            problems.append(f"{dist.folder} and {seen[dist.key].folder} both declare {dist.name}")
        seen.setdefault(dist.key, dist)
    return problems


def check_ranges(dists: Sequence[Distribution]) -> List[str]:
    """Internal requirements that do not admit the sibling's current version."""
    problems = []
    by_key = {d.key: d for d in dists}
    names = internal_names(dists)
    for dist in dists:
        for req in internal_requirements(dist, names):
            target = by_key.get(req.key)
            if target is None:
                problems.append(f"{dist.name} requires {req.raw!r}, but no packages/*/ folder declares {req.name}")
                continue
            if target.version is None:
                continue  # already reported as a missing/malformed __about__.py
            try:
                admitted = specifier_admits(req.specifier, target.version)
            except ValueError as exc:
                problems.append(f"{dist.name} requires {req.raw!r}: {exc}")
                continue
            if not admitted:
                problems.append(
                    f"{dist.name} requires {req.raw!r}, which does not admit "
                    f"{target.name}'s current version {target.version} "
                    f"(fix {_relative(dist.pyproject, dist.folder.parent.parent)} or run "
                    f"'versions.py bump ... --update-ranges')"
                )
    return problems


def check_layers(dists: Sequence[Distribution]) -> List[str]:
    """Dependencies that point up or sideways in the layering policy."""
    problems = []
    names = internal_names(dists)
    for dist in dists:
        allowed = ALLOWED_INTERNAL_DEPS.get(dist.key)
        if allowed is None:
            problems.append(f"{dist.name} has no layer rule: add it to ALLOWED_INTERNAL_DEPS in tools/versions.py")
            continue
        for req in internal_requirements(dist, names):
            if req.key not in allowed:
                may = ", ".join(sorted(allowed)) or "none of ours"
                problems.append(
                    f"layering: {dist.name} must not depend on {req.name} ({dist.name} may depend on: {may})"
                )
    return problems


def check_dill(dists: Sequence[Distribution]) -> List[str]:
    """Non-core distributions that name dill directly."""
    return [
        f"{dist.name} depends on dill directly ({req.raw!r}); only "
        f"{', '.join(sorted(DILL_ALLOWED))} may: go through mp_core.reduction"
        for dist in dists
        if dist.key not in DILL_ALLOWED
        for req in dist.requirements
        if req.key == "dill"
    ]


def run_checks(dists: Sequence[Distribution]) -> List[str]:
    """Every problem found by all checks, in a stable order."""
    return check_discovery(dists) + check_ranges(dists) + check_layers(dists) + check_dill(dists)


# --------------------------------------------------------------------------
# Bumping
# --------------------------------------------------------------------------

_ABOUT_VERSION_RE = re.compile(r"""^(__version__\s*=\s*)(["'])([^"'\n]*)\2""", re.MULTILINE)


@dataclass(frozen=True)
class FileChange:
    """One planned edit: *path* goes from *old_text* to *new_text*."""

    path: Path
    old_text: str
    new_text: str
    description: str


def plan_about_change(dist: Distribution, new_version: str) -> FileChange:
    """The edit that sets *dist*'s ``__version__`` to *new_version*.

    Raises ``ValueError`` if the file has no single ``__version__ = "..."``
    line to rewrite.
    """
    text = dist.about_path.read_text(encoding="utf-8")
    matches = list(_ABOUT_VERSION_RE.finditer(text))
    if len(matches) != 1:
        raise ValueError(f'{dist.about_path}: expected exactly one __version__ = "..." line, found {len(matches)}')
    match = matches[0]
    new_text = text[: match.start(3)] + new_version + text[match.end(3) :]
    return FileChange(dist.about_path, text, new_text, f"{dist.name}: {match.group(3)} -> {new_version}")


def plan_range_updates(
    dists: Sequence[Distribution], target: Distribution, new_version: str
) -> Tuple[List[FileChange], List[str]]:
    """Edits widening sibling requirements on *target* that would reject *new_version*.

    Returns ``(changes, notes)``.  A requirement that still admits the new
    version is left alone; one that does not becomes
    :func:`compatible_range` of the new version, keeping its extras and
    marker.  Notes report requirements that could not be rewritten.
    """
    changes, notes = [], []
    new_spec = compatible_range(new_version)
    for dist in dists:
        if dist is target:
            continue
        text = original = dist.pyproject.read_text(encoding="utf-8")
        descriptions = []
        for req in dist.requirements:
            if req.key != target.key or specifier_admits(req.specifier, new_version):
                continue
            new_raw = req.with_specifier(new_spec)
            text, count = _replace_quoted(text, req.raw, new_raw)
            if count:
                descriptions.append(f"{dist.name}: {req.raw!r} -> {new_raw!r}")
            else:
                notes.append(f"{dist.pyproject}: could not find {req.raw!r} to rewrite; edit it by hand")
        if descriptions:
            changes.append(FileChange(dist.pyproject, original, text, "; ".join(descriptions)))
    return changes, notes


def _replace_quoted(text: str, old: str, new: str) -> Tuple[str, int]:
    """Replace *old* where it appears as a whole TOML string (either quote)."""
    total = 0
    for quote in ('"', "'"):
        quoted = quote + old + quote
        total += text.count(quoted)
        text = text.replace(quoted, quote + new + quote)
    return text, total


def unadmitting_requirements(dists: Sequence[Distribution], target: Distribution, version: str) -> List[str]:
    """Sibling requirements on *target* that would not admit *version*."""
    return [
        f"{dist.name} requires {req.raw!r}"
        for dist in dists
        if dist is not target
        for req in dist.requirements
        if req.key == target.key and not specifier_admits(req.specifier, version)
    ]


def apply_changes(changes: Iterable[FileChange]) -> None:
    """Write every planned edit to disk."""
    for change in changes:
        change.path.write_text(change.new_text, encoding="utf-8")


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned plain-text table; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def command_show(root: Path) -> int:
    """Print one row per distribution; always succeeds."""
    dists = discover(root)
    if not dists:
        print(f"no packages/*/pyproject.toml under {root}", file=sys.stderr)
        return 1
    names = internal_names(dists)
    rows = [["folder", "dist", "import", "version", "internal requirements"]]
    for dist in dists:
        reqs = ", ".join(req.raw for req in internal_requirements(dist, names)) or "-"
        rows.append(
            [_relative(dist.folder, root), dist.name, dist.import_name, dist.version or "<missing/malformed>", reqs]
        )
    print(format_table(rows))
    return 0


def command_bump(root: Path, wanted: str, part: str | None, to: str | None, update_ranges: bool, dry_run: bool) -> int:
    """Set a distribution's version; optionally widen siblings' ranges."""
    dists = discover(root)
    try:
        target = find_distribution(dists, wanted)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if target.version is None:
        print(f"error: cannot bump {target.name}: {'; '.join(target.problems)}", file=sys.stderr)
        return 1
    try:
        new_version = _new_version(target.version, part, to)
        changes = [plan_about_change(target, new_version)]
        if update_ranges:
            range_changes, notes = plan_range_updates(dists, target, new_version)
            changes += range_changes
        else:
            notes = [
                f"{broken}, which does not admit {new_version}; rerun with --update-ranges"
                for broken in unadmitting_requirements(dists, target, new_version)
            ]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not dry_run:
        apply_changes(changes)
    verb = "would change" if dry_run else "changed"
    for change in changes:
        print(f"{verb} {_relative(change.path, root)}: {change.description}")
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    return 0


def _new_version(current: str, part: str | None, to: str | None) -> str:
    """Resolve the target version from either a part or an explicit ``--to``."""
    if to is None:
        return bump_version(current, part or "")
    if not is_valid_version(to):
        raise ValueError(f"--to {to!r} is not a valid version")
    if to == current:
        raise ValueError(f"version is already {current}")
    return to


def command_check(root: Path) -> int:
    """Print ``ok`` and return 0, or print every problem and return 1."""
    problems = run_checks(discover(root))
    if not problems:
        print("ok")
        return 0
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    print(f"{len(problems)} problem(s) found", file=sys.stderr)
    return 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; ``--root`` is accepted before or after the command."""
    root_help = "repository root holding packages/ (default: the checkout containing this tool)"
    parser = argparse.ArgumentParser(prog="versions.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=None, help=root_help)
    sub_common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS keeps a subcommand's absent --root from overwriting a global one
    sub_common.add_argument("--root", type=Path, default=argparse.SUPPRESS, help=root_help)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("show", parents=[sub_common], help="table of every distribution")
    bump = commands.add_parser("bump", parents=[sub_common], help="set a distribution's version")
    bump.add_argument("dist", help="dist, folder or import name")
    bump.add_argument("part", nargs="?", choices=BUMP_PARTS, help="which part to increment")
    bump.add_argument("--to", metavar="X.Y.Z", help="set this exact version instead")
    bump.add_argument("--update-ranges", action="store_true", help="widen sibling ranges that would reject it")
    bump.add_argument("--dry-run", action="store_true", help="print the changes without writing them")
    commands.add_parser("check", parents=[sub_common], help="verify ranges, layering and __about__ files")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    root = (args.root or find_repo_root()).resolve()
    if args.command == "show":
        return command_show(root)
    if args.command == "check":
        return command_check(root)
    if (args.part is None) == (args.to is None):
        parser.error("bump needs exactly one of a part (major/minor/patch) or --to X.Y.Z")
    return command_bump(root, args.dist, args.part, args.to, args.update_ranges, args.dry_run)


if __name__ == "__main__":
    sys.exit(main())

"""Result tables: absolute figures, ratios against the stdlib, targets and verdicts.

A section returns a ``SectionResult`` holding ``Table`` objects.  A table has
value columns (one per implementation, plus reference columns such as C
pickle or a raw OS loop), rows of medians, ratio columns computed from those
medians, and per-row ``Target``s taken from the issues (``ours/stdlib ≤
1.05``), each judged PASS or MISS.  Rendering is Markdown, readable both in a
terminal and pasted into an issue's closing note.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Tuple

from .stats import ratio

#: The implementations compared, in column order.
IMPLEMENTATIONS = ("ours", "stdlib", "upstream")

TIME = "time"  # seconds; lower is better
RATE = "rate"  # bytes per second; higher is better
OPS = "ops"  # operations (items, messages) per second; higher is better
SIZE = "size"  # bytes
PLAIN = "plain"  # a number shown as it is

#: A value whose samples' interquartile range exceeds this share of their
#: median is flagged as noisy (``*``) in the tables.
NOISY_SPREAD = 0.25


def _three_digits(x: float) -> str:
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def format_time(seconds: float) -> str:
    """Seconds with three significant digits in the unit that fits (ns, µs, ms, s)."""
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if abs(seconds) >= scale:
            return f"{_three_digits(seconds / scale)} {unit}"
    return f"{_three_digits(seconds / 1e-9)} ns"


def format_rate(bytes_per_second: float) -> str:
    """A bandwidth in MiB/s (no decimals above 100 MiB/s)."""
    return f"{_three_digits(bytes_per_second / 2**20)} MiB/s"


def format_ops(per_second: float) -> str:
    """Operations per second with three significant digits: ``1.23 M/s``, ``456 k/s``, ``12.0 /s``."""
    for scale, unit in ((1e6, "M/s"), (1e3, "k/s")):
        if per_second >= scale:
            return f"{_three_digits(per_second / scale)} {unit}"
    return f"{_three_digits(per_second)} /s"


def format_size(nbytes: float) -> str:
    """A byte count in B, KiB or MiB."""
    for scale, unit in ((2**20, "MiB"), (2**10, "KiB")):
        if nbytes >= scale:
            return f"{_three_digits(nbytes / scale)} {unit}"
    return f"{nbytes:.0f} B"


_FORMATTERS = {TIME: format_time, RATE: format_rate, OPS: format_ops, SIZE: format_size, PLAIN: lambda v: f"{v:g}"}


def format_value(value: float | None, kind: str) -> str:
    """``value`` formatted for a column of ``kind``; ``n/a`` when missing."""
    if value is None:
        return "n/a"
    return _FORMATTERS[kind](value)


def format_ratio(value: float | None, decimals: int = 2) -> str:
    """A ratio with ``decimals`` decimals; ``n/a`` when missing."""
    return "n/a" if value is None else f"{value:.{decimals}f}"


@dataclass(frozen=True)
class Target:
    """A goal from an issue: ``subject/against`` must be ``≤ limit`` (or ``≥`` when ``at_least``)."""

    against: str
    limit: float
    at_least: bool = False
    subject: str = "ours"

    def ratio(self, values: Dict[str, float | None]) -> float | None:
        """The ratio this target judges, from a row's values."""
        return ratio(values.get(self.subject), values.get(self.against))

    def met(self, values: Dict[str, float | None]) -> bool | None:
        """True/False when it can be judged, ``None`` when a value is missing."""
        r = self.ratio(values)
        if r is None:
            return None
        return r >= self.limit if self.at_least else r <= self.limit

    def describe(self) -> str:
        """E.g. ``ours/stdlib ≤ 1.05``."""
        return f"{self.subject}/{self.against} {'≥' if self.at_least else '≤'} {self.limit:g}"

    def verdict(self, values: Dict[str, float | None]) -> str:
        """``PASS``, ``MISS`` or ``n/a``."""
        met = self.met(values)
        return "n/a" if met is None else ("PASS" if met else "MISS")


@dataclass
class Row:
    """One measured case: a label, the median per column key, and the targets that apply."""

    label: str
    values: Dict[str, float | None]
    targets: List[Target] = field(default_factory=list)
    #: Per column, the samples' interquartile range divided by their median (see ``stats.relative_spread``).
    spreads: Dict[str, float | None] = field(default_factory=dict)

    def noisy(self, key: str) -> bool:
        spread = self.spreads.get(key)
        return spread is not None and spread > NOISY_SPREAD


@dataclass
class Table:
    """A table of medians with ratio columns and target verdicts.

    ``columns`` are ``(key, header)`` pairs for the value columns;
    ``ratios`` are ``(numerator key, denominator key)`` pairs, each shown as
    a ``num/den`` column.  ``kind`` says how values are formatted and which
    direction is better.  ``name`` tells tables of one section apart in the
    summary of targets.
    """

    title: str
    columns: List[Tuple[str, str]]
    rows: List[Row] = field(default_factory=list)
    kind: str = TIME
    ratios: List[Tuple[str, str]] = field(default_factory=lambda: [("ours", "stdlib"), ("upstream", "stdlib")])
    #: A short name for the summary of targets (default: the title).
    name: str = ""

    def add(
        self,
        label: str,
        values: Dict[str, float | None],
        targets: Sequence[Target] = (),
        spreads: Dict[str, float | None] | None = None,
    ) -> Row:
        """Append and return a row."""
        row = Row(label, dict(values), list(targets), dict(spreads or {}))
        self.rows.append(row)
        return row

    @property
    def shown_ratios(self) -> List[Tuple[str, str]]:
        """The ratios whose both sides are columns (no upstream column: no ``upstream/stdlib``)."""
        keys = {key for key, _ in self.columns}
        return [(num, den) for num, den in self.ratios if num in keys and den in keys]

    @property
    def has_targets(self) -> bool:
        return any(row.targets for row in self.rows)

    def header(self) -> List[str]:
        cells = ["case"] + [header for _, header in self.columns]
        cells += [f"{num}/{den}" for num, den in self.shown_ratios]
        if self.has_targets:
            cells += ["target", "verdict"]
        return cells

    def cells(self, row: Row) -> List[str]:
        cells = [row.label] + [
            format_value(row.values.get(key), self.kind) + (" *" if row.noisy(key) else "") for key, _ in self.columns
        ]
        cells += [format_ratio(ratio(row.values.get(num), row.values.get(den))) for num, den in self.shown_ratios]
        if self.has_targets:
            cells.append("; ".join(t.describe() for t in row.targets) or "—")
            cells.append(" / ".join(t.verdict(row.values) for t in row.targets) or "—")
        return cells

    def render(self) -> str:
        """The table as aligned Markdown, preceded by its title."""
        better = {TIME: "lower is better", RATE: "higher is better", OPS: "higher is better"}.get(self.kind)
        lines = [f"**{self.title}**" + (f" ({better})" if better else ""), ""]
        grid = [self.header()] + [self.cells(row) for row in self.rows]
        widths = [max(len(r[i]) for r in grid) for i in range(len(grid[0]))]

        def line(cells: List[str]) -> str:
            padded = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
            return "| " + " | ".join(padded) + " |"

        lines.append(line(grid[0]))
        lines.append(
            "|" + "|".join(("-" * (w + 1) + ":") if i else (":" + "-" * (w + 1)) for i, w in enumerate(widths)) + "|"
        )
        lines.extend(line(cells) for cells in grid[1:])
        if any(row.noisy(key) for row in self.rows for key, _ in self.columns):
            lines.append(
                f"\n\\* noisy: the interquartile range of the samples exceeds {NOISY_SPREAD:.0%} of the median"
            )
        return "\n".join(lines)

    def to_json(self) -> Dict[str, Any]:
        return {
            "title": self.title,
            "kind": self.kind,
            "columns": [key for key, _ in self.columns],
            "rows": [
                {
                    "label": row.label,
                    "values": row.values,
                    "spreads": row.spreads,
                    "ratios": {f"{n}/{d}": ratio(row.values.get(n), row.values.get(d)) for n, d in self.shown_ratios},
                    "targets": [
                        {"target": t.describe(), "ratio": t.ratio(row.values), "verdict": t.verdict(row.values)}
                        for t in row.targets
                    ],
                }
                for row in self.rows
            ],
        }


@dataclass
class SectionResult:
    """What one section measured: its tables, notes, and the raw samples for ``--json``."""

    name: str
    title: str
    tables: List[Table] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    data: Dict[str, Any] = field(default_factory=dict)
    elapsed: float = 0.0

    def table(self, *args: Any, **kwargs: Any) -> Table:
        """Create, append and return a ``Table``."""
        made = Table(*args, **kwargs)
        self.tables.append(made)
        return made

    def verdicts(self) -> List[Tuple[str, str, str, float | None, str]]:
        """``(section, case, target, ratio, verdict)`` for every target of every table."""
        out = []
        for table in self.tables:
            for row in table.rows:
                for t in row.targets:
                    case = f"{table.name}: {row.label}" if table.name else row.label
                    out.append((self.name, case, t.describe(), t.ratio(row.values), t.verdict(row.values)))
        return out

    def render(self) -> str:
        parts = [f"## {self.name} — {self.title}  ({self.elapsed:.1f} s)"]
        parts += [table.render() for table in self.tables]
        if self.notes:
            parts.append("\n".join(f"- {note}" for note in self.notes))
        return "\n\n".join(parts)

    def to_json(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "elapsed": self.elapsed,
            "tables": [t.to_json() for t in self.tables],
            "notes": self.notes,
            "data": self.data,
        }


def render_summary(results: Sequence[SectionResult]) -> str:
    """One table of every target of the run with its ratio and verdict."""
    rows = [v for result in results for v in result.verdicts()]
    if not rows:
        return ""
    grid = [["section", "case", "target", "ratio", "verdict"]]
    # Three decimals: a ratio of 0.798 against a limit of 0.8 must not read "0.80 MISS".
    grid += [[s, case, target, format_ratio(r, 3), verdict] for s, case, target, r, verdict in rows]
    widths = [max(len(r[i]) for r in grid) for i in range(5)]
    lines = ["## summary of targets", ""]
    for n, cells in enumerate(grid):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    passed = sum(1 for row in rows if row[4] == "PASS")
    missed = sum(1 for row in rows if row[4] == "MISS")
    lines.append("")
    lines.append(f"{passed} PASS, {missed} MISS, {len(rows) - passed - missed} n/a")
    return "\n".join(lines)

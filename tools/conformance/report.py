"""Tables and listings: stdlib and ours side by side, per module, per start method, in total."""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .results import COLUMNS, ModuleRun, Verdict, add_counts, categorize, innermost_frame, key_error_line

SHORT = {
    "passed": "pass",
    "failed": "fail",
    "errors": "err",
    "skipped": "skip",
    "timeout": "tout",
    "not_run": "nrun",
    "total": "total",
}
SHOWN = ("total",) + COLUMNS
VERDICT_COLUMNS = ("regression", "allowed", "fixed")


def _cells(counts: Optional[Dict[str, int]]) -> List[str]:
    if counts is None:
        return ["-"] * len(SHOWN)
    return [str(counts.get(c, 0)) for c in SHOWN]


def verdict_counts(verdicts: Iterable[Verdict]) -> Dict[str, int]:
    out = dict.fromkeys(VERDICT_COLUMNS, 0)
    for v in verdicts:
        if v.kind in out:
            out[v.kind] += 1
    return out


def table(
    rows: Sequence[Tuple[str, Optional[Dict[str, int]], Optional[Dict[str, int]], Optional[Dict[str, int]]]],
    show_stdlib: bool,
    show_ours: bool,
    label: str = "module",
) -> str:
    """Rows of (label, stdlib counts, ours counts, verdict counts) as an aligned text table."""
    header = [label]
    groups = []
    if show_stdlib:
        groups.append(("stdlib", len(SHOWN)))
        header += [SHORT[c] for c in SHOWN]
    if show_ours:
        groups.append(("ours", len(SHOWN)))
        header += [SHORT[c] for c in SHOWN]
        groups.append(("vs stdlib" if show_stdlib else "verdict", len(VERDICT_COLUMNS)))
        header += ["regr", "allow", "fixed"]
    body = []
    for label, s, o, v in rows:
        line = [label]
        if show_stdlib:
            line += _cells(s)
        if show_ours:
            line += _cells(o)
            line += [str(v.get(k, 0)) if v is not None else "-" for k in VERDICT_COLUMNS]
        body.append(line)
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    sep_after = set()
    col = 1
    for _, n in groups:
        col += n
        sep_after.add(col - 1)

    def fmt(cells: List[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            out.append(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]))
            if i == 0 or i in sep_after:
                out.append(" |")
        return " ".join(out).rstrip(" |")

    # group titles above the numeric columns
    title = [" " * widths[0], " |"]
    col = 1
    for name, n in groups:
        span = sum(widths[col : col + n]) + (n - 1)
        title.append(name.center(span))
        title.append(" |")
        col += n
    lines = [" ".join(title).rstrip(" |"), fmt(header), "-" * len(fmt(header))]
    for i, line in enumerate(body):
        if i == len(body) - 1 and line[0].startswith("total"):
            lines.append("-" * len(fmt(header)))
        lines.append(fmt(line))
    return "\n".join(lines)


def method_rows(
    method: str,
    names: Sequence[str],
    stdlib: Dict[Tuple[str, str], ModuleRun],
    ours: Dict[Tuple[str, str], ModuleRun],
    verdicts: Dict[Tuple[str, str], List[Verdict]],
):
    rows = []
    tot_s: Optional[Dict[str, int]] = None
    tot_o: Optional[Dict[str, int]] = None
    tot_v: Optional[Dict[str, int]] = None
    for name in names:
        key = (method, name)
        s = stdlib[key].counts() if key in stdlib else None
        o = ours[key].counts() if key in ours else None
        v = verdict_counts(verdicts[key]) if key in verdicts else None
        rows.append((name, s, o, v))
        if s is not None:
            tot_s = add_counts(tot_s or {}, s)
        if o is not None:
            tot_o = add_counts(tot_o or {}, o)
        if v is not None:
            tot_v = add_counts(tot_v or {}, v)
    rows.append((f"total {method}", tot_s, tot_o, tot_v))
    return rows, (tot_s, tot_o, tot_v)


def format_failures(verdicts: Iterable[Verdict], kinds: Sequence[str], lines: int = 3) -> str:
    """Failing test ids, each with its innermost frame and key error line (and the head of the detail)."""
    out = []
    for v in verdicts:
        if v.kind not in kinds:
            continue
        o = v.outcome
        base = f" (stdlib: {v.baseline})" if v.baseline else ""
        out.append(f"  [{o.status}{base}] {o.id}")
        if v.reason:
            out.append(f"      allowed: {v.reason}")
        frame = innermost_frame(o.detail)
        if frame:
            out.append(f"      at {frame}")
        out.append(f"      {key_error_line(o.detail)}")
        if lines > 0 and o.detail:
            head = [ln for ln in o.detail.splitlines() if ln.strip()][:lines]
            for ln in head:
                out.append(f"      | {ln[:200]}")
    return "\n".join(out)


def format_categories(
    verdicts: Iterable[Verdict], top: int = 15, examples: int = 2, kinds: Sequence[str] = ("regression",)
) -> str:
    out = []
    groups = categorize(verdicts, kinds)
    for key, members in groups[:top]:
        out.append(f"  {len(members):4d}  {key}")
        for v in members[:examples]:
            frame = innermost_frame(v.outcome.detail)
            out.append(f"          e.g. {v.outcome.id}" + (f"  [{frame}]" if frame else ""))
    if len(groups) > top:
        rest = sum(len(m) for _, m in groups[top:])
        out.append(f"  ({len(groups) - top} more categories, {rest} tests)")
    return "\n".join(out)

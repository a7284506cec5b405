"""Small statistics for benchmark samples: medians, spreads and ratios.

Benchmarks here run on shared, busy machines, so every figure reported is a
median of repeated samples (robust to the odd sample that lost the CPU), and
comparisons are ratios of medians.
"""

from __future__ import annotations

import statistics
from typing import Dict, Iterable, Mapping, Sequence, Tuple


def median(values: Iterable[float]) -> float:
    """The median of ``values``; ``ValueError`` when there are none."""
    data = [float(v) for v in values]
    if not data:
        raise ValueError("median of no samples")
    return statistics.median(data)


def median_or_none(values: Sequence[float] | None) -> float | None:
    """The median of ``values``, or ``None`` for a missing or empty sample list."""
    if not values:
        return None
    return median(values)


def relative_spread(values: Sequence[float]) -> float | None:
    """Interquartile range divided by the median (``None`` below 4 samples or a zero median)."""
    if len(values) < 4:
        return None
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    mid = median(values)
    return (q3 - q1) / mid if mid else None


def summarize(values: Sequence[float] | None) -> Tuple[float | None, float | None]:
    """``(median, relative spread)`` of ``values``; ``(None, None)`` when there are none."""
    if not values:
        return None, None
    return median(values), relative_spread(values)


def summarize_columns(
    samples: Mapping[str, Sequence[float] | None],
) -> Tuple[Dict[str, float | None], Dict[str, float | None]]:
    """Per column key, the medians and the relative spreads of its samples."""
    medians: Dict[str, float | None] = {}
    spreads: Dict[str, float | None] = {}
    for key, values in samples.items():
        medians[key], spreads[key] = summarize(values)
    return medians, spreads


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``; ``None`` when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def rotate(items: Sequence, shift: int) -> list:
    """``items`` rotated left by ``shift``: round ``r`` of an interleaved run starts with item ``r``."""
    if not items:
        return []
    shift %= len(items)
    return list(items[shift:]) + list(items[:shift])

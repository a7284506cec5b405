"""Fuzzing the wire protocols with hypothesis: ``python -m tools.fuzz [--profile ci|long] [--only TARGET]``.

Each target is a module of this package with a ``main(cases_total,
start_methods, seed)`` function that runs its cases and returns its
figures (a list of dicts, one per run), raising ``AssertionError`` (with
hypothesis's minimal failing case) when a property fails.  The ``ci`` profile is what the test suite runs; ``long``
runs at least 100,000 cases per target.
"""

from __future__ import annotations

#: target name -> module (in this package) that fuzzes it.
TARGETS = {
    "managers": "tools.fuzz.managers",
}

#: profile -> cases per target (a target may split them, e.g. across start methods).
PROFILES = {
    "ci": 300,
    "long": 100_000,
}

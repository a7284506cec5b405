"""Hypothesis profiles for the wire-protocol fuzzers.

``ci`` (the default): a few dozen derandomized examples per protocol, no
per-example deadline (a loaded machine is no failure), each test still under
pytest-timeout.  ``long``: at least 100,000 examples per protocol, random,
for ``python -m tools.fuzz --profile long``.  Pick one with pytest's
``--hypothesis-profile NAME``.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

_QUIET = [
    HealthCheck.too_slow,
    HealthCheck.function_scoped_fixture,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
]

settings.register_profile(
    "ci", max_examples=40, deadline=None, database=None, derandomize=True, suppress_health_check=_QUIET, print_blob=True
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("MP_FUZZ_EXAMPLES", 100_000)),
    deadline=None,
    database=None,
    suppress_health_check=_QUIET,
    print_blob=True,
)
settings.load_profile("ci")

# Seconds a fuzz test may take: generous for the few examples of CI (a hang
# is a failure), and hours for the long profile.
_CI_LIMIT = 600
_LONG_LIMIT = 6 * 3600


def pytest_collection_modifyitems(items: list) -> None:
    limit = _LONG_LIMIT if settings.default.max_examples > 1000 else _CI_LIMIT
    for item in items:
        if item.nodeid.startswith("tests/fuzz/"):
            item.add_marker(pytest.mark.timeout(limit))

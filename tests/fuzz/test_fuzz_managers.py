"""Fuzzing a manager server: malformed requests, garbage, corrupt frames, unauthenticated peers.

The cases and the properties are in ``tools.fuzz.managers``.  The number of
cases follows the hypothesis profile in force: ``max_examples`` cases in
all, split across the start methods, ten to an example (``ci``, or no
profile: 30 examples, 300 cases, per start method, derandomized so that CI
runs the same cases every time; ``long``: 100,000 cases, random).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tools.fuzz.managers import BATCH, Harness, cases, run

from tests.support import START_METHODS

pytestmark = pytest.mark.timeout(600)

_CASES = settings.default.max_examples
_EXAMPLES = max(-(-_CASES // (BATCH * len(START_METHODS))), 30)


@pytest.fixture
def fuzzed(start_method):
    """One fuzzed server per start method, shared by every example of the test."""
    with Harness(start_method) as harness:
        yield harness


@settings(
    max_examples=_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=settings.default.derandomize or _CASES <= 1000,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
@given(batch=st.lists(cases(), min_size=BATCH, max_size=BATCH))
def test_a_fuzzed_manager_server_lives_and_keeps_its_protocol(fuzzed, batch):
    for case in batch:
        fuzzed.check(case)


def test_the_fuzzer_reaches_every_kind_of_case_and_outcome():
    with Harness("fork") as harness:
        run(harness, 300, derandomize=True)
        figures = harness.figures()
    assert figures["cases"] >= 300
    assert set(figures["by_kind"]) == {"request", "payload", "frame", "preauth"}, figures
    outcomes = figures["outcomes"]
    for outcome in (
        "reply kind 0",
        "reply kind 1",
        "reply kind 3",
        "closed after 0 replies",
        "closed after 1 replies",
        "unauthenticated peer closed",
    ):
        assert outcomes.get(outcome), (outcome, outcomes)

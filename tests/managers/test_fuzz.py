"""A bounded fuzzing run of a manager server (the long one: ``python -m tools.fuzz --profile long``)."""

from __future__ import annotations

import pytest
from tools.fuzz import PROFILES
from tools.fuzz.managers import Harness, run

pytestmark = pytest.mark.timeout(300)


def test_the_server_survives_fuzzed_requests_frames_and_peers(start_method):
    with Harness(start_method) as harness:
        # The same cases every run: CI checks for regressions; the long
        # profile, random each time, looks for new bugs.
        run(harness, PROFILES["ci"], derandomize=True)
        figures = harness.figures()
    assert figures["cases"] >= PROFILES["ci"]
    assert set(figures["by_kind"]) == {"request", "payload", "frame", "preauth"}, figures
    outcomes = figures["outcomes"]
    # The run reached what it is meant to reach: replies of every kind,
    # closed connections, dropped peers.
    assert outcomes.get("reply kind 0") and outcomes.get("reply kind 3"), outcomes
    assert outcomes.get("unauthenticated peer closed") and outcomes.get("closed after 0 replies"), outcomes

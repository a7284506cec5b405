"""The ``zerocopy`` bench section's measures (tools/bench/sections/zerocopy.py), at small sizes."""

from __future__ import annotations

import pytest
from tools.bench import impls
from tools.bench.sections import zerocopy

pytestmark = pytest.mark.timeout(120)

MB = zerocopy.MB


def test_the_stream_measure_counts_every_item_and_leaves_nothing():
    pytest.importorskip("numpy")
    answer = zerocopy.measure_stream(impls.load("ours"), items=6, nbytes=10 * MB)
    assert answer["items"] == 6
    assert answer["peak"] >= 0 and answer["rate"] > 0
    # What the stream used is gone once it is over (other runs share /dev/shm: a margin).
    assert answer["left"] < 10 * MB


def test_the_apply_measure_compares_with_memcpy():
    pytest.importorskip("numpy")
    answer = zerocopy.measure_apply(impls.load("ours"), nbytes=16 * MB, repeat=1)
    assert answer["errors"] == {}
    assert answer["memcpy"] > 0 and answer["Pool.apply"] > 0 and answer["executor"] > 0

"""How a sequence is cut into chunks (``mp_pool._sources``): positions, sizes, and what a chunk carries."""

from __future__ import annotations

from mp_pool._sources import SHORT_RANGE, SequenceSource


def chunks(source):
    out = []
    while (chunk := source.take()) is not None:
        out.append(chunk)
    return out


def test_a_short_slice_of_a_range_travels_as_a_tuple_of_its_ints():
    # (C pickle writes a tuple of ints in one pass; a range goes through the reducer hook twice.)
    cut = chunks(SequenceSource(range(10, 17), 3))
    assert [(c.number, c.start, c.items) for c in cut] == [(0, 0, (10, 11, 12)), (1, 3, (13, 14, 15)), (2, 6, (16,))]
    assert all(type(c.items) is tuple for c in cut)


def test_a_long_slice_of_a_range_stays_a_range_and_other_sequences_are_sliced_as_they_are():
    size = SHORT_RANGE + 1
    cut = chunks(SequenceSource(range(3 * size), size))
    assert [c.items for c in cut] == [range(0, size), range(size, 2 * size), range(2 * size, 3 * size)]
    assert [c.items for c in chunks(SequenceSource([1, 2, 3], 2))] == [[1, 2], [3]]
    assert [c.items for c in chunks(SequenceSource((1, 2, 3), 2))] == [(1, 2), (3,)]

"""pandas DataFrames through every channel: their numeric blocks travel out of band and arrive in shared memory.

pandas pickles a DataFrame's blocks as NumPy arrays, so protocol 5 hands
their buffers to the serialization layer like any array's; a column of
strings stays in band.  Skipped where pandas is not installed (it has no
wheel for PyPy) and on PyPy (which sends NumPy arrays in band).  Each
test's leak check (tests/conftest.py) proves /dev/shm is back to its
baseline once the frames are gone.
"""

from __future__ import annotations

import pytest

import mp_core
from mp_core import _segments
from mp_managers.managers import SyncManager
from mp_pool.pool import Pool

from ..oob_support import ARRAYS_OUT_OF_BAND, SIZE, threshold, use_threshold  # noqa: F401 (threshold: an autouse fixture)

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(not ARRAYS_OUT_OF_BAND, reason="PyPy sends NumPy arrays in band"),
]
pandas = pytest.importorskip("pandas")
numpy = pytest.importorskip("numpy")

ROWS = SIZE // 8  # each numeric column is a 512 KiB buffer, above the tests' threshold


def frame(seed: int = 0):
    rng = numpy.random.default_rng(seed)
    return pandas.DataFrame(
        {
            "x": rng.random(ROWS),
            "y": rng.random(ROWS),  # (x and y share one 2-D float block)
            "n": numpy.arange(ROWS, dtype=numpy.int64) * seed,
            "label": [f"row {i}" for i in range(0, ROWS, 1)],
        },
        index=pandas.RangeIndex(ROWS, name="row"),
    )


def fingerprint(df) -> tuple:
    """What must arrive the same (values, dtypes, index), and which columns lie in shared memory."""
    hashed = int(pandas.util.hash_pandas_object(df, index=True).sum())
    shared = tuple(sorted(name for name in df.columns if _segments.segment_of(df[name].to_numpy()) is not None))
    return hashed, tuple(str(dtype) for dtype in df.dtypes), df.index.name, shared


NUMERIC = ("n", "x", "y")


def echo(conn) -> None:
    use_threshold()
    while True:
        df = conn.recv()
        if df is None:
            return
        conn.send((fingerprint(df), df))


def test_through_a_pipe(start):
    parent, child = mp_core.Pipe()
    proc = start(echo, child)
    child.close()
    sent = frame(1)
    parent.send(sent)
    seen, back = parent.recv()
    expected = fingerprint(sent)[:3]
    assert seen == expected + (NUMERIC,)  # the child's numeric columns are views on shared memory
    assert back.equals(sent) and fingerprint(back) == expected + (NUMERIC,)  # sent back by reference
    parent.send(None)
    proc.join(30)
    assert proc.exitcode == 0


def relay(inbox, outbox, timed: bool) -> None:
    use_threshold()
    df = inbox.get(timeout=60) if timed else inbox.get()  # (a SimpleQueue's get takes no timeout)
    outbox.put((fingerprint(df), df))


@pytest.mark.parametrize("kind", ["Queue", "SimpleQueue", "JoinableQueue"])
def test_through_queues(ctx, start, kind):
    inbox, outbox = getattr(ctx, kind)(), getattr(ctx, kind)()
    timed = kind != "SimpleQueue"
    proc = start(relay, inbox, outbox, timed)
    sent = frame(2)
    inbox.put(sent)
    seen, back = outbox.get(timeout=60) if timed else outbox.get()
    assert seen == fingerprint(sent)[:3] + (NUMERIC,)
    assert back.equals(sent)
    assert fingerprint(back)[3] == NUMERIC
    proc.join(30)
    assert proc.exitcode == 0
    for queue in (inbox, outbox):
        queue.close()


def describe_and_make(df, seed: int):
    return fingerprint(df), frame(seed)


def test_as_pool_arguments_and_results(ctx):
    pool = Pool(2, initializer=use_threshold, context=ctx)
    try:
        sent = [frame(seed) for seed in range(3)]
        results = pool.starmap(describe_and_make, [(df, seed + 10) for seed, df in enumerate(sent)], chunksize=1)
        for df, (seen, _) in zip(sent, results):
            assert seen == fingerprint(df)[:3] + (NUMERIC,)
        for seed, (_, made) in enumerate(results):
            assert made.equals(frame(seed + 10))
            assert fingerprint(made)[3] == NUMERIC  # the worker's new frame: its blocks in shared memory
        pool.close()
        pool.join()
    finally:
        pool.terminate()


def test_as_manager_dict_values(ctx):
    manager = SyncManager(ctx=ctx)
    manager.start(initializer=use_threshold)
    try:
        shared = manager.dict()
        sent = frame(3)
        shared["frame"] = sent
        back = shared["frame"]
        assert back.equals(sent)
        assert fingerprint(back)[3] == NUMERIC
        del shared["frame"], back
    finally:
        manager.shutdown()

"""Once ``join()`` has returned, the process's sentinel is ready, under every start method.

The fork server sends a child's exit code and closes the socket that is its
sentinel a moment later: in between, a ``join()`` that has read the code
returned while ``wait([p.sentinel], 0)`` still found nothing.  A machine
with busy cores widens that window, hence the CPU hog beside the loop.
"""

from __future__ import annotations

import pytest

from mp_core.connection import wait

pytestmark = pytest.mark.timeout(180)

ROUNDS = 60
#: Under spawn each round starts an interpreter (a second each for PyPy beside the hog), and the
#: sentinel is a plain pipe there: fewer rounds say as much.
SPAWN_ROUNDS = 15


def nothing() -> None:
    pass


def hog(conn) -> None:
    """Keep one core busy until told to stop."""
    while not conn.poll(0):
        for _ in range(10_000):
            pass


def test_the_sentinel_is_ready_once_join_has_returned(ctx, start, start_method):
    rounds = SPAWN_ROUNDS if start_method == "spawn" else ROUNDS
    stop, stop_child = ctx.Pipe()
    hogger = start(hog, stop_child)
    stop_child.close()
    misses = []
    try:
        for round_ in range(rounds):
            proc = ctx.Process(target=nothing)
            proc.start()
            proc.join(60)
            assert proc.exitcode == 0
            if not wait([proc.sentinel], timeout=0):
                misses.append(round_)
            # Ready for good: asking again (after the status was read) finds it too.
            assert wait([proc.sentinel], timeout=0) == [proc.sentinel] or round_ in misses
            proc.close()
    finally:
        stop.send("stop")
        hogger.join(30)
        stop.close()
    assert misses == [], f"{len(misses)} of {rounds} sentinels were not ready after join()"


def test_a_sentinel_stays_usable_until_close(ctx):
    proc = ctx.Process(target=nothing)
    proc.start()
    sentinel = proc.sentinel
    proc.join(60)
    assert wait([sentinel], timeout=0) == [sentinel]
    assert proc.is_alive() is False
    assert wait([sentinel], timeout=0) == [sentinel]
    proc.close()
    with pytest.raises(ValueError):
        _ = proc.sentinel

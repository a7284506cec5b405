"""Large buffers between processes through Pipe: out of band, zero copies on receive, lifetimes, deaths.

Every test's leak check (tests/conftest.py) also proves that /dev/shm is back
to its baseline once the objects are gone in every process.  The buffers are
512 KiB, above a threshold of 256 KiB set in every process of the test.
"""

from __future__ import annotations

import os
import signal

import pytest

import mp_core
from mp_core import _segments

from ..oob_support import ARRAYS_OUT_OF_BAND, CARRIERS, SIZE, THRESHOLD, digest, threshold, use_threshold  # noqa: F401 (threshold: an autouse fixture)
from ..support import run_python

pytestmark = pytest.mark.timeout(90)


def payloads(with_numpy: bool) -> dict:
    data = os.urandom(SIZE)
    objects = {
        "bytes": data,
        "bytearray": bytearray(data[::-1]),
        "memoryview": memoryview(bytearray(data)).cast("i"),
    }
    if with_numpy:
        import numpy

        square = numpy.frombuffer(data, numpy.float64).reshape(256, 256).copy()
        objects["C"] = square
        objects["F"] = numpy.asfortranarray(square)
        objects["strided"] = square[::2]
    return objects


def describe(obj) -> tuple:
    """What must arrive the same, and whether it is a view on shared memory."""
    if type(obj).__module__ == "numpy":
        import numpy

        return (
            type(obj).__name__,
            obj.shape,
            digest(numpy.ascontiguousarray(obj)),
            _segments.segment_of(obj) is not None,
        )
    return (type(obj).__name__, digest(obj), _segments.segment_of(obj) is not None)


def echo(conn, carrier) -> None:
    """Receive objects, report what arrived, send them back; until None."""
    use_threshold(carrier=carrier)
    while True:
        obj = conn.recv()
        if obj is None:
            return
        conn.send((describe(obj), obj))


@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.parametrize("with_numpy", [False, True], ids=["bytes-likes", "numpy"])
def test_round_trip_through_pipe(start, with_numpy, carrier):
    if with_numpy:
        pytest.importorskip("numpy")
    use_threshold(carrier=carrier)
    parent, child = mp_core.Pipe()
    proc = start(echo, child, carrier)
    child.close()
    for name, obj in payloads(with_numpy).items():
        parent.send(obj)
        seen, back = parent.recv()
        # bytes and bytearray own their memory, and so does an array that was
        # not contiguous (NumPy pickles a copy of its items as bytes).
        shared = name == "memoryview" or (name in ("C", "F") and ARRAYS_OUT_OF_BAND)
        expected = describe(obj)[:-1] + (shared,)
        assert seen == expected, name
        if carrier == "descriptors":
            assert expected_kind(back) == ("FdSegmentMap" if describe(back)[-1] else None), name
        else:  # a named segment, or one of our warm ones back (a lease on it)
            assert expected_kind(back) in (("SegmentMap", "_Warm") if describe(back)[-1] else (None,)), name
        # What the child received is contiguous now: all but bytes and
        # bytearray come back as views (the child's views by reference).
        back_shared = name == "memoryview" or (name not in ("bytes", "bytearray") and ARRAYS_OUT_OF_BAND)
        assert describe(back) == expected[:-1] + (back_shared,), name
    parent.send(None)
    proc.join(30)
    assert proc.exitcode == 0


def expected_kind(obj):
    """The type name of the mapping ``obj`` is a view on (``None``: not one)."""
    segment = _segments.segment_of(obj)
    return None if segment is None else type(segment).__name__


def send_and_exit(conn, data, carrier) -> None:
    use_threshold(carrier=carrier)
    conn.send(data)
    conn.send(memoryview(bytearray(data)))


@pytest.mark.parametrize("carrier", CARRIERS)
def test_received_data_stays_valid_after_the_sender_exits(start, carrier):
    data = os.urandom(SIZE)
    parent, child = mp_core.Pipe()
    proc = start(send_and_exit, child, data, carrier)
    child.close()
    proc.join(30)
    assert proc.exitcode == 0
    first, view = parent.recv(), parent.recv()  # sent before it exited, received after
    assert first == data and digest(view) == digest(data)
    assert expected_kind(view) == ("FdSegmentMap" if carrier == "descriptors" else "SegmentMap")


KILLED_PROGRAM = """
import os, signal, sys, time
import mp_core
from mp_core import reduction

mp_core.current_process()._config["shmprefix"] = sys.argv[1]
# Named segments (the tracker's part); memory files: tests/core/test_zerocopy_memfd.py.
reduction.configure(oob_threshold=256 * 1024, oob_descriptors=False)
ctx = mp_core.get_context(sys.argv[2])


def hold(conn):
    reduction.configure(oob_threshold=256 * 1024, oob_descriptors=False)
    view = conn.recv()
    conn.send(view.nbytes)
    conn.recv()  # until killed, holding the view


def send_then_wait(conn):
    reduction.configure(oob_threshold=256 * 1024, oob_descriptors=False)
    conn.send(memoryview(bytearray(512 * 1024)))
    conn.send("sent")
    conn.recv()  # until killed, the message never received


if __name__ == "__main__":
    for target in (hold, send_then_wait):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=target, args=(child,))
        proc.start()
        if target is hold:
            parent.send(memoryview(bytearray(512 * 1024)))
            assert parent.recv() == 512 * 1024
        else:
            # the large message stays unread in the pipe: only its header is small
            while not os.listdir("/dev/shm") or not any(n.startswith(sys.argv[1][1:]) for n in os.listdir("/dev/shm")):
                time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        left = [n for n in os.listdir("/dev/shm") if n.startswith(sys.argv[1][1:])]
        print(target.__name__, proc.exitcode, len(left) > 0, flush=True)
"""


def test_sigkill_of_sender_or_receiver_leaves_nothing_once_the_program_ends(start_method, tmp_path):
    prefix = f"/psm_k{os.getpid()}{start_method[:2]}_"
    done = run_python(KILLED_PROGRAM, prefix, start_method, timeout=60)
    assert done.returncode == 0, done.stderr
    # While the program ran, the killed process's segment was still there...
    assert done.stdout.split("\n")[:2] == [f"hold {-signal.SIGKILL} True", f"send_then_wait {-signal.SIGKILL} True"]
    # ...and the resource tracker removed it when the program ended (it
    # finishes right after the program: give it the time to).
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(n.startswith(prefix[1:]) for n in os.listdir("/dev/shm")):
        time.sleep(0.05)
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(prefix[1:])]

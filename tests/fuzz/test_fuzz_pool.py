"""Fuzzing the pool's frames, both ways.

* The parent's reader: a ``Pool`` whose worker is simulated in this process
  (``SimulatedWorker``: the pool's real pipes, a sentinel we fire), so that
  a hundred thousand cases take minutes.  The worker says it is ready, gets
  a task, answers with a stream drawn by hypothesis (the right result
  frame, maybe mutated, or junk) and dies.  Property: the result is the
  right value for an intact answer, otherwise a clear error
  (``BrokenPoolError`` naming the worker, ``WorkerLostError``,
  ``MaybeEncodingError``), never a hang, never a crash of the pool's
  manager thread, no memory committed for a bogus size; ``terminate()``
  still works.
* The worker's reader: ``_serve`` (a worker's task loop) fed a stream of
  task frames, maybe mutated.  Property: an intact stream is served (the
  right results, in order); otherwise the worker stops cleanly (end of
  file, STOP) or exits with a ``SystemExit`` that says its task stream was
  corrupt, within a deadline.
"""

from __future__ import annotations

import os
import threading

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import mp_core
from mp_core.connection import FrameReader
from mp_pool import BrokenPoolError, MaybeEncodingError, Pool, WorkerLostError, _wire
from mp_pool._worker import _serve

from ._streams import MemoryWatch, encode, mutate, mutations

DEADLINE = 30.0
MEMORY_BOUND_MIB = 128


def square(x):
    return x * x


class SimulatedWorker:
    """Stands in for a worker process: keeps the child ends of its pipes; dies when told."""

    made: list[SimulatedWorker] = []
    _pids = iter(range(4_000_000, 5_000_000))  # beyond pid_max: never a real process

    def __init__(self, target=None, args=(), **_kwds) -> None:
        self.name = "Process-sim"
        self.daemon = False
        self.pid = next(self._pids)
        self.exitcode = None
        self._args = args
        self.sentinel, self._alive_w = os.pipe()
        self.tasks_fd = self.results_fd = -1
        SimulatedWorker.made.append(self)

    def start(self) -> None:
        tasks_r, results_w = self._args[0], self._args[1]
        # The pool closes its copies of these once started: keep our own.
        self.tasks_fd = os.dup(tasks_r.fileno())
        self.results_fd = os.dup(results_w.fileno())
        self._args = ()

    def die(self, exitcode: int) -> None:
        if self.exitcode is None:
            self.exitcode = exitcode
            for fd in (self.tasks_fd, self.results_fd, self._alive_w):
                if fd != -1:
                    os.close(fd)
            self.tasks_fd = self.results_fd = self._alive_w = -1

    def terminate(self) -> None:
        self.die(-15)

    def kill(self) -> None:
        self.die(-9)

    def join(self, timeout=None) -> None:
        mp_core.connection.wait([self.sentinel], timeout)

    def is_alive(self) -> bool:
        return self.exitcode is None

    def release(self) -> None:
        self.die(0)
        os.close(self.sentinel)


class SimulatedPool(Pool):
    @staticmethod
    def Process(ctx, *args, **kwds):
        return SimulatedWorker(*args, **kwds)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@st.composite
def answers(draw):
    """``(mutation, exitcode)`` for the result frame of ``square(7)``."""
    frame_len = 4 + _wire.RESULT_HEAD.size + 20  # about: the mutation's position is taken modulo the length
    return draw(mutations(frame_len)), draw(st.sampled_from([0, 1, -9, -15]))


@given(answers(), st.booleans())
@example((None, 0), False)
@example((("header", 0, b"\x20\x00\x00\x00"), 0), False)  # a bare 512 MiB header before the result
def test_the_parent_reads_any_answer_to_a_clear_end(answer, ready_first):
    mutation, exitcode = answer
    memory = MemoryWatch()
    SimulatedWorker.made.clear()
    pool = SimulatedPool(1, context=mp_core.get_context("fork"))
    try:
        worker = SimulatedWorker.made[0]
        ready = encode(_wire.RESULT_HEAD.pack(_wire.NO_TASK, _wire.READY, 0.0))
        write_all(worker.results_fd, ready)
        result = pool.apply_async(square, (7,))
        task = FrameReader(worker.tasks_fd).next_frame()
        _kind, task_id, _job = _wire.TASK_HEAD.unpack_from(task)
        frame = b"".join(_wire.result_frame(task_id, _wire.OK, 0.001, 49))
        if mutation is not None and mutation[0] != "replace":
            # Positions drawn for a nominal length: bring them within this frame.
            mutation = (mutation[0], mutation[1] % (len(frame) + 1), *mutation[2:])
            if mutation[0] == "flip":
                mutation = (mutation[0], mutation[1] % len(frame), mutation[2])
        stream = mutate(frame, mutation)
        intact = stream == frame
        write_all(worker.results_fd, stream)
        if not intact or not ready_first:
            worker.die(exitcode)
        try:
            value = result.get(DEADLINE)
        except BrokenPoolError as exc:
            assert not intact
            message = str(exc)
            assert "manager thread failed" not in message, message  # a crash, not a verdict
            assert f"worker {worker.pid} sent a corrupt result stream: " in message
        except (WorkerLostError, MaybeEncodingError):
            assert not intact
        except mp_core.TimeoutError:
            pytest.fail(f"no verdict within {DEADLINE} s on the stream {stream!r}")
        else:
            if intact:
                assert value == 49  # (a flipped byte in the pickle may change the value: no checksum)
        assert memory.grown_mib() < MEMORY_BOUND_MIB
        # Whatever the stream, the pool's manager thread lives on until told to stop.
        assert pool._engine.thread.is_alive(), "the pool's manager thread died"
    finally:
        terminator = threading.Thread(target=pool.terminate, daemon=True)
        terminator.start()
        terminator.join(DEADLINE)
        assert not terminator.is_alive(), "terminate() hung"
        pool.join()
        for worker in SimulatedWorker.made:
            worker.release()
        SimulatedWorker.made.clear()


# ---------------------------------------------------------------- the worker's side

TASKS = [
    ("call", 3),
    ("call", 4),
    ("map", [1, 2, 3]),
    ("starmap", [(5,), (6,)]),
    ("forget", 0),
]


def task_stream(tasks: list, stop: bool) -> tuple[bytes, list]:
    """The frames the pool would send for ``tasks``, and the values a worker answers."""
    parts: list = []
    expected: list = []
    job = 10
    for n, (kind, arg) in enumerate(tasks, start=1):
        if kind == "call":
            parts += _wire.task_frame(_wire.CALL, n, job, (square, (arg,), {}), True)
            expected.append(arg * arg)
        elif kind in ("map", "starmap"):
            job += 1
            parts += _wire.task_frame(_wire.FUNC, 0, job, square, True)
            parts += _wire.task_frame(_wire.MAP if kind == "map" else _wire.STARMAP, n, job, arg, True)
            expected.append([square(*a) if kind == "starmap" else square(a) for a in arg])
        else:
            parts += _wire.task_frame(_wire.FORGET, 0, job)
    if stop:
        parts += _wire.STOP_FRAME
    return b"".join(bytes(p) for p in parts), expected


@st.composite
def task_streams(draw):
    tasks = draw(st.lists(st.sampled_from(TASKS), max_size=5))
    stream, expected = task_stream(tasks, draw(st.booleans()))
    mutation = draw(mutations(len(stream)))
    mutated = mutate(stream, mutation)
    return mutated, expected, mutated == stream


@given(task_streams())
def test_a_worker_reads_any_task_stream_to_a_clean_stop(case):
    stream, expected, intact = case
    memory = MemoryWatch()
    r, w = os.pipe()
    tasks = mp_core.connection.Connection(r, writable=False)
    sent: list = []

    def send(parts: list) -> None:
        sent.append(b"".join(bytes(p) for p in parts))

    outcome: dict = {}

    def serve() -> None:
        try:
            _serve(tasks, send, None, None)
            outcome["end"] = "clean"
        except SystemExit as exc:
            outcome["end"] = str(exc.code)
        except BaseException as exc:  # noqa: BLE001 - judged below
            outcome["end"] = exc

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        write_all(w, stream)
    except OSError:
        pass  # the worker stopped reading (a STOP, or garbage) and the pipe filled: it will see it closed
    finally:
        os.close(w)
    thread.join(DEADLINE)
    assert not thread.is_alive(), "the worker hung on a closed task stream"
    tasks.close()
    end = outcome["end"]
    assert end == "clean" or (isinstance(end, str) and "corrupt task stream from the pool: " in end), end
    values = []
    for frame in sent:
        task_id, status, _ = _wire.RESULT_HEAD.unpack_from(frame, 4)
        if status == _wire.OK:
            values.append(mp_core.reduction.loads(memoryview(frame)[4 + _wire.RESULT_HEAD.size :]))
        else:
            values.append("error")
    if intact:
        assert end == "clean"
        assert values == expected
    assert memory.grown_mib() < MEMORY_BOUND_MIB

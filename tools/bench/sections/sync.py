"""``sync``: an uncontended ``Lock``, and ``Queue``/``SimpleQueue`` throughput between two processes.

What is measured, in a fresh worker process per implementation and round:

* **Lock**: ``lock.acquire(); lock.release()`` (and ``with lock: pass``,
  for information) on a ``ctx.Lock()`` no other process touches, timed
  over loops calibrated to run ~``target_time`` seconds (the garbage
  collector off, as ``timeit`` does); a sample is the fastest of
  ``BEST_OF`` such loops (a preemption spoils one loop, not the sample),
  several samples per worker;
* **Queue** and **SimpleQueue**: ``count`` (100k) small messages (the
  ints ``0 .. count-1``) from a child producing to the worker consuming.
  The child is a ``ctx.Process`` of the implementation under fork (the
  default start method here), started before the clock; it says it is
  ready over a raw OS pipe and waits for a go byte on another, so process
  start-up is not timed.  The clock runs from the go byte until the worker
  has received the last message — for ``Queue`` that includes the child's
  feeder thread pickling and sending everything.  Figures are messages
  per second.

Floor for the queues: the same messages (C pickle, a 4-byte length in
front) sent one ``send`` each over a raw ``socket.socketpair`` from an
``os.fork()`` child, received and unpickled by the worker, timed right after
each queue sample in the same worker: no library, no lock, no thread.

Targets: Lock acquire+release ≤ 1.05× the stdlib's time (issue 4); Queue
and SimpleQueue throughput ≥ the stdlib's (issue 4), Queue ≥ 2× (issue 19:
time ≤ 0.5×).
"""

from __future__ import annotations

import os
import pickle
import socket
import struct
import time
from typing import Any, Dict, List

from ..report import OPS, SectionResult, Target
from ..runner import BenchContext, short_error
from ..stats import summarize_columns
from ..timing import best_of, calibrate
from . import Section, register

START_METHOD = "fork"
LOCK_CASES = {"acquire_release": "acquire() + release()", "with": "with lock: pass"}
QUEUE_CASES = {"queue": "Queue", "simple": "SimpleQueue"}
#: A Lock sample is the fastest of this many loops.
BEST_OF = 5

# ---------------------------------------------------------------- child side: Lock


def _acquire_release_loop(lock: Any) -> Any:
    clock = time.perf_counter

    def loop(loops: int) -> float:
        started = clock()
        for _ in range(loops):
            lock.acquire()
            lock.release()
        return (clock() - started) / loops

    return loop


def _with_loop(lock: Any) -> Any:
    clock = time.perf_counter

    def loop(loops: int) -> float:
        started = clock()
        for _ in range(loops):
            with lock:
                pass
        return (clock() - started) / loops

    return loop


def measure_lock(api: Any, samples: int, target_time: float) -> Dict[str, Any]:
    """Child side: ``samples`` per-op times (s) of each Lock case."""
    lock = api.get_context(START_METHOD).Lock()
    loops = {"acquire_release": _acquire_release_loop(lock), "with": _with_loop(lock)}
    counts = {case: calibrate(loop, target_time) for case, loop in loops.items()}
    out: Dict[str, List[float]] = {case: [] for case in loops}
    for _ in range(samples):
        for case, loop in loops.items():
            out[case].append(best_of(loop, counts[case], BEST_OF))
    if not lock.acquire(False):
        raise AssertionError("the lock was left held")
    lock.release()
    return {"samples": out}


# ---------------------------------------------------------------- child side: queues


def _produce(queue: Any, count: int, ready_fd: int, go_fd: int) -> None:
    """In the forked child: say ready, wait for the go byte, put ``0 .. count-1``."""
    os.write(ready_fd, b"r")
    if os.read(go_fd, 1) != b"g":
        raise RuntimeError("no go byte")
    put = queue.put
    for i in range(count):
        put(i)
    # Queue: the feeder thread flushes before the process exits.


def _transfer(api: Any, kind: str, count: int) -> float:
    """Seconds from the go byte until the last of ``count`` messages is received."""
    ctx = api.get_context(START_METHOD)
    queue = ctx.Queue() if kind == "queue" else ctx.SimpleQueue()
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    child = ctx.Process(target=_produce, args=(queue, count, ready_w, go_r), daemon=True)
    try:
        child.start()
        os.close(ready_w)
        os.close(go_r)
        if os.read(ready_r, 1) != b"r":
            raise RuntimeError("the producer died before it was ready")
        get = queue.get
        last = None
        started = time.perf_counter()
        os.write(go_w, b"g")
        for _ in range(count):
            last = get()
        elapsed = time.perf_counter() - started
        child.join(60)
        if child.exitcode != 0:
            raise RuntimeError(f"the producer exited with {child.exitcode}")
        if last != count - 1:
            raise AssertionError(f"the last message was {last!r}, not {count - 1}")
        return elapsed
    finally:
        if child.is_alive():
            child.kill()
            child.join()
        for fd in (ready_r, go_w):
            os.close(fd)
        queue.close()


def raw_transfer(count: int) -> float:
    """Seconds for ``count`` pickled ints, one ``send`` each, from a forked child over a socketpair."""
    parent_end, child_end = socket.socketpair()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            parent_end.close()
            os.read(go_r, 1)
            send, pack, dumps = child_end.sendall, struct.Struct("!i").pack, pickle.dumps
            for i in range(count):
                data = dumps(i)
                send(pack(len(data)) + data)
            code = 0
        finally:
            os._exit(code)
    child_end.close()
    os.close(go_r)
    try:
        recv, unpack, loads = parent_end.recv, struct.Struct("!i").unpack_from, pickle.loads
        buffer = b""
        got = 0
        last = None
        started = time.perf_counter()
        os.write(go_w, b"g")
        while got < count:
            chunk = recv(1 << 16)
            if not chunk:
                raise RuntimeError(f"the raw producer stopped after {got} messages")
            buffer += chunk
            at = 0
            while len(buffer) - at >= 4:
                (size,) = unpack(buffer, at)
                if len(buffer) - at - 4 < size:
                    break
                last = loads(buffer[at + 4 : at + 4 + size])
                at += 4 + size
                got += 1
            buffer = buffer[at:]
        elapsed = time.perf_counter() - started
    finally:
        os.close(go_w)
        parent_end.close()
        os.waitpid(pid, 0)
    if last != count - 1:
        raise AssertionError(f"the last raw message was {last!r}, not {count - 1}")
    return elapsed


def measure_queues(api: Any, kinds: List[str], count: int, samples: int, floor: bool = False) -> Dict[str, Any]:
    """Child side: ``samples`` throughputs (messages/s) per queue kind (``floor``: and the raw floor's).

    A failing kind is recorded, not raised.
    """
    out: Dict[str, Any] = {"samples": {}, "errors": {}}
    for _ in range(samples):
        if floor:
            out["samples"].setdefault("floor", []).append(count / raw_transfer(count))
        for kind in kinds:
            if kind in out["errors"]:
                continue
            try:
                elapsed = _transfer(api, kind, count)
            except Exception as exc:
                out["errors"][kind] = f"{type(exc).__name__}: {exc}"
                out["samples"].pop(kind, None)
                continue
            out["samples"].setdefault(kind, []).append(count / elapsed)
    return out


MEASURES = {"lock": measure_lock, "queues": measure_queues}

# ---------------------------------------------------------------- parent side


def run(ctx: BenchContext) -> SectionResult:
    result = SectionResult("sync", "uncontended Lock; Queue and SimpleQueue throughput between two processes")
    keys = ctx.runner.keys

    lock_rounds = ctx.pick(3, 2)
    lock_params = {"samples": ctx.pick(5, 3), "target_time": ctx.pick(0.01, 0.01)}
    ctx.log("  sync: Lock")
    lock_results, lock_errors = ctx.collect("sync:lock", lock_params, lock_rounds)
    locks = result.table("uncontended Lock, time per operation (median)", [(k, k) for k in keys], name="Lock")
    lock_samples: Dict[str, Dict[str, List[float]]] = {}
    for case, label in LOCK_CASES.items():
        cells = {k: [s for r in lock_results.get(k, []) for s in r["samples"][case]] for k in keys}
        lock_samples[case] = cells
        medians, spreads = summarize_columns(cells)
        locks.add(label, medians, [Target("stdlib", 1.05)] if case == "acquire_release" else [], spreads)

    count = 100_000
    # Two processes on a busy 2-core machine: whether they share a core or
    # not swings a sample by ±30 %, so many samples, interleaved.
    queue_rounds = ctx.pick(4, 2)
    queue_params = {"kinds": list(QUEUE_CASES), "count": count, "samples": ctx.pick(2, 1), "floor": True}
    ctx.log("  sync: Queue, SimpleQueue")
    queue_results, queue_errors = ctx.collect("sync:queues", queue_params, queue_rounds)
    queues = result.table(
        f"throughput of {count // 1000}k small messages, child → parent ({START_METHOD}); floor = raw "
        "socketpair, one send per pickled message, between os.fork()ed processes",
        [(k, k) for k in keys] + [("floor", "floor")],
        kind=OPS,
        name="queues",
        ratios=[("ours", "stdlib"), ("upstream", "stdlib"), ("floor", "stdlib"), ("ours", "floor")],
    )
    floors = [s for k in keys for r in queue_results.get(k, []) for s in r["samples"].get("floor", [])]
    queue_samples: Dict[str, Dict[str, List[float]]] = {}
    for kind, label in QUEUE_CASES.items():
        cells = {k: [s for r in queue_results.get(k, []) for s in r["samples"].get(kind, [])] for k in keys}
        queue_samples[kind] = cells
        medians, spreads = summarize_columns(dict(cells, floor=floors or None))
        targets = [Target("stdlib", 1.0, at_least=True)]
        if kind == "queue":
            targets.append(Target("stdlib", 2.0, at_least=True))
        queues.add(label, medians, targets, spreads)
        for k in keys:
            for r in queue_results.get(k, []):
                message = r["errors"].get(kind)
                note = f"{label}/{k}: {short_error(message)}" if message else ""
                if note and note not in result.notes:
                    result.notes.append(note)

    for what, errors in (("Lock", lock_errors), ("queues", queue_errors)):
        for key, message in errors.items():
            result.notes.append(f"{what}/{key}: {short_error(message)}")
    result.notes.append(
        f"Lock: {lock_params['samples'] * lock_rounds} samples per cell over {lock_rounds} "
        f"interleaved rounds, each the fastest of {BEST_OF} loops of "
        f"~{lock_params['target_time'] * 1e3:.0f} ms"
    )
    result.notes.append(
        f"queues: messages are the ints 0..{count - 1}, put by a forked ctx.Process and got by "
        f"the worker; timed from a go byte until the last message arrives; "
        f"{queue_params['samples'] * queue_rounds} samples per cell over {queue_rounds} "
        f"interleaved rounds"
    )
    result.data = {"lock": lock_samples, "queues": queue_samples}
    return result


register(Section("sync", "uncontended Lock; Queue and SimpleQueue throughput of 100k small messages", run, issue=4))

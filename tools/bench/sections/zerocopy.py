"""``zerocopy``: large NumPy arrays between processes, as a fraction of this machine's memcpy (issue 18).

Every worker measures memcpy first (``numpy.copyto`` of the 200 MB array,
50 MB under ``--quick``, into a preallocated one, the best of 5): the bandwidth every figure is
divided by, measured in the same run on the same machine.  A figure is
array bytes / seconds, where the seconds cover the whole trip:

* ``Pool.apply`` of a 200 MB (``--quick``: 50 MB) float64 array to an identity function, sent to
  the worker and returned (one pool of 1 worker, fork; the first call is
  a warm-up): ours (``Pool`` and ``multiprocess.futures``), the stdlib
  (``Pool`` and ``concurrent.futures.ProcessPoolExecutor``) and loky
  (``get_reusable_executor``, in a venv of its own: ``loky_venv``).
  Target: ours ≥ 0.40 of memcpy;
* ``Queue`` put/get of 10 MB arrays, a producer child to the parent, and
  ``Pipe`` send/recv of 100 MB arrays, the parent to a child that
  acknowledges the last one: ours ≥ 3 × the stdlib;
* the 1,000 × 10 MB Queue stream (ours only): the peak of /dev/shm used
  while a producer child streams them to a consumer that drops each one;
* the threshold: ``Pipe`` send/recv throughput of arrays of 1-32 MiB in
  band (``oob_threshold=None``) and out of band (the minimum threshold),
  the receiver dropping them or summing them: where the default comes from.

Small messages (Queue of small tuples, tiny-task ``map``) are the ``sync``
and ``pool`` sections' rows.
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, List

from .. import loky_venv
from ..report import RATE, SIZE, SectionResult, Target
from ..stats import summarize_columns
from . import Section, register

MB = 1_000_000
MiB = 1 << 20


def identity(value: Any) -> Any:
    """The pool task: the array goes there and back."""
    return value


def _memcpy_rate(numpy: Any, nbytes: int) -> float:
    source = numpy.ones(nbytes // 8)
    target = numpy.empty_like(source)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        numpy.copyto(target, source)
        best = min(best, time.perf_counter() - started)
    return nbytes / best


def _check(numpy: Any, sent: Any, got: Any) -> None:
    if got.shape != sent.shape or not numpy.array_equal(got[:: 1 << 12], sent[:: 1 << 12]):
        raise AssertionError("the array changed on the way")


def _best_rate(call: Any, nbytes: int, repeat: int) -> float:
    call()  # warm-up: worker start, imports, first segment
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return nbytes / best


def measure_apply(api: Any, nbytes: int, repeat: int) -> Dict[str, Any]:
    """Child side: the memcpy rate and each variant's ``apply``-round-trip rate (bytes/s)."""
    import numpy

    out: Dict[str, Any] = {"memcpy": _memcpy_rate(numpy, nbytes), "errors": {}}
    array = numpy.random.default_rng(0).random(nbytes // 8)

    def checked(submit: Any) -> Any:
        def call() -> None:
            _check(numpy, array, submit())

        return call

    variants: Dict[str, Any] = {}
    if api.key in ("ours", "stdlib"):
        ctx = api.get_context("fork")
        variants["Pool.apply"] = lambda: ctx.Pool(1)
        variants["executor"] = lambda: api.process_pool_executor()(1, mp_context=ctx)
    elif api.key == "loky":
        variants["executor"] = lambda: api.process_pool_executor()(1)
    for name, make in variants.items():
        try:
            out[name] = _variant_rate(api, name, make(), array, nbytes, repeat, checked)
        except Exception as exc:
            out["errors"][name] = f"{type(exc).__name__}: {exc}"
    return out


def _variant_rate(api: Any, name: str, runner: Any, array: Any, nbytes: int, repeat: int, checked: Any) -> float:
    try:
        if name == "Pool.apply":
            return _best_rate(checked(lambda: runner.apply(identity, (array,))), nbytes, repeat)
        return _best_rate(checked(lambda: runner.submit(identity, array).result()), nbytes, repeat)
    finally:
        if name == "Pool.apply":
            # close, not terminate: a worker stopped by a signal while it
            # still maps the last view leaves the segment's name to the
            # tracker until the program ends.
            runner.close()
            runner.join()
        elif api.key != "loky":  # loky's executor is reusable: it stays for the next call
            runner.shutdown()


def _produce(box: Any, count: int, nbytes: int) -> None:
    import numpy

    array = numpy.random.default_rng(1).random(nbytes // 8)
    for _ in range(count):
        box.put(array)
    box.put(None)


def _consume(conn: Any, count: int) -> None:
    for _ in range(count):
        conn.recv()
    conn.send(count)


def measure_channels(api: Any, queue_items: int, pipe_items: int, repeat: int) -> Dict[str, Any]:
    """Child side: memcpy, Queue (10 MB arrays, child -> parent) and Pipe (100 MB, parent -> child) rates."""
    import numpy

    out: Dict[str, Any] = {"memcpy": _memcpy_rate(numpy, 200 * MB), "errors": {}}
    ctx = api.get_context("fork")
    best = float("inf")
    for _ in range(repeat):
        box = ctx.Queue()
        producer = ctx.Process(target=_produce, args=(box, queue_items, 10 * MB))
        producer.start()
        first = box.get()  # the producer is up: time the rest
        started = time.perf_counter()
        got = 1
        while box.get() is not None:
            got += 1
        best = min(best, time.perf_counter() - started)
        producer.join()
        if got != queue_items or first.nbytes != 10 * MB:
            raise AssertionError(f"{got} of {queue_items} arrays arrived")
    out["queue"] = (queue_items - 1) * 10 * MB / best
    array = numpy.random.default_rng(2).random(100 * MB // 8)
    best = float("inf")
    for _ in range(repeat):
        parent, child = ctx.Pipe()
        consumer = ctx.Process(target=_consume, args=(child, pipe_items))
        consumer.start()
        child.close()
        started = time.perf_counter()
        for _ in range(pipe_items):
            parent.send(array)
        if parent.recv() != pipe_items:
            raise AssertionError("the consumer lost arrays")
        best = min(best, time.perf_counter() - started)
        consumer.join()
    out["pipe"] = pipe_items * 100 * MB / best
    return out


def _shm_used() -> int:
    stats = os.statvfs("/dev/shm")
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize


def measure_stream(api: Any, items: int, nbytes: int) -> Dict[str, Any]:
    """Child side (ours): a producer child streams ``items`` arrays through a Queue; /dev/shm's peak above baseline."""
    ctx = api.get_context("fork")
    box = ctx.Queue()
    baseline = _shm_used()
    producer = ctx.Process(target=_produce, args=(box, items, nbytes))
    started = time.perf_counter()
    producer.start()
    peak = 0
    got = 0
    while True:
        item = box.get()
        peak = max(peak, _shm_used() - baseline)
        if item is None:
            break
        got += 1
        del item
    elapsed = time.perf_counter() - started
    producer.join()
    left = _shm_used() - baseline
    return {"items": got, "peak": peak, "left": left, "rate": got * nbytes / elapsed}


def _pipe_rate(ctx: Any, array: Any, count: int, touch: bool) -> float:
    parent, child = ctx.Pipe()
    consumer = ctx.Process(target=_consume_touching if touch else _consume, args=(child, count))
    consumer.start()
    child.close()
    started = time.perf_counter()
    for _ in range(count):
        parent.send(array)
    parent.recv()
    elapsed = time.perf_counter() - started
    consumer.join()
    return count * array.nbytes / elapsed


def _consume_touching(conn: Any, count: int) -> None:
    for _ in range(count):
        conn.recv().sum()
    conn.send(count)


def measure_threshold(api: Any, sizes: List[int], volume: int, repeat: int) -> Dict[str, Any]:
    """Child side (ours): Pipe rates per size, in band and out of band, receiver dropping or summing."""
    import numpy

    reduction = __import__("mp_core.reduction", fromlist=["configure"])
    minimum = __import__("mp_core._out_of_band", fromlist=["MIN_THRESHOLD"]).MIN_THRESHOLD
    ctx = api.get_context("fork")
    before = reduction.get_serializer().oob_threshold
    out: Dict[str, Any] = {}
    try:
        for size in sizes:
            array = numpy.random.default_rng(3).random(size // 8)
            count = max(8, volume // size)
            for mode, threshold in (("in band", None), ("out of band", minimum)):
                reduction.configure(oob_threshold=threshold)
                for touch in (False, True):
                    key = f"{size}/{mode}/{'sum' if touch else 'drop'}"
                    out[key] = max(_pipe_rate(ctx, array, count, touch) for _ in range(repeat))
    finally:
        reduction.configure(oob_threshold=before)
    return out


MEASURES = {
    "apply": measure_apply,
    "channels": measure_channels,
    "stream": measure_stream,
    "threshold": measure_threshold,
}

# ---------------------------------------------------------------- parent side


def run_zerocopy(ctx: Any) -> SectionResult:
    result = SectionResult("zerocopy", "large NumPy arrays between processes, as fractions of memcpy (issue 18)")
    impls = loky_venv.with_loky(
        [impl for impl in ctx.runner.implementations if impl.key in ("ours", "stdlib")], ctx.log, result.notes
    )
    rounds = ctx.pick(3, 1)
    # The stdlib's executors move ~100 MiB/s: --quick sends a quarter of the array, twice.
    nbytes = ctx.pick(200, 50) * MB
    applied, errors = ctx.collect("zerocopy:apply", {"nbytes": nbytes, "repeat": ctx.pick(5, 2)}, rounds, impls)
    for key, message in errors.items():
        result.notes.append(f"{key}: {message.strip().splitlines()[-1]}")
    memcpy = [answer["memcpy"] for answers in applied.values() for answer in answers]
    columns = [
        ("ours Pool.apply", "ours Pool.apply"),
        ("ours executor", "ours futures"),
        ("stdlib Pool.apply", "stdlib Pool.apply"),
        ("stdlib executor", "concurrent.futures"),
        ("loky executor", "loky"),
        ("memcpy", "memcpy"),
    ]
    cells: Dict[str, List[float]] = {"memcpy": memcpy}
    for key, answers in applied.items():
        for answer in answers:
            for variant in ("Pool.apply", "executor"):
                if variant in answer:
                    cells.setdefault(f"{key} {variant}", []).append(answer[variant])
            for variant, message in answer["errors"].items():
                note = f"{key} {variant}: {message}"
                if note not in result.notes:
                    result.notes.append(note)
    table = result.table(
        f"{nbytes // MB} MB float64 array to a worker and back (apply / submit), bytes per second",
        columns,
        kind=RATE,
        ratios=[(key, "memcpy") for key, _ in columns[:-1]],
        name=f"apply {nbytes // MB} MB",
    )
    values, spreads = summarize_columns({key: cells.get(key) for key, _ in columns})
    table.add(
        "apply round trip",
        values,
        [Target("memcpy", 0.4, at_least=True, subject="ours Pool.apply")],
        spreads,
    )

    channel_impls = [impl for impl in impls if impl.key in ("ours", "stdlib")]
    params = {"queue_items": ctx.pick(30, 12), "pipe_items": ctx.pick(6, 3), "repeat": ctx.pick(3, 2)}
    channels, errors = ctx.collect("zerocopy:channels", params, rounds, channel_impls)
    for key, message in errors.items():
        result.notes.append(f"{key}: {message.strip().splitlines()[-1]}")
    memcpy = [answer["memcpy"] for answers in channels.values() for answer in answers]
    table = result.table(
        "Queue of 10 MB arrays and Pipe of 100 MB arrays, bytes per second",
        [("ours", "ours"), ("stdlib", "stdlib"), ("memcpy", "memcpy")],
        kind=RATE,
        ratios=[("ours", "stdlib"), ("ours", "memcpy"), ("stdlib", "memcpy")],
        name="channels",
    )
    for case, label in (("queue", "Queue put/get, 10 MB arrays"), ("pipe", "Pipe send/recv, 100 MB arrays")):
        cells = {key: [answer[case] for answer in answers] for key, answers in channels.items()}
        cells["memcpy"] = memcpy
        values, spreads = summarize_columns(cells)
        table.add(label, values, [Target("stdlib", 3.0, at_least=True)], spreads)

    ours = [impl for impl in impls if impl.key == "ours"]
    items = ctx.pick(1000, 200)
    streamed, errors = ctx.collect("zerocopy:stream", {"items": items, "nbytes": 10 * MB}, 1, ours)
    for key, message in errors.items():
        result.notes.append(f"{key}: {message.strip().splitlines()[-1]}")
    table = result.table(
        f"Queue stream of {items} × 10 MB arrays (ours): /dev/shm used above its baseline",
        [("peak", "peak"), ("left", "left after")],
        kind=SIZE,
        ratios=[],
        name="stream",
    )
    for answer in streamed.get("ours", []):
        table.add(f"{answer['items']} arrays", {"peak": answer["peak"], "left": answer["left"]})
        result.notes.append(f"stream rate: {answer['rate'] / MB:.0f} MB/s; peak {answer['peak'] / MB:.0f} MB")

    sizes = [1 * MiB, 4 * MiB, 8 * MiB, 16 * MiB, 32 * MiB]
    params = {"sizes": sizes, "volume": ctx.pick(256 * MiB, 64 * MiB), "repeat": ctx.pick(3, 1)}
    measured, errors = ctx.collect("zerocopy:threshold", params, 1, ours)
    for key, message in errors.items():
        result.notes.append(f"{key}: {message.strip().splitlines()[-1]}")
    table = result.table(
        "Pipe send/recv of arrays by size (ours): in band vs out of band, the receiver dropping or summing",
        [
            ("in band/drop", "in band"),
            ("out of band/drop", "oob"),
            ("in band/sum", "in band, sum"),
            ("out of band/sum", "oob, sum"),
        ],
        kind=RATE,
        ratios=[("out of band/drop", "in band/drop"), ("out of band/sum", "in band/sum")],
        name="threshold",
    )
    for answer in measured.get("ours", []):
        for size in sizes:
            table.add(f"{size // MiB} MiB", {key: answer.get(f"{size}/{key}") for key, _ in table.columns})
    result.notes.append(
        f"memcpy: numpy.copyto of {nbytes // MB} MB (channels: 200 MB) into a preallocated array, best of 5, "
        "in each worker; "
        "rates are the best of the repeats, medians over workers"
    )
    return result


register(Section("zerocopy", "large arrays through Pool, Queue and Pipe vs memcpy (issue 18)", run_zerocopy, 18))

"""``serialize``: ``dumps`` + ``loads`` through each implementation's serialization layer.

What is measured: the time of one ``loads(dumps(payload))`` round, timed
over a loop calibrated to run ~``target_time`` seconds per sample (the
garbage collector off inside the loop, as ``timeit`` does), several
samples per worker, in fresh workers over interleaved rounds.

* ours: ``mp_core.reduction.dumps`` / ``mp_core.reduction.loads``;
* stdlib: ``multiprocessing.reduction.ForkingPickler.dumps`` / ``pickle.loads``;
* upstream: ``multiprocess.reduction.ForkingPickler.dumps`` / ``.loads`` (dill).

References, measured inside the *ours* worker, sample for sample
interleaved with ours so that the ratio is paired: C ``pickle.dumps`` /
``pickle.loads`` with protocol 5 (the protocol ours uses) and with the
default protocol.

Payloads: a list of 1e5 ints; a dict of 1e4 str→float; a list of 1e4
small tuples ``(int, str, float)``; a lambda ``lambda x: x + 1`` (the
stdlib cannot pickle it: n/a, compare ours with upstream); a module-level
function (by reference for all three).

Target (issue 2): plain data, ours ≤ 1.2× C pickle's time (protocol 5).
"""

from __future__ import annotations

import gc
import pickle
import re
import time
from typing import Any, Callable, Dict, List, Tuple

from ..report import RATE, SIZE, SectionResult, Target
from ..runner import BenchContext, short_error
from ..stats import summarize_columns
from . import Section, register

PLAIN_DATA = ("ints", "str_float", "tuples")
PAYLOADS = PLAIN_DATA + ("lambda", "function")
LABELS = {
    "ints": "list of 1e5 ints",
    "str_float": "dict of 1e4 str→float",
    "tuples": "list of 1e4 small tuples",
    "lambda": "lambda x: x + 1",
    "function": "module-level function (by reference)",
}
REFERENCES = (("pickle5", "C pickle p5"), ("pickle", "C pickle default"))

INCREMENT = lambda x: x + 1  # noqa: E731 - the payload is a lambda on purpose


def add_one(x: int) -> int:
    """The module-level function payload."""
    return x + 1


def build_payload(name: str) -> Any:
    """The payload called ``name`` (see ``LABELS``)."""
    if name == "ints":
        return list(range(100_000))
    if name == "str_float":
        return {f"key{i}": i * 0.5 for i in range(10_000)}
    if name == "tuples":
        return [(i, str(i), i * 0.25) for i in range(10_000)]
    if name == "lambda":
        return INCREMENT
    if name == "function":
        return add_one
    raise ValueError(f"unknown payload {name!r}")


def _check(name: str, original: Any, copy: Any) -> None:
    ok = copy(41) == 42 if callable(original) else copy == original
    if not ok:
        raise AssertionError(f"{name}: the round trip changed the payload")


def _time_loop(dumps: Callable[[Any], Any], loads: Callable[[Any], Any], payload: Any, loops: int) -> float:
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        started = time.perf_counter()
        for _ in range(loops):
            loads(dumps(payload))
        return (time.perf_counter() - started) / loops
    finally:
        if gc_was_enabled:
            gc.enable()


def _calibrate(dumps: Callable[[Any], Any], loads: Callable[[Any], Any], payload: Any, target_time: float) -> int:
    loops = 1
    while True:
        per_op = _time_loop(dumps, loads, payload, loops)
        if per_op * loops >= target_time / 4 or loops >= 1 << 20:
            return max(1, int(target_time / per_op)) if per_op else loops
        loops *= 4


def measure_roundtrip(
    api: Any, payloads: List[str], samples: int, target_time: float, references: bool = False
) -> Dict[str, Any]:
    """Child side: per payload, ``samples`` per-op times for the implementation (and the C pickle references)."""
    candidates: List[Tuple[str, Callable[[Any], Any], Callable[[Any], Any]]] = []
    if api.key != "none":
        dumps, loads = api.serializer()
        candidates.append(("impl", dumps, loads))
    if references:
        candidates.append(("pickle5", lambda obj: pickle.dumps(obj, protocol=5), pickle.loads))
        candidates.append(("pickle", pickle.dumps, pickle.loads))
    out: Dict[str, Any] = {"samples": {}, "sizes": {}, "errors": {}}
    for name in payloads:
        payload = build_payload(name)
        ready = []
        for key, dumps, loads in candidates:
            try:
                data = dumps(payload)
                _check(name, payload, loads(data))
                loops = _calibrate(dumps, loads, payload, target_time)
            except Exception as exc:  # the stdlib cannot pickle a lambda: that is a result
                out["errors"][f"{name}/{key}"] = f"{type(exc).__name__}: {exc}"
                continue
            out["sizes"][f"{name}/{key}"] = len(memoryview(data).cast("B"))
            ready.append((key, dumps, loads, loops))
        for _ in range(samples):
            for key, dumps, loads, loops in ready:
                out["samples"].setdefault(f"{name}/{key}", []).append(_time_loop(dumps, loads, payload, loops))
    return out


MEASURES = {"roundtrip": measure_roundtrip}


def run(ctx: BenchContext) -> SectionResult:
    result = SectionResult("serialize", "dumps+loads through each serialization layer")
    keys = ctx.runner.keys
    rounds = ctx.pick(3, 2)
    params = {"payloads": list(PAYLOADS), "samples": ctx.pick(4, 3), "target_time": ctx.pick(0.04, 0.02)}
    samples: Dict[str, Dict[str, List[float]]] = {}
    sizes: Dict[str, Dict[str, int]] = {}
    errors: Dict[str, Dict[str, str]] = {}
    for _, impl in ctx.runner.interleaved(rounds):
        try:
            answer = ctx.runner.call(impl, "serialize:roundtrip", dict(params, references=impl.key == "ours"))
        except Exception as exc:
            errors.setdefault(impl.key, {})["*"] = str(exc)
            ctx.log(f"  serialize/{impl.key}: {short_error(str(exc))}")
            continue
        for case, values in answer["samples"].items():
            payload, _, who = case.partition("/")
            column = impl.key if who == "impl" else who
            samples.setdefault(payload, {}).setdefault(column, []).extend(values)
        for case, size in answer["sizes"].items():
            payload, _, who = case.partition("/")
            sizes.setdefault(payload, {})[impl.key if who == "impl" else who] = size
        for case, message in answer["errors"].items():
            payload, _, who = case.partition("/")
            errors.setdefault(impl.key if who == "impl" else who, {})[payload] = message

    columns = [(k, k) for k in keys] + list(REFERENCES)
    ratios = [("ours", "stdlib"), ("upstream", "stdlib"), ("ours", "pickle5"), ("ours", "upstream")]
    times = result.table("dumps+loads time per payload (median)", columns, ratios=ratios)
    rates = result.table("throughput: pickled bytes per second of dumps+loads (median)", columns, kind=RATE, ratios=[])
    size_table = result.table("pickled size", columns, kind=SIZE, ratios=[])
    for payload in PAYLOADS:
        medians, spreads = summarize_columns({col: samples.get(payload, {}).get(col) for col, _ in columns})
        targets = [Target("pickle5", 1.2)] if payload in PLAIN_DATA else []
        times.add(LABELS[payload], medians, targets, spreads)
        size_of = sizes.get(payload, {})
        rate: Dict[str, float | None] = {}
        for col, _ in columns:
            seconds = medians.get(col)
            rate[col] = size_of[col] / seconds if seconds and col in size_of else None
        rates.add(LABELS[payload], rate)
        size_table.add(LABELS[payload], {col: size_of.get(col) for col, _ in columns})
    failed_by: Dict[Tuple[str, str], List[str]] = {}
    for who, failures in errors.items():
        for payload, message in failures.items():
            reason = re.sub(r" at 0x[0-9a-f]+", "", short_error(message))
            failed_by.setdefault((LABELS.get(payload, payload), reason), []).append(who)
    for (label, reason), whom in failed_by.items():
        result.notes.append(f"{label}: n/a for {', '.join(whom)} — {reason}")
    result.notes.append(
        f"{params['samples'] * rounds} samples per cell over {rounds} interleaved rounds, "
        f"each a loop of ~{params['target_time'] * 1e3:.0f} ms; C pickle references measured "
        f"in the ours worker, interleaved with ours"
    )
    result.data = {"samples": samples, "sizes": sizes, "errors": errors}
    return result


register(Section("serialize", "dumps+loads of plain data and functions vs C pickle", run, issue=2))

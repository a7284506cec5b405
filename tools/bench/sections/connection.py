"""``bandwidth`` and ``latency``: connections between two processes.

Both sections move data between a worker and a child it forks with
``os.fork()`` (the same for every implementation, so only the connection
code differs).

``bandwidth`` — the child sends one byte (untimed: it proves the child is
up), then ``count`` messages of ``size`` bytes; the parent receives them,
timed, with ``recv_bytes()`` (a new ``bytes`` per message) or
``recv_bytes_into()`` (one preallocated buffer).  Figures are bytes received per second.
Channels: ``Pipe()`` (a socket pair) and ``Pipe(duplex=False)`` (an OS
pipe) of each implementation, against raw loops (``os.write`` on the
sender, ``os.readv`` into a preallocated buffer on the receiver — Python
3.11 has no ``os.readinto``; ``readv`` with one buffer is the same system
call shape) over an OS pipe with its default 64 KiB buffer, an OS pipe
enlarged to 1 MiB with ``fcntl(F_SETPIPE_SZ)`` (1031 on Linux;
``F_GETPIPE_SZ`` is 1032) and a socket pair: the physical limits.
``Pipe()`` is compared with the socket pair, ``Pipe(duplex=False)`` with
the enlarged pipe (the better of the two pipe limits).

Targets (issue 3), 1 MiB messages: ours ≥ 1.5× the stdlib for both kinds,
and ≥ 0.8× the raw loop over the same kind of channel.

``latency`` — round trips of a small message with a forked child echoing
it back: ``send_bytes``/``recv_bytes`` of 16 bytes and ``send``/``recv``
of a small tuple, over ``Pipe()`` and over a pair of ``Pipe(duplex=False)``,
against raw ``os.write``/``os.read`` round trips over a socket pair and a
pipe pair.  Each round trip is timed on its own; a sample is the median of
``count`` of them (a preemption in the middle of a sample then moves one
round trip, not the sample), and the figure is the median of the samples.
Target (issue 3): ours ≤ the stdlib.
"""

from __future__ import annotations

import os
import socket
import statistics
import time
from typing import Any, Callable, Dict, List, Tuple

from ..report import RATE, SectionResult, Target
from ..runner import BenchContext, short_error
from ..stats import median_or_none, summarize_columns
from . import Section, register

MiB = 1 << 20
F_SETPIPE_SZ = 1031  # Linux; fcntl.F_SETPIPE_SZ from Python 3.10
SMALL_TUPLE = (1, 2.5, "abcd")

# ---------------------------------------------------------------- child side: channels


def _raw_channel(kind: str) -> Tuple[int, int]:
    """``(read fd, write fd)`` of a raw OS channel."""
    if kind == "socketpair":
        a, b = socket.socketpair()
        return a.detach(), b.detach()
    r, w = os.pipe()
    if kind == "pipe_1m":
        import fcntl

        fcntl.fcntl(w, getattr(fcntl, "F_SETPIPE_SZ", F_SETPIPE_SZ), MiB)
    return r, w


def _write_all(fd: int, view: memoryview) -> None:
    pos, n = 0, len(view)
    while pos < n:
        pos += os.write(fd, view[pos:])


def _read_into(fd: int, view: memoryview) -> None:
    got, n = 0, len(view)
    while got < n:
        k = os.readv(fd, [view[got:]])
        if not k:
            raise EOFError
        got += k


def _fork(child: Callable[[], None]) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            child()
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        os._exit(code)
    return pid


def _reap(pid: int) -> None:
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"the forked child failed with status {status}")


# ---------------------------------------------------------------- child side: bandwidth


def _transfer_once(api: Any, channel: str, size: int, count: int, mode: str) -> float:
    """Seconds to receive ``count`` messages of ``size`` bytes over a fresh channel."""
    payload = memoryview(b"\x5a" * size)  # written, so never the shared zero page
    if channel.startswith("raw_"):
        rfd, wfd = _raw_channel(channel[4:])

        def send() -> None:
            os.close(rfd)
            os.write(wfd, b"w")
            for _ in range(count):
                _write_all(wfd, payload)

        pid = _fork(send)
        os.close(wfd)
        view = memoryview(bytearray(size))
        try:
            if os.read(rfd, 1) != b"w":
                raise AssertionError("lost the warm-up byte")
            started = time.perf_counter()
            for _ in range(count):
                _read_into(rfd, view)
            elapsed = time.perf_counter() - started
        finally:
            os.close(rfd)
        _reap(pid)
        return elapsed

    receiver, sender = api.pipe(duplex=channel == "duplex")

    def send_messages() -> None:
        receiver.close()
        sender.send_bytes(b"w")
        for _ in range(count):
            sender.send_bytes(payload)

    pid = _fork(send_messages)
    sender.close()
    try:
        if mode == "recv_bytes_into":
            buf = bytearray(size)
            receive: Callable[[], Any] = lambda: receiver.recv_bytes_into(buf)  # noqa: E731
        else:
            receive = receiver.recv_bytes
        if receiver.recv_bytes() != b"w":
            raise AssertionError("lost the warm-up message")
        started = time.perf_counter()
        for _ in range(count):
            received = receive()
        elapsed = time.perf_counter() - started
        if (received if mode == "recv_bytes_into" else len(received)) != size:
            raise AssertionError(
                f"received {received if isinstance(received, int) else len(received)} bytes in a message of {size}"
            )
    finally:
        receiver.close()
    _reap(pid)
    return elapsed


def measure_bandwidth(api: Any, cases: List[List[Any]], samples: int) -> Dict[str, Any]:
    """Child side: ``samples`` bandwidths (bytes/s) for each ``[channel, size, count, mode]`` case."""
    out: Dict[str, Any] = {"samples": {}, "errors": {}}
    for _ in range(samples):
        for channel, size, count, mode in cases:
            key = f"{channel}/{size}/{mode}"
            if key in out["errors"]:
                continue
            try:
                elapsed = _transfer_once(api, channel, size, count, mode)
            except Exception as exc:
                out["errors"][key] = f"{type(exc).__name__}: {exc}"
                continue
            out["samples"].setdefault(key, []).append(size * count / elapsed)
    return out


# ---------------------------------------------------------------- child side: latency


def _raw_round_trips(channel: str, count: int, warmup: int) -> float:
    """The median round trip (s) of ``os.write``/``os.read`` of 16 bytes with a forked echoing child."""
    if channel == "raw_socketpair":
        a, b = _raw_channel("socketpair")
        p_read = p_write = a
        c_read = c_write = b
    else:
        c_read, p_write = _raw_channel("pipe")
        p_read, c_write = _raw_channel("pipe")
    message = b"x" * 16

    def echo() -> None:
        for _ in range(count + warmup):
            os.write(c_write, os.read(c_read, 64))

    pid = _fork(echo)
    for fd in {c_read, c_write}:
        os.close(fd)
    for _ in range(warmup):
        os.write(p_write, message)
        os.read(p_read, 64)
    clock = time.perf_counter
    times = []
    for _ in range(count):
        started = clock()
        os.write(p_write, message)
        os.read(p_read, 64)
        times.append(clock() - started)
    for fd in {p_read, p_write}:
        os.close(fd)
    _reap(pid)
    return statistics.median(times)


def _round_trips(api: Any, channel: str, kind: str, count: int, warmup: int) -> float:
    """The median round trip (s) over a fresh channel with a forked echoing child."""
    if channel.startswith("raw_"):
        return _raw_round_trips(channel, count, warmup)
    if channel == "duplex":
        parent_end, child_end = api.pipe(duplex=True)
        p_recv = p_send = parent_end
        c_recv = c_send = child_end
    else:
        c_recv, p_send = api.pipe(duplex=False)
        p_recv, c_send = api.pipe(duplex=False)
    message: Any = b"x" * 16 if kind == "bytes" else SMALL_TUPLE
    send, recv = ("send_bytes", "recv_bytes") if kind == "bytes" else ("send", "recv")

    def echo() -> None:
        do_send, do_recv = getattr(c_send, send), getattr(c_recv, recv)
        for _ in range(count + warmup):
            do_send(do_recv())

    pid = _fork(echo)
    for conn in {id(c_recv): c_recv, id(c_send): c_send}.values():
        conn.close()
    do_send, do_recv = getattr(p_send, send), getattr(p_recv, recv)
    for _ in range(warmup):
        do_send(message)
        if do_recv() != message:
            raise AssertionError("the echo changed the message")
    clock = time.perf_counter
    times = []
    for _ in range(count):
        started = clock()
        do_send(message)
        do_recv()
        times.append(clock() - started)
    for conn in {id(p_recv): p_recv, id(p_send): p_send}.values():
        conn.close()
    _reap(pid)
    return statistics.median(times)


def measure_latency(api: Any, cases: List[List[str]], count: int, samples: int) -> Dict[str, Any]:
    """Child side: ``samples`` median round-trip times for each ``[channel, kind]`` case."""
    out: Dict[str, Any] = {"samples": {}, "errors": {}}
    for _ in range(samples):
        for channel, kind in cases:
            key = f"{channel}/{kind}"
            if key in out["errors"]:
                continue
            try:
                out["samples"].setdefault(key, []).append(_round_trips(api, channel, kind, count, count // 10))
            except Exception as exc:
                out["errors"][key] = f"{type(exc).__name__}: {exc}"
                out["samples"].pop(key, None)
    return out


MEASURES = {"bandwidth": measure_bandwidth, "latency": measure_latency}

# ---------------------------------------------------------------- parent side


def _gather(
    ctx: BenchContext, result: SectionResult, measure: str, params: Dict[str, Any], rounds: int
) -> Dict[str, Dict[str, List[float]]]:
    """``{implementation key: {case: samples}}`` over interleaved rounds; errors become notes."""
    samples: Dict[str, Dict[str, List[float]]] = {}
    failed: Dict[str, str] = {}
    for _, impl in ctx.runner.interleaved(rounds):
        if impl.key in failed:
            continue
        try:
            answer = ctx.runner.call(impl, measure, params)
        except Exception as exc:
            failed[impl.key] = short_error(str(exc))
            ctx.log(f"  {measure}/{impl.key}: {failed[impl.key]}")
            continue
        for case, values in answer["samples"].items():
            samples.setdefault(impl.key, {}).setdefault(case, []).extend(values)
        for case, message in answer["errors"].items():
            note = f"{impl.key} {case}: {short_error(message)}"
            if note not in result.notes:
                result.notes.append(note)
    for key, message in failed.items():
        result.notes.append(f"{key}: {message}")
    return samples


def _pooled_median(samples: Dict[str, Dict[str, List[float]]], case: str) -> float | None:
    return median_or_none([v for per_impl in samples.values() for v in per_impl.get(case, [])])


def run_bandwidth(ctx: BenchContext) -> SectionResult:
    result = SectionResult("bandwidth", "send_bytes/recv_bytes bandwidth between two processes")
    keys = ctx.runner.keys
    # 256 MiB per sample (about 50-100 ms): long enough that a sample averages
    # over the scheduler placing sender and receiver on the same or on
    # different cores, which moves a short sample by a third.
    # The 64 MiB rows are for information (no target): --quick leaves them out.
    sizes = [(MiB, 256)] + ([] if ctx.quick else [(64 * MiB, 2)])
    modes = ("recv_bytes", "recv_bytes_into")
    raw_channels = ("raw_pipe", "raw_pipe_1m", "raw_socketpair")
    # Every worker also runs the raw loops, sample for sample between its
    # own cases: ours/raw is then a paired ratio, immune to load drifting
    # between workers.
    cases = [
        [channel, size, count, mode] for channel in ("duplex", "simplex") for size, count in sizes for mode in modes
    ]
    cases += [[channel, size, count, "raw"] for channel in raw_channels for size, count in sizes]
    # Many short rounds rather than a few long ones: the load of a shared
    # machine comes and goes, and each implementation should see as much of
    # it as the others.
    rounds = ctx.pick(6, 2)
    per_round = 1
    samples = _gather(ctx, result, "connection:bandwidth", {"cases": cases, "samples": per_round}, rounds)

    raw_for = {"duplex": ("raw_socketpair", "socketpair"), "simplex": ("raw_pipe_1m", "1 MiB pipe")}
    table = result.table(
        "recv bandwidth (median)",
        [(k, k) for k in keys] + [("raw", "raw (ours worker)")],
        kind=RATE,
        ratios=[("ours", "stdlib"), ("upstream", "stdlib"), ("ours", "raw")],
    )
    names = {"duplex": "Pipe()", "simplex": "Pipe(duplex=False)"}
    for channel in ("duplex", "simplex"):
        for size, _ in sizes:
            for mode in modes:
                cells = {k: samples.get(k, {}).get(f"{channel}/{size}/{mode}") for k in keys}
                cells["raw"] = samples.get("ours", {}).get(f"{raw_for[channel][0]}/{size}/raw")
                values, spreads = summarize_columns(cells)
                targets = [Target("stdlib", 1.5, at_least=True), Target("raw", 0.8, at_least=True)]
                label = f"{names[channel]} {size // MiB} MiB {mode}"
                table.add(label, values, targets if size == MiB else [], spreads)
    raw = result.table(
        "raw loops: os.write → os.readv into one buffer (median, all workers); the physical limits",
        [("raw", "raw")],
        kind=RATE,
        ratios=[],
    )
    raw_names = {
        "raw_pipe": "OS pipe, default 64 KiB buffer",
        "raw_pipe_1m": "OS pipe, F_SETPIPE_SZ 1 MiB",
        "raw_socketpair": "socketpair (AF_UNIX stream)",
    }
    for channel in raw_channels:
        for size, _ in sizes:
            raw.add(
                f"{raw_names[channel]}, {size // MiB} MiB messages",
                {"raw": _pooled_median(samples, f"{channel}/{size}/raw")},
            )
    result.notes.append(
        "raw (ours worker): the raw loop over the same kind of channel ("
        + "; ".join(f"{names[c]}: {label}" for c, (_, label) in raw_for.items())
        + "), measured in the ours worker between ours' samples. Targets apply to 1 MiB "
        "messages (issue 3); 64 MiB rows (not under --quick) are for information."
    )
    result.notes.append(
        f"per sample: {', '.join(f'{c} × {s // MiB} MiB' for s, c in sizes)} messages; "
        f"{rounds * per_round} samples per cell over {rounds} interleaved rounds"
    )
    result.data = {"samples": samples}
    return result


def run_latency(ctx: BenchContext) -> SectionResult:
    result = SectionResult("latency", "small-message round trip with an echoing child")
    keys = ctx.runner.keys
    lib_cases = [[channel, kind] for channel in ("duplex", "simplex") for kind in ("bytes", "object")]
    raw_cases = [["raw_socketpair", "bytes"], ["raw_pipe", "bytes"]]
    count = ctx.pick(1000, 500)
    rounds = ctx.pick(8, 3)
    per_round = ctx.pick(1, 2)
    samples = _gather(
        ctx,
        result,
        "connection:latency",
        {"cases": lib_cases + raw_cases, "count": count, "samples": per_round},
        rounds,
    )

    raw_for = {"duplex": "raw_socketpair", "simplex": "raw_pipe"}
    table = result.table(
        "round-trip time (median)",
        [(k, k) for k in keys] + [("raw", "raw (ours worker)")],
        ratios=[("ours", "stdlib"), ("upstream", "stdlib"), ("ours", "raw")],
    )
    names = {"duplex": "Pipe()", "simplex": "2 × Pipe(duplex=False)"}
    kinds = {"bytes": "send_bytes/recv_bytes 16 B", "object": f"send/recv {SMALL_TUPLE!r}"}
    for channel, kind in lib_cases:
        cells = {k: samples.get(k, {}).get(f"{channel}/{kind}") for k in keys}
        cells["raw"] = samples.get("ours", {}).get(f"{raw_for[channel]}/bytes")
        values, spreads = summarize_columns(cells)
        table.add(f"{names[channel]} {kinds[kind]}", values, [Target("stdlib", 1.0)], spreads)
    raw = result.table(
        "raw os.write/os.read round trips of 16 bytes (median, all workers)", [("raw", "raw")], ratios=[]
    )
    raw.add("socketpair", {"raw": _pooled_median(samples, "raw_socketpair/bytes")})
    raw.add("2 OS pipes", {"raw": _pooled_median(samples, "raw_pipe/bytes")})
    result.notes.append(
        "raw (ours worker): os.write/os.read of 16 bytes over a socketpair (for Pipe()) or a "
        "pair of OS pipes (for Pipe(duplex=False)), measured in the ours worker between ours' samples"
    )
    result.notes.append(
        f"{count} round trips per sample (after {count // 10} untimed), "
        f"{rounds * per_round} samples per cell over {rounds} interleaved rounds"
    )
    result.data = {"samples": samples}
    return result


register(
    Section(
        "bandwidth",
        "send_bytes/recv_bytes bandwidth, 1 MiB and 64 MiB messages, vs raw OS loops",
        run_bandwidth,
        issue=3,
    )
)
register(Section("latency", "small-message round-trip latency with an echoing child", run_latency, issue=3))

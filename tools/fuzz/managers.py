"""Fuzzing a manager server's wire protocol with hypothesis.

One server (``manager_server.FuzzedManager``) is attacked by one harness
through four kinds of cases::

    request   a pickled request after authentication: wrong tuple shapes,
              unknown or private methods, bad ids (unhashable, missing,
              huge), arguments that are not tuples, keywords that are not
              dicts, control operations with nonsense, releases of nonsense
    payload   garbage after authentication: random bytes, and valid request
              pickles with bytes flipped, inserted or cut
    frame     size headers after authentication: negative, huge (up to
              2**64 - 1) with a few bytes behind them, then end of file
    preauth   garbage before authentication: random bytes, mutated answers
              to the challenge, huge headers, a pickle that would create a
              directory if anything unpickled it; sometimes the peer stalls

Properties checked after every case:

* the server process lives, and keeps serving: the connection that sent a
  well-framed request gets exactly the replies the protocol promises (one
  reply, of a known kind, to anything but a release; none to a release),
  then a reply to ``dummy``; a fresh client authenticates every 64 cases;
* a corrupt frame gets an error reply or a clean close (end of file),
  never a hang: every wait has a deadline;
* an unauthenticated peer is closed within the handshake deadline (plus
  slack), and nothing it sent was unpickled;
* the server's resident memory stays within ``MEMORY_BOUND`` of what it
  used after warming up, and its thread count stays bounded.

``tests/fuzz/test_fuzz_managers.py`` runs it under the hypothesis profile
of ``tests/fuzz`` (``ci``: a few hundred derandomized cases per start
method; ``long``: 100,000 cases in all, through ``python -m tools.fuzz
--profile long --only managers``); ``python -m tools.fuzz.managers`` runs
it alone and prints what the server did (replies by kind, memory, threads).
"""

from __future__ import annotations

import os
import pickle
import socket
import struct
import tempfile
import time
from typing import Any, Optional, Sequence

from hypothesis import strategies as st

import mp_core
from mp_core import connection

from .manager_server import HANDSHAKE_TIMEOUT, FuzzedManager

__all__ = ["Harness", "cases", "run", "Scratch", "CaseFailure"]

#: Cases per hypothesis example: drawing ten at once costs a third of drawing them one by one.
BATCH = 10
#: Seconds any expected reply or close may take before the case fails as a hang.
REPLY_DEADLINE = 20.0
#: Bytes of resident memory the server may gain over its warmed-up size.
MEMORY_BOUND = 128 * 1024 * 1024
#: Threads the server may run beyond its warmed-up count.
THREAD_BOUND = 32

REPLY_KINDS = (0, 1, 2, 3)
RELEASE = "#release"
CONTROLS = [
    "dummy",
    "debug_info",
    "number_of_objects",
    "get_methods",
    "incref",
    "decref",
    "accept_connection",
    "create",
    RELEASE,
]
# Names that are not control operations: private methods of the server and
# near misses.  (``shutdown`` itself is never sent: it is an operation.)
NOT_CONTROLS = [
    "_close",
    "stop",
    "serve_forever",
    "on_stop",
    "_register",
    "_serve",
    "__init__",
    "id_to_obj",
    "public",
    "__class__",
    "",
    "shutdown ",
    "Shutdown",
    "#RELEASE",
    "#GETVALUE",
]
METHODS = sorted(
    {
        # exposed by the shared types
        "__contains__",
        "__delitem__",
        "__getitem__",
        "__len__",
        "__setitem__",
        "clear",
        "copy",
        "get",
        "items",
        "keys",
        "pop",
        "popitem",
        "setdefault",
        "update",
        "values",
        "__iter__",
        "__add__",
        "__iadd__",
        "__imul__",
        "__mul__",
        "__rmul__",
        "__reversed__",
        "append",
        "count",
        "extend",
        "index",
        "insert",
        "remove",
        "reverse",
        "sort",
        "__getattribute__",
        "__setattr__",
        "__delattr__",
        "set",
        "value",
        # the server's fallbacks, and what is not exposed
        "#GETVALUE",
        "__repr__",
        "__str__",
        "_private",
        "__class__",
        "__reduce__",
        "__init__",
        "__del__",
        "nonexistent",
        "",
    }
)
TYPEIDS = ["dict", "list", "Namespace", "Value", "Iterator", "Pool", "Queue", "nope", ""]
SCRATCH_TYPES = {"dict": ("dict", ()), "list": ("list", ()), "ns": ("Namespace", ()), "value": ("Value", ("i", 0))}


class Scratch:
    """Stands, in a generated case, for the id of one of the harness's scratch objects."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Scratch({self.name!r})"


class _MakesADirectory:
    """Pickles to a call of ``os.mkdir``: if an unauthenticated peer's bytes were ever unpickled, it shows."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (os.mkdir, (self.path,))


# ---------------------------------------------------------------- strategies


def _build_values() -> st.SearchStrategy:
    # Bounded: what a legitimate request could ask for is bounded too (no
    # list multiplied by a million).  Huge integers are huge enough that
    # any allocation they ask for fails at once.
    leaves = (
        st.none()
        | st.booleans()
        | st.integers(-100, 100)
        | st.sampled_from([2**40, 2**62, 2**63, -(2**63), 2**64, 10**30, -(10**30)])
        | st.floats(allow_nan=True)
        | st.text(max_size=12)
        | st.binary(max_size=48)
    )
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.tuples(inner, inner)
            | st.dictionaries(st.text(max_size=4), inner, max_size=3)
        ),
        max_leaves=8,
    )


def _build_idents() -> st.SearchStrategy:
    return (
        SCRATCH
        | st.none()
        | st.integers(min_value=10**7)
        | st.integers(max_value=-1)
        | st.just(0)
        | st.text(max_size=8)
        | st.floats()
        | st.binary(max_size=8)
        | st.lists(st.integers(), max_size=2)
        | st.dictionaries(st.text(max_size=2), st.none(), max_size=1)
    )


def _build_args() -> st.SearchStrategy:
    return (
        st.lists(VALUES, max_size=3).map(tuple) | st.lists(IDENTS, max_size=3).map(tuple) | VALUES
    )  # not a tuple: None, an int, a str (iterable!), a dict...


def _build_kwds() -> st.SearchStrategy:
    return (
        st.just({})
        | st.dictionaries(st.text(max_size=6), VALUES, max_size=2)
        | st.dictionaries(st.integers(), st.none(), min_size=1, max_size=1)  # keywords must be strings
        | VALUES
    )


SCRATCH = st.sampled_from([Scratch(name) for name in SCRATCH_TYPES])
VALUES = _build_values()
IDENTS = _build_idents()
ARGS = _build_args()
KWDS = _build_kwds()


@st.composite
def _request(draw: Any) -> tuple:
    # Controls and calls on the scratch objects half the time: random ids
    # alone would make nearly every request a missing-object error.
    target = draw(st.sampled_from(["control", "scratch", "any"]))
    if target == "control":
        ident = None
    elif target == "scratch":
        ident = draw(SCRATCH)
    else:
        ident = draw(IDENTS)
    if ident is None:
        name = draw(
            st.sampled_from(CONTROLS) | st.just(RELEASE) | st.sampled_from(NOT_CONTROLS) | st.text(max_size=10) | VALUES
        )
        if name == "create" and draw(st.booleans()):
            args: Any = (draw(st.sampled_from(TYPEIDS) | VALUES), *draw(st.lists(VALUES, max_size=2)))
        elif name == RELEASE:
            args = draw(st.lists(IDENTS, max_size=3) | VALUES)
        elif name in ("incref", "decref", "get_methods"):
            args = (draw(IDENTS),) if draw(st.booleans()) else draw(ARGS)
        else:
            args = draw(ARGS)
    else:
        name = draw(st.sampled_from(METHODS) | st.text(max_size=10) | VALUES)
        args = draw(ARGS)
    kwds = draw(KWDS)
    shape = draw(st.sampled_from(["tuple", "tuple", "tuple", "list", "short", "long", "scalar"]))
    request: Any = (ident, name, args, kwds)
    if shape == "list":
        request = list(request)
    elif shape == "short":
        request = request[: draw(st.integers(0, 3))]
    elif shape == "long":
        request = request + tuple(draw(st.lists(VALUES, min_size=1, max_size=2)))
    elif shape == "scalar":
        request = draw(VALUES)
    return request


@st.composite
def _payload(draw: Any) -> tuple:
    if draw(st.booleans()):
        return ("payload", draw(st.binary(max_size=200)))
    return ("payload", ("mutate", draw(_request()), draw(PROTOCOLS), draw(SEEDS)))


@st.composite
def _frame(draw: Any) -> tuple:
    kind = draw(st.sampled_from(["negative", "long", "short"]))
    if kind == "negative":
        size = draw(st.integers(-(2**31), -2))
        header = struct.pack("!i", size)
    elif kind == "long":
        size = draw(st.integers(0, 2**64 - 1) | st.sampled_from([2**64 - 1, 2**63, 2**40, 2**31]))
        header = struct.pack("!i", -1) + struct.pack("!Q", size)
    else:
        size = draw(st.integers(0, 2**31 - 1) | st.sampled_from([2**31 - 1, 2**22 + 1, 2**20]))
        header = struct.pack("!i", size)
    cut = draw(st.integers(0, len(header)))
    body = draw(st.binary(max_size=64))
    return ("frame", header[:cut] + body if cut < len(header) else header + body)


@st.composite
def _preauth(draw: Any) -> tuple:
    read_challenge = draw(st.booleans())
    what = draw(st.sampled_from(["random", "mutated answer", "huge header", "pickle", "empty"]))
    if what == "random":
        data: Any = draw(st.binary(max_size=300))
    elif what == "mutated answer":
        data = ("mutated answer", draw(SEEDS))
    elif what == "huge header":
        data = struct.pack("!i", -1) + struct.pack("!Q", draw(st.integers(257, 2**64 - 1))) + b"x" * 8
    elif what == "pickle":
        data = "pickle"
    else:
        data = b""
    stall = draw(st.sampled_from([False] * 99 + [True]))
    return ("preauth", (read_challenge, data, stall))


def _build_protocols() -> st.SearchStrategy:
    return st.integers(0, pickle.HIGHEST_PROTOCOL)


def _build_seeds() -> st.SearchStrategy:
    return st.integers(0, 2**32 - 1)


PROTOCOLS = _build_protocols()
SEEDS = _build_seeds()


def cases() -> st.SearchStrategy:
    """Every kind of case, as ``(kind, data)``."""
    return st.tuples(st.just("request"), st.tuples(_request(), PROTOCOLS)) | _payload() | _frame() | _preauth()


def run(harness: Harness, examples: int, seed: Optional[int] = None, derandomize: bool = False) -> None:
    """Check ``examples`` generated cases against ``harness``.

    ``seed`` makes a run reproducible; ``derandomize`` makes every run the
    same (what CI wants).  Raises ``AssertionError`` (hypothesis's minimal
    failing case) if a property fails.
    """
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as fixed_seed

    @settings(
        max_examples=-(-examples // BATCH),
        deadline=None,
        database=None,
        derandomize=derandomize,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(st.lists(cases(), min_size=BATCH, max_size=BATCH))
    def one_case(batch: list) -> None:
        for case in batch:
            harness.check(case)

    if seed is not None:
        one_case = fixed_seed(seed)(one_case)
    one_case()


# ---------------------------------------------------------------- the harness


class CaseFailure(AssertionError):
    """A property of the server did not hold."""


class Harness:
    """Runs cases against one fuzzed server started with ``start_method``; counts what happened."""

    def __init__(self, start_method: str) -> None:
        self.start_method = start_method
        self.manager: Any = None
        self.conn: Any = None
        self.scratch: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.outcomes: dict[str, int] = {}
        self._marker_dir = os.path.join(tempfile.gettempdir(), f"mp-fuzz-unpickled-{os.getpid()}")
        self.rss_baseline = 0
        self.rss_peak = 0
        self.threads_baseline = 0
        self.threads_peak = 0
        self.started = 0.0

    # ------------------------------------------------------------ life cycle

    def __enter__(self) -> Harness:
        # A client whose server never answers must fail, not hang the run.
        self._client_timeout = connection.Client.handshake_timeout
        connection.Client.handshake_timeout = REPLY_DEADLINE
        self.manager = FuzzedManager(ctx=mp_core.get_context(self.start_method))
        self.manager.start()
        self.started = time.monotonic()
        self._reconnect()
        for name in SCRATCH_TYPES:
            self._create_scratch(name)
        for _ in range(50):  # warm up: imports, pickler caches, arenas
            self._roundtrip(self.conn, self._reset_requests())
        self.rss_baseline = self.rss_peak = self._rss()
        self.threads_baseline = self.threads_peak = self._threads()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            if self.conn is not None:
                self.conn.close()
            if self.manager is not None:
                self.manager.shutdown()
        finally:
            connection.Client.handshake_timeout = self._client_timeout
        if os.path.isdir(self._marker_dir):
            os.rmdir(self._marker_dir)

    @property
    def pid(self) -> int:
        return self.manager._process.pid

    def figures(self) -> dict[str, Any]:
        """What the run did: cases by kind, outcomes, the server's memory and threads."""
        return {
            "start_method": self.start_method,
            "cases": sum(self.counts.values()),
            "by_kind": dict(sorted(self.counts.items())),
            "outcomes": dict(sorted(self.outcomes.items())),
            "seconds": round(time.monotonic() - self.started, 1),
            "rss_baseline_mib": round(self.rss_baseline / 2**20, 1),
            "rss_peak_mib": round(self.rss_peak / 2**20, 1),
            "threads_baseline": self.threads_baseline,
            "threads_peak": self.threads_peak,
        }

    # ------------------------------------------------------------ one case

    def check(self, case: tuple) -> None:
        """Run ``case`` and check every property (``CaseFailure`` if one fails)."""
        kind, data = case
        self.counts[kind] = self.counts.get(kind, 0) + 1
        try:
            self._check(kind, data)
        except BaseException as exc:
            # Leave a server and a connection in step for the next case, so
            # that hypothesis shrinks towards the case that failed, not
            # towards whatever runs after it.
            self._recover()
            if isinstance(exc, OSError):
                raise CaseFailure(f"{type(exc).__name__} talking to the server: {exc}") from exc
            raise

    def _check(self, kind: str, data: Any) -> None:
        if kind == "request":
            self._check_request(*data)
        elif kind == "payload":
            self._check_payload(data)
        elif kind == "frame":
            self._check_frame(data)
        else:
            self._check_preauth(*data)
        self._check_server()

    def _outcome(self, what: str) -> None:
        self.outcomes[what] = self.outcomes.get(what, 0) + 1

    def _check_request(self, request: Any, protocol: int) -> None:
        request = self._resolve(request)
        try:
            payload = pickle.dumps(request, protocol)
        except Exception:
            self._outcome("unpicklable here (skipped)")
            return
        self._send_framed(payload)

    def _check_payload(self, data: Any) -> None:
        if isinstance(data, tuple):
            _mutate, request, protocol, seed = data
            payload = pickle.dumps(self._resolve(request), protocol)
            payload = _mutate_bytes(payload, seed)
        else:
            payload = data
        self._send_framed(payload)

    def _send_framed(self, payload: bytes) -> None:
        """Send one well-framed payload; check the replies the protocol promises, then that it serves on."""
        expects_reply, skip = _expectation(payload)
        if skip:
            self._outcome(f"skipped: {skip}")
            return
        conn = self.conn
        replies = self._roundtrip(
            conn,
            [payload, _DUMMY] + self._reset_requests(),
            expected=(1 if expects_reply else 0) + 1 + len(SCRATCH_TYPES),
        )
        if expects_reply:
            kind, value = replies[0]
            self._outcome(f"reply kind {kind}")
            self._release_new_object(payload, kind, value)
            replies = replies[1:]
        else:
            self._outcome("no reply (a release)")
        if replies[0] != (0, None):
            raise CaseFailure(f"the dummy request after the case got {replies[0]!r}")
        self._check_resets(replies[1:])
        if conn.poll(0):
            raise CaseFailure(f"an extra reply arrived: {_safe_recv(conn)!r}")

    def _check_frame(self, data: bytes) -> None:
        conn = self.conn
        self.conn = None
        try:
            _send_raw(conn.fileno(), data, half_close=True)
            replies = _read_until_eof(conn, REPLY_DEADLINE)
        finally:
            conn.close()
        for reply in replies:
            if not (isinstance(reply, tuple) and len(reply) == 2 and reply[0] in REPLY_KINDS):
                raise CaseFailure(f"a malformed reply {reply!r}")
        self._outcome(f"closed after {min(len(replies), 2)}{'+' if len(replies) > 2 else ''} replies")
        self._reconnect()

    def _check_preauth(self, read_challenge: bool, data: Any, stall: bool) -> None:
        sock = _raw_socket(self.manager.address)
        try:
            challenge = b""
            if read_challenge:
                challenge = _read_message(sock, REPLY_DEADLINE)
            if isinstance(data, tuple):  # a right answer, mutated
                message = challenge[len(b"#CHALLENGE#") :] if challenge else os.urandom(40)
                import hmac

                answer = b"{sha256}" + hmac.digest(bytes(self.manager._authkey), message, "sha256")
                data = _mutate_bytes(struct.pack("!i", len(answer)) + answer, data[1])
            elif data == "pickle":
                blob = pickle.dumps(_MakesADirectory(self._marker_dir))
                data = struct.pack("!i", len(blob)) + blob
            try:
                sock.sendall(data)
                if not stall:
                    sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the server may have hung up already
            limit = HANDSHAKE_TIMEOUT + REPLY_DEADLINE
            if not _closed_within(sock, limit):
                raise CaseFailure(f"an unauthenticated peer was kept {limit:g} s (stalled={stall}, sent {data[:40]!r})")
            self._outcome("stalled peer dropped" if stall else "unauthenticated peer closed")
        finally:
            sock.close()
        if os.path.exists(self._marker_dir):
            raise CaseFailure("bytes sent before authentication were unpickled (the marker directory exists)")

    def _check_server(self) -> None:
        if not self.manager._process.is_alive():
            raise CaseFailure(f"the server process died (exit code {self.manager._process.exitcode})")
        total = sum(self.counts.values())
        if total % 64 == 0:
            fresh = self._client()
            try:
                if self._roundtrip(fresh, [_DUMMY]) != [(0, None)]:
                    raise CaseFailure("a fresh client was not served")
            finally:
                fresh.close()
        if total % 16 == 0:
            rss, threads = self._rss(), self._threads()
            self.rss_peak = max(self.rss_peak, rss)
            self.threads_peak = max(self.threads_peak, threads)
            if rss > self.rss_baseline + MEMORY_BOUND:
                raise CaseFailure(f"the server grew from {self.rss_baseline} to {rss} bytes")
            if threads > self.threads_baseline + THREAD_BOUND:
                raise CaseFailure(f"the server runs {threads} threads (it started with {self.threads_baseline})")

    def _recover(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if not self.manager._process.is_alive():
            self.manager.shutdown()
            self.manager = FuzzedManager(ctx=mp_core.get_context(self.start_method))
            self.manager.start()
        self._reconnect()
        for name in SCRATCH_TYPES:
            self._create_scratch(name)

    # ------------------------------------------------------------ scratch objects

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, Scratch):
            return self.scratch[value.name]
        if type(value) in (tuple, list):
            return type(value)(self._resolve(item) for item in value)
        return value

    def _create_scratch(self, name: str) -> None:
        typeid, args = SCRATCH_TYPES[name]
        [(kind, value)] = self._roundtrip(self.conn, [pickle.dumps((None, "create", (typeid, *args), {}))])
        if kind != 0:
            raise CaseFailure(f"cannot create a scratch {typeid}: {value!r}")
        self.scratch[name] = value[0]

    def _reset_requests(self) -> list[bytes]:
        """Requests that empty every scratch object (the fuzz may have filled them)."""
        s = self.scratch
        return [
            pickle.dumps(request)
            for request in (
                (s["dict"], "clear", (), {}),
                (s["list"], "__delitem__", (slice(None),), {}),
                (s["ns"], "__setattr__", ("__dict__", {}), {}),
                (s["value"], "set", (0,), {}),
            )
        ]

    def _check_resets(self, replies: list) -> None:
        for name, reply in zip(SCRATCH_TYPES, replies):
            if reply == (0, None):
                continue
            if reply[0] == 3 and "holds no object" in str(reply[1]):
                # The fuzz released it (decref, #release): make another.
                self._outcome("scratch object released by the fuzz")
                self._create_scratch(name)
                continue
            raise CaseFailure(f"resetting the scratch {name} got {reply!r}")

    def _release_new_object(self, payload: bytes, kind: int, value: Any) -> None:
        """Release what a create or a proxy-returning method made, so objects do not pile up."""
        ident = None
        if kind == 2 and isinstance(value, tuple) and len(value) == 3:
            ident = value[1]
        elif kind == 0 and isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], int):
            request = _loads_quietly(payload)
            if (
                isinstance(request, (tuple, list))
                and len(request) == 4
                and request[0] is None
                and request[1] == "create"
            ):
                ident = value[0]
        if ident is not None and ident not in self.scratch.values():
            self.conn.send_bytes(pickle.dumps((None, RELEASE, [ident], {})))

    # ------------------------------------------------------------ plumbing

    def _reconnect(self) -> None:
        self.conn = self._client()

    def _client(self) -> Any:
        try:
            return connection.Client(self.manager.address, authkey=bytes(self.manager._authkey))
        except mp_core.AuthenticationError as exc:
            raise CaseFailure(f"a client holding the key was refused: {exc}") from exc

    def _roundtrip(self, conn: Any, payloads: list, expected: Optional[int] = None) -> list:
        for payload in payloads:
            conn.send_bytes(payload)
        replies = []
        for _ in range(len(payloads) if expected is None else expected):
            if not conn.poll(REPLY_DEADLINE):
                raise CaseFailure(f"no reply within {REPLY_DEADLINE:g} s (a hang)")
            try:
                reply = pickle.loads(conn.recv_bytes())
            except EOFError:
                raise CaseFailure("the server closed a connection that sent a well-framed request") from None
            if not (isinstance(reply, tuple) and len(reply) == 2 and reply[0] in REPLY_KINDS):
                raise CaseFailure(f"a malformed reply {reply!r}")
            replies.append(reply)
        return replies

    def _rss(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _threads(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))


_DUMMY = pickle.dumps((None, "dummy", (), {}))


def _loads_quietly(payload: bytes) -> Any:
    try:
        return pickle.loads(payload)
    except Exception:
        return None


def _expectation(payload: bytes) -> tuple[bool, Optional[str]]:
    """(whether the server owes a reply, why the case must be skipped), by the server's own rules."""
    try:
        request = pickle.loads(payload)
    except Exception:
        return True, None
    except BaseException as exc:  # a mutated pickle calling exit(), say
        return True, f"decoding raises {type(exc).__name__}"
    try:
        ident, name, _args, _kwds = request
    except Exception:
        return True, None
    try:
        if ident is None and name == "shutdown":
            return True, "a shutdown request"
        return not (ident is None and name == RELEASE), None
    except Exception:
        return True, None


def _mutate_bytes(data: bytes, seed: float) -> bytes:
    import random

    rng = random.Random(seed)
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.choice(["flip", "insert", "delete", "truncate"])
        position = rng.randrange(max(len(buffer), 1))
        if op == "flip" and buffer:
            buffer[position] ^= rng.randint(1, 255)
        elif op == "insert":
            buffer[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif op == "delete" and buffer:
            del buffer[position]
        elif op == "truncate":
            del buffer[position:]
    return bytes(buffer)


def _raw_socket(address: Any) -> socket.socket:
    sock = socket.socket(getattr(socket, connection.address_type(address)))
    sock.connect(address)
    return sock


def _send_raw(fd: int, data: bytes, half_close: bool) -> None:
    sock = socket.socket(fileno=fd)
    try:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    finally:
        sock.detach()


def _read_message(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    try:
        header = sock.recv(4, socket.MSG_WAITALL)
        if len(header) < 4:
            return b""
        return sock.recv(struct.unpack("!i", header)[0], socket.MSG_WAITALL)
    finally:
        sock.settimeout(None)


def _closed_within(sock: socket.socket, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            sock.settimeout(left)
            if not sock.recv(4096):
                return True
    except socket.timeout:
        return False
    except OSError:  # reset by the server: closed too
        return True


def _read_until_eof(conn: Any, timeout: float) -> list:
    """Every reply until the server closes ``conn``; ``CaseFailure`` if it does not within ``timeout``."""
    replies = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not conn.poll(left):
            raise CaseFailure(f"the server neither replied nor closed within {timeout:g} s")
        try:
            data = conn.recv_bytes()
        except (EOFError, ConnectionResetError):
            return replies
        replies.append(_loads_quietly(data))


def _safe_recv(conn: Any) -> Any:
    try:
        return _loads_quietly(conn.recv_bytes())
    except Exception as exc:
        return exc


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m tools.fuzz.managers [--cases N] [--start-method M]... [--seed N] [--json FILE]``.

    Runs ``N`` cases (default 100,000) split across the start methods and
    prints what the server did; exits 1 if a property failed (hypothesis
    prints the minimal failing batch and a blob to reproduce it).
    """
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m tools.fuzz.managers", description=main.__doc__)
    parser.add_argument("--cases", type=int, default=100_000, help="cases in all (default 100,000)")
    parser.add_argument(
        "--start-method",
        action="append",
        default=[],
        dest="start_methods",
        help="the server's start method (repeatable; default fork, spawn and forkserver)",
    )
    parser.add_argument("--seed", type=int, help="hypothesis seed, to replay a run")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = parser.parse_args(argv)
    start_methods = args.start_methods or ["fork", "spawn", "forkserver"]
    figures = []
    started = time.monotonic()
    for start_method in start_methods:
        with Harness(start_method) as harness:
            try:
                run(harness, -(-args.cases // len(start_methods)), seed=args.seed)
            except Exception as exc:  # hypothesis re-raises the shrunk failure (or a group of them)
                import traceback

                traceback.print_exc()
                print(
                    f"managers ({start_method}): FAILED after {harness.figures()['cases']} cases: "
                    f"{type(exc).__name__}: {exc}",
                    flush=True,
                )
                return 1
            figures.append(harness.figures())
            print(json.dumps(figures[-1]), flush=True)
    print(f"managers: passed, {sum(run['cases'] for run in figures)} cases in {time.monotonic() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Fuzzing the handshake: a keyed ``Listener.accept()`` and ``Client`` against peers that say anything.

The peer follows a script drawn by hypothesis: the honest steps (answer the
challenge, deliver its own), honest messages mutated (a byte flipped, cut
short, lengthened, another digest, a legacy MD5-sized answer), framed and
unframed junk, absurd headers, pickles whose loading would set a flag,
garbage after the handshake; then it closes (or, now and then, stalls).
Property: the honest script alone is accepted; anything else raises
``AuthenticationError`` within the deadline; nothing is ever unpickled (the
flag stays down); the listener goes on serving.
"""

from __future__ import annotations

import hmac
import os
import pickle
import socket
import struct
import threading
import time

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mp_core import AuthenticationError
from mp_core.connection import CHALLENGE, WELCOME, Client, Listener

from ._streams import ABSURD_HEADERS, encode

KEY = b"fuzzed key"
TIMEOUT = 0.2
DEADLINE = 30.0

UNPICKLED: list[str] = []


def set_flag(tag: str) -> str:
    UNPICKLED.append(tag)
    return tag


class SetsFlag:
    """Unpickling this records it: proof that something was loaded."""

    def __reduce__(self):
        return set_flag, ("unpickled",)


EVIL = pickle.dumps(SetsFlag())

#: How an honest message may be spoiled.
spoilers = st.one_of(
    st.just(("keep",)),
    st.tuples(st.just("flip"), st.integers(min_value=0, max_value=100), st.integers(min_value=1, max_value=255)),
    st.tuples(st.just("cut"), st.integers(min_value=0, max_value=100)),
    st.tuples(st.just("extend"), st.binary(min_size=1, max_size=20)),
    st.tuples(st.just("digest"), st.sampled_from([b"md5", b"sha1", b"sha512", b"", b"sha256x", b"}"])),
    st.just(("legacy",)),
)

other_steps = st.one_of(
    st.tuples(st.just("frame"), st.binary(max_size=300)),
    st.tuples(st.just("raw"), st.binary(max_size=300)),
    st.just(("evil",)),
    st.tuples(
        st.just("evil_framed_long"),
    ),
    st.tuples(st.just("header"), st.sampled_from(ABSURD_HEADERS)),
    st.just(("read",)),
)


def spoil(message: bytes, spoiler: tuple) -> bytes:
    kind = spoiler[0]
    if kind == "flip" and message:
        at = spoiler[1] % len(message)
        return message[:at] + bytes([message[at] ^ spoiler[2]]) + message[at + 1 :]
    if kind == "cut":
        return message[: spoiler[1] % (len(message) + 1)]
    if kind == "extend":
        return message + spoiler[1]
    if kind == "digest":
        return b"{" + spoiler[1] + b"}" + message.split(b"}", 1)[-1]
    if kind == "legacy":
        return message[-16:]
    return message


class Peer:
    """The raw side of a handshake, following a script."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.honest = True  # every step so far was an honest step, its message unspoiled
        sock.settimeout(DEADLINE)

    def spoil(self, message: bytes, spoiler: tuple) -> bytes:
        spoiled = spoil(message, spoiler)
        self.honest = self.honest and spoiled == message
        return spoiled

    def read_frame(self) -> bytes:
        header = self._exactly(4)
        (size,) = struct.unpack("!i", header)
        if size < 0 or size > 1024:
            raise OSError("not a handshake frame")
        return self._exactly(size)

    def _exactly(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def send_frame(self, data: bytes) -> None:
        self.sock.sendall(encode(data))

    def answer(self, spoiler: tuple) -> None:
        challenge = self.read_frame()[len(CHALLENGE) :]
        name, _, _ = challenge[1:].partition(b"}")
        digest = hmac.digest(KEY, challenge, name.decode("ascii", "replace") or "sha256")
        self.send_frame(self.spoil(b"{" + name + b"}" + digest, spoiler))
        self.read_frame()  # the verdict

    def challenge(self, spoiler: tuple) -> None:
        message = b"{sha256}" + os.urandom(40)
        self.send_frame(self.spoil(CHALLENGE + message, spoiler))
        answer = self.read_frame()
        expected = b"{sha256}" + hmac.digest(KEY, message, "sha256")
        self.send_frame(WELCOME if hmac.compare_digest(answer, expected) else b"#FAILURE#")

    def other(self, step: tuple, handshake: bool = False) -> None:
        if handshake:
            self.honest = False
        kind = step[0]
        if kind == "frame":
            self.send_frame(step[1])
        elif kind == "raw":
            self.sock.sendall(step[1])
        elif kind == "evil":
            self.send_frame(EVIL)
        elif kind == "evil_framed_long":
            self.sock.sendall(struct.pack("!i", -1) + struct.pack("!Q", len(EVIL)) + EVIL)
        elif kind == "header":
            self.sock.sendall(step[1])
        elif kind == "read":
            self.read_frame()


def run_script(
    peer: Peer, first: tuple, second: tuple, rest: list, stall: bool, role: str, done: threading.Event
) -> None:
    try:
        if role == "client":  # we talk to a Listener: answer, then challenge
            peer.answer(first[1]) if first[0] == "honest" else peer.other(first[1], handshake=True)
            peer.challenge(second[1]) if second[0] == "honest" else peer.other(second[1], handshake=True)
        else:  # we are the listener a Client talks to: challenge, then answer
            peer.challenge(first[1]) if first[0] == "honest" else peer.other(first[1], handshake=True)
            peer.answer(second[1]) if second[0] == "honest" else peer.other(second[1], handshake=True)
        for step in rest:
            peer.other(step)
        if stall:
            done.wait(DEADLINE)
    except (OSError, EOFError):
        pass  # the other side hung up: expected for most scripts
    finally:
        peer.sock.close()


steps = st.one_of(st.tuples(st.just("honest"), spoilers), st.tuples(st.just("other"), other_steps))
scripts = st.tuples(steps, steps, st.lists(other_steps, max_size=3), st.integers(min_value=0, max_value=15))


def late(refusal: str) -> bool:
    """An honest peer refused for being late: its thread was not scheduled within the short deadline (load)."""
    return refusal.startswith(f"timed out after {TIMEOUT:g} seconds")


def honest_script(first: tuple, second: tuple) -> bool:
    """Whether a script's handshake steps are both honest (their messages may still come out unspoiled)."""
    return first[0] == "honest" and second[0] == "honest"


@pytest.fixture(scope="module")
def listener():
    saved = Listener.handshake_timeout
    Listener.handshake_timeout = TIMEOUT
    try:
        with Listener(authkey=KEY) as listener:
            yield listener
    finally:
        Listener.handshake_timeout = saved


HONEST = (("honest", ("keep",)), ("honest", ("keep",)), [], 1)
HONEST_THEN_GARBAGE = (("honest", ("keep",)), ("honest", ("keep",)), [("evil",), ("raw", b"junk")], 1)


@given(scripts)
@example(HONEST)
@example(HONEST_THEN_GARBAGE)
def test_a_listener_accepts_only_the_honest_script(listener, script):
    first, second, rest, stall_draw = script
    stall = stall_draw == 0
    done = threading.Event()
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(listener.address)
    raw = Peer(sock)
    peer = threading.Thread(target=run_script, args=(raw, first, second, rest, stall, "client", done), daemon=True)
    peer.start()
    began = time.monotonic()
    accepted = False
    refusal = ""
    try:
        listener.accept().close()
        accepted = True
    except AuthenticationError as exc:
        refusal = str(exc)
    finally:
        done.set()
        peer.join(DEADLINE)
    assert time.monotonic() - began < DEADLINE
    assert accepted == (honest_script(first, second) and raw.honest) or late(refusal)
    assert UNPICKLED == []


@given(scripts)
@example(HONEST)
@example(HONEST_THEN_GARBAGE)
def test_a_client_accepts_only_the_honest_script(script):
    first, second, rest, stall_draw = script
    stall = stall_draw == 0
    done = threading.Event()
    address = f"\0mp-fuzz-{os.getpid()}-{threading.get_ident()}"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(address)
        server.listen(1)

        peers: list = []

        def serve():
            conn, _ = server.accept()
            peers.append(Peer(conn))
            run_script(peers[0], first, second, rest, stall, "listener", done)

        peer = threading.Thread(target=serve, daemon=True)
        peer.start()
        saved = Client.handshake_timeout
        Client.handshake_timeout = TIMEOUT
        began = time.monotonic()
        accepted = False
        refusal = ""
        try:
            Client(address, authkey=KEY).close()
            accepted = True
        except AuthenticationError as exc:
            refusal = str(exc)
        finally:
            Client.handshake_timeout = saved
            done.set()
            peer.join(DEADLINE)
    assert time.monotonic() - began < DEADLINE
    assert accepted == (honest_script(first, second) and peers[0].honest) or late(refusal)
    assert UNPICKLED == []

"""The handshake deadline covers each whole message, not only its first byte.

A keyed ``Listener.accept()`` must not be held by a client that sends part
of a handshake message (one byte of a header, a header and one byte of the
payload) and stalls; nor may such a client hold the resource sharer, which
serves one client at a time.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

import pytest

import mp_core
from mp_core import connection, reduction, resource_sharer
from mp_core.connection import Client, Listener, answer_challenge

pytestmark = pytest.mark.timeout(60)

KEY = b"deadline test key"
TIMEOUT = 0.5

STALLS = {
    "one header byte": b"\x00",
    "three header bytes": b"\x00\x00\x00",
    "header and one payload byte": struct.pack("!i", 40) + b"{",
    "long marker and part of its size": b"\xff\xff\xff\xff\x00\x00\x00",
    "long header and one payload byte": b"\xff\xff\xff\xff" + struct.pack("!Q", 40) + b"{",
}


def read_frame(sock: socket.socket) -> bytes:
    data = b""
    while len(data) < 4:
        data += sock.recv(4 - len(data))
    (size,) = struct.unpack("!i", data)
    payload = b""
    while len(payload) < size:
        payload += sock.recv(size - len(payload))
    return payload


def stalling_client(address, phase: str, partial: bytes, done: threading.Event) -> None:
    """Get to ``phase`` of the handshake, send ``partial`` and stall until ``done``."""
    sock = socket.socket(getattr(socket, connection.address_type(address)))
    try:
        sock.connect(address)
        if phase == "answer":
            read_frame(sock)  # the listener's challenge; our answer starts, then stalls
        else:
            # Answer properly, then stall in our own challenge to the listener.
            conn = connection.Connection(os.dup(sock.fileno()))
            try:
                answer_challenge(conn, KEY)
            finally:
                conn.close()
        sock.sendall(partial)
        done.wait(30)
    except OSError:
        pass  # the listener hung up on us: what it should do, in the end
    finally:
        sock.close()


@pytest.mark.parametrize("phase", ["answer", "challenge"])
@pytest.mark.parametrize("stall", list(STALLS))
def test_a_client_stalling_inside_a_message_times_out(monkeypatch, phase, stall):
    monkeypatch.setattr(Listener, "handshake_timeout", TIMEOUT)
    with Listener(authkey=KEY) as listener:
        done = threading.Event()
        thread = threading.Thread(target=stalling_client, args=(listener.address, phase, STALLS[stall], done))
        thread.start()
        try:
            began = time.monotonic()
            with pytest.raises(mp_core.AuthenticationError, match="timed out after 0.5 seconds"):
                listener.accept()
            assert time.monotonic() - began < 10  # not for ever
        finally:
            done.set()
            thread.join(30)
        # The listener goes on serving.
        result = {}
        server = threading.Thread(target=lambda: result.update(conn=listener.accept()))
        server.start()
        with Client(listener.address, authkey=KEY) as client:
            server.join(30)
            result["conn"].send("served")
            assert client.recv() == "served"
        result["conn"].close()


def test_a_whole_message_arriving_in_pieces_within_the_deadline_is_accepted(monkeypatch):
    monkeypatch.setattr(Listener, "handshake_timeout", 10.0)

    def slow_client(address, done):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(address)
            conn = connection.Connection(os.dup(sock.fileno()))
            try:
                # A Connection whose writes go out one byte at a time.
                original = os.write

                def one_byte_at_a_time(fd, data):
                    if fd == conn.fileno():
                        time.sleep(0.001)
                        return original(fd, bytes(data[:1]))
                    return original(fd, data)

                monkeypatch.setattr(os, "write", one_byte_at_a_time)
                answer_challenge(conn, KEY)
                connection.deliver_challenge(conn, KEY)
                done.wait(30)
            finally:
                conn.close()

    with Listener(authkey=KEY) as listener:
        done = threading.Event()
        thread = threading.Thread(target=slow_client, args=(listener.address, done))
        thread.start()
        try:
            listener.accept().close()
        finally:
            done.set()
            thread.join(30)
            monkeypatch.undo()


# ---------------------------------------------------------------- the resource sharer


def detach_in_thread(obj, outcome: dict) -> threading.Thread:
    def work():
        try:
            outcome["copy"] = reduction.loads(reduction.dumps(obj))
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            outcome["error"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    "how", ["inside the handshake", "authenticated, without a request", "authenticated, inside the request"]
)
def test_a_stalled_peer_does_not_hold_the_resource_sharer(monkeypatch, how):
    monkeypatch.setattr(Listener, "handshake_timeout", 1.0)
    a, b = socket.socketpair()
    with a, b:
        reduction.dumps(a)  # starts the sharer (its descriptor stays filed, unclaimed, until stop)
        address = resource_sharer._resource_sharer._address
        key = mp_core.process.current_process().authkey
        stalled = socket.socket(socket.AF_UNIX)
        try:
            stalled.connect(address)
            if how == "inside the handshake":
                read_frame(stalled)
                stalled.sendall(b"\x00")
            else:
                conn = connection.Connection(os.dup(stalled.fileno()))
                try:
                    answer_challenge(conn, key)
                    connection.deliver_challenge(conn, key)
                finally:
                    conn.close()
                if how == "authenticated, inside the request":
                    stalled.sendall(struct.pack("!i", 30) + b"\x80")
            # A real client behind the stalled one is served once its deadline passes.
            outcome: dict = {}
            thread = detach_in_thread(a, outcome)
            thread.join(20)
            assert not thread.is_alive(), "DupFd.detach() is held by a stalled peer"
            assert "error" not in outcome, outcome
            with outcome["copy"] as copy:
                copy.sendall(b"ping")
                assert b.recv(4) == b"ping"
        finally:
            stalled.close()

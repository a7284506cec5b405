"""Peers that never authenticate cannot exhaust a manager server; running out of descriptors does not spin it."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from mp_managers.managers import dispatch

from ._hostile import (
    ShortDeadlineManager,
    TightManager,
    TightServer,
    authenticated,
    cpu_seconds,
    free_descriptors,
    header,
    limit_descriptors,
    raw_socket,
    serves,
    thread_count,
)

pytestmark = pytest.mark.timeout(180)


@contextlib.contextmanager
def started(manager_class, ctx, **start_kwds):
    m = manager_class(ctx=ctx)
    m.start(**start_kwds)
    try:
        yield m
    finally:
        m.shutdown()


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes ``sock`` within ``timeout`` seconds (what it sent before is skipped)."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(4096):
                return True
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True
    return False


def test_stalled_peers_beyond_the_bound_neither_pile_up_nor_keep_a_client_out(ctx):
    with started(TightManager, ctx) as m:
        d = m.dict(a=1)  # a client authenticated before the flood
        pid = m._process.pid
        threads_before = thread_count(pid)
        stalled = [raw_socket(m.address) for _ in range(5 * TightServer.max_pending_handshakes)]
        try:
            started_at = time.monotonic()
            conn = authenticated(m)  # queued behind every stalled peer
            try:
                assert dispatch(conn, None, "dummy") is None
                waited = time.monotonic() - started_at
                # A thread and a descriptor per stalled peer at most while
                # they wait, however many of them came.
                assert thread_count(pid) <= threads_before + TightServer.max_pending_handshakes + 1
                assert waited < TightServer.handshake_timeout / 2, waited
            finally:
                conn.close()
            d["b"] = 2
            assert d.copy() == {"a": 1, "b": 2}
        finally:
            for sock in stalled:
                sock.close()


@pytest.mark.parametrize(
    "stall", ["after connecting", "inside a header", "inside the answer", "trickling the answer", "before the verdict"]
)
def test_a_peer_stalled_in_the_handshake_is_dropped_at_the_deadline(ctx, stall):
    import hmac

    with started(ShortDeadlineManager, ctx) as m:
        sock = raw_socket(m.address)
        try:
            challenge = b""
            if stall != "after connecting":
                sock.settimeout(30)
                size = int.from_bytes(sock.recv(4, socket.MSG_WAITALL), "big")
                challenge = sock.recv(size, socket.MSG_WAITALL)
                assert challenge.startswith(b"#CHALLENGE#{sha256}")
            message = challenge[len(b"#CHALLENGE#") :]
            answer = b"{sha256}" + hmac.digest(bytes(m._authkey), message, "sha256")
            if stall == "inside a header":
                sock.sendall(header(len(answer))[:2])
            elif stall == "inside the answer":
                sock.sendall(header(len(answer)) + answer[:5])
            elif stall == "trickling the answer":
                # One byte at a time, each well within the deadline: the
                # deadline is on the whole handshake, not on each read.
                sock.setblocking(True)
                closed = False
                for byte in header(len(answer)) + answer:
                    try:
                        sock.sendall(bytes([byte]))
                    except OSError:
                        closed = True
                        break
                    time.sleep(0.25)  # the attacker's pace, not a synchronization
                    try:
                        closed = sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b""
                    except BlockingIOError:
                        continue
                    except OSError:
                        closed = True
                    if closed:
                        break
                assert closed, "a peer trickling its answer was kept past the handshake deadline"
            elif stall == "before the verdict":
                # Our answer is right: the server welcomes us and challenges
                # in turn; we never answer.
                sock.sendall(header(len(answer)) + answer)
            if stall != "trickling the answer":
                assert closed_by_peer(sock, 15), "the server kept a stalled peer past its handshake deadline"
            # And the server still serves.
            conn = authenticated(m)
            try:
                assert serves(conn)
            finally:
                conn.close()
        finally:
            sock.close()


def _connect_in_thread(m, results):
    def connect():
        try:
            conn = authenticated(m)
            results.append(("connected", dispatch(conn, None, "dummy")))
            conn.close()
        except BaseException as exc:  # reported to the test
            results.append(("failed", exc))

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    return thread


def test_out_of_descriptors_the_server_backs_off_and_recovers(ctx):
    with started(TightManager, ctx, initializer=limit_descriptors, initargs=(8,)) as m:
        pid = m._process.pid
        # Fill every descriptor the server has left with authenticated clients.
        clients = [authenticated(m)]
        try:
            while free_descriptors(pid):
                clients.append(authenticated(m))
                # Served: the server is done setting up this connection, so the
                # count of descriptors it has open is settled.
                assert serves(clients[-1])
            results: list = []
            waiting = _connect_in_thread(m, results)
            cpu_before = cpu_seconds(pid)
            window = 2.0
            time.sleep(window)  # a measurement window, not a synchronization
            cpu_used = cpu_seconds(pid) - cpu_before
            assert results == [], "the server accepted a client with no descriptor left (test premise)"
            assert cpu_used < 0.2 * window, f"{cpu_used:.2f} s of CPU in {window} s while out of descriptors"
            # Descriptors come back: the waiting client gets in.
            clients.pop().close()
            waiting.join(60)
            assert results == [("connected", None)]
            assert all(serves(conn) for conn in clients[:3])
        finally:
            for conn in clients:
                conn.close()


def test_out_of_descriptors_stalled_handshakes_make_room_for_a_client(ctx):
    with started(TightManager, ctx, initializer=limit_descriptors, initargs=(3,)) as m:
        pid = m._process.pid
        free = free_descriptors(pid)
        assert free < TightServer.max_pending_handshakes  # descriptors run out before the table fills
        stalled = [raw_socket(m.address) for _ in range(free + 3)]
        try:
            cpu_before = cpu_seconds(pid)
            results: list = []
            _connect_in_thread(m, results).join(60)
            assert results == [("connected", None)]
            # No spinning on accept meanwhile.
            assert cpu_seconds(pid) - cpu_before < 2.0
        finally:
            for sock in stalled:
                sock.close()


# ---------------------------------------------------------------- the table of pending handshakes


@contextlib.contextmanager
def socket_pairs(count):
    from mp_core.connection import Connection

    pairs = [socket.socketpair() for _ in range(count)]
    conns = [Connection(ours.detach()) for ours, _theirs in pairs]
    try:
        yield conns, [theirs for _ours, theirs in pairs]
    finally:
        for conn in conns:
            conn.close()
        for _ours, theirs in pairs:
            theirs.close()


def peer_sees_eof(peer):
    peer.settimeout(10)
    return peer.recv(1) == b""


def test_pending_handshakes_evict_the_oldest_that_waits_on_its_peer():
    from mp_managers._handshakes import PendingHandshakes

    table = PendingHandshakes(limit=2, timeout=None, eviction_age=0.0)
    with socket_pairs(3) as (conns, peers):
        keys = [table.admit(conn) for conn in conns[:2]]
        peers[0].sendall(b"x")  # the server has yet to read this peer's bytes: it is not the one stalling
        assert table.make_room()
        assert peer_sees_eof(peers[1])
        assert table.finish(keys[1]) is False  # evicted: its thread drops the connection
        assert table.finish(keys[0]) is True
        assert len(table) == 0
        assert table.evicted == 1


def test_pending_handshakes_expire_at_the_deadline_and_close_everything_on_stop():
    from mp_managers._handshakes import PendingHandshakes

    table = PendingHandshakes(limit=8, timeout=0.0, eviction_age=10.0)
    with socket_pairs(3) as (conns, peers):
        first = table.admit(conns[0])
        assert table.next_deadline() == 0.0
        table.expire()
        assert peer_sees_eof(peers[0]) and table.remaining(first) == 0.0 and not table.finish(first)
        table.timeout = None
        second = table.admit(conns[1])
        table.close()
        assert peer_sees_eof(peers[1]) and not table.finish(second)
        late = table.admit(conns[2])  # accepted just as the server stopped
        assert peer_sees_eof(peers[2]) and not table.finish(late)
        assert table.make_room() is False

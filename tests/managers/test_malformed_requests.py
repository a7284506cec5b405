"""Requests that unpickle but make no sense: the client gets an error reply, the connection keeps serving."""

from __future__ import annotations

import os
import pickle
import socket
import threading

import pytest

from mp_managers._wire import MessageStream
from mp_managers.managers import SyncManager, convert_to_error

from ._hostile import UnhashableById, ask, authenticated, header, reply_of, serves

pytestmark = pytest.mark.timeout(120)

REPLY_FAILURE = 3


@pytest.fixture
def session(ctx):
    """(manager, the id of a managed dict, a raw authenticated connection)."""
    m = SyncManager(ctx=ctx)
    m.start()
    d = m.dict(a=1)
    conn = authenticated(m)
    try:
        yield m, d._token.id, conn
    finally:
        conn.close()
        del d
        m.shutdown()


@pytest.mark.parametrize(
    "request_, words",
    [
        ((["unhashable"], "get", ("a",), {}), ["unhashable", "list"]),
        ((UnhashableById(), "get", ("a",), {}), ["MemoryError", "no memory to hash this id"]),
        (("not a tuple",), ["tuple (id, method, args, kwds)", "'not a tuple'"]),
        ("a string", ["tuple (id, method, args, kwds)", "str"]),
        ((None, ["unhashable"], (), {}), ["not an operation of this manager"]),
        ((None, "create", "dict", {}), ["create"]),
        ((None, "incref", ([1],), {}), ["unhashable"]),
    ],
)
def test_a_malformed_request_gets_an_error_reply_and_the_connection_serves_on(session, request_, words):
    m, ident, conn = session
    kind, text = ask(conn, request_)
    assert kind == REPLY_FAILURE
    for word in words:
        assert word in text, text
    assert serves(conn)
    assert ask(conn, (ident, "get", ("a",), {})) == (0, 1)


def test_an_unhashable_method_name_gets_an_error_reply(session):
    m, ident, conn = session
    kind, value = ask(conn, (ident, ["get"], ("a",), {}))
    error = convert_to_error(kind, value)
    assert isinstance(error, TypeError), error
    assert "unhashable" in str(error) and "list" in str(error)
    assert serves(conn)


@pytest.mark.parametrize("ids", [5, None, "abc", [["unhashable"]], [UnhashableById()], [10**9]])
def test_a_malformed_release_is_ignored_and_the_connection_serves_on(session, ids):
    m, ident, conn = session
    conn.send_bytes(pickle.dumps((None, "#release", ids, {})))
    assert serves(conn)
    # Nothing was released by mistake.
    assert ask(conn, (ident, "get", ("a",), {})) == (0, 1)


def test_garbage_that_does_not_unpickle_gets_an_error_reply(session):
    m, ident, conn = session
    for garbage in (b"", b"\x80\x05garbage", b"not a pickle at all", pickle.dumps(1)[:-1]):
        conn.send_bytes(garbage)
        kind, text = reply_of(conn)
        assert kind == REPLY_FAILURE
        assert "could not decode a request" in text or "tuple (id, method, args, kwds)" in text, text
        assert serves(conn)


def test_a_corrupt_size_header_gets_an_error_reply_then_the_connection_closes(session):
    m, ident, conn = session
    sock = socket.socket(fileno=conn.fileno())
    try:
        sock.sendall(b"\xff\xff\xff\xfb" + b"x" * 16)  # size -5: only -1 is a marker
    finally:
        sock.detach()
    kind, text = reply_of(conn)
    assert kind == REPLY_FAILURE
    assert "corrupt message" in text and "-5" in text, text
    assert conn.poll(30)
    with pytest.raises(EOFError):
        conn.recv_bytes()
    # Other clients are served.
    other = authenticated(m)
    try:
        assert serves(other)
    finally:
        other.close()


# ---------------------------------------------------------------- the stream itself


def rss_mib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20


def test_a_bare_header_commits_no_memory_for_the_size_it_announces():
    # The buffer of a big message is committed page by page as its bytes
    # arrive (mp_core._framing.PayloadBuffer): measured in resident memory,
    # which is what a flood of announced gigabytes would cost.
    near, far = socket.socketpair()
    try:
        stream = MessageStream(near, "pickle")
        before = rss_mib()
        far.sendall(header(4 << 30) + b"x" * 100)
        outcome = {}

        def receive():
            try:
                stream.recv_bytes()
            except BaseException as exc:  # noqa: BLE001 - reported to the test
                outcome["error"] = exc

        reader = threading.Thread(target=receive)
        reader.start()
        reader.join(0.5)  # waiting for the rest: the buffer is there, untouched
        grown = rss_mib() - before
        far.shutdown(socket.SHUT_WR)
        reader.join(30)
        assert not reader.is_alive()
        assert grown < 64, f"{grown} MiB committed for a header announcing 4 GiB"
        assert isinstance(outcome["error"], EOFError)
        assert "end of file during message" in str(outcome["error"])
    finally:
        near.close()
        far.close()


@pytest.mark.parametrize("size", [0, 1, 65536 * 3, 5 * 1024 * 1024 + 3, 9 * 1024 * 1024])
def test_messages_of_every_size_arrive_whole(size):
    near, far = socket.socketpair()
    try:
        stream = MessageStream(near, "pickle")
        payload = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
        sender = threading.Thread(target=far.sendall, args=(header(size) + payload + header(2) + b"ok",))
        sender.start()
        try:
            assert bytes(stream.recv_bytes()) == payload
            assert bytes(stream.recv_bytes()) == b"ok"
        finally:
            sender.join(30)
    finally:
        near.close()
        far.close()


def test_a_header_with_another_negative_size_is_refused_by_name():
    from mp_core.connection import BadMessageLength

    near, far = socket.socketpair()
    try:
        stream = MessageStream(near, "pickle")
        far.sendall(b"\x80\x00\x00\x00")
        with pytest.raises(BadMessageLength, match="size -2147483648"):
            stream.recv_bytes()
    finally:
        near.close()
        far.close()

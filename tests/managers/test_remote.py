"""A manager served by an unrelated program over TCP: right keys, wrong keys, hostile peers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

import mp_core
from mp_core.context import AuthenticationError
from mp_managers.managers import SyncManager, dispatch

pytestmark = pytest.mark.timeout(120)

SERVER = os.path.join(os.path.dirname(__file__), "_remote_server.py")
AUTHKEY = "remote secret"


@pytest.fixture
def remote_address():
    """The (host, port) of a SyncManager server run by another program; stopped afterwards."""
    proc = subprocess.Popen([sys.executable, SERVER, AUTHKEY], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        yield ("127.0.0.1", port)
        try:
            conn = mp_core.connection.Client(("127.0.0.1", port), authkey=AUTHKEY.encode())
            dispatch(conn, None, "shutdown")
            conn.close()
        except OSError:
            pass
        assert proc.wait(30) == 0
        assert proc.stdout.read().strip() == "stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def connected(address, authkey=AUTHKEY.encode()):
    m = SyncManager(address=address, authkey=authkey)
    m.connect()
    return m


def append_from_child(address, authkey, shared, worker_id):
    m = connected(address, authkey)
    own = m.list([worker_id])
    shared["lists"].append(own)  # a proxy stored in a proxy, from a connected client
    shared["log"].append(worker_id)


def test_remote_manager_right_and_wrong_keys(remote_address, children):
    m = connected(remote_address)
    shared = m.dict()
    shared["log"] = m.list()
    shared["lists"] = m.list()
    with pytest.raises(AuthenticationError):
        connected(remote_address, b"wrong key")
    # The server refused that client and keeps serving everyone else.
    key = AUTHKEY.encode()
    codes = children.run(append_from_child, [(remote_address, key, shared, i) for i in range(3)])
    assert codes == [0, 0, 0]
    assert sorted(shared["log"]) == [0, 1, 2]
    assert sorted(inner[0] for inner in shared["lists"]) == [0, 1, 2]
    with pytest.raises(AuthenticationError):
        connected(remote_address, b"")
    assert connected(remote_address).dict(a=1)["a"] == 1


def test_hostile_peers_are_refused_and_the_server_keeps_serving(remote_address):
    # Garbage instead of the handshake, then a peer that connects and says nothing.
    with socket.create_connection(remote_address) as sock:
        sock.sendall(b"\x00\x00\x00\x05hello")
        sock.settimeout(10)
        try:
            while sock.recv(4096):
                pass
        except OSError:
            pass
    silent = socket.create_connection(remote_address)
    try:
        d = connected(remote_address).dict()
        d["still"] = "serving"
        assert d["still"] == "serving"
    finally:
        silent.close()


def test_tcp_connections_send_without_delay(remote_address):
    """A release goes out without a reply: Nagle's algorithm would hold the next request ~40 ms."""
    m = connected(remote_address)
    d = m.dict()
    d["inner"] = m.list()
    fetched = d["inner"]
    del fetched  # a release, then a request right behind it
    d["x"] = 1
    from mp_managers import _proxy

    chan = _proxy._local_for(m.address, m._authkey).channel
    with socket.socket(fileno=os.dup(chan.conn.fileno())) as sock:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_a_server_out_of_descriptors_still_turns_off_nagle():
    """Setting TCP_NODELAY borrows the connection's descriptor: it opens none.

    A server out of descriptors still gets the option, and the number of
    descriptors it has open never moves while it sets up a connection (a
    test that fills every descriptor relies on that count).
    """
    import resource

    from mp_managers._wire import _send_without_delay

    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server_side, _ = listener.accept()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fillers: list[int] = []
    try:
        highest = max(int(name) for name in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, hard))
        with pytest.raises(OSError):
            while True:  # take every number left below the limit
                fillers.append(os.dup(client.fileno()))
        _send_without_delay(server_side.fileno())
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        assert server_side.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        server_side.sendall(b"still open")
        assert client.recv(10) == b"still open"
    finally:
        for sock in (server_side, client, listener):
            sock.close()

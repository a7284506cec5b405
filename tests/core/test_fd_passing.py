"""Sockets and connections travel to other processes (at start, or later via the resource sharer)."""

from __future__ import annotations

import os
import socket
import threading

import pytest

import mp_core
from mp_core import connection, resource_sharer
from mp_core.connection import Pipe

from ..support import run_script

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def stop_the_sharer():
    yield
    resource_sharer.stop(timeout=10)


def use_socket(sock, message):
    with sock:
        sock.sendall(message)
        assert sock.recv(100) == b"ack"


def use_connection(conn, message):
    with conn:
        conn.send(message)
        assert conn.recv() == "ack"


def receive_and_use(control):
    """Receive objects over ``control`` and use them, until None."""
    with control:
        while True:
            obj = control.recv()
            if obj is None:
                return
            if isinstance(obj, socket.socket):
                use_socket(obj, b"socket from the sharer")
            else:
                use_connection(obj, "connection from the sharer")
            control.send("done")


def report_sharer_state(conn):
    sharer = resource_sharer._resource_sharer
    conn.send((sharer._address, len(sharer._cache), sharer._thread))
    conn.close()


def test_socket_as_process_argument(ctx, start):
    ours, theirs = socket.socketpair()
    with ours:
        proc = start(use_socket, theirs, b"socket at start")
        theirs.close()
        assert ours.recv(100) == b"socket at start"
        ours.sendall(b"ack")
        proc.join(30)
        assert proc.exitcode == 0


def test_listener_connection_as_process_argument(ctx, start):
    with connection.Listener(("127.0.0.1", 0)) as listener:
        accepted = []
        thread = threading.Thread(target=lambda: accepted.append(listener.accept()))
        thread.start()
        client = connection.Client(listener.address)
        thread.join(30)
        (server,) = accepted
    with client:
        proc = start(use_connection, server, "accepted connection at start")
        server.close()
        assert client.recv() == "accepted connection at start"
        client.send("ack")
        proc.join(30)
        assert proc.exitcode == 0


def test_socket_and_connection_sent_to_a_running_child(ctx, start):
    control, child_control = Pipe()
    proc = start(receive_and_use, child_control)
    child_control.close()
    with control:
        ours, theirs = socket.socketpair()
        with ours:
            control.send(theirs)  # pickled now: the fd goes through the resource sharer
            theirs.close()  # the sharer holds its own duplicate until the child asks
            assert ours.recv(100) == b"socket from the sharer"
            ours.sendall(b"ack")
            assert control.recv() == "done"
        near, far = Pipe()
        control.send(far)
        far.close()
        assert near.recv() == "connection from the sharer"
        near.send("ack")
        assert control.recv() == "done"
        near.close()
        control.send(None)
    proc.join(30)
    assert proc.exitcode == 0


def write_through(conn):
    with conn:
        conn.send("through a one-way pipe")


def test_one_way_connection_sent_to_a_running_child(ctx, start):
    # A write-only end keeps its flags on the way.
    control, child_control = Pipe()
    proc = start(pass_on, child_control)
    child_control.close()
    with control:
        reader, writer = Pipe(duplex=False)
        control.send(writer)
        writer.close()
        assert reader.recv() == ("flags", False, True)
        assert reader.recv() == "through a one-way pipe"
        reader.close()
    proc.join(30)
    assert proc.exitcode == 0


def pass_on(control):
    with control:
        conn = control.recv()
        conn.send(("flags", conn.readable, conn.writable))
        write_through(conn)


def test_forked_children_start_with_an_empty_sharer(ctx, start):
    ours, theirs = socket.socketpair()
    try:
        shared = resource_sharer.DupFd(ours.fileno())  # the parent's sharer is now running
        assert resource_sharer._resource_sharer._address is not None
        reader, writer = Pipe(duplex=False)
        proc = start(report_sharer_state, writer)
        writer.close()
        assert reader.recv() == (None, 0, None)
        reader.close()
        proc.join(30)
        os.close(shared.detach())  # served in-process by the sharer's thread
    finally:
        ours.close()
        theirs.close()


def test_the_sharer_refuses_strangers_and_goes_on(ctx, start):
    ours, theirs = socket.socketpair()
    with ours:
        pickled = mp_core.reduction.dumps(theirs)
        theirs.close()
        address = resource_sharer._resource_sharer._address
        with pytest.raises(mp_core.AuthenticationError):
            connection.Client(address, authkey=b"not the process authkey")
        control, child_control = Pipe()
        proc = start(receive_and_use, child_control)
        child_control.close()
        with control:
            control.send_bytes(pickled)  # the already-pickled socket, as a message
            assert ours.recv(100) == b"socket from the sharer"
            ours.sendall(b"ack")
            assert control.recv() == "done"
            control.send(None)
        proc.join(30)
        assert proc.exitcode == 0


def _open_fds():
    return set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None


def test_stop_closes_unclaimed_duplicates():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        resource_sharer.DupFd(theirs.fileno())  # starts the sharer
        resource_sharer.stop(timeout=10)
        before = _open_fds()
        for _ in range(3):
            resource_sharer.DupFd(theirs.fileno())
        resource_sharer.stop(timeout=10)
        assert resource_sharer._resource_sharer._thread is None
        if before is not None:
            assert _open_fds() == before


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_socket_made_after_the_import_travels_too(method, tmp_path):
    # The socket reducer is registered without importing socket: here the
    # program imports socket only after multiprocess, and the first pickler
    # to meet a socket registers it.
    done = run_script(
        tmp_path / "program.py",
        f"""
        import sys

        def use(sock):
            with sock:
                sock.sendall(b"from the child")

        if __name__ == "__main__":
            import multiprocess
            from mp_core import reduction

            assert "socket" not in sys.modules and reduction._socket_reducer_pending
            import socket

            ours, theirs = socket.socketpair()
            ctx = multiprocess.get_context({method!r})
            child = ctx.Process(target=use, args=(theirs,))
            child.start()
            theirs.close()
            print(ours.recv(100).decode())
            child.join(30)
            print(child.exitcode, reduction._socket_reducer_pending)
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["from the child", "0 False"]

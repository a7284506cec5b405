"""wait(): connections, sockets, process sentinels and anything with fileno()."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest

from mp_core.connection import Pipe, wait

pytestmark = pytest.mark.timeout(60)


def obey(conn):
    """Reply to 'reply', return on 'exit'."""
    while True:
        command = conn.recv()
        if command == "reply":
            conn.send("replied")
        elif command == "exit":
            return


class HasFileno:
    def __init__(self, fd):
        self.fd = fd

    def fileno(self):
        return self.fd


def test_wait_over_connections_sockets_and_sentinels(ctx, start):
    (a, a_child), (b, b_child) = Pipe(), Pipe()
    proc_a = start(obey, a_child)
    proc_b = start(obey, b_child)
    a_child.close()
    b_child.close()
    sock_ours, sock_theirs = socket.socketpair()
    read_fd, write_fd = os.pipe()
    wrapped = HasFileno(read_fd)
    objects = [a, proc_a.sentinel, b, proc_b.sentinel, sock_ours, wrapped]
    try:
        began = time.monotonic()
        assert wait(objects, timeout=0.3) == []
        assert time.monotonic() - began >= 0.29
        began = time.monotonic()
        assert wait(objects, timeout=0) == []
        assert wait(objects, timeout=-1) == []
        assert time.monotonic() - began < 10  # polls: does not wait (a loaded machine may still be slow)

        b.send("reply")
        assert wait(objects, timeout=30) == [b]
        assert b.recv() == "replied"

        sock_theirs.send(b"x")
        os.write(write_fd, b"y")
        a.send("reply")
        deadline = time.monotonic() + 30
        ready = []
        while len(ready) < 3 and time.monotonic() < deadline:
            ready = wait(objects, timeout=30)
            time.sleep(0.01)
        assert ready == [a, sock_ours, wrapped]  # in the order given
        a.recv()
        sock_ours.recv(1)
        os.read(read_fd, 1)

        b.send("exit")
        proc_b.join(30)
        assert proc_b.sentinel in wait(objects, timeout=30)
        assert proc_a.sentinel not in wait(objects, timeout=0)
        a.send("exit")
        proc_a.join(30)
        assert wait([proc_a.sentinel], timeout=30) == [proc_a.sentinel]
    finally:
        for obj in (a, b, sock_ours, sock_theirs):
            obj.close()
        os.close(read_fd)
        os.close(write_fd)


def test_wait_is_not_cut_short_by_signals():
    reader, writer = Pipe(duplex=False)
    received = []
    previous = signal.signal(signal.SIGUSR1, lambda *args: received.append(1))
    stop = threading.Event()

    def pester(main_thread_id):
        while not stop.wait(0.02):
            signal.pthread_kill(main_thread_id, signal.SIGUSR1)

    thread = threading.Thread(target=pester, args=(threading.main_thread().ident,))
    thread.start()
    try:
        began = time.monotonic()
        assert wait([reader], timeout=0.5) == []
        assert time.monotonic() - began >= 0.49
        assert received  # the signals did arrive during the wait
    finally:
        stop.set()
        thread.join()
        signal.signal(signal.SIGUSR1, previous)
        reader.close()
        writer.close()


def test_wait_sees_end_of_file_as_ready():
    reader, writer = Pipe(duplex=False)
    writer.close()
    assert wait([reader], timeout=10) == [reader]
    with pytest.raises(EOFError):
        reader.recv_bytes()
    reader.close()


def test_wait_rejects_closed_connections():
    reader, writer = Pipe(duplex=False)
    reader.close()
    writer.close()
    with pytest.raises(OSError, match="handle is closed"):
        wait([reader], timeout=0)


def test_wait_on_nothing_waits_out_the_timeout_and_returns_an_empty_list():
    # Python 3.15 specifies this on every platform (it failed, or spun, on Windows).
    began = time.monotonic()
    assert wait([], timeout=0.3) == []
    assert time.monotonic() - began >= 0.29
    assert wait(iter(()), timeout=0) == []
    assert wait((obj for obj in ()), timeout=-1) == []

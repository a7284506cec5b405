"""Faults: a manager killed mid-session, an owner SIGKILLed, a server that cannot start."""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import pytest

import mp_core
from mp_managers.managers import SyncManager

from ..support import run_interpreter

pytestmark = pytest.mark.timeout(120)

SCENARIO = os.path.join(os.path.dirname(__file__), "_owner_scenario.py")
LOST_CONNECTION = ("EOFError", "ConnectionResetError", "BrokenPipeError")


def waiting_for_a_reply(thread_id):
    """Whether that thread is in a proxy call, its request sent, waiting for the manager's reply."""
    frame = sys._current_frames().get(thread_id)
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    if "_roundtrip" not in names:
        return False
    inner = names[: names.index("_roundtrip")]
    # (Not the handshake of a new connection: _open_channel reads too.)
    return "recv_bytes" in inner and "_open_channel" not in inner


def report_when_waiting(thread_id, conn, timeout=60):
    """Send "waiting" once that thread waits for a manager's reply (a handshake, not a sleep)."""
    deadline = time.monotonic() + timeout
    while not waiting_for_a_reply(thread_id):
        if time.monotonic() > deadline:
            conn.send("never waited")
            return
        time.sleep(0.01)
    conn.send("waiting")


def wait_on_queue(queue, conn):
    threading.Thread(target=report_when_waiting, args=(threading.get_ident(), conn), daemon=True).start()
    try:
        queue.get()
        conn.send("got an item?")
    except BaseException as exc:
        conn.send(type(exc).__name__)


def failing_initializer():
    raise RuntimeError("the initializer fails")


def _error_of(func):
    try:
        func()
    except BaseException as exc:
        return type(exc).__name__
    return None


def test_manager_killed_mid_session(manager, children):
    m = manager
    d = m.dict(a=1)
    queue = m.Queue()
    # A child process and a thread here wait on the manager when it dies.
    reader, writer = mp_core.Pipe(duplex=False)
    children.start(wait_on_queue, [(queue, writer)])
    assert reader.poll(60) and reader.recv() == "waiting"
    errors = []
    thread = threading.Thread(target=lambda: errors.append(_error_of(queue.get)))
    thread.start()
    deadline = time.monotonic() + 60
    while not waiting_for_a_reply(thread.ident) and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert waiting_for_a_reply(thread.ident), "the thread never got to wait on the manager"
    m._process.kill()
    thread.join(30)
    assert not thread.is_alive(), "a call blocked in the dead manager never returned"
    assert errors[0] in LOST_CONNECTION, errors
    assert reader.poll(30), "the child blocked in the dead manager never returned"
    assert reader.recv() in LOST_CONNECTION
    assert children.join() == [0]
    for call in (lambda: d.__setitem__("b", 2), lambda: d["a"], m.list):
        with pytest.raises((EOFError, OSError)):
            call()
    started = time.monotonic()
    m.shutdown()
    assert time.monotonic() - started < 30


def test_owner_sigkilled_server_exits_and_unlinks_shared_memory(start_method):
    result = run_interpreter(SCENARIO, start_method)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report.get("error") is None, report
    assert all(report["existed"]), report
    assert report["servers_running"] == [], report
    assert report["segments_left"] == [], report
    assert report["tempdir_left"] is None, report
    assert report["seconds"] is not None and report["seconds"] < 5, report


def test_server_that_fails_to_start(ctx):
    m = SyncManager(ctx=ctx)
    with pytest.raises(Exception, match="before it started serving"):
        m.start(initializer=failing_initializer)


def test_a_sigkilled_server_leaves_no_socket_file_after_shutdown(ctx):
    m = SyncManager(ctx=ctx)
    m.start()
    address = m.address
    assert os.path.exists(address)
    m._process.kill()
    m._process.join(30)
    m.shutdown()
    assert not os.path.exists(address), "the dead server's socket file stayed in the temp dir"

"""The fork server: authenticated, preloading, and gone with the program that started it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

import mp_core
from mp_core import forkserver

pytestmark = pytest.mark.timeout(120)


def report_modules(conn):
    conn.send(sorted(m for m in ("colorsys", "wave") if m in sys.modules))


def _pid_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def test_server_refuses_a_client_without_the_key():
    ctx = mp_core.get_context("forkserver")
    p = ctx.Process(target=int)
    p.start()
    p.join()
    assert p.exitcode == 0
    address = forkserver._forkserver._forkserver_address
    assert address is not None and os.path.exists(address)
    assert os.stat(address).st_mode & 0o077 == 0  # no access for group or others
    children_before = _server_children()
    with socket.socket(socket.AF_UNIX) as intruder:
        intruder.settimeout(10)
        intruder.connect(address)
        challenge = intruder.recv(64)
        assert len(challenge) == 32
        intruder.sendall(b"\0" * 32)  # a wrong HMAC
        assert intruder.recv(64) == b""  # the server hung up
    time.sleep(0.2)
    assert _server_children() == children_before
    # ...and it still serves the real client.
    p = ctx.Process(target=int)
    p.start()
    p.join()
    assert p.exitcode == 0


def test_server_survives_a_client_that_sends_garbage_or_nothing():
    ctx = mp_core.get_context("forkserver")
    forkserver.ensure_running()
    address = forkserver._forkserver._forkserver_address
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(address)
        client.sendall(os.urandom(1024))
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(address)
    p = ctx.Process(target=int)
    p.start()
    p.join(30)
    assert p.exitcode == 0


def _server_children() -> set[int]:
    pid = forkserver._forkserver._forkserver_pid
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return {int(x) for x in f.read().split()}
    except OSError:
        return set()


def test_preload_modules_are_imported_in_the_server():
    program = textwrap.dedent("""
        import sys
        import mp_core as mp
        from tests.core.test_forkserver import report_modules

        if __name__ == "__main__":
            mp.set_forkserver_preload(["colorsys", "not_a_module_at_all"])
            ctx = mp.get_context("forkserver")
            r, w = ctx.Pipe(duplex=False)
            p = ctx.Process(target=report_modules, args=(w,))
            p.start()
            print(r.recv())
            p.join()
    """)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, cwd=root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['colorsys']"


@pytest.mark.parametrize("settled", [True, False], ids=["running", "starting"])
def test_server_exits_when_its_program_is_killed(settled):
    program = textwrap.dedent("""
        import sys, time
        import mp_core as mp
        from mp_core import forkserver
        if __name__ == "__main__":
            mp.get_context("forkserver")
            forkserver.ensure_running()
            print(forkserver._forkserver._forkserver_pid, forkserver._forkserver._forkserver_address, flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    try:
        pid_text, address = proc.stdout.readline().split()
        server_pid = int(pid_text)
        if settled:  # else killed at once: the server may still be starting up
            assert not _pid_gone(server_pid, 0.2)
        assert os.path.exists(address)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        # The server is now an orphan (not our child): it must leave by itself,
        # and take its socket and the dead program's (otherwise empty) temp
        # directory with it: nobody else would remove them.
        assert _pid_gone(server_pid, 10), "fork server outlived its program"
        assert not os.path.exists(address)
        assert not os.path.exists(os.path.dirname(address))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_server_restarts_after_it_died():
    ctx = mp_core.get_context("forkserver")
    forkserver.ensure_running()
    old_pid = forkserver._forkserver._forkserver_pid
    os.kill(old_pid, signal.SIGKILL)
    assert _pid_gone(old_pid, 10)
    p = ctx.Process(target=int)
    p.start()
    p.join(30)
    assert p.exitcode == 0
    assert forkserver._forkserver._forkserver_pid != old_pid


DEFAULT_TIMEOUT_PROGRAM = textwrap.dedent("""
    import os, socket, sys
    import mp_core
    from mp_core import reduction

    def child(conn, payload_size):
        conn.send_bytes(b"p" * payload_size)
        r, w = os.pipe()
        os.write(w, b"through a passed descriptor")
        os.close(w)
        reduction.send_handle(conn, r, os.getppid())
        os.close(r)
        conn.send("done")
        conn.close()

    if __name__ == "__main__":
        socket.setdefaulttimeout(float(sys.argv[2]))
        ctx = mp_core.get_context(sys.argv[1])
        ours, theirs = ctx.Pipe()
        p = ctx.Process(target=child, args=(theirs, 3 << 20))
        p.start()
        theirs.close()
        assert ours.recv_bytes() == b"p" * (3 << 20)
        fd = reduction.recv_handle(ours)
        assert os.read(fd, 100) == b"through a passed descriptor"
        os.close(fd)
        assert ours.recv() == "done"
        assert os.get_blocking(ours.fileno())
        p.join(30)
        assert p.exitcode == 0, p.exitcode
        print("ok")
""")


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_default_socket_timeout_does_not_leak_into_our_descriptors(tmp_path, method):
    # socket.setdefaulttimeout() must not turn the fork server's sockets,
    # a Pipe() or a passed descriptor's carrier non-blocking (they would fail
    # with BlockingIOError, as CPython's TestTimeouts checks).
    script = tmp_path / "prog.py"
    script.write_text(DEFAULT_TIMEOUT_PROGRAM)
    proc = subprocess.run([sys.executable, str(script), method, "30"], capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_server_state_uses_the_stdlib_attribute_names():
    forkserver.ensure_running()
    server = forkserver._forkserver
    assert isinstance(server._forkserver_pid, int) and os.path.exists(f"/proc/{server._forkserver_pid}")
    assert server._forkserver_address.startswith(mp_core.util.get_temp_dir())
    assert isinstance(server._forkserver_authkey, bytes) and len(server._forkserver_authkey) == 32
    assert os.fstat(server._forkserver_alive_fd)  # the open write end of the keep-alive pipe


def sleep_then_set(event, delay):
    time.sleep(delay)
    event.set()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL])
def test_children_outlive_a_signalled_server(signum):
    # As the stdlib's check_forkserver_death: a child already started still
    # finishes, and the next one is started (by a new server if needed).
    ctx = mp_core.get_context("forkserver")
    forkserver.ensure_running()
    first = ctx.Event()
    proc = ctx.Process(target=sleep_then_set, args=(first, 0.5))
    proc.start()
    pid = forkserver._forkserver._forkserver_pid
    os.kill(pid, signum)
    if signum == signal.SIGKILL:
        assert _pid_gone(pid, 30)
    else:
        # Not a synchronization: a window in which a server that did not
        # ignore SIGINT would die (a loaded machine only narrows it).
        time.sleep(0.5)
    second = ctx.Event()
    proc2 = ctx.Process(target=sleep_then_set, args=(second, 0.0))
    proc2.start()
    proc2.join(30)
    assert proc2.exitcode == 0 and second.is_set()
    proc.join(30)
    # The first child outlives its server, so its sentinel (the server's
    # status pipe) may report it gone while it still runs: wait for its work.
    assert first.wait(30)
    assert proc.exitcode in (0, 255)  # 255: the server died before reporting the code
    if signum == signal.SIGINT:  # ignored by the server
        assert forkserver._forkserver._forkserver_pid == pid
    else:
        assert forkserver._forkserver._forkserver_pid != pid


# ---------------------------------------------------------------- set_forkserver_preload(on_error=...)

PRELOAD_PROGRAM = textwrap.dedent("""
    import sys
    import mp_core as mp

    def send_value(conn, value):
        conn.send(value)

    if __name__ == "__main__":
        on_error, *modules = sys.argv[1:]
        kwargs = {} if on_error == "default" else {"on_error": on_error}
        mp.set_forkserver_preload(modules, **kwargs)
        ctx = mp.get_context("forkserver")
        r, w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=send_value, args=(w, 42))
        try:
            p.start()
        except (EOFError, ConnectionError) as exc:
            print("start failed:", type(exc).__name__, "|", getattr(exc, "__notes__", ["(no note)"])[0])
            sys.exit(0)
        w.close()
        print("child sent", r.recv(), "exit code", (p.join(30), p.exitcode)[1])
""")


def run_preload_program(on_error, *modules, warning_filter=None):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    flags = ["-W", warning_filter] if warning_filter else []
    result = subprocess.run(
        [sys.executable, *flags, "-c", PRELOAD_PROGRAM, on_error, *modules],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=root,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip(), result.stderr


@pytest.mark.parametrize("on_error", ["default", "ignore"])
def test_preload_failures_are_ignored_by_default(on_error):
    out, err = run_preload_program(
        on_error, "colorsys", "nonexistent_module_xyz", warning_filter="always::ImportWarning"
    )
    assert out == "child sent 42 exit code 0"
    assert "nonexistent_module_xyz" not in err


def test_preload_failures_warn_with_on_error_warn():
    # Python 3.15: the server emits an ImportWarning, which (as every
    # ImportWarning) shows only where the warning filters let it through.
    out, err = run_preload_program("warn", "nonexistent_module_xyz", warning_filter="always::ImportWarning")
    assert out == "child sent 42 exit code 0"
    assert "ImportWarning: Failed to preload module 'nonexistent_module_xyz': No module named" in err
    out, err = run_preload_program("warn", "nonexistent_module_xyz")
    assert out == "child sent 42 exit code 0"
    assert "nonexistent_module_xyz" not in err  # ignored by the default filters


def test_preload_failures_end_the_server_with_on_error_fail():
    out, err = run_preload_program("fail", "colorsys", "nonexistent_module_xyz")
    kind, _, note = out.partition(" | ")
    assert kind in (
        "start failed: EOFError",
        "start failed: ConnectionRefusedError",
        "start failed: ConnectionResetError",
        "start failed: BrokenPipeError",
    ), out
    assert note.startswith("Forkserver process may have crashed")
    assert "ModuleNotFoundError: No module named 'nonexistent_module_xyz'" in err  # the server's traceback
    out, err = run_preload_program("fail", "colorsys", "os")
    assert out == "child sent 42 exit code 0"


HANDLE_PRELOAD_PROGRAM = textwrap.dedent("""
    import sys, warnings
    from mp_core import forkserver
    path, on_error = sys.argv[1:]
    warnings.simplefilter("always")
    try:
        with warnings.catch_warnings(record=True) as caught:
            forkserver._handle_preload(["__main__", "os"], main_path=path, on_error=on_error)
    except Exception as exc:
        print("raised", type(exc).__name__, exc)
    else:
        print("warned", [(w.category.__name__, str(w.message)) for w in caught])
""")


@pytest.mark.parametrize(
    "on_error, expected",
    [
        ("ignore", "warned []"),
        ("warn", "warned [('ImportWarning', \"Failed to preload __main__ from '{path}': the main module fails\")]"),
        ("fail", "raised RuntimeError the main module fails"),
    ],
)
def test_a_main_module_that_fails_to_preload_follows_on_error_too(tmp_path, on_error, expected):
    # Any exception of the main script counts, not only ImportError.
    script = tmp_path / "failing_main.py"
    script.write_text("raise RuntimeError('the main module fails')\n")
    result = subprocess.run(
        [sys.executable, "-c", HANDLE_PRELOAD_PROGRAM, str(script), on_error],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected.format(path=script)


def test_set_forkserver_preload_checks_its_arguments_on_every_context():
    for target in (mp_core, *(mp_core.get_context(m) for m in ("fork", "spawn", "forkserver"))):
        with pytest.raises(ValueError, match="on_error must be 'ignore', 'warn', or 'fail'"):
            target.set_forkserver_preload(["os"], on_error="invalid")
        with pytest.raises(TypeError, match="module_names must be a list of strings"):
            target.set_forkserver_preload([1, 2, 3])
    saved = (forkserver._forkserver._preload_modules, forkserver._forkserver._preload_on_error)
    try:
        mp_core.get_context("spawn").set_forkserver_preload(["os"], on_error="warn")
        assert (forkserver._forkserver._preload_modules, forkserver._forkserver._preload_on_error) == (["os"], "warn")
    finally:
        forkserver._forkserver._preload_modules, forkserver._forkserver._preload_on_error = saved

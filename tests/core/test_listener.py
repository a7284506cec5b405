"""Listener and Client: authentication both ways, hostile peers, families, interop."""

from __future__ import annotations

import glob
import os
import pickle
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

import mp_core
from mp_core import connection
from mp_core.connection import Client, Listener

pytestmark = pytest.mark.timeout(60)

FAMILIES = ["AF_UNIX", "AF_INET"]
KEY = b"listener test key"


# ---------------------------------------------------------------- helpers


def client_child(address, authkey, report):
    """Connect, exchange one message, and report the outcome on ``report``."""
    try:
        with Client(address, authkey=authkey) as conn:
            conn.send(("hello from", os.getpid()))
            reply = conn.recv()
        report.send(("ok", reply))
    except Exception as exc:
        report.send(("error", type(exc).__name__, str(exc)))
    finally:
        report.close()


def serve_one(listener):
    """Accept one client; return (connection, None) or (None, the exception)."""
    try:
        return listener.accept(), None
    except Exception as exc:
        return None, exc


def raw_socket(address):
    sock = socket.socket(getattr(socket, connection.address_type(address)))
    sock.connect(address)
    return sock


def frame(payload: bytes) -> bytes:
    return struct.pack("!i", len(payload)) + payload


def read_frame(sock) -> bytes:
    header = b""
    while len(header) < 4:
        chunk = sock.recv(4 - len(header))
        if not chunk:
            raise EOFError
        header += chunk
    (size,) = struct.unpack("!i", header)
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


class CreatesFile:
    """Unpickling this creates ``path``: proof that a payload was (or was not) loaded."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "x")


def good_client_works(listener, ctx, start, authkey=None):
    """A child client with the right key gets through ``listener``."""
    reader, writer = ctx.Pipe(duplex=False)
    proc = start(client_child, listener.address, authkey, writer)
    writer.close()
    conn = listener.accept()
    with conn:
        greeting, pid = conn.recv()
        assert greeting == "hello from" and pid == proc.pid
        conn.send("welcome")
    assert reader.recv() == ("ok", "welcome")
    reader.close()
    proc.join(30)
    assert proc.exitcode == 0


# ---------------------------------------------------------------- the good path


@pytest.mark.parametrize("family", FAMILIES)
def test_no_authkey_means_no_authentication(ctx, start, family):
    with Listener(family=family) as listener:
        assert listener._authkey is None
        assert connection.address_type(listener.address) == family
        good_client_works(listener, ctx, start, authkey=None)
        assert listener.last_accepted is not None


@pytest.mark.parametrize("family", FAMILIES)
def test_unauthenticated_client_returns_before_accept(family):
    # Nothing is exchanged, so one thread can connect first and accept after
    # (the standard library's test_issue16955).
    with Listener(family=family) as listener:
        with Client(listener.address) as client:
            with listener.accept() as server:
                server.send_bytes(b"hello")
                assert client.poll(5)
                assert client.recv_bytes() == b"hello"
                client.send({"n": 1})
                assert server.recv() == {"n": 1}


@pytest.mark.parametrize("family", FAMILIES)
def test_explicit_key_and_wrong_key(ctx, start, family):
    with Listener(family=family, authkey=b"right key") as listener:
        good_client_works(listener, ctx, start, authkey=b"right key")
        for wrong in (b"wrong key", b""):
            reader, writer = ctx.Pipe(duplex=False)
            proc = start(client_child, listener.address, wrong, writer)
            writer.close()
            with pytest.raises(mp_core.AuthenticationError, match="digest received was wrong"):
                listener.accept()
            outcome = reader.recv()
            assert outcome[:2] == ("error", "AuthenticationError"), outcome
            assert "rejected" in outcome[2]
            reader.close()
            proc.join(30)
        # The listener keeps serving after the bad clients.
        good_client_works(listener, ctx, start, authkey=b"right key")


def test_empty_authkey_is_a_key_like_any_other(ctx, start):
    with Listener(authkey=b"") as listener:
        good_client_works(listener, ctx, start, authkey=b"")
        reader, writer = ctx.Pipe(duplex=False)
        proc = start(client_child, listener.address, b"not empty", writer)
        writer.close()
        with pytest.raises(mp_core.AuthenticationError):
            listener.accept()
        assert reader.recv()[1] == "AuthenticationError"
        reader.close()
        proc.join(30)


def test_client_and_listener_in_one_process_with_threads():
    with Listener(("127.0.0.1", 0), authkey=b"k") as listener:
        result = {}
        thread = threading.Thread(target=lambda: result.update(pair=serve_one(listener)))
        thread.start()
        with Client(listener.address, authkey=b"k") as client:
            thread.join(30)
            server, error = result["pair"]
            assert error is None
            with server:
                client.send_bytes(b"ping")
                assert server.recv_bytes() == b"ping"
                server.send([1, 2])
                assert client.recv() == [1, 2]


# ---------------------------------------------------------------- key on one side only


def test_keyed_client_against_a_listener_without_a_key_that_speaks(monkeypatch):
    with Listener(("127.0.0.1", 0)) as listener:
        refused = threading.Event()

        def serve():
            with listener.accept() as conn:
                conn.send("hello")
                refused.wait(30)  # hang up only once the client has answered

        thread = threading.Thread(target=serve)
        thread.start()
        began = time.monotonic()
        try:
            with pytest.raises(mp_core.AuthenticationError, match="expected a challenge.*no authkey"):
                Client(listener.address, authkey=KEY)
            assert time.monotonic() - began < 5
        finally:
            refused.set()
            thread.join(30)


def test_keyed_client_against_a_listener_without_a_key_that_waits(monkeypatch):
    # Both sides wait for the other: the client's handshake limit ends it.
    monkeypatch.setattr(Client, "handshake_timeout", 0.5)
    with Listener(("127.0.0.1", 0)) as listener:
        outcome = {}

        def serve():
            with listener.accept() as conn:
                try:
                    outcome["received"] = conn.recv()
                except EOFError:
                    outcome["received"] = "EOF"

        thread = threading.Thread(target=serve)
        thread.start()
        began = time.monotonic()
        with pytest.raises(
            mp_core.AuthenticationError, match=r"timed out after 0.5 seconds waiting for the peer's challenge"
        ):
            Client(listener.address, authkey=KEY)
        assert time.monotonic() - began < 5
        thread.join(30)
        assert outcome == {"received": "EOF"}


def test_client_without_a_key_against_a_keyed_listener():
    with Listener(("127.0.0.1", 0), authkey=KEY) as listener:
        result = {}
        thread = threading.Thread(target=lambda: result.update(pair=serve_one(listener)))
        thread.start()
        began = time.monotonic()
        with Client(listener.address) as client:
            # What the client sends is taken as its answer, and refused.
            client.send("hello")
            thread.join(30)
            conn, error = result["pair"]
            assert conn is None
            assert isinstance(error, mp_core.AuthenticationError)
            assert str(error) == "digest received was wrong"
            # What it receives is the challenge, never unpickled as data.
            with pytest.raises(mp_core.AuthenticationError, match="the listener requires an authkey"):
                client.recv()
        assert time.monotonic() - began < 5


def test_library_listeners_stay_authenticated(sharer_address_and_key, capfd):
    address, key = sharer_address_and_key
    with pytest.raises(mp_core.AuthenticationError):
        Client(address, authkey=b"not the key")
    with Client(address) as client:  # no key: the server challenges anyway
        client.send(("dummy",))
        with pytest.raises(mp_core.AuthenticationError, match="requires an authkey"):
            client.recv()
    with Client(address, authkey=key):
        pass  # a client that hangs up without a request
    # The sharer serves one client at a time: once a real request has been
    # answered, the hang-up before it has been dealt with, quietly.
    c, d = socket.socketpair()
    with c, d:
        with mp_core.reduction.loads(mp_core.reduction.dumps(c)) as copy:
            copy.sendall(b"ping")
            assert d.recv(4) == b"ping"
    assert "Traceback" not in capfd.readouterr().err


@pytest.fixture
def sharer_address_and_key():
    """A running resource sharer: a library listener that always uses the process key."""
    from mp_core import resource_sharer

    a, b = socket.socketpair()
    with a, b:
        mp_core.reduction.dumps(a)  # registers with the sharer, starting it
        yield resource_sharer._resource_sharer._address, mp_core.process.current_process().authkey


# ---------------------------------------------------------------- hostile peers


@pytest.mark.parametrize("family", FAMILIES)
def test_hostile_clients_never_get_unpickled_and_the_listener_goes_on(ctx, start, family, tmp_path):
    marker = str(tmp_path / "unpickled")
    evil = pickle.dumps(CreatesFile(marker))
    # The payload is live: loading it would create the file.
    control = str(tmp_path / "control")
    pickle.loads(pickle.dumps(CreatesFile(control))).close()
    assert os.path.exists(control)

    def speaks_first_framed(sock):
        sock.sendall(frame(evil))

    def speaks_first_raw(sock):
        sock.sendall(evil)

    def answers_with_a_pickle(sock):
        read_frame(sock)  # the challenge
        sock.sendall(frame(evil))

    def answers_with_a_big_pickle(sock):
        read_frame(sock)
        sock.sendall(frame(pickle.dumps([CreatesFile(marker), b"x" * 4096])))

    def garbage(sock):
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")

    def says_nothing_and_leaves(sock):
        pass

    # An attacker hangs up only once the listener has refused it: hanging up
    # with the challenge unread could reset the connection before the
    # listener reads what was sent (a different error).
    refused = threading.Event()

    def unauthenticated_client(sock):
        # What a "Client" without a key would do: send its object straight away.
        conn = connection.Connection(sock.detach())
        conn.send(CreatesFile(marker))
        refused.wait(30)
        conn.close()

    attacks = [
        (speaks_first_framed, "digest received was wrong"),
        (speaks_first_raw, "not a handshake message"),
        (answers_with_a_pickle, "digest received was wrong"),
        (answers_with_a_big_pickle, "not a handshake message"),
        (garbage, "not a handshake message"),
        (says_nothing_and_leaves, "connection closed"),
        (unauthenticated_client, "digest received was wrong"),
    ]

    def run(attack, address):
        sock = raw_socket(address)
        try:
            attack(sock)
        except OSError:
            pass  # the listener may hang up first
        finally:
            if attack is not says_nothing_and_leaves:
                refused.wait(30)
            sock.close()

    with Listener(family=family, authkey=KEY) as listener:
        for attack, message in attacks:
            refused.clear()
            thread = threading.Thread(target=run, args=(attack, listener.address))
            thread.start()
            try:
                with pytest.raises(mp_core.AuthenticationError, match=message):
                    listener.accept()
            finally:
                refused.set()
                thread.join(30)
        assert not os.path.exists(marker)
        good_client_works(listener, ctx, start, authkey=KEY)
    assert not os.path.exists(marker)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("framed", [True, False], ids=["framed", "unframed"])
def test_a_pre_auth_flood_is_refused_without_reading_it(family, framed):
    flood = b"A" * (1 << 20)
    if framed:
        flood = frame(flood)
    sent = {"bytes": 0}

    def flooder(address):
        with raw_socket(address) as sock:
            view = memoryview(flood)
            try:
                while view:
                    n = sock.send(view)
                    sent["bytes"] += n
                    view = view[n:]
            except OSError:
                pass  # the listener hung up on us, as it should

    with Listener(family=family, authkey=KEY) as listener:
        thread = threading.Thread(target=flooder, args=(listener.address,))
        thread.start()
        began = time.monotonic()
        with pytest.raises(mp_core.AuthenticationError, match="not a handshake message"):
            listener.accept()
        assert time.monotonic() - began < 10
        thread.join(30)
        assert not thread.is_alive()
        # Still serving:
        result = {}
        server = threading.Thread(target=lambda: result.update(pair=serve_one(listener)))
        server.start()
        with Client(listener.address, authkey=KEY):
            server.join(30)
        conn, error = result["pair"]
        assert error is None
        conn.close()


def test_a_silent_client_times_out(monkeypatch):
    monkeypatch.setattr(Listener, "handshake_timeout", 0.3)
    with Listener(authkey=KEY) as listener:
        with raw_socket(listener.address):
            began = time.monotonic()
            with pytest.raises(mp_core.AuthenticationError, match="timed out"):
                listener.accept()
            assert time.monotonic() - began < 5


def rogue_server(listener_sock, script, refused):
    conn, _ = listener_sock.accept()
    with conn:
        for step in script:
            if step == "read":
                try:
                    read_frame(conn)
                except (EOFError, OSError):
                    return
            else:
                conn.sendall(step)
        if script:
            # Hang up once the client has refused us, not before: what it sent
            # and we left unread would reset the connection under its last read.
            refused.wait(30)


@pytest.mark.parametrize(
    "script_name",
    ["pickle_instead_of_challenge", "pickle_instead_of_welcome", "legacy_md5_challenge", "huge_message", "hangs_up"],
)
def test_client_never_unpickles_from_an_unauthenticated_server(tmp_path, script_name):
    marker = str(tmp_path / "unpickled")
    evil = frame(pickle.dumps(CreatesFile(marker)))
    scripts = {
        "pickle_instead_of_challenge": [evil],
        "pickle_instead_of_welcome": [frame(b"#CHALLENGE#{sha256}" + os.urandom(40)), "read", evil],
        "legacy_md5_challenge": [frame(b"#CHALLENGE#" + os.urandom(20))],
        "huge_message": [struct.pack("!i", 1 << 30)],
        "hangs_up": [],
    }
    with socket.socket(socket.AF_INET) as listener_sock:
        listener_sock.bind(("127.0.0.1", 0))
        listener_sock.listen(1)
        refused = threading.Event()
        thread = threading.Thread(target=rogue_server, args=(listener_sock, scripts[script_name], refused))
        thread.start()
        try:
            with pytest.raises(mp_core.AuthenticationError):
                Client(listener_sock.getsockname(), authkey=b"key")
        finally:
            refused.set()
            thread.join(30)
    assert not os.path.exists(marker)


# ---------------------------------------------------------------- the rest of the API


def test_addresses_and_families(tmp_path):
    assert connection.address_type(("127.0.0.1", 80)) == "AF_INET"
    assert connection.address_type("/tmp/sock") == "AF_UNIX"
    assert connection.address_type("\0abstract") == "AF_UNIX"
    assert connection.address_type(r"\\.\pipe\name") == "AF_PIPE"
    with pytest.raises(ValueError):
        connection.address_type(42)
    assert connection.default_family == "AF_UNIX"
    assert set(connection.families) >= {"AF_INET", "AF_UNIX"}
    first, second = (connection.arbitrary_address("AF_UNIX") for _ in range(2))
    assert first != second
    assert os.path.dirname(first) == mp_core.util.get_temp_dir()
    with pytest.raises(ValueError):
        connection.arbitrary_address("AF_BOGUS")
    with pytest.raises(ValueError):
        Listener(family="AF_BOGUS")


def test_unix_socket_file_is_removed_on_close(tmp_path):
    path = str(tmp_path / "listener.sock")
    listener = Listener(path)
    assert listener.address == path and os.path.exists(path)
    assert listener.last_accepted is None
    listener.close()
    assert not os.path.exists(path)
    listener.close()  # idempotent
    with pytest.raises(OSError, match="listener is closed"):
        listener.accept()
    with Listener() as other:
        address = other.address
    assert not os.path.exists(address)
    with pytest.raises(OSError):
        Client(address)


def test_abstract_namespace_address():
    if not sys.platform.startswith("linux"):
        pytest.skip("abstract Unix socket addresses are Linux-only")
    address = f"\0mp-core-test-{os.getpid()}"
    with Listener(address) as listener:
        result = {}
        thread = threading.Thread(target=lambda: result.update(pair=serve_one(listener)))
        thread.start()
        with Client(listener.address):
            thread.join(30)
        result["pair"][0].close()


def test_authkey_must_be_bytes():
    with pytest.raises(TypeError):
        Listener(authkey="text")
    with pytest.raises(TypeError):
        Client(("127.0.0.1", 1), authkey="text")
    a, b = connection.Pipe()
    with a, b:
        with pytest.raises(ValueError):
            connection.deliver_challenge(a, "text")
        with pytest.raises(ValueError):
            connection.answer_challenge(a, "text")


def test_challenge_functions_over_a_pipe():
    a, b = connection.Pipe()
    with a, b:
        thread = threading.Thread(target=connection.answer_challenge, args=(b, b"k"))
        thread.start()
        connection.deliver_challenge(a, b"k")
        thread.join(10)
        errors = []

        def answer_wrong():
            try:
                connection.answer_challenge(b, b"other")
            except mp_core.AuthenticationError as exc:
                errors.append(exc)

        thread = threading.Thread(target=answer_wrong)
        thread.start()
        with pytest.raises(mp_core.AuthenticationError):
            connection.deliver_challenge(a, b"k")
        thread.join(10)
        assert len(errors) == 1


@pytest.mark.parametrize("digest", [None, "md5", "sha256", "sha384"])
def test_private_create_response_and_verify_challenge_as_the_stdlibs(digest):
    # CPython 3.12+ tests drive the handshake through these private names.
    prefix = b"" if digest is None else b"{" + digest.encode() + b"}"
    message = prefix + b"is-twenty-bytes-long"
    response = connection._create_response(b"key", message)
    assert response.startswith(prefix)
    connection._verify_challenge(b"key", message, response)
    with pytest.raises(mp_core.AuthenticationError, match="digest received was wrong"):
        connection._verify_challenge(b"other key", message, response)
    assert connection._get_digest_name_and_payload(message) == (digest or "", message[len(prefix) :])
    try:
        import multiprocessing.connection as stdlib  # the comparison only
    except ImportError:  # pragma: no cover
        return
    if hasattr(stdlib, "_create_response"):
        assert stdlib._create_response(b"key", message) == response
        stdlib._verify_challenge(b"key", message, response)


def test_private_handshake_helpers_refuse_malformed_messages():
    for bad in (b"no prefix, and not of a legacy length", b"{blake2b}" + bytes(20), b"{sha256" + bytes(30)):
        with pytest.raises(mp_core.AuthenticationError, match="unsupported"):
            connection._create_response(b"key", bad)
    message = b"{sha256}" + bytes(40)
    truncated = connection._create_response(b"key", message)[:-1]
    with pytest.raises(mp_core.AuthenticationError, match="of 32 bytes, got 31"):
        connection._verify_challenge(b"key", message, truncated)
    assert (connection._CHALLENGE, connection._WELCOME, connection._FAILURE) == (
        connection.CHALLENGE,
        connection.WELCOME,
        connection.FAILURE,
    )


def test_a_peer_speaking_through_the_private_helpers_authenticates_with_us():
    # Both directions of the handshake, with the test as the peer.
    ours, theirs = connection.Pipe()
    with ours, theirs:
        thread = threading.Thread(target=connection.deliver_challenge, args=(ours, b"k"))
        thread.start()
        message = theirs.recv_bytes(256)
        assert message.startswith(connection._CHALLENGE)
        theirs.send_bytes(connection._create_response(b"k", message[len(connection._CHALLENGE) :]))
        assert theirs.recv_bytes(256) == connection._WELCOME
        thread.join(10)

        challenge = b"{sha256}" + os.urandom(40)
        answers = []
        thread = threading.Thread(target=lambda: answers.append(connection.answer_challenge(ours, b"k")))
        thread.start()
        theirs.send_bytes(connection._CHALLENGE + challenge)
        connection._verify_challenge(b"k", challenge, theirs.recv_bytes(256))
        theirs.send_bytes(connection._WELCOME)
        thread.join(10)
        assert answers == [None]


def test_handshake_failures_against_fake_connections_as_cpythons_tests_drive_them():
    class AnswersBogus:
        def recv_bytes(self, size=None):
            return b"something bogus"

        def send_bytes(self, data):
            pass

    class ChallengesThenBogus(AnswersBogus):
        def __init__(self):
            self.count = 0

        def recv_bytes(self, size=None):
            self.count += 1
            return connection._CHALLENGE if self.count == 1 else b"something bogus"

    with pytest.raises(mp_core.AuthenticationError):
        connection.deliver_challenge(AnswersBogus(), b"abc")
    with pytest.raises(mp_core.AuthenticationError):
        connection.answer_challenge(ChallengesThenBogus(), b"abc")


@pytest.mark.parametrize("digest", ["sha384", "sha3_256"])
def test_deliver_challenge_with_another_digest(digest):
    # The stdlib's digest_name parameter (3.12+): the answerer follows the challenge's digest.
    ours, theirs = connection.Pipe()
    with ours, theirs:
        thread = threading.Thread(target=connection.answer_challenge, args=(theirs, b"k"))
        thread.start()
        connection.deliver_challenge(ours, b"k", digest)
        thread.join(10)
        with pytest.raises(ValueError, match="digest_name='md5' unsupported"):
            connection.deliver_challenge(ours, b"k", "md5")


def test_xml_listener_and_client():
    with connection.XmlListener(("127.0.0.1", 0), authkey=b"k") as listener:
        result = {}
        thread = threading.Thread(target=lambda: result.update(pair=serve_one(listener)))
        thread.start()
        client = connection.XmlClient(listener.address, authkey=b"k")
        thread.join(30)
        server, error = result["pair"]
        assert error is None
        client.send({"a": [1, 2.5, "x"]})
        assert server.recv() == {"a": [1, 2.5, "x"]}
        client.close()
        server.close()


# ---------------------------------------------------------------- interoperability


def _stdlib_python(min_version):
    candidates = [shutil.which(name) for name in ("python3.14", "python3.13", "python3.12")]
    # pyenv installs interpreters side by side; its shims only run the active ones.
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(os.path.join(pyenv_root, "versions", "3.1[2-9]*", "bin", "python3")))
    candidates.append(sys.executable)
    for exe in candidates:
        if not exe:
            continue
        try:
            out = subprocess.run(
                [exe, "-c", "import sys, multiprocessing.connection; print(sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and eval(out.stdout) >= min_version:
            return exe
    return None


def test_interoperates_with_the_stdlib_since_3_12():
    exe = _stdlib_python((3, 12))
    if exe is None:
        pytest.skip("no Python >= 3.12 interpreter found")
    with Listener(("127.0.0.1", 0), authkey=b"shared") as listener:
        program = (
            f"from multiprocessing.connection import Client\n"
            f"c = Client({listener.address!r}, authkey=b'shared')\n"
            f"c.send_bytes(b'stdlib here'); print(c.recv_bytes().decode())\n"
        )
        child = subprocess.Popen([exe, "-c", program], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            with listener.accept() as conn:
                assert conn.recv_bytes() == b"stdlib here"
                conn.send_bytes(b"mp_core here")
            out, err = child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
        assert child.returncode == 0, err
        assert out.strip() == "mp_core here"


def test_legacy_md5_peers_are_refused():
    if sys.version_info >= (3, 12):
        pytest.skip("the running interpreter's stdlib already speaks the modern handshake")
    with Listener(("127.0.0.1", 0), authkey=b"shared") as listener:
        program = (
            f"from multiprocessing.connection import Client\n"
            f"try:\n    Client({listener.address!r}, authkey=b'shared')\n"
            f"except Exception as e:\n    print(type(e).__name__)\n"
        )
        child = subprocess.Popen(
            [sys.executable, "-c", program], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            with pytest.raises(mp_core.AuthenticationError, match="legacy HMAC-MD5"):
                listener.accept()
            out, err = child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
        assert out.strip() == "AuthenticationError", err


def test_a_keyed_client_waits_for_a_listener_that_accepts_late():
    # A server that serves one client at a time accepts the next one late;
    # like the standard library's, a keyed Client waits for its challenge.
    assert Client.handshake_timeout is None
    with Listener(("127.0.0.1", 0), authkey=KEY) as listener:
        got = {}

        def connect():
            with Client(listener.address, authkey=KEY) as conn:
                got["reply"] = conn.recv()

        thread = threading.Thread(target=connect)
        thread.start()
        time.sleep(1.5)
        with listener.accept() as conn:
            conn.send("late but fine")
        thread.join(30)
    assert got == {"reply": "late but fine"}


OUT_OF_DESCRIPTORS = """
import os, resource, subprocess, sys
from mp_core import connection
from mp_core.connection import Listener

KEY = b"out of descriptors"
CLIENT = ("import sys; from mp_core.connection import Client; "
          "conn = Client(sys.argv[1], authkey=%r); conn.send('hello'); print(conn.recv())" % KEY)


def first_free_descriptor():
    fd = 0
    while True:
        try:
            os.fstat(fd)  # needs no descriptor of its own, unlike listing /proc/self/fd
        except OSError:
            return fd
        fd += 1


with Listener(family="AF_UNIX", authkey=KEY) as listener:
    client = subprocess.Popen([sys.executable, "-c", CLIENT, listener.address], stdout=subprocess.PIPE, text=True)
    assert connection.wait([listener._listener._socket], 60), "the client did not connect"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # One descriptor left: the connection accepted takes it, the handshake must make do without.
    resource.setrlimit(resource.RLIMIT_NOFILE, (first_free_descriptor() + 1, hard))
    try:
        with listener.accept() as conn:
            greeting = conn.recv()
            conn.send("welcome")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    out, _ = client.communicate(timeout=60)
    print(greeting, out.strip(), client.returncode)
"""


def test_a_listener_out_of_descriptors_still_authenticates_the_client_it_accepted(tmp_path):
    # A challenge needs random bytes: PyPy's os.urandom opens /dev/urandom
    # for them, so a server out of descriptors accepted a client and then
    # failed its handshake (EMFILE), for ever.  A fresh interpreter: the
    # descriptor limit is the whole process's.
    pytest.importorskip("resource")
    script = tmp_path / "out_of_descriptors.py"
    script.write_text(OUT_OF_DESCRIPTORS)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello welcome 0", result.stdout


@pytest.mark.parametrize("source", ["chosen", "libc getrandom"])
def test_challenges_get_random_bytes_of_the_size_asked(source):
    from mp_core import _entropy

    if source == "chosen":
        random_bytes = _entropy.random_bytes
    else:  # PyPy's route, tried on every interpreter that can take it
        random_bytes = _entropy._libc_getrandom()
        if random_bytes is None:
            pytest.skip("libc has no getrandom() here")
    for size in (0, 1, 40, 300, 70000):
        data = random_bytes(size)
        assert isinstance(data, bytes) and len(data) == size
    assert random_bytes(40) != random_bytes(40)
    assert len(set(random_bytes(70000))) == 256  # every byte value turns up in that many

"""SharedMemory, ShareableList and SharedMemoryManager, across processes and programs."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import mp_core
from mp_managers.managers import SharedMemoryManager
from mp_managers.shared_memory import ShareableList, SharedMemory

from ..support import SHARED_MEMORY_PREFIX, run_python, shm_entries

pytestmark = pytest.mark.timeout(120)

ITEMS = [7, -(2**63), 2.5, True, False, None, "", "héllo wörld", b"", b"by\x01tes", "x" * 17]


def exists(name):
    return os.path.exists("/dev/shm/" + name.lstrip("/"))


def write_block(by_name, by_pickle, worker_id):
    block = SharedMemory(by_name)
    block.buf[worker_id] = worker_id + 1
    block.close()
    by_pickle.buf[10 + worker_id] = worker_id + 100
    by_pickle.close()


def change_list(name, pickled, worker_id):
    attached = ShareableList(name=name)
    attached[worker_id] = f"child {worker_id}"
    attached.shm.close()
    pickled[3 + worker_id] = worker_id * 1.5
    pickled.shm.close()


def fill_from_manager_child(block, shareable):
    block.buf[:3] = b"abc"
    shareable[0] = "from the child"
    block.close()
    shareable.shm.close()


# ---------------------------------------------------------------- SharedMemory


def test_shared_memory_across_processes(children):
    block = SharedMemory(create=True, size=64)
    try:
        assert block.size == 64 and exists(block.name) and block.name.startswith("psm_")
        assert bytes(block.buf[:4]) == b"\0\0\0\0"
        assert children.run(write_block, [(block.name, block, i) for i in range(3)]) == [0, 0, 0]
        assert bytes(block.buf[:3]) == b"\x01\x02\x03"
        assert bytes(block.buf[10:13]) == bytes([100, 101, 102])
        again = pickle.loads(pickle.dumps(block))
        assert again.name == block.name and again.size == block.size
        assert repr(again) == f"SharedMemory({block.name!r}, size=64)"
        again.close()
    finally:
        block.close()
        block.unlink()
    assert not exists(block.name)


def test_shared_memory_arguments_and_errors():
    with pytest.raises(ValueError):
        SharedMemory(create=True, size=0)
    with pytest.raises(ValueError):
        SharedMemory(create=True, size=-1)
    with pytest.raises(ValueError):
        SharedMemory()
    with pytest.raises(FileNotFoundError):
        SharedMemory("psm_does_not_exist")
    name = f"{SHARED_MEMORY_PREFIX[1:]}named"  # under this run's prefix: the leak check sees it
    block = SharedMemory(name, create=True, size=10)
    try:
        assert block.name == name
        with pytest.raises(FileExistsError):
            SharedMemory(name, create=True, size=10)
        attached = SharedMemory("/" + name)
        assert attached.size == 10
        attached.close()
        attached.close()  # closing twice is fine
    finally:
        block.close()
        block.unlink()
    with pytest.raises(FileNotFoundError):
        block.unlink()
    untracked = SharedMemory(create=True, size=8, track=False)
    untracked.close()
    untracked.unlink()


def create_and_report_a_block(conn):
    block = SharedMemory(create=True, size=8)
    conn.send(block.name)
    block.close()
    block.unlink()


def test_fresh_names_carry_the_programs_prefix_into_every_child(ctx, start):
    # The test session sets _config["shmprefix"] (tests/conftest.py).
    assert mp_core.current_process()._config["shmprefix"] == SHARED_MEMORY_PREFIX
    pattern = re.escape(SHARED_MEMORY_PREFIX[1:]) + "[0-9a-f]{8}"
    block = SharedMemory(create=True, size=8)
    try:
        assert re.fullmatch(pattern, block.name)
    finally:
        block.close()
        block.unlink()
    reader, writer = ctx.Pipe(duplex=False)
    proc = start(create_and_report_a_block, writer)
    assert reader.poll(60)
    assert re.fullmatch(pattern, reader.recv())
    proc.join(30)
    assert proc.exitcode == 0


def test_fresh_names_are_the_stdlibs_without_a_prefix():
    out = run_python(
        """
        from mp_managers.shared_memory import SharedMemory
        block = SharedMemory(create=True, size=8)
        print(block.name)
        block.close()
        block.unlink()
    """
    )
    assert out.returncode == 0, out.stderr
    assert re.fullmatch("psm_[0-9a-f]{8}", out.stdout.strip())


# ---------------------------------------------------------------- ShareableList


def test_shareable_list_api():
    sl = ShareableList(ITEMS)
    try:
        assert list(sl) == ITEMS and len(sl) == len(ITEMS)
        assert sl[-1] == "x" * 17 and sl[5] is None and sl[3] is True
        assert sl.format == "qqdxxxxxxx?xxxxxxx?xxxxxx?x8s16s8s8s24s"
        assert sl.count(True) == 1 and sl.count(False) == 1 and sl.count(7) == 1
        assert sl.index(None) == 5
        with pytest.raises(ValueError, match="not in this container"):
            sl.index("absent")
        with pytest.raises(IndexError):
            sl[len(ITEMS)]
        sl[0] = "a str"  # fits in the 8 bytes of the int
        sl[7] = b"bytes now"
        sl[6] = 3.25
        assert sl[0] == "a str" and sl[7] == b"bytes now" and sl[6] == 3.25
        with pytest.raises(ValueError, match="exceeds available storage"):
            sl[0] = "much too long for eight bytes"
        copy = pickle.loads(pickle.dumps(sl))
        assert list(copy) == list(sl) and copy.shm.name == sl.shm.name
        assert repr(sl).startswith("ShareableList([") and sl.shm.name in repr(sl)
        copy.shm.close()
        with pytest.raises(TypeError):
            ShareableList([[1, 2]])
        empty = ShareableList([])
        assert len(empty) == 0 and list(empty) == [] and empty.format == ""
        empty.shm.close()
        empty.shm.unlink()
    finally:
        sl.shm.close()
        sl.shm.unlink()


def test_shareable_list_across_processes(children):
    sl = ShareableList(["short", "short", "short", 0.0, 0.0, 0.0])
    try:
        codes = children.run(change_list, [(sl.shm.name, sl, i) for i in range(3)])
        assert codes == [0, 0, 0]
        assert list(sl) == ["child 0", "child 1", "child 2", 0.0, 1.5, 3.0]
    finally:
        sl.shm.close()
        sl.shm.unlink()


STDLIB_PEER = """
import sys
from multiprocessing import resource_tracker, shared_memory
theirs = shared_memory.ShareableList(name=sys.argv[1])
print(repr(list(theirs)), flush=True)
theirs.shm.close()
resource_tracker.unregister(theirs.shm._name, "shared_memory")
mine = shared_memory.ShareableList([1, 2.0, "three", b"four", None, True])
print(mine.shm.name, flush=True)
sys.stdin.readline()
mine.shm.close()
mine.shm.unlink()
"""


def test_shareable_list_layout_is_the_standard_librarys():
    ours = ShareableList(ITEMS)
    peer = subprocess.Popen(
        [sys.executable, "-c", STDLIB_PEER, ours.shm.name], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert peer.stdout.readline().strip() == repr(ITEMS)
        theirs = ShareableList(name=peer.stdout.readline().strip())
        assert list(theirs) == [1, 2.0, "three", b"four", None, True]
        theirs.shm.close()
        # Attaching registered it with our tracker (as the stdlib does);
        # its owner, another program, unlinks it.
        from mp_core import resource_tracker

        resource_tracker.unregister(theirs.shm._name, "shared_memory")
        peer.stdin.write("done\n")
        peer.stdin.flush()
        assert peer.wait(30) == 0
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.wait()
        peer.stdin.close()
        peer.stdout.close()
        ours.shm.close()
        ours.shm.unlink()


# ---------------------------------------------------------------- SharedMemoryManager


def test_shared_memory_manager(ctx, children):
    with SharedMemoryManager(ctx=ctx) as smm:
        block = smm.SharedMemory(32)
        shareable = smm.ShareableList(["initial value", 1])
        names = {block.name, shareable.shm.name}
        assert all(exists(name) for name in names)
        assert set(smm._call("list_segments")) == names
        assert children.run(fill_from_manager_child, [(block, shareable)]) == [0]
        assert bytes(block.buf[:3]) == b"abc" and shareable[0] == "from the child"
        doomed = smm.SharedMemory(8)
        smm._call("release_segment", doomed.name)
        assert not exists(doomed.name)
        doomed.close()
        block.close()
        shareable.shm.close()
    assert not any(exists(name) for name in names)


CREATOR = """
import sys, time
from mp_managers.shared_memory import SharedMemory, ShareableList
block = SharedMemory(create=True, size=4096)
shareable = ShareableList(["left", "behind"])
print(block.name, shareable.shm.name, flush=True)
time.sleep(120)
"""


def test_sigkilled_creator_leaves_nothing_in_dev_shm():
    creator = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CREATOR)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        names = creator.stdout.readline().split()
        assert len(names) == 2 and all(exists(name) for name in names)
        creator.send_signal(signal.SIGKILL)
        creator.wait(30)
        deadline = time.monotonic() + 10
        while any(exists(name) for name in names) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(exists(name) for name in names), "the resource tracker did not unlink the segments"
    finally:
        if creator.poll() is None:
            creator.kill()
            creator.wait()
        creator.stdout.close()
        creator.stderr.close()


TRACKER_SHARED = """
import sys
import mp_core
from mp_managers.managers import SharedMemoryManager
if __name__ == "__main__":
    smm = SharedMemoryManager(ctx=mp_core.get_context(sys.argv[1]))
    smm.start()
    sl = smm.ShareableList(range(10))
    block = smm.SharedMemory(100)
    smm.shutdown()
    print("done")
"""


def test_shared_memory_manager_shares_the_resource_tracker(start_method, tmp_path):
    """The server unregisters what the client registered: no leak warning, nothing left."""
    script = tmp_path / "tracker_shared.py"
    script.write_text(TRACKER_SHARED)
    result = subprocess.run([sys.executable, str(script), start_method], capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert result.stderr == ""


def test_shared_memory_manager_before_start():
    smm = SharedMemoryManager()
    with pytest.raises(ValueError):
        smm.SharedMemory(size=9)
    with pytest.raises(ValueError):
        smm.ShareableList([1])


# ---------------------------------------------------------------- track (Python 3.13's parameter)

ATTACHER = """
import sys
from mp_managers.shared_memory import SharedMemory
block = SharedMemory(create=False, name=sys.argv[1], track=sys.argv[2] == "track")
block.close()
"""


@pytest.mark.parametrize("track", [True, False])
def test_an_unrelated_program_attaching_with_track_decides_whether_its_tracker_unlinks(track):
    # As CPython 3.13's tests: a program that attaches with track=True gets a
    # tracker of its own, which unlinks the block (and says so) when the
    # program ends; with track=False the block survives it, silently.
    from mp_core import resource_tracker

    block = SharedMemory(create=True, size=16)
    try:
        result = subprocess.run(
            [sys.executable, "-c", ATTACHER, block.name, "track" if track else "no"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        if track:
            assert "resource_tracker: There appear to be 1 leaked shared_memory objects" in result.stderr
            assert not exists(block.name)
        else:
            assert "resource_tracker" not in result.stderr
            assert exists(block.name)
            SharedMemory(block.name).close()  # still there to attach to
    finally:
        try:
            block.unlink()
        except FileNotFoundError:
            resource_tracker.unregister(block._name, "shared_memory")  # the other program's tracker did it
        block.close()


def test_track_false_never_talks_to_the_tracker_and_unlink_still_works(monkeypatch):
    from mp_core import resource_tracker

    calls = []
    monkeypatch.setattr(resource_tracker, "register", lambda *args: calls.append(("register", *args)))
    monkeypatch.setattr(resource_tracker, "unregister", lambda *args: calls.append(("unregister", *args)))
    untracked = SharedMemory(create=True, size=8, track=False)
    attached = SharedMemory(untracked.name, track=False)
    attached.close()
    untracked.close()
    untracked.unlink()
    assert not exists(untracked.name)
    assert calls == []  # neither registered nor unregistered
    tracked = SharedMemory(create=True, size=8)
    attached = SharedMemory(tracked.name)
    attached.close()
    tracked.close()
    tracked.unlink()
    assert calls == [("register", tracked._name, "shared_memory")] * 2 + [
        ("unregister", tracked._name, "shared_memory")
    ]


UNTRACKED_CREATOR = """
import sys
from mp_managers.shared_memory import SharedMemory
tracked = SharedMemory(create=True, size=8)
untracked = SharedMemory(create=True, size=8, track=False)
print(tracked.name, untracked.name, flush=True)
"""


def test_a_program_that_exits_without_unlinking_loses_only_its_tracked_blocks():
    result = subprocess.run([sys.executable, "-c", UNTRACKED_CREATOR], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    tracked, untracked = result.stdout.split()
    try:
        assert not exists(tracked)  # its tracker cleaned up after it
        assert exists(untracked)  # nobody was told about this one
        assert "1 leaked shared_memory objects" in result.stderr and untracked not in result.stderr
    finally:
        block = SharedMemory(untracked, track=False)
        block.close()
        block.unlink()


def attach_and_report(name, conn):
    block = SharedMemory(name)
    conn.send(bytes(block.buf[:4]))
    block.close()
    conn.close()


def test_children_attaching_share_the_programs_tracker(ctx):
    # A child of any start method registers with the program's own tracker
    # (a tracker of its own would unlink the block when the child exits);
    # the parent's unlink unregisters it for everyone.
    block = SharedMemory(create=True, size=8)
    block.buf[:4] = b"abcd"
    reader, writer = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=attach_and_report, args=(block.name, writer))
    proc.start()
    assert reader.recv() == b"abcd"
    proc.join(30)
    assert proc.exitcode == 0
    assert exists(block.name)  # the child's exit did not unlink it
    block.close()
    block.unlink()


# ---------------------------------------------------------------- a block handed over by a child


def create_and_hand_over(conn):
    block = SharedMemory(create=True, size=64)
    block.buf[:5] = b"hello"
    conn.send(block.name)
    block.close()


def test_a_block_created_by_a_child_outlives_the_child(ctx, children):
    reader, writer = ctx.Pipe(duplex=False)
    try:
        assert children.run(create_and_hand_over, [(writer,)]) == [0]
        assert reader.poll(30)
        name = reader.recv()
    finally:
        reader.close()
        writer.close()
    assert exists(name), "the block vanished with the child that created it"
    block = SharedMemory(name)
    try:
        assert bytes(block.buf[:5]) == b"hello"
    finally:
        block.close()
        block.unlink()
    assert not exists(name)


HANDED_OVER_THEN_LEAKED = """
import json
import sys
import mp_core
from mp_managers.shared_memory import SharedMemory
from tests.managers.test_shared_memory import create_and_hand_over

if __name__ == "__main__":
    ctx = mp_core.get_context(sys.argv[1])
    reader, writer = ctx.Pipe(duplex=False)
    child = ctx.Process(target=create_and_hand_over, args=(writer,))
    child.start()
    name = reader.recv()
    child.join()
    try:
        block = SharedMemory(name)
        attached = bytes(block.buf[:5]).decode()
        block.close()
    except OSError as exc:
        attached = repr(exc)
    # Exits without unlinking: the resource tracker must.
    print(json.dumps({"name": name, "attached": attached}))
"""


def test_a_block_handed_over_by_a_child_is_cleaned_up_when_the_program_ends(start_method, tmp_path):
    script = tmp_path / "handed_over.py"
    script.write_text(HANDED_OVER_THEN_LEAKED)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, str(script), start_method], capture_output=True, text=True, timeout=90, env=env
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["attached"] == "hello", report
    # The tracker ends with the program (capture_output waited for it: it holds stderr).
    assert not exists(report["name"])
    assert "leaked shared_memory objects" in result.stderr and report["name"] in result.stderr, result.stderr


# ---------------------------------------------------------------- creation that fails leaves nothing


@pytest.mark.parametrize("suffix, reason", [(":b", "without ':'"), ("\nb", "line breaks"), ("é", "not ASCII")])
def test_a_name_the_tracker_refuses_is_refused_before_anything_is_created(suffix, reason):
    name = f"psm_{os.getpid()}{suffix}"
    with pytest.raises(ValueError) as info:
        SharedMemory(name, create=True, size=64)
    message = str(info.value)
    assert repr(name) in message and reason in message and "track=False" in message, message
    assert not exists(name)
    # Untracked, the same name is fine.
    block = SharedMemory(name, create=True, size=64, track=False)
    try:
        assert exists(name) and block.size == 64
        # Attaching and unlinking a name the tracker cannot hold works too.
        again = SharedMemory(name)
        again.close()
        again.unlink()
    finally:
        block.close()
    assert not exists(name)


def test_a_block_that_cannot_be_sized_is_not_left_behind():

    before = shm_entries()
    with pytest.raises(OSError) as info:
        SharedMemory(create=True, size=2**62)
    assert "psm_" in str(info.value), "the error should name the block"
    with pytest.raises(TypeError, match="'size' must be an integer, not float"):
        SharedMemory(create=True, size=1.5)
    assert shm_entries() == before


def test_a_block_the_tracker_cannot_register_is_not_left_behind(monkeypatch):
    from mp_core import resource_tracker

    def refuse(name, rtype):
        raise RuntimeError("no resource tracker here")

    monkeypatch.setattr(resource_tracker, "register", refuse)
    before = shm_entries()
    with pytest.raises(RuntimeError, match="no resource tracker here"):
        SharedMemory(create=True, size=64)
    with pytest.raises(RuntimeError, match="no resource tracker here"):
        SharedMemory(f"psm_{os.getpid()}_named", create=True, size=64)
    assert shm_entries() == before

"""Lambdas, closures and ``__main__`` classes as targets and arguments, from every
kind of main module (a script file, ``python -c``, a program read from stdin),
under every start method.  Each program runs in its own interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import mp_core

pytestmark = pytest.mark.timeout(120)

METHODS = mp_core.get_all_start_methods()

PROGRAM = textwrap.dedent("""
    import sys
    import mp_core as mp

    def helper():
        return 7

    class Box:
        def __init__(self, v):
            self.v = v

    def exit_with_box(box):
        sys.exit(box.v)

    def make_closure(n):
        def inner():
            sys.exit(n + helper())
        return inner

    def run(ctx, target, *args):
        p = ctx.Process(target=target, args=args)
        p.start()
        p.join(60)
        return p.exitcode

    if __name__ == "__main__":
        ctx = mp.get_context(sys.argv[1])
        # The upstream release fails this one under spawn with
        # "NameError: name 'sys' is not defined".
        print("lambda", run(ctx, lambda: sys.exit(helper())))
        print("closure", run(ctx, make_closure(1)))
        print("instance", run(ctx, exit_with_box, Box(5)))
        print("class", run(ctx, lambda cls: sys.exit(cls(9).v), Box))
        print("function-arg", run(ctx, lambda f: sys.exit(f() + 1), helper))
""")

EXPECTED = ["lambda 7", "closure 8", "instance 5", "class 9", "function-arg 8"]


def run_program(how: str, method: str, tmp_path, program: str = PROGRAM) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    if how == "script":
        script = tmp_path / "prog.py"
        script.write_text(program)
        cmd, stdin = [sys.executable, str(script), method], None
    elif how == "-c":
        cmd, stdin = [sys.executable, "-c", program, method], None
    else:
        cmd, stdin = [sys.executable, "-", method], program
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=100, cwd=tmp_path, env=env)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("how", ["script", "-c", "stdin"])
def test_lambdas_closures_and_main_classes_work_everywhere(how, method, tmp_path):
    result = run_program(how, method, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == EXPECTED, result.stderr


@pytest.mark.parametrize("method", [m for m in METHODS if m != "fork"])
def test_missing_main_guard_is_a_clear_error_not_a_fork_bomb(method, tmp_path):
    program = textwrap.dedent("""
        import sys
        import mp_core as mp
        p = mp.get_context(sys.argv[1]).Process(target=print, args=("child ran",))
        p.start()
        p.join(60)
        print("exitcode", p.exitcode)
    """)
    result = run_program("script", method, tmp_path, program)
    assert "An attempt has been made to start a new process before the" in result.stderr
    assert "if __name__ == '__main__':" in result.stderr
    # The child failed at bootstrap; the parent finished normally.
    assert "exitcode 1" in result.stdout


@pytest.mark.parametrize("method", [m for m in METHODS if m != "fork"])
def test_a_file_named_stdin_is_never_executed(method, tmp_path):
    marker = tmp_path / "executed"
    (tmp_path / "<stdin>").write_text(f"open({str(marker)!r}, 'w').write('oops')\n")
    result = run_program("stdin", method, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == EXPECTED
    assert not marker.exists()


@pytest.mark.parametrize("method", [m for m in METHODS if m != "fork"])
def test_plain_data_never_imports_dill_in_a_spawned_child(method, tmp_path):
    program = textwrap.dedent("""
        import sys
        import mp_core as mp

        def report(conn, data):
            conn.send(("dill" in sys.modules, sum(data["ints"]), data["text"]))

        if __name__ == "__main__":
            ctx = mp.get_context(sys.argv[1])
            r, w = ctx.Pipe(duplex=False)
            p = ctx.Process(target=report, args=(w, {"ints": list(range(100)), "text": "plain"}))
            p.start()
            print(r.recv())
            p.join()
    """)
    result = run_program("script", method, tmp_path, program)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(False, 4950, 'plain')"


@pytest.mark.parametrize("method", METHODS)
def test_unpicklable_argument_fails_at_start(method, tmp_path):
    program = textwrap.dedent("""
        import sys, threading
        import mp_core as mp
        if __name__ == "__main__":
            ctx = mp.get_context(sys.argv[1])
            p = ctx.Process(target=print, args=((x for x in range(3)),))
            try:
                p.start()
            except Exception as exc:
                print(type(exc).__name__, exc)
            else:
                p.join()
                print("started", p.exitcode)
            print("children", mp.active_children())
    """)
    result = run_program("script", method, tmp_path, program)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    if method == "fork":
        # Nothing is serialized under fork: the child simply prints the generator.
        assert lines[-2] == "started 0"
    else:
        assert lines[0].startswith("TypeError cannot serialize ")
        assert "generator" in lines[0]
    assert lines[-1] == "children []"


SHARED_NAMESPACE_PROGRAM = textwrap.dedent("""
    import sys
    import mp_core as mp
    from mp_core import reduction
    import helpermod

    STATE = None

    def setup(value):
        global STATE
        STATE = value

    def use(x):
        return (STATE, x + helpermod.OFFSET)

    def serve(conn):
        # Functions arrive one by one, as a pool's initializer and tasks do.
        while True:
            func, args = conn.recv()
            if func is None:
                return
            conn.send(func(*args))

    if __name__ == "__main__":
        ctx = mp.get_context(sys.argv[1])
        here, there = ctx.Pipe()
        p = ctx.Process(target=serve, args=(there,))
        p.start()
        here.send((setup, ("configured",)))
        here.recv()
        here.send((use, (1,)))
        print("use", here.recv())
        here.send((lambda: helpermod.__name__, ()))
        print("module", here.recv())
        here.send((None, ()))
        p.join(60)
        print("payload bytes", len(reduction.dumps(lambda: helpermod.OFFSET)) < 2000)
""")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("how", ["script", "-c", "stdin"])
def test_main_definitions_share_the_receivers_main_namespace(how, method, tmp_path):
    # A global set by one function is seen by the next one sent to the same
    # process; a module a lambda uses travels by name, not by value.
    (tmp_path / "helpermod.py").write_text("OFFSET = 41\nBIG = 'x' * 100000\n")
    result = run_program(how, method, tmp_path, SHARED_NAMESPACE_PROGRAM)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["use ('configured', 42)", "module helpermod", "payload bytes True"]


def test_project_modules_travel_by_name_and_ctypes_structures_by_name(tmp_path):
    # dill copies modules that are not installed in site-packages by value
    # (here mp_core itself, editable); ours sends them by name.  A ctypes
    # Structure of __main__ cannot be copied by dill: it goes by name.
    program = textwrap.dedent("""
        import ctypes, sys, warnings
        import mp_core
        from mp_core import reduction

        class Point(ctypes.Structure):
            _fields_ = [("x", ctypes.c_int)]

        def report(conn, point_class):
            conn.send((mp_core.__name__, point_class(7).x))

        if __name__ == "__main__":
            warnings.simplefilter("error")
            ctx = mp_core.get_context(sys.argv[1])
            r, w = ctx.Pipe(duplex=False)
            p = ctx.Process(target=report, args=(w, Point))
            p.start()
            print(r.recv())
            p.join(60)
            print(reduction.loads(reduction.dumps(Point)) is Point, p.exitcode)
    """)
    for method in ("spawn", "forkserver"):
        result = run_program("script", method, tmp_path, program)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["('mp_core', 7)", "True 0"], result.stderr

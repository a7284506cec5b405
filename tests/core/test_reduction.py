"""The serialization layer: C pickle for what pickle can carry, dill for the rest."""

from __future__ import annotations

import functools
import io
import pickle
import pickletools
import threading
import types

import pytest

from mp_core import reduction
from mp_core.process import AuthenticationString
from mp_core.reduction import ForkingPickler, Serializer

from ..support import run_python, run_script

pytestmark = pytest.mark.timeout(60)


def module_level_function(x):
    return x * 2


class ModuleLevelClass:
    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return type(other) is type(self) and other.value == self.value


def first_opcodes(data, count=3):
    """The first opcodes of a pickle: whole-object dill would start with a global."""
    return [op.name for op, _arg, _pos in pickletools.genops(bytes(data))][:count]


PLAIN_DATA = [
    list(range(1000)),
    {f"k{i}": i / 3 for i in range(100)},
    [(i, str(i), i * 0.5) for i in range(100)],
    {"nested": [1, (2, 3), {4: b"five"}], "none": None, "flag": True, "set": {1, 2}, "fs": frozenset("ab")},
    bytearray(b"xyz"),
]


@pytest.mark.parametrize("obj", PLAIN_DATA, ids=lambda o: type(o).__name__)
def test_plain_data_is_exactly_c_pickle(obj):
    # Byte-identical to the C pickler's output: no hook ran, no dill payload.
    assert bytes(reduction.dumps(obj)) == pickle.dumps(obj, reduction.DEFAULT_PROTOCOL)
    assert reduction.loads(reduction.dumps(obj)) == obj


def test_importable_function_and_class_travel_by_reference():
    for obj in (module_level_function, ModuleLevelClass, functools.reduce, len):
        data = bytes(reduction.dumps(obj))
        assert b"_load_dill" not in data
        assert reduction.loads(data) is obj
    instance = ModuleLevelClass([1, 2])
    assert reduction.loads(reduction.dumps(instance)) == instance


def test_lambda_closure_and_local_class_travel_by_value():
    offset = 10
    add = lambda x: x + offset  # noqa: E731

    def closure(x):
        return x * offset

    class Local:
        def twice(self, x):
            return 2 * x

    for obj in (add, closure, Local):
        data = bytes(reduction.dumps(obj))
        assert b"_load_dill" in data, obj
    assert reduction.loads(reduction.dumps(add))(1) == 11
    assert reduction.loads(reduction.dumps(closure))(2) == 20
    assert reduction.loads(reduction.dumps(Local))().twice(4) == 8
    # Only the lambda inside the list is handed to dill; the rest is C pickle.
    data = reduction.dumps([1, "two", add, {"three": 3}])
    assert first_opcodes(data) == ["PROTO", "FRAME", "EMPTY_LIST"]
    mixed = reduction.loads(data)
    assert mixed[:2] == [1, "two"] and mixed[3] == {"three": 3} and mixed[2](5) == 15


def test_shared_references_to_one_lambda_stay_shared():
    f = lambda: 42  # noqa: E731
    a, b = reduction.loads(reduction.dumps([f, f]))
    assert a is b and a() == 42


def test_partial_of_lambda_and_bound_method_of_local_class():
    class Counter:
        def __init__(self):
            self.n = 3

        def get(self):
            return self.n

    part = functools.partial(lambda a, b: a - b, 10)
    assert reduction.loads(reduction.dumps(part))(4) == 6
    assert reduction.loads(reduction.dumps(Counter().get))() == 3


def test_whole_object_dill_fallback_for_what_c_pickle_rejects():
    code = module_level_function.__code__
    lock = threading.Lock()
    with pytest.raises((TypeError, pickle.PicklingError)):
        # (Not pickle.dumps: on PyPy, importing dill teaches the stdlib's pickler its
        # types; and PyPy's pickle carries code objects and modules, CPython's does not.)
        reduction.dumps(lock, mode="pickle")
    data = bytes(reduction.dumps({"code": code, "module": types, "lock": lock}))
    assert b"_load_dill" in data
    restored = reduction.loads(data)
    assert restored["code"] == code and restored["module"] is types and type(restored["lock"]) is type(lock)


def test_pickle_mode_stays_pickle_after_dill_is_imported():
    import dill  # noqa: F401  (on PyPy, importing dill extends the pure-Python pickler's dispatch)

    with pytest.raises((pickle.PicklingError, TypeError), match="cannot serialize _thread.lock object"):
        reduction.dumps(threading.Lock(), mode="pickle")
    with pytest.raises((pickle.PicklingError, AttributeError), match="cannot serialize function object"):
        reduction.dumps(lambda: 1, mode="pickle")


def test_unserializable_object_raises_at_the_sender_naming_it():
    gen = (i for i in range(3))
    with pytest.raises(TypeError) as excinfo:
        reduction.dumps([1, gen])
    message = str(excinfo.value)
    assert message.startswith("cannot serialize list object")
    assert "generator" in message


async def _coroutine_function():
    pass


async def _async_generator_function():
    yield 1


@pytest.mark.parametrize("mode", reduction.MODES)
@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: (i for i in range(3)), "generator"),
        (_coroutine_function, "coroutine"),
        (_async_generator_function, "async_generator"),
    ],
    ids=["generator", "coroutine", "async_generator"],
)
def test_running_frames_are_refused_at_the_sender_in_every_mode(mode, make, name):
    # PyPy's pickle and dill would not refuse them as CPython's do (dill there
    # writes a payload that fails to load in the receiver).
    obj = make()
    try:
        with pytest.raises(TypeError, match=f"cannot pickle '{name}' object"):
            reduction.dumps({"nested": [obj]}, mode=mode)
    finally:
        if name == "coroutine":
            obj.close()


def test_errors_raised_on_purpose_by_reduce_pass_through_unchanged():
    class Refuses:
        def __reduce__(self):
            raise RuntimeError("only through inheritance")

    with pytest.raises(RuntimeError, match="^only through inheritance$"):
        reduction.dumps(Refuses())


def test_pickle_mode_is_the_stdlib_behaviour():
    f = lambda: 1  # noqa: E731
    with pytest.raises((pickle.PicklingError, AttributeError)) as excinfo:
        reduction.dumps(f, mode="pickle")
    assert "cannot serialize function object '" in str(excinfo.value)
    assert reduction.loads(reduction.dumps([1, 2], mode="pickle")) == [1, 2]


def test_dill_mode_sends_everything_through_dill():
    data = bytes(reduction.dumps([1, 2, 3], mode="dill"))
    assert b"_load_dill" in data
    assert reduction.loads(data) == [1, 2, 3]
    f = lambda x: x - 1  # noqa: E731
    assert reduction.loads(reduction.dumps(f, mode="dill"))(1) == 0


def test_configure_changes_the_default_and_returns_it():
    before = reduction.get_serializer()
    try:
        chosen = reduction.configure("pickle")
        assert chosen.mode == "pickle" and reduction.get_serializer() is chosen
        with pytest.raises((pickle.PicklingError, AttributeError)):
            reduction.dumps(lambda: 1)
        assert reduction.configure(recurse=False).recurse is False
        assert reduction.get_serializer().mode == "pickle"
    finally:
        reduction._default_serializer = before
    assert reduction.dumps(lambda: 1)


def test_serializer_validates_its_settings():
    with pytest.raises(ValueError, match="serializer mode must be one of auto, dill, pickle, not 'cloudpickle'"):
        Serializer(mode="cloudpickle")
    with pytest.raises(ValueError, match="pickle protocol"):
        Serializer(protocol=99)
    s = Serializer("dill", recurse=False)
    assert s.replace(mode="auto") == Serializer("auto", recurse=False)
    assert pickle.loads(pickle.dumps(s)) == s


def test_a_serializer_carries_its_own_settings():
    strict = Serializer("pickle")
    with pytest.raises((pickle.PicklingError, AttributeError)):
        strict.dumps(lambda: 1)
    assert reduction.loads(Serializer("auto").dumps(lambda: 7))() == 7


def test_forking_pickler_stdlib_surface():
    class Point:
        def __init__(self, x):
            self.x = x

    calls = []

    def reduce_point(p):
        calls.append(p)
        return module_level_function, (p.x,)

    ForkingPickler.register(Point, reduce_point)
    try:
        data = ForkingPickler.dumps(Point(21))
        assert isinstance(data, memoryview)
        assert ForkingPickler.loads(data) == 42
        assert len(calls) == 1
        buf = io.BytesIO()
        ForkingPickler(buf, pickle.HIGHEST_PROTOCOL).dump([Point(1)])
        assert pickle.loads(buf.getvalue()) == [2]
        buf = io.BytesIO()
        reduction.dump(Point(5), buf)
        assert pickle.loads(buf.getvalue()) == 10
        # Registered reducers apply in dill mode as well.
        assert reduction.loads(reduction.dumps(Point(4), mode="dill")) == 8
    finally:
        del reduction._extra_reducers[Point]


def test_authkey_cannot_be_pickled_outside_process_creation():
    with pytest.raises(TypeError, match="disallowed for security reasons"):
        reduction.dumps(AuthenticationString(b"secret"))


def test_main_objects_keep_identity_in_the_same_program_and_travel_by_value_elsewhere(tmp_path):
    result = run_script(
        tmp_path / "prog.py",
        """
        import pickle, subprocess, sys
        from mp_core import reduction

        def helper():
            return 41

        class Record:
            def __init__(self, v):
                self.v = v

        use_helper = lambda: helper() + 1
        objects = {"function": helper, "class": Record, "instance": Record(5), "lambda": use_helper}
        payload = bytes(reduction.dumps(objects))
        back = reduction.loads(payload)
        print("identity", back["function"] is helper, back["class"] is Record,
              isinstance(back["instance"], Record))
        # A receiver whose __main__ is another program gets copies that work.
        reader = ("import pickle, sys; d = pickle.loads(sys.stdin.buffer.read()); "
                  "print('other', d['function'](), d['class'].__name__, d['instance'].v, d['lambda']())")
        out = subprocess.run([sys.executable, "-c", reader], input=payload, capture_output=True)
        sys.stdout.write(out.stdout.decode() + out.stderr.decode())
    """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["identity True True True", "other 41 Record 5 42"]


def test_plain_data_never_imports_dill_in_sender_or_receiver():
    result = run_python("""
        import pickle, sys
        from mp_core import reduction
        data = reduction.dumps({"ints": list(range(10)), "pairs": [(1, "a")], "text": "x" * 100})
        assert reduction.loads(data)["ints"] == list(range(10))
        print("dill" in sys.modules)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"

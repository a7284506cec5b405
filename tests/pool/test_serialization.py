"""What travels: lambdas, closures, partials, ``__main__`` objects; tracebacks; what cannot travel."""

from __future__ import annotations

import functools
import os
import pickle
import subprocess
import sys
import textwrap

import pytest

from mp_pool import MaybeEncodingError, RemoteTraceback

from . import helpers
from .helpers import initialized, remember

pytestmark = pytest.mark.timeout(120)


def make_adder(k):
    def add_k(x):
        return x + k

    return add_k


class Scaled:
    def __init__(self, factor):
        self.factor = factor

    def __call__(self, x):
        return x * self.factor


def test_lambdas_closures_and_partials_as_tasks_arguments_and_results(make_pool):
    pool = make_pool(2)
    offset = 100
    assert pool.map(lambda x: x + offset, range(5)) == [100, 101, 102, 103, 104]
    assert pool.map(make_adder(3), range(3), chunksize=1) == [3, 4, 5]
    assert pool.starmap(functools.partial(helpers.add, 10), [(1,), (2,)]) == [11, 12]
    assert pool.apply(lambda f, x: f(x), (make_adder(1), 41)) == 42
    assert list(pool.imap(lambda x: -x, iter(range(4)))) == [0, -1, -2, -3]
    assert sorted(pool.imap_unordered(Scaled(2), range(4))) == [0, 2, 4, 6]
    returned = pool.apply(helpers.return_lambda, (5,))
    assert returned(1) == 6
    adders = pool.map(helpers.return_lambda, range(3))
    assert [f(10) for f in adders] == [10, 11, 12]
    # partials (and closures inside them) as arguments and results
    partial = pool.apply(helpers.identity, (functools.partial(make_adder(2), 5),))
    assert isinstance(partial, functools.partial) and partial() == 7
    assert pool.starmap(lambda f, x: f(x), [(functools.partial(helpers.add, 1), 2)]) == [3]
    assert pool.apply_async(lambda: "no args").get(30) == "no args"


def test_initializer_as_a_lambda_closure_or_partial(make_pool):
    # (Lambdas name the helpers directly: dill would carry a referenced
    # project module by value, with everything in it.)
    pool = make_pool(2, initializer=functools.partial(remember, "partial"))
    assert pool.map(initialized, range(4), chunksize=1) == [["partial"]] * 4
    value = "closure"
    pool = make_pool(1, initializer=lambda: remember(value))
    assert pool.apply(initialized) == ["closure"]
    pool = make_pool(1, initializer=remember, initargs=(lambda: 7,))
    assert pool.apply(lambda: initialized()[0]()) == 7


class CountingFunction:
    """Counts, in the process that serializes it, how often it is serialized."""

    reductions = 0

    def __reduce__(self):
        CountingFunction.reductions += 1
        return CountingFunction, ()

    def __call__(self, x):
        return os.getpid(), id(self), x


def test_a_maps_function_travels_once_per_call_and_once_per_worker(make_pool):
    pool = make_pool(2)
    CountingFunction.reductions = 0
    results = pool.map(CountingFunction(), range(200), chunksize=1)
    assert [x for _, _, x in results] == list(range(200))
    assert CountingFunction.reductions == 1
    per_worker = {(pid, ident) for pid, ident, _ in results}
    assert len(per_worker) == len({pid for pid, _, _ in results})  # one copy per worker
    for run in (
        lambda f: pool.imap_unordered(f, iter(range(50))),
        lambda f: pool.imap(f, range(50), 1),
        lambda f: pool.starmap(f, [(x,) for x in range(50)], 1),
    ):
        CountingFunction.reductions = 0
        results = list(run(CountingFunction()))
        assert sorted(x for _, _, x in results) == list(range(50))
        assert CountingFunction.reductions == 1


def test_exceptions_keep_their_type_and_carry_the_remote_traceback(make_pool):
    pool = make_pool(2)
    with pytest.raises(ValueError, match="from the worker") as excinfo:
        pool.apply(helpers.raise_value_error, ("from the worker",))
    cause = excinfo.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "raise_value_error" in str(cause) and "Traceback (most recent call last)" in str(cause)
    errors = []
    result = pool.map_async(lambda x: 1 / x, [1, 0], error_callback=errors.append)
    with pytest.raises(ZeroDivisionError) as excinfo:
        result.get(30)
    assert errors == [excinfo.value]
    assert "<lambda>" in str(excinfo.value.__cause__)
    iterator = pool.imap(functools.partial(helpers.fail_on, bad=2), range(4), 1)
    assert [next(iterator), next(iterator)] == [0, 1]
    with pytest.raises(KeyError, match="bad item 2") as excinfo:
        next(iterator)
    assert isinstance(excinfo.value.__cause__, RemoteTraceback) and "fail_on" in str(excinfo.value.__cause__)
    assert next(iterator) == 3
    with pytest.raises(TypeError) as excinfo:
        pool.starmap(helpers.add, [(1, 2), (1, "x")])
    assert isinstance(excinfo.value.__cause__, RemoteTraceback) and "in add" in str(excinfo.value.__cause__)


def test_an_unpicklable_result_raises_maybeencodingerror_naming_it(make_pool):
    pool = make_pool(2)
    with pytest.raises(MaybeEncodingError, match="Error sending result: '<generator object") as excinfo:
        pool.apply(helpers.return_unpicklable)
    assert "generator" in excinfo.value.value and "Reason" in str(excinfo.value)
    with pytest.raises(MaybeEncodingError, match="Error sending result: '<generator object"):
        pool.map(helpers.return_unpicklable, range(6), chunksize=3)
    iterator = pool.imap(helpers.return_unpicklable, range(2), 1)
    with pytest.raises(MaybeEncodingError, match="Error sending result: '<generator object"):
        next(iterator)
    assert pool.map(helpers.square, range(5)) == [0, 1, 4, 9, 16]


def test_an_exception_that_cannot_be_rebuilt_is_reported_not_fatal(make_pool):
    pool = make_pool(1)
    with pytest.raises(MaybeEncodingError, match="raise_unloadable"):
        pool.apply(helpers.raise_unloadable)
    assert pool.apply(helpers.square, (3,)) == 9


def test_unpicklable_arguments_and_functions_fail_the_call_naming_them(make_pool):
    pool = make_pool(2)
    gen = (x for x in range(3))
    with pytest.raises(TypeError, match="cannot send argument 1 of apply job .*generator"):
        pool.apply(helpers.add, (1, gen))
    errors = []
    with pytest.raises(TypeError, match="cannot send item 4 .*generator.* of task .*map job"):
        pool.map_async(helpers.identity, [0, 1, 2, 3, gen, 5], chunksize=2, error_callback=errors.append).get(30)
    assert len(errors) == 1
    with pytest.raises((TypeError, pickle.PicklingError), match="cannot send the function of map job"):
        pool.map(lambda x: gen, [1])
    assert pool.map(helpers.square, range(3)) == [0, 1, 4]
    assert not pool._cache


class RefusesToPickle:
    def __reduce__(self):
        raise RuntimeError("cannot pickle")


def test_an_error_raised_by_the_object_itself_reaches_the_caller_as_it_is(make_pool):
    # As in the standard library (bpo-19425): the object's own exception,
    # not a pickling error, with a note naming the item (Python 3.11+).
    pool = make_pool(2)
    with pytest.raises(RuntimeError, match="^cannot pickle") as info:
        pool.map(helpers.square, [1, RefusesToPickle(), 3])
    if sys.version_info >= (3, 11):
        assert any(f"cannot send item 1 ({__name__}.RefusesToPickle object)" in note for note in info.value.__notes__)
    with pytest.raises(RuntimeError, match="^cannot pickle"):
        pool.apply(helpers.identity, (RefusesToPickle(),))
    assert pool.map(helpers.square, range(3)) == [0, 1, 4]


MAIN_PROGRAM = textwrap.dedent("""
    import functools, os, sys
    import mp_core
    from mp_pool import Pool

    OFFSET = 10

    def helper(x):
        return x + OFFSET

    class Box:
        def __init__(self, v):
            self.v = v
        def get(self):
            return self.v

    def init(tag):
        os.environ["POOL_TEST_INIT"] = tag

    def read_init(_):
        return os.environ.get("POOL_TEST_INIT")

    def call(f, x):
        return f(x)

    if __name__ == "__main__":
        ctx = mp_core.get_context(sys.argv[1])
        with Pool(2, initializer=init, initargs=("ready",), context=ctx) as pool:
            k = 3
            print("lambda", pool.map(lambda x: helper(x) * 2, [1, 2]))
            print("closure", pool.map(lambda x: x + k, [1], chunksize=1))
            print("function", pool.map(helper, [5]))
            print("partial", pool.apply(functools.partial(helper, 1)))
            print("class", [box.get() for box in pool.map(Box, [7, 8])])
            print("instance", pool.apply(Box.get, (Box(4),)))
            print("result", pool.apply(lambda: Box(6)).get())
            print("init", pool.map(read_init, [0, 1], chunksize=1))
            print("imap", list(pool.imap(lambda x: -x, iter([1, 2]))))
            print("argument", pool.apply(call, (helper, 1)))
            print("returned", pool.apply(lambda: helper)(2))
            pool.close()
            pool.join()
        tag = "lambda-init"
        with Pool(1, initializer=lambda: init(tag), context=ctx) as pool:
            print("init-lambda", pool.apply(read_init, (0,)))
""")

MAIN_EXPECTED = [
    "lambda [22, 24]",
    "closure [4]",
    "function [15]",
    "partial 11",
    "class [7, 8]",
    "instance 4",
    "result 6",
    "init ['ready', 'ready']",
    "imap [-1, -2]",
    "argument 11",
    "returned 12",
    "init-lambda lambda-init",
]


@pytest.mark.parametrize("how", ["-c", "script"])
def test_main_module_functions_and_classes_from_a_program(start_method, how, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    if how == "-c":
        cmd = [sys.executable, "-c", MAIN_PROGRAM, start_method]
    else:
        script = tmp_path / "prog.py"
        script.write_text(MAIN_PROGRAM)
        cmd = [sys.executable, str(script), start_method]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=100, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == MAIN_EXPECTED, done.stderr


def test_an_initializer_that_cannot_be_sent_fails_pool_creation(ctx, start_method):
    if start_method == "fork":
        pytest.skip("fork copies the initializer, it never serializes it")
    from mp_pool import Pool

    with pytest.raises(TypeError, match="generator"):
        Pool(2, initializer=helpers.remember, initargs=((x for x in range(3)),), context=ctx)

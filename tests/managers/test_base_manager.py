"""BaseManager subclasses: registered types, exposed methods, proxy types, servers run by hand."""

from __future__ import annotations

import os
import sys
import threading

import pytest

import mp_core
from mp_core.context import ProcessError
from mp_managers.managers import (
    AutoProxy,
    BaseManager,
    BaseProxy,
    IteratorProxy,
    MakeProxyType,
    RemoteError,
    Token,
    dispatch,
)

from ..support import collect_garbage

pytestmark = pytest.mark.timeout(120)

FLAG = "unset"


class CounterError(Exception):
    def __init__(self, message, code):
        super().__init__(message, code)
        self.code = code


class Counter:
    def __init__(self, start=0):
        self.n = start
        self._lock = threading.Lock()

    def incr(self, by=1):
        with self._lock:
            self.n += by
            return self.n

    def get(self):
        return self.n

    def secret(self):
        return "secret"

    def fail(self):
        raise CounterError("boom", 7)

    def generator(self):
        return (i for i in range(3))

    def child(self):
        return Counter(self.n * 10)

    def _private(self):
        return "private"


class Flag:
    def get(self):
        return FLAG


def set_flag(value):
    global FLAG
    FLAG = value


class GetOnlyProxy(BaseProxy):
    _exposed_ = ("get",)

    def get(self):
        return self._callmethod("get")


CounterProxy = MakeProxyType("CounterProxy", ("incr", "get"))


class FooBar:
    def f(self):
        return "f()"

    def g(self):
        raise ValueError

    def _h(self):
        return "_h()"


def squares():
    for i in range(10):
        yield i * i


class CounterManager(BaseManager):
    pass


CounterManager.register(
    "Counter", Counter, exposed=("incr", "get", "fail", "generator", "child"), method_to_typeid={"child": "Counter"}
)
CounterManager.register("AutoCounter", Counter)
CounterManager.register("MadeCounter", Counter, proxytype=CounterProxy)
CounterManager.register("ReadOnlyCounter", Counter, proxytype=GetOnlyProxy)
CounterManager.register("Flag", Flag)
CounterManager.register("Foo", FooBar)
CounterManager.register("Bar", FooBar, exposed=("f", "_h"))
CounterManager.register("squares", squares, proxytype=IteratorProxy)


def bump(counters, times):
    for counter in counters:
        for _ in range(times):
            counter.incr()


class ClientOnlyManager(BaseManager):
    """Knows the type ids of a server run elsewhere, not how to make the objects."""


ClientOnlyManager.register("AutoCounter")


def connect_and_bump(address, authkey, times):
    m = ClientOnlyManager(address=address, authkey=authkey)
    m.connect()
    counter = m.AutoCounter(100)
    for _ in range(times):
        counter.incr()
    assert counter.get() == 100 + times


# ---------------------------------------------------------------- tests


def test_registered_types_from_several_processes(ctx, children):
    with CounterManager(ctx=ctx) as m:
        counters = [m.Counter(), m.AutoCounter(), m.MadeCounter()]
        assert type(counters[2]) is CounterProxy
        assert children.run(bump, [(counters, 10)] * 3) == [0, 0, 0]
        assert [c.get() for c in counters] == [30, 30, 30]


def test_exposed_limits_what_clients_may_call(ctx):
    with CounterManager(ctx=ctx) as m:
        counter = m.Counter()
        with pytest.raises(AttributeError, match="not in exposed"):
            counter._callmethod("secret")
        assert not hasattr(counter, "secret")
        auto = m.AutoCounter()
        assert auto.secret() == "secret"  # AutoProxy: every public method
        with pytest.raises(AttributeError, match="not in exposed"):
            auto._callmethod("_private")
        made = m.MadeCounter()
        with pytest.raises(AttributeError, match="not in exposed"):
            made._callmethod("secret")
        read_only = m.ReadOnlyCounter(5)
        assert read_only.get() == 5
        with pytest.raises(AttributeError, match="not in exposed"):
            read_only._callmethod("incr")


def test_method_to_typeid_returns_proxies(ctx):
    with CounterManager(ctx=ctx) as m:
        parent = m.Counter(4)
        child = parent.child()
        assert isinstance(child, BaseProxy) and child._token.typeid == "Counter"
        assert child.get() == 40
        grandchild = child.child()
        assert grandchild.incr() == 401
        before = m._number_of_objects()
        del grandchild
        collect_garbage()  # at once on CPython; PyPy has no reference counting
        assert m._number_of_objects() == before - 1


def test_remote_errors(ctx):
    with CounterManager(ctx=ctx) as m:
        counter = m.Counter()
        with pytest.raises(CounterError) as info:
            counter.fail()
        assert info.value.code == 7
        assert "in fail" in str(info.value.__cause__)
        with pytest.raises(RemoteError, match="could not serialize"):
            counter.generator()
        assert counter.incr() == 1


def test_initializer_runs_in_the_server(ctx):
    m = CounterManager(ctx=ctx)
    m.start(initializer=set_flag, initargs=("set in the server",))
    try:
        assert m.Flag().get() == "set in the server"
        assert FLAG == "unset"
    finally:
        m.shutdown()
    with pytest.raises(TypeError):
        CounterManager(ctx=ctx).start(initializer=42)


# The test runs a server in a thread of its own, then forks (under fork).
@pytest.mark.filterwarnings("ignore:This process .*is multi-threaded:DeprecationWarning")
def test_server_run_by_hand_in_a_thread(ctx, children):
    authkey = b"by hand"
    server = CounterManager(address=("127.0.0.1", 0), authkey=authkey).get_server()
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        assert children.run(connect_and_bump, [(server.address, authkey, 5)] * 2) == [0, 0]
        client = CounterManager(address=server.address, authkey=authkey)
        client.connect()
        counter = client.Counter(1)
        assert counter.incr(2) == 3
        client.shutdown()  # a connected client leaves the server running
        assert thread.is_alive()
    finally:
        conn = mp_core.connection.Client(server.address, authkey=authkey)
        dispatch(conn, None, "shutdown")
        conn.close()
        thread.join(30)
    assert not thread.is_alive()


def test_xmlrpclib_serializer(ctx):
    with CounterManager(ctx=ctx, serializer="xmlrpclib") as m:
        counter = m.Counter(1)
        assert counter.incr(41) == 42
        with pytest.raises(RemoteError, match="CounterError"):
            counter.fail()
        assert counter.get() == 42


def test_argument_checks(ctx):
    with pytest.raises(ValueError):
        BaseManager(serializer="json")
    with pytest.raises(TypeError):
        CounterManager.register("Bad", Counter, method_to_typeid={"child": 3})
    m = CounterManager(ctx=ctx)
    with pytest.raises(Exception, match="not been started"):
        m.Counter()
    assert repr(Token("t", "addr", 1)) == "Token(typeid='t', address='addr', id=1)"


def test_auto_proxy_fetches_exposed_when_not_given(ctx):
    with CounterManager(ctx=ctx) as m:
        counter = m.AutoCounter(3)
        bare = AutoProxy(counter._token, "pickle", authkey=m._authkey)
        assert bare.get() == 3 and "secret" in bare._exposed_
        assert os.getpid() != m._process.pid


def test_the_standard_librarys_manager_semantics(ctx):
    """What the standard library's own manager tests check, with a manager of our own."""
    with CounterManager(ctx=ctx, shutdown_timeout=10) as m:
        foo, bar, baz = m.Foo(), m.Bar(), m.squares()
        assert [name for name in ("f", "g", "_h") if hasattr(foo, name)] == ["f", "g"]
        assert [name for name in ("f", "g", "_h") if hasattr(bar, name)] == ["f", "_h"]
        assert foo.f() == "f()" and foo._callmethod("f") == "f()"
        with pytest.raises(ValueError):
            foo.g()
        with pytest.raises(RemoteError):  # an unexposed method
            foo._callmethod("_h")
        assert bar.f() == "f()" and bar._h() == "_h()" and bar._callmethod("_h") == "_h()"
        assert list(baz) == [i * i for i in range(10)]
    assert m._process.exitcode == 0


def test_use_before_start_or_after_shutdown(ctx):
    m = CounterManager(ctx=ctx)
    for expected in (ValueError, AssertionError, ProcessError):
        with pytest.raises(expected, match="not been started"):
            m.Foo()
    m.start()
    m.shutdown()
    with pytest.raises(AssertionError, match="shut down"):
        m.Foo()


class _ScriptedConnection:
    """A connection that answers every request with ``make_reply()``."""

    def __init__(self, make_reply):
        self.make_reply = make_reply
        self.sent = []

    def send(self, obj):
        self.sent.append(obj)

    def recv(self):
        return self.make_reply()


def test_dispatch_understands_the_standard_librarys_reply_kinds():
    import gc
    import queue
    import weakref

    assert dispatch(_ScriptedConnection(lambda: ("#RETURN", 42)), None, "get") == 42
    conn = _ScriptedConnection(lambda: ("#ERROR", queue.Empty("nothing")))
    # As CPython 3.13's test: the exception raised must not survive in a
    # reference cycle through dispatch's frame (the collector is off).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        try:
            dispatch(conn, 7, "get_nowait", (1,), {"a": 2})
        except queue.Empty as exc:
            ref = weakref.ref(exc)
            assert exc.args == ("nothing",)
        if sys.implementation.name == "cpython":
            # Only reference counting frees an object the moment its last
            # reference goes; PyPy's collector (off here) frees nothing.
            assert ref() is None
    finally:
        if was_enabled:
            gc.enable()
    assert conn.sent == [(7, "get_nowait", (1,), {"a": 2})]
    with pytest.raises(RemoteError, match="remote traceback text"):
        dispatch(_ScriptedConnection(lambda: ("#TRACEBACK", "remote traceback text")), None, "x")
    with pytest.raises(RemoteError, match="Unserializable message: what"):
        dispatch(_ScriptedConnection(lambda: ("#UNSERIALIZABLE", "what")), None, "x")
    with pytest.raises(ValueError, match="unrecognized reply kind '#BOGUS'"):
        dispatch(_ScriptedConnection(lambda: ("#BOGUS", None)), None, "x")

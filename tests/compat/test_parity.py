"""API parity with the running interpreter's ``multiprocessing``, both ways.

For ``multiprocess`` and each of its submodules, against the stdlib module of
the same name on the interpreter running the tests:

* every public name of the stdlib module (its ``__all__`` and the classes
  and functions it defines) exists in ours, and every public attribute of
  those classes exists on ours -- unless ``ALLOWED_DIFFERENCES`` says why
  not; callables accept every way of calling the stdlib's
  (``inspect.signature``);
* every name of ours the stdlib module lacks -- a public name in our
  ``__all__``, a public attribute of one of those classes, a parameter of a
  callable -- is listed in ``ADDED``: a backport, tagged with the Python
  version that has it (on that version and later the stdlib must have it
  too), or an extension of ours, with the reason.

So a new CPython release shows its new names as failing tests the day it
is installed, and an addition of ours cannot go unrecorded.
``multiprocess.X`` is the owning distribution's module object itself.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import types
from typing import Any, Optional

import pytest

import multiprocess
from mp_core import _owners

pytestmark = pytest.mark.timeout(60)

# ---------------------------------------------------------------- what we add

#: module ("" for the package) -> name -> (the Python version that has it,
#: or None for ours alone; why).  A name is "Name", "Class.attribute" or
#: "callable(parameter)" ("Class.method(parameter)", "Class(parameter)" for
#: the constructor).  A version is (major, minor) or, for something a patch
#: release brought, (major, minor, micro) -- several of those when it came
#: to several release lines in their own patch releases.
Version = tuple  # (3, 14), (3, 11, 7), or a tuple of such for several release lines
QUEUES = ("Queue", "JoinableQueue", "SimpleQueue")

ADDED: dict[str, dict[str, tuple[Optional[Version], str]]] = {
    "": {
        "Process.interrupt": ((3, 14), "Process.interrupt()"),
        "set_forkserver_preload(on_error)": ((3, 15), "set_forkserver_preload(on_error=...)"),
        **{f"{kind}(serializer)": (None, "a queue with its own serializer settings") for kind in QUEUES},
    },
    "connection": {
        "Listener.handshake_timeout": (None, "a keyed listener stops waiting for a silent client"),
        "XmlListener.handshake_timeout": (None, "as Listener"),
        "answer_challenge(timeout)": (None, "an optional limit on each handshake message"),
        "deliver_challenge(digest_name)": ((3, 12), "the digest of the challenge (SHA-256 by default)"),
        "deliver_challenge(timeout)": (None, "as answer_challenge"),
        "rebuild_connection(passes_fds)": (None, "a Pipe() end rebuilt in another process still carries descriptors"),
    },
    "context": {
        "BaseContext.Process": (None, "the default context's Process on the base class, for type checkers"),
        **{
            f"{cls}.set_forkserver_preload(on_error)": ((3, 15), "set_forkserver_preload(on_error=...)")
            for cls in ("BaseContext", "DefaultContext", "ForkContext", "SpawnContext", "ForkServerContext")
        },
        **{
            f"{cls}.interrupt": ((3, 14), "Process.interrupt()")
            for cls in ("Process", "ForkProcess", "SpawnProcess", "ForkServerProcess")
        },
        **{
            f"{cls}.{kind}(serializer)": (None, "a queue with its own serializer settings")
            for cls in ("BaseContext", "DefaultContext", "ForkContext", "SpawnContext", "ForkServerContext")
            for kind in QUEUES
        },
    },
    "dummy": {
        "DummyProcess.pid": (None, "None for a thread, so that code reading Process.pid works on threads"),
        "Process.pid": (None, "as DummyProcess"),
        "DummyProcess(daemon)": (None, "threading.Thread's daemon keyword, passed through"),
        "Process(daemon)": (None, "as DummyProcess"),
    },
    "forkserver": {
        "ForkServer.set_forkserver_preload(on_error)": ((3, 15), "set_forkserver_preload(on_error=...)"),
        "set_forkserver_preload(on_error)": ((3, 15), "as ForkServer"),
    },
    "heap": {
        "Block": (None, "a named tuple for (arena, start, stop), the stdlib's plain tuple"),
        "Heap.arena_sizes": (None, "the sizes of the heap's arenas, for diagnostics"),
    },
    "managers": {
        "BaseManager(shutdown_timeout)": ((3, 11), "BaseManager(shutdown_timeout=...)"),
        "SyncManager(shutdown_timeout)": ((3, 11), "as BaseManager"),
        "AcquirerProxy.locked": ((3, 14), "AcquirerProxy.locked()"),
        "ConditionProxy.locked": ((3, 14), "inherited from AcquirerProxy, as in the stdlib"),
        "BaseListProxy.clear": ((3, 14), "ListProxy.clear()"),
        "BaseListProxy.copy": ((3, 14), "ListProxy.copy()"),
        "ListProxy.clear": ((3, 14), "ListProxy.clear()"),
        "ListProxy.copy": ((3, 14), "ListProxy.copy()"),
        "DictProxy.fromkeys": ((3, 14), "DictProxy.fromkeys()"),
        "SetProxy": ((3, 14), "SyncManager.set() and its proxy"),
        "SyncManager.set": ((3, 14), "SyncManager.set()"),
        "BaseManager.shutdown": (None, "a method (the stdlib sets it on the instance in start())"),
        "SyncManager.shutdown": (None, "as BaseManager"),
        "SharedMemoryManager.shutdown": (None, "as BaseManager"),
        "Server.stop": (None, "makes serve_forever return, from any thread (the stdlib's Server has no way)"),
        "Server.on_stop": (None, "a hook run once when the server stops (SharedMemoryServer unlinks there)"),
        "SharedMemoryServer.stop": (None, "as Server"),
        "SharedMemoryServer.on_stop": (None, "as Server"),
        "Server.handshake_timeout": (None, "an unauthenticated connection is dropped after this long"),
        "Server.max_pending_handshakes": (None, "the bound on connections still authenticating"),
        "Server.eviction_age": (None, "a waiting handshake this old makes room for a newer peer"),
        **{
            f"SharedMemoryServer.{name}": (None, "as Server")
            for name in ("handshake_timeout", "max_pending_handshakes", "eviction_age")
        },
    },
    "popen_fork": {"Popen.interrupt": ((3, 14), "Process.interrupt() sends SIGINT through its Popen")},
    "popen_forkserver": {"Popen.interrupt": ((3, 14), "as popen_fork")},
    "popen_spawn_posix": {"Popen.interrupt": ((3, 14), "as popen_fork")},
    "pool": {
        "Pool(serializer)": (None, "a pool with its own serializer settings (DESIGN.md)"),
        "Pool(task_timeout)": (None, "a time limit for every item (issue 17: control and visibility)"),
        "Pool(cancel_running)": (None, "whether cancel() stops a running call by default"),
        **{
            f"{cls}.{name}": (None, "cancelling a call (issue 17)")
            for cls in ("ApplyResult", "AsyncResult", "MapResult", "IMapIterator", "IMapUnorderedIterator")
            for name in ("cancel", "cancelled")
        },
        **{
            f"{cls}.close": (None, "stop an imap: what has not started is dropped (issue 17)")
            for cls in ("IMapIterator", "IMapUnorderedIterator")
        },
        "Pool(max_memory_per_child)": (None, "a worker over this many MiB after a task is replaced (issue 17)"),
        **{
            f"{cls}.{method}(task_timeout)": (None, "a call's own time limit per item (ThreadPool: refused)")
            for cls in ("Pool", "ThreadPool")
            for method in (
                "apply",
                "apply_async",
                "map",
                "map_async",
                "starmap",
                "starmap_async",
                "imap",
                "imap_unordered",
            )
        },
        **{
            f"{cls}.{method}(progress)": (
                None,
                "a progress bar or counter for a map (issue 17: control and visibility)",
            )
            for cls in ("Pool", "ThreadPool")
            for method in ("map", "map_async", "starmap", "starmap_async", "imap", "imap_unordered")
        },
    },
    "process": {
        "BaseProcess.interrupt": ((3, 14), "Process.interrupt()"),
    },
    "queues": {
        "Queue(serializer)": (None, "a queue with its own serializer settings (DESIGN.md)"),
        "JoinableQueue(serializer)": (None, "as Queue"),
        "SimpleQueue(serializer)": (None, "as Queue"),
    },
    "resource_tracker": {
        "ReentrantCallError": (((3, 11, 7), (3, 12, 1)), "a reentrant call raises instead of deadlocking"),
        "main(linger_pid)": (
            None,
            "a tracker started by a fork child outlives the child's parent, so a "
            "block the child created and handed over lives until the program ends",
        ),
    },
    "reduction": {
        "Serializer": (None, "the serialization settings of a channel (DESIGN.md: modes auto/dill/pickle)"),
        "configure": (None, "set the process-wide serialization mode"),
        "get_serializer": (None, "the process-wide serialization settings"),
        "dumps": (None, "serialize with the layer's settings (the stdlib has ForkingPickler.dumps only)"),
        "loads": (None, "the inverse of dumps"),
        "MessageEncoder": (None, "dumps reusing one pickler, for a channel with one writer (the managers' stream)"),
        "ForkingPickler.reducer_override": (None, "hands to dill what pickle cannot carry (DESIGN.md)"),
        "discard": (None, "frees the shared memory of a message with large buffers that will not be sent (issue 18)"),
    },
    "util": {
        "is_private_temp_dir": (None, "whether a path is a temp dir of the library's (the tracker checks)"),
        "remove_private_temp_dir": (None, "removes another process's temp dir of the tree, checked"),
    },
    "shared_memory": {
        "SharedMemory(track)": ((3, 13), "SharedMemory(track=...)"),
        "ndarray": (None, "a NumPy array in shared memory, sent by reference through every channel (issue 18)"),
    },
    "synchronize": {
        "BrokenBarrierError": (None, "threading's, re-exported beside our Barrier, which raises it"),
        "SemLock.locked": ((3, 14), "locked() on every SemLock"),
        "Lock.locked": ((3, 14), "Lock.locked()"),
        "RLock.locked": ((3, 14), "RLock.locked()"),
        "Semaphore.locked": ((3, 14), "Semaphore.locked()"),
        "BoundedSemaphore.locked": ((3, 14), "BoundedSemaphore.locked()"),
        "Condition.notifyAll": (None, "threading.Condition's alias, kept for code written for threads"),
        "Event.isSet": (None, "threading.Event's alias, kept for code written for threads"),
    },
}

#: (module, name) -> why the stdlib's public name (or its signature) is not
#: ours: internals of the stdlib's implementation that ours is built
#: differently from.
ALLOWED_DIFFERENCES: dict[tuple[str, str], str] = {
    ("forkserver", "write_signed"): "the fork server's own wire helper; ours sends with sockets",
    ("forkserver", "main"): "the fork server process's entry point: ours reads its settings from a pipe",
    ("heap", "reduce_arena"): "the pickling helper, called positionally by pickle; ours names its parameter",
    ("managers", "ProcessLocalSet"): "a helper of the stdlib's proxies' bookkeeping, not used by ours",
    ("managers", "rebuild_as_list"): "the stdlib's reducer for dict views; ours is register_view_reducers",
    ("managers", "reduce_array"): "the stdlib's array.array reducer; arrays pickle natively here",
    ("pool", "worker"): "the stdlib worker loop's function; ours is mp_pool._worker",
    ("sharedctypes", "make_property"): "a code-generation helper of the stdlib's synchronized wrappers",
    ("util", "is_abstract_socket_namespace"): "the stdlib's address helper; ours checks addresses in _listener",
    **{
        (module, f"{cls}.{method}"): "the request loop of the stdlib's Server; ours is in mp_managers._server"
        for module in ("managers",)
        for cls in ("Server", "SharedMemoryServer")
        for method in (
            "accepter",
            "fallback_getvalue",
            "fallback_mapping",
            "fallback_repr",
            "fallback_str",
            "handle_request",
            "serve_client",
        )
    },
}

# Names of the stdlib modules that are platform-specific or absent here, and
# our submodules that have no multiprocessing counterpart (futures stands in
# for concurrent.futures: tests/pool/test_futures.py checks its names; dask is
# multiprocess.pool.Pool's API on a cluster: tests/dask/test_parity.py).
SKIP_STDLIB_MODULES = {"popen_spawn_win32", "futures", "dask"}
MODULES = ["", *sorted(set(_owners.SUBMODULES) - SKIP_STDLIB_MODULES)]


# ---------------------------------------------------------------- helpers


def modules(submodule: str) -> tuple[types.ModuleType, types.ModuleType]:
    """(the stdlib module, ours) for ``submodule`` ("" for the packages)."""
    suffix = f".{submodule}" if submodule else ""
    return (importlib.import_module(f"multiprocessing{suffix}"), importlib.import_module(f"multiprocess{suffix}"))


def public_names(module: types.ModuleType) -> set[str]:
    """The module's ``__all__``, or its public callables and constants when it has none."""
    names = getattr(module, "__all__", None)
    if names is not None:
        return set(names)
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", module.__name__) in (module.__name__, None)
    }


def stdlib_api(module: types.ModuleType) -> set[str]:
    """What the stdlib module offers: its ``__all__`` and the public classes and functions it defines."""
    defined = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and getattr(value, "__module__", None) == module.__name__
        and (isinstance(value, type) or inspect.isfunction(value))
    }
    return public_names(module) | defined


def class_attributes(cls: type) -> set[str]:
    """Public attributes a class defines or inherits (``object``'s excluded)."""
    return {name for klass in cls.__mro__ if klass is not object for name in vars(klass) if not name.startswith("_")}


def parameters(obj: Any) -> Optional[dict[str, inspect.Parameter]]:
    try:
        return dict(inspect.signature(obj).parameters)
    except (TypeError, ValueError):
        return None


def compatible(stdlib_obj: Any, ours_obj: Any) -> Optional[str]:
    """None if ``ours_obj`` accepts every way of calling ``stdlib_obj``; else why not."""
    theirs = parameters(stdlib_obj)
    if theirs is None:
        return None  # builtins without signatures: nothing to compare
    mine = parameters(ours_obj)
    if mine is None:
        return "our object has no signature"
    kinds = {p.kind for p in mine.values()}
    has_var_kw, has_var_pos = inspect.Parameter.VAR_KEYWORD in kinds, inspect.Parameter.VAR_POSITIONAL in kinds
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    theirs_positional = [p for p in theirs.values() if p.kind in positional]
    mine_positional = [p for p in mine.values() if p.kind in positional]
    for index, param in enumerate(theirs_positional):
        if index >= len(mine_positional):
            if not has_var_pos:
                return f"positional parameter {param.name!r} missing"
            continue
        if mine_positional[index].name != param.name and param.kind is not param.POSITIONAL_ONLY:
            return f"parameter {index} is {mine_positional[index].name!r}, stdlib has {param.name!r}"
    for name, param in theirs.items():
        if param.kind is param.KEYWORD_ONLY and name not in mine and not has_var_kw:
            return f"keyword parameter {name!r} missing"
        if param.kind is param.VAR_POSITIONAL and not has_var_pos:
            return "*args missing"
        if param.kind is param.VAR_KEYWORD and not has_var_kw:
            return "**kwargs missing"
    theirs_var_pos = any(p.kind is p.VAR_POSITIONAL for p in theirs.values())
    for name, param in mine.items():
        # Extra parameters of ours must be optional, so stdlib calls still work
        # (a positional one may stand for part of the stdlib's *args).
        if theirs_var_pos and param.kind in positional:
            continue
        if (
            name not in theirs
            and param.default is param.empty
            and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
        ):
            return f"our extra parameter {name!r} is required"
    return None


def extra_parameters(stdlib_obj: Any, ours_obj: Any) -> list[str]:
    """Named parameters of ours that the stdlib's callable does not have (its ``**kwargs`` aside)."""
    theirs, mine = parameters(stdlib_obj), parameters(ours_obj)
    if theirs is None or mine is None:
        return []
    return [
        name
        for name, param in mine.items()
        if name not in theirs and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
    ]


def compared(submodule: str) -> list[tuple[str, Any, Any]]:
    """``(label, stdlib object, our object)`` for every stdlib API name we have, class members included."""
    stdlib, ours = modules(submodule)
    pairs = []
    for name in sorted(stdlib_api(stdlib)):
        if (submodule, name) in ALLOWED_DIFFERENCES or not hasattr(ours, name):
            continue
        theirs, mine = getattr(stdlib, name), getattr(ours, name)
        pairs.append((name, theirs, mine))
        if isinstance(theirs, type) and isinstance(mine, type):
            for attr in sorted(class_attributes(theirs)):
                label = f"{name}.{attr}"
                if (submodule, label) not in ALLOWED_DIFFERENCES and hasattr(mine, attr):
                    pairs.append((label, getattr(theirs, attr), getattr(mine, attr)))
    return pairs


def ours_beyond_the_stdlib(submodule: str) -> set[str]:
    """Every name of ours (as ``ADDED`` spells them) that the stdlib module lacks."""
    stdlib, ours = modules(submodule)
    extra = {name for name in public_names(ours) if not hasattr(stdlib, name)}
    for name in stdlib_api(stdlib):
        theirs, mine = getattr(stdlib, name, None), getattr(ours, name, None)
        if isinstance(theirs, type) and isinstance(mine, type):
            extra |= {f"{name}.{attr}" for attr in class_attributes(mine) if not hasattr(theirs, attr)}
    for label, theirs, mine in compared(submodule):
        if not callable(theirs):
            continue
        if isinstance(theirs, type):
            theirs, mine = (theirs.__init__, mine.__init__) if "__init__" in vars(theirs) else (None, None)
            if theirs is None:
                continue
        extra |= {f"{label}({param})" for param in extra_parameters(theirs, mine)}
    return extra


# ---------------------------------------------------------------- the stdlib's names in ours


def missing_from_ours(submodule: str) -> list[str]:
    """The stdlib module's names (class attributes included) that ours lacks, allowed differences aside."""
    stdlib, ours = modules(submodule)
    missing = []
    for name in sorted(stdlib_api(stdlib)):
        if (submodule, name) in ALLOWED_DIFFERENCES:
            continue
        if not hasattr(ours, name):
            missing.append(name)
            continue
        theirs, mine = getattr(stdlib, name), getattr(ours, name)
        if isinstance(theirs, type) and isinstance(mine, type):
            missing += [
                f"{name}.{attr}"
                for attr in sorted(class_attributes(theirs))
                if (submodule, f"{name}.{attr}") not in ALLOWED_DIFFERENCES and not hasattr(mine, attr)
            ]
    return missing


def unlisted_additions(submodule: str) -> list[str]:
    """Our names beyond the stdlib module's that ``ADDED`` does not list."""
    return sorted(ours_beyond_the_stdlib(submodule) - set(ADDED.get(submodule, {})))


@pytest.mark.parametrize("submodule", MODULES)
def test_every_stdlib_name_is_ours_too(submodule):
    missing = missing_from_ours(submodule)
    assert not missing, (
        f"multiprocess{'.' + submodule if submodule else ''} lacks what Python "
        f"{sys.version_info[0]}.{sys.version_info[1]}'s stdlib has: {missing}"
    )


@pytest.mark.parametrize("submodule", MODULES)
def test_every_stdlib_callable_can_be_called_as_the_stdlib_documents(submodule):
    mismatched = []
    for label, theirs, mine in compared(submodule):
        if not callable(theirs):
            continue
        if isinstance(theirs, type):
            if "__init__" not in vars(theirs) or not isinstance(mine, type):
                continue
            theirs, mine = theirs.__init__, mine.__init__
        why = compatible(theirs, mine)
        if why:
            mismatched.append(f"{label}: {why}")
    assert not mismatched, mismatched


# ---------------------------------------------------------------- our names beyond the stdlib


@pytest.mark.parametrize("submodule", MODULES)
def test_every_name_we_add_is_listed(submodule):
    unlisted = unlisted_additions(submodule)
    assert not unlisted, (
        f"multiprocess{'.' + submodule if submodule else ''} has names the stdlib lacks "
        f"that ADDED does not list (say which Python has them, or why they are ours): "
        f"{unlisted}"
    )


@pytest.mark.parametrize("submodule", sorted(ADDED))
def test_every_listed_addition_exists_and_is_tagged_right(submodule):
    stdlib, ours = modules(submodule)
    wrong = []
    for label, (since, _why) in sorted(ADDED[submodule].items()):
        if not _resolves(ours, label):
            wrong.append(f"{label}: listed, but ours lacks it")
        elif since is None and not _absent_from(stdlib, label):
            wrong.append(f"{label}: the stdlib of this Python has it now; tag it with the version")
        elif since is not None and _stdlib_has_it(since) and _absent_from(stdlib, label):
            wrong.append(f"{label}: tagged {since}, but this Python's stdlib lacks it")
        elif since is not None and not _stdlib_has_it(since) and not _absent_from(stdlib, label):
            wrong.append(f"{label}: tagged {since}, but this older Python's stdlib has it already")
    assert not wrong, wrong


def _stdlib_has_it(since: Version, running: Optional[tuple] = None) -> bool:
    """Whether the running Python's stdlib should have what came in ``since``."""
    running = tuple(sys.version_info[:3]) if running is None else running
    tags = since if isinstance(since[0], tuple) else (since,)
    for tag in tags:
        if running[:2] == tag[:2]:
            return running >= tag
    return running[:2] > max(tag[:2] for tag in tags)


def test_a_new_stdlib_name_and_an_unlisted_addition_are_caught(monkeypatch):
    # What a new CPython release (or an undocumented addition) looks like to
    # the checks above: a name, or a parameter, on one side only.
    import multiprocessing.process as stdlib_process
    import multiprocessing.queues as stdlib_queues

    from mp_core import process as our_process

    new_class = type("BrandNewClass", (), {"__module__": stdlib_process.__name__})
    monkeypatch.setattr(stdlib_process, "BrandNewClass", new_class, raising=False)
    monkeypatch.setattr(stdlib_process.BaseProcess, "brand_new_method", lambda self: None, raising=False)
    assert missing_from_ours("process") == ["BaseProcess.brand_new_method", "BrandNewClass"]
    monkeypatch.setattr(our_process.BaseProcess, "our_unlisted_extra", lambda self: None, raising=False)
    assert unlisted_additions("process") == ["BaseProcess.our_unlisted_extra"]

    def init_with_a_new_keyword(self, maxsize=0, *, ctx, brand_new=1):
        pass

    monkeypatch.setattr(stdlib_queues.Queue, "__init__", init_with_a_new_keyword)
    from mp_sync.queues import Queue

    assert compatible(stdlib_queues.Queue.__init__, Queue.__init__) == "keyword parameter 'brand_new' missing"


def test_version_tags_read_as_documented():
    assert _stdlib_has_it((3, 14), (3, 14, 0)) and not _stdlib_has_it((3, 14), (3, 13, 9))
    tags = ((3, 11, 7), (3, 12, 1))
    assert [
        _stdlib_has_it(tags, v) for v in ((3, 10, 9), (3, 11, 6), (3, 11, 7), (3, 12, 0), (3, 12, 1), (3, 13, 0))
    ] == [False, False, True, False, True, True]


def _resolves(module: types.ModuleType, label: str) -> bool:
    """Whether ``label`` ("Name", "Class.attr", "call(param)") names something ``module`` has."""
    target, _, param = label.partition("(")
    obj: Any = module
    for part in target.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    if param:
        found = parameters(obj.__init__ if isinstance(obj, type) else obj)
        return found is not None and param.rstrip(")") in found
    return True


def _absent_from(stdlib: types.ModuleType, label: str) -> bool:
    target, _, param = label.partition("(")
    if not param:
        return not _resolves(stdlib, label)
    return not _resolves(stdlib, label) if _resolves(stdlib, target) else True


# ---------------------------------------------------------------- the package's shape


def test_all_is_consistent_and_has_no_duplicates():
    assert len(multiprocess.__all__) == len(set(multiprocess.__all__))
    for name in multiprocess.__all__:
        assert hasattr(multiprocess, name), name


def _optional_not_installed() -> set[str]:
    """``multiprocess.<sub>`` names whose optional distribution (mp-dask) is not installed here."""
    missing = set()
    for sub, (owner_name, _dist) in _owners.SUBMODULES.items():
        if importlib.util.find_spec(owner_name.partition(".")[0]) is None:
            missing.add(f"multiprocess.{sub}")
    return missing


_OPTIONAL_NOT_INSTALLED = _optional_not_installed()


def _module_files_of_the_package() -> list[str]:
    import os

    folder = os.path.dirname(multiprocess.__file__)
    names = sorted(os.path.splitext(f)[0] for f in os.listdir(folder) if f.endswith(".py"))
    return ["multiprocess" if n == "__init__" else f"multiprocess.{n}" for n in names]


def test_every_module_file_has_an_all_that_holds():
    # As the stdlib suite's _TestImportStar: `from multiprocess.X import *`
    # works for every module file of the package, private ones included, and
    # for every submodule the owner table answers.
    names = _module_files_of_the_package()
    assert {"multiprocess", "multiprocess.__about__", "multiprocess.__main__", "multiprocess._aliases"} <= set(names)
    names += [f"multiprocess.{sub}" for sub in sorted(_owners.SUBMODULES)]
    for name in names:
        if name == "multiprocess.popen_spawn_win32" and sys.platform != "win32":
            continue
        if name in _OPTIONAL_NOT_INSTALLED:
            continue
        module = importlib.import_module(name)
        assert isinstance(getattr(module, "__all__", None), (list, tuple)), name
        for attr in module.__all__:
            assert hasattr(module, attr), f"{name}.__all__ names {attr!r}, which it lacks"
    assert importlib.import_module("multiprocess.__about__").__all__ == ["__version__"]
    assert importlib.import_module("multiprocess._aliases").__all__ == ["NestedAliasFinder", "install"]


@pytest.mark.parametrize("submodule", sorted(_owners.SUBMODULES))
def test_submodule_is_the_owning_module_object(submodule):
    owner_name, dist = _owners.SUBMODULES[submodule]
    if f"multiprocess.{submodule}" in _OPTIONAL_NOT_INSTALLED:
        pytest.skip(f"{dist} is not installed on this interpreter (it needs what distributed needs: CPython 3.10+)")
    ours = importlib.import_module(f"multiprocess.{submodule}")
    owner = importlib.import_module(owner_name)
    assert ours is owner
    assert sys.modules[f"multiprocess.{submodule}"] is owner
    assert getattr(multiprocess, submodule) is owner


def test_the_submodules_are_the_owner_table_and_their_files_generated():
    # No alias module is written by hand: the finder answers from
    # _owners.SUBMODULES, and the files and stubs beside it, which name the
    # same modules, are tools.stubs' output (tests/typing/test_stubs.py).
    import os

    from tools import stubs

    folder = os.path.dirname(multiprocess.__file__)
    files = {sub for sub in _owners.SUBMODULES if os.path.exists(os.path.join(folder, f"{sub}.py"))}
    assert files == {path.stem for path in stubs.expected_face_files()}
    assert sorted(
        f[: -len(".pyi")] for f in os.listdir(folder) if f.endswith(".pyi") and f != "__init__.pyi"
    ) == sorted(sub for sub in _owners.SUBMODULES if not os.path.isdir(os.path.join(folder, sub)))


@pytest.mark.parametrize("how", ["import_module", "import_statement", "from_import", "attribute"])
def test_a_submodule_of_a_missing_distribution_names_it(monkeypatch, how):
    # Pretend mp-pool is not installed: every way of reaching multiprocess.pool
    # raises ImportError telling what to install.
    monkeypatch.setitem(_owners.SUBMODULES, "pool", ("not_installed_mp_pool.pool", "mp-pool"))
    monkeypatch.delitem(sys.modules, "multiprocess.pool", raising=False)
    monkeypatch.delattr(multiprocess, "pool", raising=False)
    with pytest.raises(ImportError, match="multiprocess.pool is provided by the 'mp-pool' distribution") as excinfo:
        if how == "import_module":
            importlib.import_module("multiprocess.pool")
        elif how == "import_statement":
            exec("import multiprocess.pool", {})
        elif how == "from_import":
            exec("from multiprocess import pool", {})
        else:
            multiprocess.pool  # noqa: B018
    assert "pip install mp-pool" in str(excinfo.value)
    assert "multiprocess.pool" not in sys.modules


def test_submodules_survive_pickling_and_a_fresh_interpreter():
    # Unpickling and spawn's re-import name modules by their dotted path.
    import pickle
    import subprocess

    import multiprocess.pool

    assert pickle.loads(pickle.dumps(multiprocess.pool.Pool)) is multiprocess.pool.Pool
    code = (
        "import pickle, importlib; "
        "cls = pickle.loads(pickle.dumps(importlib.import_module('multiprocess.pool').ThreadPool)); "
        "import multiprocess.pool, mp_pool.pool, multiprocess.dummy.connection as c, mp_pool.dummy.connection as d; "
        "from multiprocess import managers; import mp_managers.managers as m; "
        "print(cls is mp_pool.pool.ThreadPool, multiprocess.pool is mp_pool.pool, c is d, managers is m)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True"] * 4


def test_import_multiprocess_is_cheap():
    import subprocess

    code = (
        "import sys, multiprocess; heavy = [m for m in ('dill', 'mp_pool.pool', 'mp_managers.managers',"
        " 'mp_sync.queues', 'mp_core.connection') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_nested_submodules_are_the_owners_modules_too():
    # multiprocess.dummy is a package (mp_pool.dummy); its connection module
    # must not be loaded a second time under the alias name.
    pytest.importorskip("mp_pool.dummy.connection")
    import mp_pool.dummy.connection as real
    import multiprocess.dummy.connection as alias

    assert alias is real
    assert real.__spec__.name == "mp_pool.dummy.connection"
    from multiprocess.dummy.connection import Pipe

    assert Pipe is real.Pipe

"""Contexts: the seam where the whole API is wired together.

A context is the API bound to one start method.  ``get_context('spawn')``
returns the spawn context; the module-level functions of ``multiprocess``
are the methods of the *default* context, whose start method is chosen at
the first use (or by ``set_start_method``).

Factories for objects owned by higher distributions (``Lock`` by mp-sync,
``Pool`` by mp-pool, ``Manager``/``Value`` by mp-managers) import their
owner on first call, through the table in ``_owners``; when that
distribution is not installed they raise ``ImportError`` naming it.
"""

from __future__ import annotations

import os
import sys

from . import _current_method, _owners, process, reduction

# The exceptions live in a leaf module (the transports raise them); this is their public home.
from ._exceptions import AuthenticationError, BufferTooShort, ProcessError, TimeoutError
from ._spawning import assert_spawning, get_spawning_popen, set_spawning_popen

TYPE_CHECKING = False
if TYPE_CHECKING:
    # typing costs import time; annotations are strings anyway.  The
    # classes of the higher distributions are named for type checkers only:
    # at run time this module never imports them (the arrows point down).
    from logging import Logger
    from types import ModuleType
    from typing import Any, Callable, Literal, Optional, Sequence, Union, overload

    from mp_managers.managers import SyncManager
    from mp_pool.pool import Pool as _Pool
    from mp_sync import queues, synchronize

    from ._connection import Connection

__all__: tuple[str, ...] = ()  # the public names are those of BaseContext.__all__ below


# ---------------------------------------------------------------- contexts


class BaseContext:
    """The API of ``multiprocess``, bound to a start method."""

    _name: Optional[str] = None
    Process: type[process.BaseProcess] = process.BaseProcess

    ProcessError = ProcessError
    BufferTooShort = BufferTooShort
    TimeoutError = TimeoutError
    AuthenticationError = AuthenticationError

    current_process = staticmethod(process.current_process)
    parent_process = staticmethod(process.parent_process)
    active_children = staticmethod(process.active_children)

    def cpu_count(self) -> int:
        """Return the number of CPUs in the system."""
        num = os.cpu_count()
        if num is None:
            raise NotImplementedError("cannot determine number of cpus")
        return num

    def Manager(self) -> SyncManager:
        """Start and return a ``SyncManager`` (needs mp-managers)."""
        manager = _owners.load_factory("Manager")(ctx=self.get_context())
        manager.start()
        return manager

    def Pipe(self, duplex: bool = True) -> tuple[Connection, Connection]:
        """Return a pair of connected ``Connection`` objects."""
        return _owners.load_factory("Pipe")(duplex)

    def Lock(self) -> synchronize.Lock:
        """A non-recursive lock shared between processes (needs mp-sync)."""
        return _owners.load_factory("Lock")(ctx=self.get_context())

    def RLock(self) -> synchronize.RLock:
        """A recursive lock shared between processes (needs mp-sync)."""
        return _owners.load_factory("RLock")(ctx=self.get_context())

    def Condition(self, lock: Optional[Union[synchronize.Lock, synchronize.RLock]] = None) -> synchronize.Condition:
        """A condition variable shared between processes (needs mp-sync)."""
        return _owners.load_factory("Condition")(lock, ctx=self.get_context())

    def Semaphore(self, value: int = 1) -> synchronize.Semaphore:
        """A semaphore shared between processes (needs mp-sync)."""
        return _owners.load_factory("Semaphore")(value, ctx=self.get_context())

    def BoundedSemaphore(self, value: int = 1) -> synchronize.BoundedSemaphore:
        """A bounded semaphore shared between processes (needs mp-sync)."""
        return _owners.load_factory("BoundedSemaphore")(value, ctx=self.get_context())

    def Event(self) -> synchronize.Event:
        """An event shared between processes (needs mp-sync)."""
        return _owners.load_factory("Event")(ctx=self.get_context())

    def Barrier(
        self, parties: int, action: Optional[Callable[[], object]] = None, timeout: Optional[float] = None
    ) -> synchronize.Barrier:
        """A barrier shared between processes (needs mp-sync)."""
        return _owners.load_factory("Barrier")(parties, action, timeout, ctx=self.get_context())

    def Queue(self, maxsize: int = 0, *, serializer: Optional[reduction.Serializer] = None) -> queues.Queue[Any]:
        """A multi-producer, multi-consumer queue (needs mp-sync).

        ``serializer``: the settings its ``put`` serializes with (default:
        the process-wide ones, ``reduction.configure``).
        """
        return _owners.load_factory("Queue")(maxsize, ctx=self.get_context(), serializer=serializer)

    def JoinableQueue(
        self, maxsize: int = 0, *, serializer: Optional[reduction.Serializer] = None
    ) -> queues.JoinableQueue[Any]:
        """A queue with ``task_done``/``join`` (needs mp-sync); ``serializer`` as for ``Queue``."""
        return _owners.load_factory("JoinableQueue")(maxsize, ctx=self.get_context(), serializer=serializer)

    def SimpleQueue(self, *, serializer: Optional[reduction.Serializer] = None) -> queues.SimpleQueue[Any]:
        """A simplified, lock-protected pipe queue (needs mp-sync); ``serializer`` as for ``Queue``."""
        return _owners.load_factory("SimpleQueue")(ctx=self.get_context(), serializer=serializer)

    def Pool(
        self,
        processes: Optional[int] = None,
        initializer: Optional[Callable[..., object]] = None,
        initargs: Sequence[Any] = (),
        maxtasksperchild: Optional[int] = None,
        **options: Any,
    ) -> _Pool:
        """A pool of worker processes (needs mp-pool); ``options``: the keyword-only ones of ``Pool``."""
        return _owners.load_factory("Pool")(
            processes, initializer, initargs, maxtasksperchild, context=self.get_context(), **options
        )

    def RawValue(self, typecode_or_type: Any, *args: Any) -> Any:
        """A ctypes object in shared memory (needs mp-managers)."""
        return _owners.load_factory("RawValue")(typecode_or_type, *args)

    def RawArray(self, typecode_or_type: Any, size_or_initializer: Any) -> Any:
        """A ctypes array in shared memory (needs mp-managers)."""
        return _owners.load_factory("RawArray")(typecode_or_type, size_or_initializer)

    def Value(self, typecode_or_type: Any, *args: Any, lock: Any = True) -> Any:
        """A synchronized ctypes object in shared memory (needs mp-managers)."""
        return _owners.load_factory("Value")(typecode_or_type, *args, lock=lock, ctx=self.get_context())

    def Array(self, typecode_or_type: Any, size_or_initializer: Any, *, lock: Any = True) -> Any:
        """A synchronized ctypes array in shared memory (needs mp-managers)."""
        return _owners.load_factory("Array")(typecode_or_type, size_or_initializer, lock=lock, ctx=self.get_context())

    def freeze_support(self) -> None:
        """Run a spawned child when a frozen Windows executable starts as one."""
        if sys.platform == "win32" and getattr(sys, "frozen", False):
            from .spawn import freeze_support

            freeze_support()

    def get_logger(self) -> Logger:
        """Return the library's logger (created on first use)."""
        from .util import get_logger

        return get_logger()

    def log_to_stderr(self, level: Optional[Union[int, str]] = None) -> Logger:
        """Turn on logging to stderr and return the logger."""
        from .util import log_to_stderr

        return log_to_stderr(level)

    def allow_connection_pickling(self) -> None:
        """Make connections and sockets picklable (for sending to other processes)."""
        from . import connection  # noqa: F401  (registers the reducers)

    def set_executable(self, executable: str) -> None:
        """Set the Python interpreter that spawned children run."""
        from .spawn import set_executable

        set_executable(executable)

    def set_forkserver_preload(self, module_names: Sequence[str], *, on_error: str = "ignore") -> None:
        """Modules the fork server imports once, before forking any child.

        ``on_error`` (``'ignore'``, ``'warn'`` or ``'fail'``, Python 3.15's
        parameter): what a module that fails to import does; see
        ``mp_core.forkserver.ForkServer.set_forkserver_preload``.
        """
        from .forkserver import set_forkserver_preload

        set_forkserver_preload(module_names, on_error=on_error)

    if TYPE_CHECKING:
        # The method names the class (typeshed's overloads).  Without one,
        # a concrete context answers itself and the default context the
        # concrete one in use, so the type is only the base's.
        @overload
        def get_context(self, method: None = None) -> BaseContext: ...
        @overload
        def get_context(self, method: Literal["spawn"]) -> SpawnContext: ...

        if sys.platform != "win32":

            @overload
            def get_context(self, method: Literal["fork"]) -> ForkContext: ...
            @overload
            def get_context(self, method: Literal["forkserver"]) -> ForkServerContext: ...

        @overload
        def get_context(self, method: str) -> BaseContext: ...

    def get_context(self, method: Optional[str] = None) -> BaseContext:
        """Return the context of ``method`` (this context when ``None``).

        Raises ``ValueError`` if no start method has that name, or if it is not available here.
        """
        if method is None:
            return self._context_in_use()
        try:
            ctx = _concrete_contexts[method]
        except KeyError:
            raise ValueError(f"cannot find context for {method!r}") from None
        ctx._check_available()
        return ctx

    if TYPE_CHECKING:
        # Only the default context, asked with allow_none=True before its
        # method is fixed, answers None (a concrete one always has a name).
        @overload
        def get_start_method(self, allow_none: Literal[False] = False) -> str: ...
        @overload
        def get_start_method(self, allow_none: bool) -> Optional[str]: ...

    def get_start_method(self, allow_none: bool = False) -> Optional[str]:
        """The name of the start method in use; with ``allow_none``, ``None`` if it is not fixed yet."""
        if allow_none and not self._method_fixed():
            return None
        return self._context_in_use()._name

    # The two hooks the default context answers differently (its public
    # methods, and their overloads, are the base's).
    def _context_in_use(self) -> BaseContext:
        """What ``get_context()`` answers: this context."""
        return self

    def _method_fixed(self) -> bool:
        return True

    def set_start_method(self, method: Optional[str], force: bool = False) -> None:
        raise ValueError("cannot set start method of concrete context")

    @property
    def reducer(self) -> ModuleType:
        """The serialization module used for sending objects (``mp_core.reduction``)."""
        return globals()["reduction"]

    @reducer.setter
    def reducer(self, reduction: ModuleType) -> None:
        globals()["reduction"] = reduction

    def _check_available(self) -> None:
        pass


BaseContext.__all__ = [  # type: ignore[attr-defined]
    name for name in dir(BaseContext) if not name.startswith("_")
]


class Process(process.BaseProcess):
    """A process started with the default context's start method."""

    _start_method = None

    @staticmethod
    def _Popen(process_obj: process.BaseProcess) -> Any:
        return _default_context.get_context().Process._Popen(process_obj)

    @staticmethod
    def _after_fork() -> None:
        return _default_context.get_context().Process._after_fork()


class DefaultContext(BaseContext):
    """The context behind the module-level API; its method is fixed on first use."""

    Process = Process

    def __init__(self, context: BaseContext) -> None:
        self._default_context = context
        self._actual_context: Optional[BaseContext] = None

    def _context_in_use(self) -> BaseContext:
        """The context of the start method in use, which is fixed now if it was not."""
        if self._actual_context is None:
            self._actual_context = self._default_context
        return self._actual_context

    def _method_fixed(self) -> bool:
        return self._actual_context is not None

    def set_start_method(self, method: Optional[str], force: bool = False) -> None:
        """Fix the start method. Raises ``RuntimeError`` if already fixed, unless ``force``."""
        if self._actual_context is not None and not force:
            raise RuntimeError("context has already been set")
        if method is None and force:
            self._actual_context = None
            return
        self._actual_context = self.get_context(method)

    def get_all_start_methods(self) -> list[str]:
        """The start methods available here, the default first."""
        if sys.platform == "win32":
            return ["spawn"]
        methods = ["spawn", "fork"] if sys.platform == "darwin" else ["fork", "spawn"]
        if reduction.HAVE_SEND_HANDLE:
            methods.append("forkserver")
        default = self._default_context._name
        assert default is not None, "the default context is a concrete, named one"
        methods.remove(default)
        return [default, *methods]


DefaultContext.__all__ = BaseContext.__all__ + ["get_all_start_methods"]  # type: ignore[attr-defined]


if sys.platform != "win32":

    class ForkProcess(process.BaseProcess):
        _start_method = "fork"

        @staticmethod
        def _Popen(process_obj: process.BaseProcess) -> Any:
            from .popen_fork import Popen

            return Popen(process_obj)

    class SpawnProcess(process.BaseProcess):
        _start_method = "spawn"

        @staticmethod
        def _Popen(process_obj: process.BaseProcess) -> Any:
            from .popen_spawn_posix import Popen

            return Popen(process_obj)

        @staticmethod
        def _after_fork() -> None:
            # A spawned child starts fresh: nothing was inherited to reset.
            pass

    class ForkServerProcess(process.BaseProcess):
        _start_method = "forkserver"

        @staticmethod
        def _Popen(process_obj: process.BaseProcess) -> Any:
            from .popen_forkserver import Popen

            return Popen(process_obj)

        @staticmethod
        def _after_fork() -> None:
            # What the child inherited from the fork server was reset right
            # after the fork (forkserver._serve_one); finalizers registered
            # since belong to the child, as in a spawned one.
            pass

    class ForkContext(BaseContext):
        _name = "fork"
        Process = ForkProcess

    class SpawnContext(BaseContext):
        _name = "spawn"
        Process = SpawnProcess

    class ForkServerContext(BaseContext):
        _name = "forkserver"
        Process = ForkServerProcess

        def _check_available(self) -> None:
            if not reduction.HAVE_SEND_HANDLE:
                raise ValueError("forkserver start method not available")

    _concrete_contexts: dict[str, BaseContext] = {
        "fork": ForkContext(),
        "spawn": SpawnContext(),
        "forkserver": ForkServerContext(),
    }

else:  # pragma: no cover - Windows is designed in, not tested here

    class SpawnProcess(process.BaseProcess):  # type: ignore[no-redef]
        _start_method = "spawn"

        @staticmethod
        def _Popen(process_obj: process.BaseProcess) -> Any:
            from .popen_spawn_win32 import Popen

            return Popen(process_obj)

        @staticmethod
        def _after_fork() -> None:
            pass

    class SpawnContext(BaseContext):  # type: ignore[no-redef]
        _name = "spawn"
        Process = SpawnProcess

    _concrete_contexts = {"spawn": SpawnContext()}


def _platform_default_method() -> str:
    """The start method the running interpreter's own multiprocessing defaults to."""
    if sys.platform in ("win32", "darwin"):
        return "spawn"
    if sys.version_info >= (3, 14) and reduction.HAVE_SEND_HANDLE:
        return "forkserver"
    return "fork"


_default_context = DefaultContext(_concrete_contexts[_platform_default_method()])


def _forks_when_started(process_obj: process.BaseProcess) -> bool:
    """Whether ``process_obj.start()`` forks this process with the fork start method's ``Popen``."""
    if sys.platform == "win32" or "_Popen" in vars(process_obj):
        return False
    popen = getattr(type(process_obj), "_Popen", None)
    if popen is ForkProcess._Popen:
        return True
    return popen is Process._Popen and _default_context.get_context()._name == "fork"


def _force_start_method(method: Optional[str]) -> None:
    """Fix the default context's method (used in children, which must match the parent); ``None`` forgets it."""
    _default_context._actual_context = None if method is None else _concrete_contexts[method]


# The modules below this one that read or set the start method (spawn, a
# child's bootstrap, util._cleanup_tests) do it through these.
_current_method.register(get=_default_context.get_start_method, force=_force_start_method)


__all__ = (
    "ProcessError",
    "BufferTooShort",
    "TimeoutError",
    "AuthenticationError",
    "BaseContext",
    "DefaultContext",
    "Process",
    "get_spawning_popen",
    "set_spawning_popen",
    "assert_spawning",
)

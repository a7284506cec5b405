"""The bridge to dill: how objects that pickle cannot carry travel, and arrive.

Imported only by a process that sends or receives such an object, so that
plain-data programs never pay for dill.

Three kinds of payload:

* **Definitions of the main module** (functions, classes, and lambdas or
  closures written there).  The standard library sends ``__main__.f`` by
  name, which only works when the receiver re-imported the same main
  module.  We send the definition itself *without* its globals (dill's
  ``recurse=False`` makes the receiver's ``__main__`` namespace the
  function's globals) plus the globals it uses, computed transitively
  through the helpers it calls.  On arrival the receiver's ``__main__``
  namespace receives the names it does not have yet.  Hence a lambda from
  ``python -c`` finds ``sys`` and its helper in a spawned child; an
  initializer that sets a global is seen by the tasks that follow it; and a
  receiver that runs the same program keeps its own definitions, exactly as
  by-name pickling would.  Modules among those globals travel by name.
* **Lambdas, closures and local classes of importable modules**: dill with
  ``recurse=False``, whose globals become that module's namespace, by
  reference.
* **Whole objects** that the C pickler rejected: dill, with main-module
  definitions inside them handled as above.

``recurse=True`` (set on a ``Serializer``) restores dill's own behaviour:
each function travels with a private copy of the globals it uses.
"""

from __future__ import annotations

import copyreg
import importlib
import io
import sys
import types
import warnings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

MAIN_MODULE_NAMES = ("__main__", "__mp_main__")

import dill  # noqa: E402  (this whole module exists to be imported lazily)

from ._running_frames import REFUSE_RUNNING_FRAMES, refuse_running_frame  # noqa: E402


def is_main_definition(obj: Any) -> bool:
    """A function or class defined in the main module (directly or nested)."""
    return isinstance(obj, (types.FunctionType, type)) and getattr(obj, "__module__", None) in MAIN_MODULE_NAMES


class ModuleRef:
    """A module, sent by name among a definition's globals."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self) -> tuple:
        return ModuleRef, (self.name,)


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _methods_of(cls: type) -> list[Any]:
    found: list[Any] = []
    for value in vars(cls).values():
        if isinstance(value, property):
            found.extend(f for f in (value.fget, value.fset, value.fdel) if f is not None)
        else:
            function = getattr(value, "__func__", value)  # staticmethod, classmethod
            if isinstance(function, types.FunctionType):
                found.append(function)
    found.extend(base for base in cls.__bases__ if is_main_definition(base))
    return found


def globals_used(root: Any) -> dict[str, Any]:
    """The main-module globals that ``root`` needs, following the main definitions it uses."""
    carried: dict[str, Any] = {}
    seen: set[int] = set()
    work = [root]
    while work:
        item = work.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, type):
            work.extend(_methods_of(item))
            continue
        if not isinstance(item, types.FunctionType):
            continue
        namespace = item.__globals__
        if namespace.get("__name__") not in MAIN_MODULE_NAMES:
            continue
        for name in _code_names(item.__code__):
            if name in namespace and name not in carried:
                value = carried[name] = namespace[name]
                if is_main_definition(value):
                    work.append(value)
        for cell in item.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if is_main_definition(value):
                work.append(value)
    result = {}
    for name, value in carried.items():
        if isinstance(value, types.ModuleType):
            if value.__name__ in MAIN_MODULE_NAMES:
                continue
            value = ModuleRef(value.__name__)
        result[name] = value
    return result


def _pickler_options(serializer: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"recurse": bool(serializer.recurse)}
    if serializer.byref is not None:
        options["byref"] = serializer.byref
    return options


class DillPickler(dill.Pickler):
    """dill's pickler that hands main-module definitions to ``dumps_main``.

    With ``carry_main`` off it pickles them as dill does (inside a main
    payload, where their globals are already being carried).
    """

    carry_main = True
    _serializer: Any = None

    def save(self, obj: Any, save_persistent_id: bool = True) -> None:
        if REFUSE_RUNNING_FRAMES:  # dill on PyPy writes a payload that cannot load
            refuse_running_frame(obj)
        if (
            isinstance(obj, types.ModuleType)
            and obj.__name__ not in MAIN_MODULE_NAMES
            and sys.modules.get(obj.__name__) is obj
        ):
            # dill would copy a module that is not installed in site-packages
            # (a project's own) by value; an importable module goes by name.
            self.save_reduce(importlib.import_module, (obj.__name__,), obj=obj)
            return
        if self.carry_main and is_main_definition(obj) and not self._serializer.recurse and id(obj) not in self.memo:
            self.save_reduce(load_main, (dumps_main(obj, self.proto, self._serializer),), obj=obj)
            return
        super().save(obj, save_persistent_id)


def _make_pickler(
    buf: io.BytesIO, protocol: int, serializer: Any, extra_reducers: dict, carry_main: bool = True
) -> DillPickler:
    pickler = DillPickler(buf, protocol=protocol, **_pickler_options(serializer))
    pickler._serializer = serializer
    pickler.carry_main = carry_main
    if extra_reducers:
        table = dict(copyreg.dispatch_table)
        table.update(extra_reducers)
        pickler.dispatch_table = table
    return pickler


def dumps_main(obj: Any, protocol: int, serializer: Any, extra_reducers: Optional[dict] = None) -> bytes:
    """A main-module definition without its globals, plus the globals it uses."""
    buf = io.BytesIO()
    pickler = _make_pickler(buf, protocol, serializer, extra_reducers or {}, carry_main=False)
    with warnings.catch_warnings():
        # dill warns while it tries what it cannot do; the caller turns a
        # failure into a clear error (or into pickling by name) anyway.
        warnings.simplefilter("ignore", dill.PicklingWarning)
        pickler.dump((obj, globals_used(obj)))
    return buf.getvalue()


def dumps_value(obj: Any, protocol: int, serializer: Any, extra_reducers: Optional[dict] = None) -> bytes:
    """Any object, through dill (main-module definitions inside it carried as above)."""
    buf = io.BytesIO()
    pickler = _make_pickler(buf, protocol, serializer, extra_reducers or {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dill.PicklingWarning)
        pickler.dump(obj)
    return buf.getvalue()


def _unpickler(payload: bytes) -> Any:
    unpickler = dill.Unpickler(io.BytesIO(payload))
    # dill resolves "the main module's namespace" to the main module it saw
    # when it was imported; a spawned child replaces __main__ after that.
    unpickler._main = sys.modules["__main__"]
    return unpickler


def load_value(payload: bytes) -> Any:
    """Rebuild an object serialized by ``dumps_value`` (or plain ``dill.dumps``)."""
    return _unpickler(payload).load()


def load_main(payload: bytes) -> Any:
    """Rebuild a main-module definition; give ``__main__`` the globals it lacks."""
    obj, carried = _unpickler(payload).load()
    namespace = sys.modules["__main__"].__dict__
    for name, value in carried.items():
        if name not in namespace:
            namespace[name] = importlib.import_module(value.name) if isinstance(value, ModuleRef) else value
    return obj

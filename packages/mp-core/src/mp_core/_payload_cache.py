"""Reuse a main-module function's by-value serialization while nothing it carries can have changed.

A lambda or a ``__main__`` function travels by value: its code, and the
globals it uses, serialized by dill's pure-Python pickler (about 100 us
for a one-line lambda).  Sent once per ``map`` that is nothing; sent with
every ``apply_async``/``submit`` of a loop, it is most of the call's cost.

The payload of such a function is kept, weakly keyed by the function, with
a *fingerprint* of everything it was made from: the code object, names,
defaults, closure cells and the globals the code names (following the
``__main__`` functions it uses).  It is reused only when every one of those
is the same as before and none can change in place: numbers, strings,
bytes, ``None``, tuples and frozensets of such (compared by value), and
modules and functions or classes that travel by reference (defined in an
importable module; compared by identity).  A function that carries anything else (a list, a dict, an
instance, a ``__main__`` class, a function attribute) is serialized anew
each time, so a mutated global is never sent stale.  The fingerprinted
objects are kept alive with the entry, so that their ids cannot be reused
by other objects while it exists.
"""

from __future__ import annotations

import threading
import types

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    import weakref
    from typing import Any, Callable, Optional

__all__ = ["cached_payload"]

MAIN_MODULE_NAMES = ("__main__", "__mp_main__")
_ATOMS = frozenset({int, float, complex, str, bytes, bool, type(None), type(Ellipsis), range})
#: A tuple or frozenset longer than this is not examined (the payload is made anew).
_MAX_ITEMS = 64
#: How deep to follow main-module functions that a function uses.
_MAX_DEPTH = 8

# Made at the first payload (``_table``): weakref costs ``import multiprocess`` time.
_entries: Optional[weakref.WeakKeyDictionary[Any, tuple[Any, tuple, list, Any]]] = None
_lock = threading.Lock()


def _table() -> weakref.WeakKeyDictionary[Any, tuple[Any, tuple, list, Any]]:
    global _entries
    if _entries is None:
        import weakref

        _entries = weakref.WeakKeyDictionary()
    return _entries


class _Unstable(Exception):
    """The function carries something that may change in place: no reuse."""


def _by_reference(value: Any) -> bool:
    return getattr(value, "__module__", None) not in MAIN_MODULE_NAMES and "<locals>" not in getattr(
        value, "__qualname__", "<locals>"
    )


def _value_token(value: Any, keep: list, depth: int) -> Any:
    """What identifies ``value`` as long as it is kept alive; raises ``_Unstable`` for a value that may change."""
    kind = type(value)
    if kind in _ATOMS:
        # By value (equal atoms serialize alike), so that an interpreter that
        # hands out a new object for the same value (PyPy) still matches;
        # floats by their exact bits (0.0 == -0.0, and nan != nan).
        return (kind, value.hex() if kind is float else repr(value) if kind is complex else value)
    if kind is types.ModuleType or kind is types.BuiltinFunctionType:
        keep.append(value)
        return id(value)
    if kind is tuple or kind is frozenset:
        # By contents: immutable, and PyPy builds a new tuple for each
        # ``__defaults__`` it is asked for.
        if len(value) > _MAX_ITEMS:
            raise _Unstable
        items = sorted(value, key=repr) if kind is frozenset else value
        return (kind, tuple(_value_token(item, keep, depth) for item in items))
    if kind is types.FunctionType:
        if _by_reference(value):
            keep.append(value)
            return id(value)
        return _function_token(value, keep, depth + 1)
    if isinstance(value, type) and _by_reference(value):
        keep.append(value)
        return id(value)
    raise _Unstable


def _code_names(code: types.CodeType) -> list[str]:
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.extend(_code_names(const))
    return names


def _function_token(function: Any, keep: list, depth: int) -> tuple:
    if depth > _MAX_DEPTH or function.__dict__ or function.__kwdefaults__:
        raise _Unstable
    if depth:
        keep.append(function)  # (not the cached function itself: the cache must not keep it alive)
    code = function.__code__
    keep.append(code)
    parts: list[Any] = [id(function), id(code), function.__name__, function.__qualname__, function.__module__]
    parts.append(None if function.__defaults__ is None else _value_token(function.__defaults__, keep, depth))
    for cell in function.__closure__ or ():
        try:
            contents = cell.cell_contents
        except ValueError:  # an empty cell
            parts.append(None)
            continue
        if contents is function:
            parts.append("self")
            continue
        parts.append(_value_token(contents, keep, depth))
    namespace = function.__globals__
    for name in sorted(set(_code_names(code))):
        if name in namespace:
            value = namespace[name]
            parts.append((name, "self" if value is function else _value_token(value, keep, depth)))
        else:
            parts.append((name, None))  # a builtin, or not defined (yet): its absence is part of the print
    return tuple(parts)


def cached_payload(function: Any, settings: Any, make: Callable[[], Any]) -> Any:
    """``make()``'s result for ``function`` with ``settings`` (hashable), reused while the function is unchanged."""
    keep: list[Any] = []
    try:
        token: Optional[tuple] = _function_token(function, keep, 0)
    except _Unstable:
        token = None
    except Exception:  # an odd object in the globals (a failing __eq__...): no reuse
        token = None
    if token is None:
        return make()
    with _lock:
        entry = _table().get(function)
    if entry is not None and entry[0] == settings and entry[1] == token:
        return entry[3]
    payload = make()
    with _lock:
        _table()[function] = (settings, token, keep, payload)
    return payload

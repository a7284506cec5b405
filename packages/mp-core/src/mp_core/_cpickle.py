"""The pickler and unpickler this library uses, without the ``pickle`` module's import.

On CPython, ``pickle.Pickler``, ``pickle.loads`` and the rest are the C
accelerator's (``_pickle``); the ``pickle`` module around them imports
``re`` (and with it ``enum``) for its pure-Python fallback, several
milliseconds that ``import multiprocess`` and every spawned child would pay
for nothing.  These are the same objects, taken from ``_pickle`` itself.
PyPy has no ``_pickle``: there they are ``pickle``'s own.

``C_PICKLER`` says which one this is: the two differ in what they hand to
``reducer_override`` (the C one never hands it plain containers and
atoms) and in how they write buffers.
"""

from __future__ import annotations

try:
    from _pickle import (
        PickleBuffer,
        PickleError,
        Pickler,
        PicklingError,
        Unpickler,
        UnpicklingError,
        dump,
        dumps,
        load,
        loads,
    )
except ImportError:  # pragma: no cover - PyPy: no C accelerator
    from pickle import (
        PickleBuffer,
        PickleError,
        Pickler,
        PicklingError,
        Unpickler,
        UnpicklingError,
        dump,
        dumps,
        load,
        loads,
    )

    C_PICKLER = False
else:
    C_PICKLER = True

#: ``pickle.HIGHEST_PROTOCOL`` on every interpreter this library supports (3.8 and later).
HIGHEST_PROTOCOL = 5

__all__ = [
    "C_PICKLER",
    "HIGHEST_PROTOCOL",
    "PickleBuffer",
    "PickleError",
    "Pickler",
    "PicklingError",
    "Unpickler",
    "UnpicklingError",
    "dump",
    "dumps",
    "load",
    "loads",
]

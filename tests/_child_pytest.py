"""A light ``pytest`` for the child processes of a test session, which import test modules but run no test.

A child started by spawn or by the fork server runs a target that lives in
a test module, so it imports that module, and the module imports
``pytest``: 150 ms on CPython (about 300 ms on PyPy) in every such child, a large
part of the suite's time.  What a test module needs from ``pytest`` while
it is imported is the decorators (``pytest.mark.*``, ``pytest.fixture``)
and ``pytest.importorskip``; none of them has work to do in a child, which
collects nothing.  So a child of the session (``ENV`` is set by
``tests/conftest.py``) gets this stand-in as ``pytest``; anything else it
is asked for (``pytest.raises`` in a target, say) loads the real
``pytest`` and comes from there.
"""

from __future__ import annotations

import sys

# Nothing else is imported: a child's imports are checked by some tests
# (tests/pool/test_startup.py), and typing, importlib or types must not be
# among them because of this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_ModuleType = type(sys)
_FunctionType = type(lambda: None)

#: Set by the session (tests/conftest.py) for its children.
ENV = "MP_TESTS_LIGHT_PYTEST"


class _Decorator:
    """``pytest.mark.<name>`` and ``pytest.fixture`` in a child: decorators that leave what they decorate as it is."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs and isinstance(args[0], (_FunctionType, type)):
            return args[0]  # used bare: @pytest.mark.slow, @pytest.fixture
        return self  # given arguments first: @pytest.mark.parametrize(...), @pytest.fixture(params=...)


class _Marks:
    def __getattr__(self, name: str) -> _Decorator:
        return _Decorator()


def _importorskip(modname: str, *args: Any, **kwargs: Any) -> Any:
    # The session imported it before starting this child, or skipped the module.
    __import__(modname)
    return sys.modules[modname]


def _real_pytest() -> Any:
    stand_in = sys.modules.pop("pytest")
    try:
        __import__("pytest")
        return sys.modules["pytest"]
    except BaseException:
        sys.modules["pytest"] = stand_in
        raise


def _module() -> Any:
    module: Any = _ModuleType("pytest", __doc__)
    module.mark = _Marks()
    module.fixture = _Decorator()
    module.importorskip = _importorskip

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):  # probes (hasattr(module, "__path__"), ...) find a module without a file
            raise AttributeError(f"the light pytest has no attribute {name!r}")
        real = sys.modules.get("pytest")
        return getattr(real if real is not None and real is not module else _real_pytest(), name)

    module.__getattr__ = __getattr__
    return module


def install() -> None:
    """Make ``import pytest`` give the stand-in, unless the real one is loaded already."""
    if "pytest" not in sys.modules:
        sys.modules["pytest"] = _module()

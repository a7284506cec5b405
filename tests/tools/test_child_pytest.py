"""The light ``pytest`` of the session's children (tests/_child_pytest.py).

Imported by a test module in a child, it decorates; asked for more, the
real ``pytest`` answers.
"""

from __future__ import annotations

import sys

import pytest

from .. import _child_pytest

pytestmark = pytest.mark.timeout(120)


@pytest.mark.slow
@pytest.mark.parametrize("x", [1, 2])
def marked(x: int = 0) -> str:
    return "marked"


def plain() -> None:
    pass


def what_the_child_sees(conn) -> None:
    module = sys.modules["pytest"]
    seen = {
        "light": "__file__" not in vars(module),  # (not getattr: the light one would load the real one for it)
        "marked": marked(),
        "importorskip": pytest.importorskip("colorsys").__name__,
    }
    if seen["light"]:  # (the real decorators wrap or annotate; the light ones change nothing)
        seen["decorators"] = [
            pytest.fixture(plain) is plain,
            pytest.fixture(scope="module")(plain) is plain,
            pytest.mark.timeout(10)(plain) is plain,
            pytest.mark.skipif(True, reason="never")(plain) is plain,
        ]
    with pytest.raises(ZeroDivisionError):  # not the light one's: the real pytest is loaded for it
        divmod(1, 0)
    seen["raises"] = "ok"
    seen["real_loaded_after"] = "__file__" in vars(sys.modules["pytest"])
    conn.send(seen)


def test_a_child_imports_the_light_pytest_and_gets_the_real_one_when_it_needs_more(ctx, start, start_method):
    parent_end, child_end = ctx.Pipe(duplex=False)
    proc = start(what_the_child_sees, child_end)
    child_end.close()
    assert parent_end.poll(60), "the child sent nothing"
    seen = parent_end.recv()
    proc.join(60)
    assert proc.exitcode == 0
    # A forked child is a copy of the session: it has the real pytest from the start.
    light = start_method != "fork"
    expected = {
        "light": light,
        "marked": "marked",
        "importorskip": "colorsys",
        "raises": "ok",
        "real_loaded_after": True,
    }
    if light:
        expected["decorators"] = [True, True, True, True]
    assert seen == expected


def test_the_session_has_the_real_pytest_and_tells_its_children():
    import os

    assert "__file__" in vars(sys.modules["pytest"])
    assert os.environ.get(_child_pytest.ENV) == "1"

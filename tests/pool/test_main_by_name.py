"""A fork pool sends a function of ``__main__`` that its workers already have by name (no dill).

Every worker of a fork pool is forked from the moment the pool was created
(the first ones directly, the others from its zygote), so a top-level
function of ``__main__`` defined before then and unchanged since is in each
of them: its FUNC frame names it, as the standard library does.  Anything
else still goes by value.  Each case runs as a program of its own, whose
``__main__`` is the script.
"""

from __future__ import annotations

import json

import pytest

from ..support import run_script

pytestmark = pytest.mark.timeout(120)

PROGRAM = """
import json, sys
import multiprocess as mp

def square(x):
    return x * x

def scaled(x, factor=2):
    return x * factor

def shout(word):
    return word.upper()

if __name__ == "__main__":
    method = sys.argv[1]
    out = {{}}
    with mp.get_context(method).Pool(2, maxtasksperchild={maxtasks}) as pool:
        out["square"] = pool.map(square, range(6))
        out["dill_after_known"] = "dill" in sys.modules
        # Replacements (maxtasksperchild) come from the zygote: they have it too.
        out["square_again"] = pool.map(square, range(6), chunksize=1)
        # Changed in place since the fork: not sent by name from the
        # snapshot, but the receiver's own copy defined at the same place
        # still wins, as it always has (reduction._load_main_object).
        scaled.__defaults__ = (10,)
        out["scaled"] = pool.map(scaled, range(3))

        def shout(word):  # a new function under an old name: by value
            return word.lower() + "!"

        globals()["shout"] = shout
        out["shout"] = pool.map(shout, ["A", "B"])

        def later(x):  # defined after the pool: by value
            return -x

        globals()["later"] = later
        out["later"] = pool.map(later, range(3))
        pool.close()
        pool.join()
    print(json.dumps(out))
"""


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
@pytest.mark.parametrize("maxtasks", [None, 1])
def test_functions_known_to_the_workers_go_by_name_and_changed_ones_by_value(tmp_path, method, maxtasks):
    done = run_script(tmp_path / "program.py", PROGRAM.format(maxtasks=maxtasks), method)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["square"] == out["square_again"] == [0, 1, 4, 9, 16, 25]
    assert out["scaled"] == [0, 2, 4]
    assert out["shout"] == ["a!", "b!"]
    assert out["later"] == [0, -1, -2]
    if method == "fork":
        # The first map of a known function needed no dill in the parent.
        assert out["dill_after_known"] is False

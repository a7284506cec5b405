"""``multiprocess.dask`` without mp-dask installed: an ImportError that says what to install (every interpreter)."""

from __future__ import annotations

import pytest

from ..support import run_python

pytestmark = pytest.mark.timeout(60)


def test_import_multiprocess_dask_without_mp_dask_names_the_distribution():
    # Blocked here, as it is absent before CPython 3.10: the same ImportError.
    result = run_python(
        """
        import sys

        class Absent:
            def find_spec(self, name, path=None, target=None):
                if name == "mp_dask":
                    raise ModuleNotFoundError("No module named 'mp_dask'", name="mp_dask")

        sys.meta_path.insert(0, Absent())
        import multiprocess
        for attempt in ("import multiprocess.dask", "from multiprocess import dask", "multiprocess.dask"):
            try:
                exec(attempt)
            except ImportError as exc:
                print(type(exc).__name__, exc)
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        assert line.startswith("ImportError multiprocess.dask is provided by the 'mp-dask' distribution")
        assert line.endswith("pip install mp-dask")


def test_importing_mp_dask_leaves_exception_pickling_as_it_was():
    # distributed's import makes tblib pickle every exception class, and tblib rebuilds
    # SystemExit, StopIteration, ImportError without their state: mp_dask undoes that.
    pytest.importorskip("mp_dask", reason="mp-dask needs distributed, which needs CPython 3.10+ (not installed here)")
    result = run_python(
        """
        import pickle
        import multiprocess.dask
        import distributed
        for error in (SystemExit(4), StopIteration(5), ImportError("gone", name="mod")):
            back = pickle.loads(pickle.dumps(error))
            name = back.name if isinstance(back, ImportError) else None
            print(type(back).__name__, getattr(back, "code", None), getattr(back, "value", None), name)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "SystemExit 4 None None",
        "StopIteration None 5 None",
        "ImportError None None mod",
    ]

"""A spawned child runs the parent's main script again without runpy, as runpy.run_path would.

``mp_core._main_script.run_script`` must give the script the namespace and
the ``sys`` state that ``runpy.run_path`` documents, and decline (``None``)
what it does not handle, which ``spawn.import_main_path`` then hands to
runpy: a directory or a zip application with a ``__main__.py``.
"""

from __future__ import annotations

import json
import sys
import textwrap
import zipfile

import pytest

from mp_core._main_script import run_script

from ..support import run_python

SCRIPT = '''
"""The script's docstring."""
import sys

SEEN = {
    "argv0": sys.argv[0],
    "module_is_ours": sys.modules[__name__].__dict__ is globals(),
    "name": __name__,
    "file": __file__,
    "package": __package__,
    "spec": __spec__,
    "loader": __loader__,
    "cached": __cached__,
    "doc": __doc__,
}

def annotated(x: int) -> str:
    return str(x)

# Evaluated as the script says: not postponed by the caller's future import.
SEEN["annotations"] = {name: type(value).__name__ for name, value in annotated.__annotations__.items()}
'''


def write(tmp_path, text, name="program.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_the_namespace_and_sys_state_are_the_ones_runpy_gives(tmp_path):
    import runpy

    path = write(tmp_path, SCRIPT)
    argv0, had_module = sys.argv[0], "__mp_test_main__" in sys.modules
    ours = run_script(path, "__mp_test_main__")
    assert sys.argv[0] == argv0 and ("__mp_test_main__" in sys.modules) == had_module  # restored
    theirs = runpy.run_path(path, run_name="__mp_test_main__")
    assert ours is not None
    assert ours["SEEN"] == theirs["SEEN"]
    assert ours["SEEN"] == {
        "argv0": path,
        "module_is_ours": True,
        "name": "__mp_test_main__",
        "file": path,
        "package": "",
        "spec": None,
        "loader": None,
        "cached": None,
        "doc": "The script's docstring.",
        "annotations": {"x": "type", "return": "type"},  # classes, not postponed strings
    }
    assert sorted(k for k in ours if k != "__builtins__") == sorted(k for k in theirs if k != "__builtins__")
    assert ours["annotated"](3) == "3" and ours["annotated"].__module__ == "__mp_test_main__"


def test_a_dotted_run_name_gives_the_package_and_an_existing_module_is_put_back(tmp_path, monkeypatch):
    path = write(tmp_path, "import sys\nINSIDE = sys.modules['pkg.run'].__name__\n")
    placeholder = type(sys)("placeholder")
    monkeypatch.setitem(sys.modules, "pkg.run", placeholder)
    namespace = run_script(path, "pkg.run")
    assert namespace is not None
    assert namespace["__package__"] == "pkg" and namespace["INSIDE"] == "pkg.run"
    assert sys.modules["pkg.run"] is placeholder


def test_an_exception_in_the_script_propagates_and_sys_is_restored(tmp_path):
    path = write(tmp_path, "raise LookupError('from the script')\n")
    argv0 = sys.argv[0]
    with pytest.raises(LookupError, match="from the script"):
        run_script(path, "__mp_test_failing__")
    assert sys.argv[0] == argv0 and "__mp_test_failing__" not in sys.modules


def test_a_syntax_error_names_the_script(tmp_path):
    path = write(tmp_path, "def broken(:\n")
    with pytest.raises(SyntaxError) as excinfo:
        run_script(path, "__mp_test_broken__")
    assert excinfo.value.filename == path


def test_what_is_not_a_plain_source_file_is_declined(tmp_path):
    assert run_script(str(tmp_path), "__mp_x__") is None  # a directory
    assert run_script(str(tmp_path / "missing.py"), "__mp_x__") is None  # runpy says what is wrong
    archive = tmp_path / "app.py"  # a zip application, whatever its name
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("__main__.py", "X = 1\n")
    assert run_script(str(archive), "__mp_x__") is None
    compiled = tmp_path / "compiled.pyc"
    compiled.write_bytes(b"\x00\x01\x02\x03" + b"\x00" * 12)
    assert run_script(str(compiled), "__mp_x__") is None


def test_a_zip_application_and_a_directory_still_run_through_runpy(tmp_path):
    archive = tmp_path / "app.pyz"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("__main__.py", "FROM = 'zip'\n")
    folder = tmp_path / "appdir"
    folder.mkdir()
    (folder / "__main__.py").write_text("FROM = 'directory'\n")
    done = run_python(
        """
        import json, sys
        from mp_core import spawn

        found = []
        for path in sys.argv[1:]:
            spawn.import_main_path(path)
            found.append(sys.modules["__mp_main__"].FROM)
        print(json.dumps(found))
        """,
        str(archive),
        str(folder),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["zip", "directory"]

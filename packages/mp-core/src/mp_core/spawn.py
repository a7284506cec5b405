"""Starting a child in a fresh interpreter (spawn, and forkserver's children).

The parent sends two pickles down a pipe: *preparation data* (sys.path,
working directory, authkey, how to find the main module...) and the process
object.  The child applies the first (``prepare``), which may re-import the
parent's main module as ``__mp_main__``, then loads the second and runs it.

A main module that is not a file that can be imported again (``python -c``,
a program read from stdin, an interactive session, Jupyter) is *not*
re-imported: its functions and classes travel by value through the
serialization layer instead, with the globals they use.
"""

from __future__ import annotations

import os
import sys
import types

from . import _current_method, process, reduction, util
from ._executable import WINEXE, WINSERVICE, get_executable, set_executable
from ._spawning import set_spawning_popen

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, Optional

__all__ = [
    "_main",
    "freeze_support",
    "set_executable",
    "get_executable",
    "get_preparation_data",
    "get_command_line",
    "import_main_path",
]

# Set in a spawned child that is running a process object: the module that
# the parent's main module was before we replaced it.
old_main_modules: list[types.ModuleType] = []

_GUARD_MESSAGE = """
        An attempt has been made to start a new process before the
        current process has finished its bootstrapping phase.

        This probably means that you are not using fork to start your
        child processes and you have forgotten to use the proper idiom
        in the main module:

            if __name__ == '__main__':
                freeze_support()
                ...

        The "freeze_support()" line can be omitted if the program
        is not going to be frozen to produce an executable.

        To fix this issue, refer to the "Safe importing of main module"
        section in https://docs.python.org/3/library/multiprocessing.html
        """


def is_forking(argv: list[str]) -> bool:
    """Whether ``argv`` is the command line of a spawned child."""
    return len(argv) >= 2 and argv[1] == "--multiprocessing-fork"


def freeze_support() -> None:
    """In a frozen executable started as a child, run the child and exit."""
    if is_forking(sys.argv):
        kwds: dict[str, Any] = {}
        for arg in sys.argv[2:]:
            name, value = arg.split("=")
            kwds[name] = None if value == "None" else int(value)
        spawn_main(**kwds)
        sys.exit()


def get_command_line(**kwds: Any) -> list[str]:
    """The command line that starts a spawned child, ``kwds`` going to ``spawn_main``."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "--multiprocessing-fork"] + [f"{k}={v}" for k, v in kwds.items()]
    arguments = ", ".join(f"{k}={v!r}" for k, v in kwds.items())
    program = f"from mp_core.spawn import spawn_main; spawn_main({arguments})"
    exe = get_executable()
    assert exe is not None, "no Python executable to spawn children with"
    return [exe, *util._args_from_interpreter_flags(), "-c", program, "--multiprocessing-fork"]


def spawn_main(pipe_handle: int, parent_pid: Optional[int] = None, tracker_fd: Optional[int] = None) -> None:
    """Entry point of a spawned child: read what to run from ``pipe_handle`` and run it."""
    if not is_forking(sys.argv):
        raise RuntimeError("spawn_main() is only for the command line of a spawned child")
    if sys.platform == "win32":  # pragma: no cover
        import msvcrt

        from .reduction import steal_handle  # type: ignore[attr-defined]

        new_handle = steal_handle(parent_pid, pipe_handle)
        fd = msvcrt.open_osfhandle(new_handle, os.O_RDONLY)
        parent_sentinel = new_handle
    else:
        if tracker_fd is not None:
            from . import resource_tracker

            resource_tracker._resource_tracker._fd = tracker_fd
        fd = pipe_handle
        # Our copy of the pipe reports EOF once the parent has closed its end,
        # which it does only when it exits: the parent's liveness sentinel.
        parent_sentinel = os.dup(pipe_handle)
    exitcode = _main(fd, parent_sentinel)
    sys.exit(exitcode)


def _main(fd: int, parent_sentinel: Optional[int]) -> int:
    """Read the preparation data and the process object from ``fd``; run the process."""
    with os.fdopen(fd, "rb", closefd=True) as from_parent:
        process.current_process()._inheriting = True  # type: ignore[attr-defined]
        try:
            preparation_data = reduction.load(from_parent)
            prepare(preparation_data)
            self = reduction.load(from_parent)
        finally:
            del process.current_process()._inheriting  # type: ignore[attr-defined]
    return self._bootstrap(parent_sentinel)


def _check_not_importing_main() -> None:
    if getattr(process.current_process(), "_inheriting", False):
        raise RuntimeError(_GUARD_MESSAGE)


def get_preparation_data(name: str) -> dict[str, Any]:
    """What a fresh interpreter needs to become a child of this process."""
    _check_not_importing_main()
    data: dict[str, Any] = {
        "log_to_stderr": util._log_to_stderr,
        "authkey": bytes(process.current_process().authkey),
    }
    if util._logger is not None:
        data["log_level"] = util._logger.getEffectiveLevel()
    sys_path: list[Optional[str]] = [*sys.path]  # ORIGINAL_DIR is None when the cwd was gone
    try:
        sys_path[sys_path.index("")] = process.ORIGINAL_DIR
    except ValueError:
        pass
    data.update(
        name=name,
        sys_path=sys_path,
        sys_argv=sys.argv,
        orig_dir=process.ORIGINAL_DIR,
        dir=os.getcwd(),
        start_method=_current_method.get(),
        serializer=reduction.get_serializer(),
    )
    data.update(_main_module_origin(sys.modules["__main__"]))
    return data


def _dump_child(popen: Any, process_obj: Any, file: Any, preparation_data: Optional[dict[str, Any]] = None) -> None:
    """Write to ``file`` what a fresh child reads first (``_main``): the preparation data, then ``process_obj``.

    ``popen`` (the ``Popen`` starting the child) is marked as this thread's
    spawning one meanwhile: objects that may only travel to a new child
    (authkeys, semaphores, pipe ends) let themselves be pickled, and
    descriptors reach the child through ``popen.DupFd``.  The preparation
    data is gathered now unless given (Windows gathers it before creating
    the child).  Serialization errors propagate to the caller (``start()``).
    """
    if preparation_data is None:
        preparation_data = get_preparation_data(process_obj._name)
    set_spawning_popen(popen)
    try:
        reduction.dump(preparation_data, file)
        # Read once, by the child: large buffers in the target's arguments
        # (an array in shared memory) travel out of band, as through a Pipe.
        reduction.get_serializer().dump(process_obj, file, oob=True)
    finally:
        set_spawning_popen(None)


def _main_module_origin(main_module: types.ModuleType) -> dict[str, str]:
    """How a child can import the parent's main module again, if it can at all."""
    spec = getattr(main_module, "__spec__", None)
    module_name = getattr(spec, "name", None)
    if module_name is not None:
        return {"init_main_from_name": module_name}
    if WINEXE or WINSERVICE:  # pragma: no cover
        return {}
    main_path = getattr(main_module, "__file__", None)
    if not _is_reimportable_path(main_path):
        # -c, stdin, the REPL, notebooks: nothing on disk to run again.
        return {}
    if not os.path.isabs(main_path) and process.ORIGINAL_DIR is not None:  # type: ignore[arg-type]
        main_path = os.path.join(process.ORIGINAL_DIR, main_path)  # type: ignore[arg-type]
    return {"init_main_from_path": os.path.normpath(main_path)}  # type: ignore[arg-type]


def _is_reimportable_path(path: Optional[str]) -> bool:
    if not path:
        return False
    # "<stdin>", "<string>", "<ipython-input-...>": pseudo file names that must
    # never be executed, even if a file by that name happens to exist.
    if os.path.basename(path).startswith("<"):
        return False
    return os.path.exists(path)


def prepare(data: dict[str, Any]) -> None:
    """Make this fresh interpreter look like the parent described by ``data``."""
    if "name" in data:
        process.current_process().name = data["name"]
    if "authkey" in data:
        process.current_process().authkey = data["authkey"]
    if "log_to_stderr" in data and data["log_to_stderr"]:
        util.log_to_stderr()
    if "log_level" in data:
        util.get_logger().setLevel(data["log_level"])
    if "sys_path" in data:
        sys.path = data["sys_path"]
    if "sys_argv" in data:
        sys.argv = data["sys_argv"]
    if "dir" in data:
        os.chdir(data["dir"])
    if "orig_dir" in data:
        process.ORIGINAL_DIR = data["orig_dir"]
    if "start_method" in data:
        _current_method.force(data["start_method"])
    if "serializer" in data:
        reduction._default_serializer = data["serializer"]
    if "init_main_from_name" in data:
        _fixup_main_from_name(data["init_main_from_name"])
    elif "init_main_from_path" in data:
        _fixup_main_from_path(data["init_main_from_path"])


def _install_main(module: types.ModuleType) -> None:
    old_main_modules.append(sys.modules["__main__"])
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module


def _fixup_main_from_name(mod_name: str) -> None:
    current_main = sys.modules["__main__"]
    # A package's __main__ (python -m pkg) is the program itself: running it
    # again in the child would re-run the program, so it is left out.
    if mod_name == "__main__" or mod_name.endswith(".__main__"):
        return
    if getattr(getattr(current_main, "__spec__", None), "name", None) == mod_name:
        return
    import runpy  # (only here: on 3.9, 3.10 and PyPy it imports importlib.util, and so typing)

    main_module = types.ModuleType("__mp_main__")
    main_content = runpy.run_module(mod_name, run_name="__mp_main__", alter_sys=True)
    main_module.__dict__.update(main_content)
    _install_main(main_module)


def _fixup_main_from_path(main_path: str) -> None:
    current_main = sys.modules["__main__"]
    main_name = os.path.splitext(os.path.basename(main_path))[0]
    if main_name == "ipython":
        return
    if getattr(current_main, "__file__", None) == main_path:
        return
    import_main_path(main_path)


def import_main_path(main_path: str) -> None:
    """Import the script ``main_path`` as ``__mp_main__`` and make it ``__main__``."""
    from ._main_script import run_script

    main_content = run_script(main_path, "__mp_main__")
    if main_content is None:  # not a plain source file (a directory, a zip application, a .pyc): runpy's
        import runpy

        main_content = runpy.run_path(main_path, run_name="__mp_main__")
    main_module = types.ModuleType("__mp_main__")
    main_module.__dict__.update(main_content)
    _install_main(main_module)

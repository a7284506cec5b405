"""Sphinx configuration of the multiprocess manual.

Build (from the repository root, with ``requirements-docs.txt`` installed)::

    python -m sphinx -W --keep-going docs docs/_build/html            # the site
    python -m sphinx -W --keep-going -b doctest docs docs/_build/doctest  # run every sample

Nothing is fetched at build time: the standard library's inventory for
intersphinx is vendored in ``_inventories/`` (see the note on
``intersphinx_mapping``).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "_ext"))

import multiprocess  # noqa: E402

project = "multiprocess"
author = "The multiprocess developers"
copyright = "the multiprocess developers"  # noqa: A001
release = multiprocess.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "interactive_main",  # doctests run in a file-less __main__, as in a REPL
    "mp_docs",  # the "differs from multiprocessing" admonitions and the owner table
]

exclude_patterns = ["_build"]
templates_path: list[str] = []
html_static_path = ["_static"]
html_css_files = ["differs.css"]

html_theme = "furo"
html_title = f"multiprocess {release}"

# The standard library's docs.  Links point at docs.python.org; the inventory
# they are resolved from is the one Debian's python3.11-doc ships
# (/usr/share/doc/python3.11/html/objects.inv, Python 3.11.2), copied into
# _inventories/, so that the build needs no network.  Refresh it with
#   apt-get install python3.11-doc && cp /usr/share/doc/python3.11/html/objects.inv docs/_inventories/python-3.11.inv
# (or a newer python3.X-doc, and change the URL's version with it).
intersphinx_mapping = {
    "python": ("https://docs.python.org/3.11/", os.path.join("_inventories", "python-3.11.inv")),
}
intersphinx_timeout = 1

# Public names (``__all__``) that have no entry of their own in the reference,
# and why; every other one must be documented (mp_docs checks, -W fails).
_stdlib_futures = "concurrent.futures' own object, re-exported (the page says so)"
_threading = "threading's or queue's own object, re-exported (the page says so)"
mp_docs_not_documented = {
    **{
        f"multiprocess.context.{name}": "documented as multiprocess.<name> (the page says so)"
        for name in ("ProcessError", "BufferTooShort", "TimeoutError", "AuthenticationError", "Process")
    },
    "multiprocess.popen_spawn_win32.Popen": "defined on Windows only (the page says so)",
    "multiprocess.spawn._main": "the child's entry point, in __all__ as in the standard library",
    "multiprocess.queues.Empty": "queue.Empty, re-exported (the page says so)",
    "multiprocess.queues.Full": "queue.Full, re-exported (the page says so)",
    "multiprocess.dummy.Process": "DummyProcess, documented under that name",
    **{
        f"multiprocess.dummy.{name}": _threading
        for name in ("Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition", "Event", "Barrier")
    },
    "multiprocess.dummy.Queue": _threading,
    "multiprocess.dummy.JoinableQueue": _threading,
    **{
        f"multiprocess.futures.{name}": _stdlib_futures
        for name in (
            "ALL_COMPLETED",
            "FIRST_COMPLETED",
            "FIRST_EXCEPTION",
            "BrokenExecutor",
            "CancelledError",
            "Executor",
            "Future",
            "InvalidStateError",
            "ThreadPoolExecutor",
            "TimeoutError",
            "as_completed",
            "wait",
        )
    },
    "multiprocess.futures.TaskTimeoutError": "multiprocess.pool.TaskTimeoutError itself, documented there",
    **{
        f"multiprocess.dask.{name}": "multiprocess.pool's own, re-exported (the page says so)"
        for name in (
            "ApplyResult",
            "AsyncResult",
            "BrokenPoolError",
            "IMapIterator",
            "IMapUnorderedIterator",
            "MapResult",
            "MaybeEncodingError",
            "PoolTerminatedError",
            "RemoteTraceback",
            "TimeoutError",
            "WorkerLostError",
        )
    },
}

# Every cross-reference must resolve (-W makes a broken one an error), except
# the names that type hints carry and the manual does not document: type
# variables and private helpers, and classes it documents under another name.
nitpicky = True
nitpick_ignore_regex = [
    ("py:class", r"(.*\.)?_\w+"),  # _T, _S, mp_pool.pool._Pool: type variables and private names
    ("py:class", r"(\w+\.)*_\w+\.\w+"),  # _out_of_band.Carrier: a class of a private module
    ("py:class", r"mp_pool\._progress\.SupportsUpdate"),  # "any object with update(n)": described in the text
    ("py:class", r"Logger|Connection|mp_pool\.dummy\.connection\.Connection"),  # logging's; mp_core._connection's
    ("py:class", r"mp_core\.context\.(Fork|Spawn|ForkServer)Context"),  # what get_context() returns
    ("py:class", r"mp_managers\.sharedctypes\.SynchronizedBase"),  # the wrapper Value()/Array() return
    ("py:class", r"concurrent\.futures\._base\.Future"),  # concurrent.futures.Future, by its defining module
    ("py:class", r"distributed\.(client\.)?Client"),  # dask.distributed's: no inventory is shipped for it
]

autodoc_member_order = "bysource"
# A public attribute without a docstring (Process.name, .pid, .exitcode...) is
# still part of the API: list it.
autodoc_default_options = {"undoc-members": True}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True

# Every sample is executed by the doctest builder; ``testsetup`` blocks are
# per group, and each group runs in a fresh, file-less __main__ (interactive_main).
doctest_test_doctest_blocks = "default"
doctest_global_setup = """
import multiprocess
"""

# Literal blocks of docstrings are diagrams and tables, not Python.
highlight_language = "none"
pygments_style = "sphinx"
pygments_dark_style = "monokai"

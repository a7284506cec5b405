"""The interpreter matrix, one session per interpreter (``nox -s tests-3.12``), and the static checks (``nox -s lint``).

``nox -l`` lists the sessions; ``nox -s tests-pypy3 -- -x tests/core``
passes what follows ``--`` to pytest, ``nox -s lint -- mypy`` the names of
checks to ``tools/lint.py``.  Each session installs the project's own
requirements (every distribution, editable, and the test and lint tools)
into a fresh virtual environment of its interpreter (``.nox/``) and runs
the suite or the checks.  ``.ci/run`` runs the same sessions and checks.

Interpreters are looked up on ``PATH`` (``python3.12``, ``pypy3``) and,
where pyenv is installed, among its builds: a pyenv shim on ``PATH`` only
answers for the versions pyenv has selected, so the newest build of each
supported version is made visible to nox through ``.nox/interpreters/``
(a directory of links that only holds ``python3.X`` names).
"""

from __future__ import annotations

import os
import sys

import nox

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tools import interpreters  # noqa: E402

#: The interpreter of the lint session: the oldest CPython on which every lint
#: tool pinned in requirements-dev.txt installs (import-linter 2.17 needs 3.11).
LINT_PYTHON = "3.11"

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = False
# An interpreter that is not installed is reported and skipped, also on CI
# (where nox would otherwise make it an error): .ci/run reports it too.
nox.options.error_on_missing_interpreters = False

os.environ["PATH"] = (
    interpreters.expose(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".nox", "interpreters"))
    + os.pathsep
    + os.environ.get("PATH", "")
)


@nox.session(python=interpreters.SUPPORTED)
def tests(session: nox.Session) -> None:
    """The whole test suite on one interpreter (pytest arguments after ``--``)."""
    session.install("-r", "requirements-dev.txt")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=LINT_PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check, mypy and import-linter, as CI runs them (check names after ``--``)."""
    session.install("-r", "requirements-dev.txt")
    session.run("python", "-m", "tools.lint", *session.posargs)

"""The test suite: a package, so that a child under spawn or forkserver can import its modules."""

import os as _os

if _os.environ.get("MP_TESTS_LIGHT_PYTEST") == "1":  # a child of the session: see _child_pytest
    from ._child_pytest import install as _install

    _install()

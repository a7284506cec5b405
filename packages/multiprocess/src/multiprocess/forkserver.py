"""``multiprocess.forkserver`` is ``mp_core.forkserver`` (from the mp-core distribution), the same module object."""

import sys

import mp_core.forkserver

sys.modules[__name__] = mp_core.forkserver

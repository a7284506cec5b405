"""``multiprocess.popen_forkserver`` is ``mp_core.popen_forkserver`` (from the mp-core distribution), the same module object."""

import sys

import mp_core.popen_forkserver

sys.modules[__name__] = mp_core.popen_forkserver

"""``multiprocess.popen_fork`` is ``mp_core.popen_fork`` (from the mp-core distribution), the same module object."""

import sys

import mp_core.popen_fork

sys.modules[__name__] = mp_core.popen_fork

"""``multiprocess.popen_spawn_win32`` is ``mp_core.popen_spawn_win32`` (from the mp-core distribution), the same module object."""

import sys

import mp_core.popen_spawn_win32

sys.modules[__name__] = mp_core.popen_spawn_win32

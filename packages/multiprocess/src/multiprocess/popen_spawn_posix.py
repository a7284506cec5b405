"""``multiprocess.popen_spawn_posix`` is ``mp_core.popen_spawn_posix`` (from the mp-core distribution), the same module object."""

import sys

import mp_core.popen_spawn_posix

sys.modules[__name__] = mp_core.popen_spawn_posix

"""``multiprocess.spawn`` is ``mp_core.spawn`` (from the mp-core distribution), the same module object."""

import sys

import mp_core.spawn

sys.modules[__name__] = mp_core.spawn

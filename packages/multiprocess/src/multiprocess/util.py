"""``multiprocess.util`` is ``mp_core.util`` (from the mp-core distribution), the same module object."""

import sys

import mp_core.util

sys.modules[__name__] = mp_core.util

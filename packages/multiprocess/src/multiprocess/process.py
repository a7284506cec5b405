"""``multiprocess.process`` is ``mp_core.process`` (from the mp-core distribution), the same module object."""

import sys

import mp_core.process

sys.modules[__name__] = mp_core.process

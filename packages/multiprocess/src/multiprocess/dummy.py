"""``multiprocess.dummy`` is ``mp_pool.dummy`` (from the mp-pool distribution), the same module object."""

import sys

import mp_pool.dummy

sys.modules[__name__] = mp_pool.dummy

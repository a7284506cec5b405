"""``multiprocess.pool`` is ``mp_pool.pool`` (from the mp-pool distribution), the same module object."""

import sys

import mp_pool.pool

sys.modules[__name__] = mp_pool.pool

"""``multiprocess.synchronize`` is ``mp_sync.synchronize`` (from the mp-sync distribution), the same module object."""

import sys

import mp_sync.synchronize

sys.modules[__name__] = mp_sync.synchronize

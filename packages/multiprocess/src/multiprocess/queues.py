"""``multiprocess.queues`` is ``mp_sync.queues`` (from the mp-sync distribution), the same module object."""

import sys

import mp_sync.queues

sys.modules[__name__] = mp_sync.queues

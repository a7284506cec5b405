"""``multiprocess.shared_memory`` is ``mp_managers.shared_memory`` (from the mp-managers distribution), the same module object."""

import sys

import mp_managers.shared_memory

sys.modules[__name__] = mp_managers.shared_memory

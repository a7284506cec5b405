"""``multiprocess.heap`` is ``mp_managers.heap`` (from the mp-managers distribution), the same module object."""

import sys

import mp_managers.heap

sys.modules[__name__] = mp_managers.heap

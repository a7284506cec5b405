"""``multiprocess.sharedctypes`` is ``mp_managers.sharedctypes`` (from the mp-managers distribution), the same module object."""

import sys

import mp_managers.sharedctypes

sys.modules[__name__] = mp_managers.sharedctypes

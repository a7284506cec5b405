"""``multiprocess.managers`` is ``mp_managers.managers`` (from the mp-managers distribution), the same module object."""

import sys

import mp_managers.managers

sys.modules[__name__] = mp_managers.managers

"""``multiprocess.resource_tracker`` is ``mp_core.resource_tracker`` (from the mp-core distribution), the same module object."""

import sys

import mp_core.resource_tracker

sys.modules[__name__] = mp_core.resource_tracker

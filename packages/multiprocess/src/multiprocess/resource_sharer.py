"""``multiprocess.resource_sharer`` is ``mp_core.resource_sharer`` (from the mp-core distribution), the same module object."""

import sys

import mp_core.resource_sharer

sys.modules[__name__] = mp_core.resource_sharer

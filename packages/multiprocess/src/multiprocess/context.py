"""``multiprocess.context`` is ``mp_core.context`` (from the mp-core distribution), the same module object."""

import sys

import mp_core.context

sys.modules[__name__] = mp_core.context

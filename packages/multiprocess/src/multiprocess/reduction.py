"""``multiprocess.reduction`` is ``mp_core.reduction`` (from the mp-core distribution), the same module object."""

import sys

import mp_core.reduction

sys.modules[__name__] = mp_core.reduction

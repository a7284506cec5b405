"""``multiprocess.connection`` is ``mp_core.connection`` (from the mp-core distribution), the same module object."""

import sys

import mp_core.connection

sys.modules[__name__] = mp_core.connection

"""mp_sync: process-shared synchronization primitives and queues for multiprocess."""

from .__about__ import __version__

__all__ = ["__version__"]

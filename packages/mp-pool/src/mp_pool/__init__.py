"""mp_pool: process and thread pools for multiprocess."""

from .__about__ import __version__

__all__ = ["__version__"]

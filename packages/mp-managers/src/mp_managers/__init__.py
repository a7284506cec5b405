"""mp_managers: managers, proxies and shared memory for multiprocess."""

from .__about__ import __version__

__all__ = ["__version__"]

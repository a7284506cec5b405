"""Version of the multiprocess distribution (read by hatchling and tools/versions.py)."""

__all__ = ["__version__"]

__version__ = "0.71.0"

"""Version of the multiprocess distribution (read by hatchling and tools/versions.py)."""

__version__ = "0.71.0"

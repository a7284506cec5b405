"""Version of the mp-dask distribution (read by hatchling and tools/versions.py)."""

__version__ = "0.1.0"

"""The standard streams around a child's life: an empty stdin at its start, a flush at its end.

A leaf (``os`` and ``sys`` only): the process bootstrap, the fork server and
``util`` (which re-exports these under the stdlib's names ``_close_stdin``
and ``_flush_std_streams``) all use them.
"""

from __future__ import annotations

import os
import sys

__all__ = ["close_stdin", "flush_std_streams"]


def close_stdin() -> None:
    """Give a new child an empty stdin: reading the parent's would race it."""
    if sys.stdin is None:
        return
    try:
        sys.stdin.close()
    except (OSError, ValueError):
        pass
    try:
        fd = os.open(os.devnull, os.O_RDONLY)
        try:
            sys.stdin = open(fd, encoding="utf-8", closefd=False)
        except BaseException:
            os.close(fd)
            raise
    except (OSError, ValueError):
        pass


def flush_std_streams() -> None:
    """Flush stdout and stderr, ignoring streams that are gone or closed."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (AttributeError, ValueError):
            pass

"""Preloaded in a fork server by test_atexit: its exit handler must never run (the server's, not a child's)."""

import atexit
import os


def _server_handler():
    with open(os.environ["MP_ATEXIT_TEST_LOG"], "a") as f:
        f.write(f"fork server handler in {os.getpid()}\n")


if "MP_ATEXIT_TEST_LOG" in os.environ:
    atexit.register(_server_handler)

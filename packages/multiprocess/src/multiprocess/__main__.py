"""``python -m multiprocess``: a short demonstration of what dill adds.

Runs a lambda that uses a module and a helper from its surroundings in a
child started by *spawn* (a fresh interpreter, where the standard library
cannot send lambdas at all), under every start method available, and
prints what happened.
"""

from __future__ import annotations

import os
import sys

import multiprocess as mp

__all__ = ["main"]


def main() -> int:
    print(f"multiprocess {mp.__version__} on Python {sys.version.split()[0]}")
    print(f"default start method: {mp.get_start_method()}; available: {', '.join(mp.get_all_start_methods())}")
    failures = 0
    scale = 3
    for method in mp.get_all_start_methods():
        ctx = mp.get_context(method)
        receiver, sender = ctx.Pipe(duplex=False)
        # A lambda closing over a local and calling os.getpid: nothing
        # pickle could send to a spawned interpreter.
        child = ctx.Process(target=lambda conn: conn.send((os.getpid(), [scale * i for i in range(5)])), args=(sender,))
        child.start()
        sender.close()
        pid, values = receiver.recv()
        child.join()
        ok = child.exitcode == 0 and values == [0, 3, 6, 9, 12] and pid != os.getpid()
        failures += not ok
        print(
            f"  {method:<10} lambda ran in child pid {pid}: {values} (exit code {child.exitcode})"
            f"{'' if ok else '  <-- FAILED'}"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Pools: map, imap, asynchronous calls with callbacks, and timeouts.

Run: python examples/pools.py [start-method]
"""

import sys
import time

import multiprocess as mp


def slow_square(x):
    time.sleep(0.05)
    return x * x


def main(method: str) -> None:
    ctx = mp.get_context(method)
    with ctx.Pool(2) as pool:
        print("map:", pool.map(lambda x: x + 1, range(8)))
        print("imap:", list(pool.imap(slow_square, range(6), chunksize=2)))
        print("imap_unordered sum:", sum(pool.imap_unordered(slow_square, range(6))))
        print("starmap:", pool.starmap(lambda a, b: a * b, [(1, 2), (3, 4)]))

        done = []
        result = pool.apply_async(slow_square, (7,), callback=done.append)
        print("apply_async:", result.get(timeout=30), "callback saw", done)

        errors = []
        failing = pool.apply_async(lambda: 1 / 0, error_callback=lambda e: errors.append(type(e).__name__))
        try:
            failing.get(timeout=30)
        except ZeroDivisionError:
            print("error reached the caller; error_callback saw", errors)

        sleeper = pool.apply_async(time.sleep, (5,))
        try:
            sleeper.get(timeout=0.1)
        except mp.TimeoutError:
            print("timed out waiting, as asked")
    pool.join()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else mp.get_start_method())

"""From one machine to a cluster: the same Pool code on dask.distributed.

Run: python examples/dask_cluster.py                      # a LocalCluster the pool starts and owns
     python examples/dask_cluster.py tcp://host:8786      # a running scheduler (dask scheduler / dask worker)

Needs mp-dask (pip install multiprocess[dask]; CPython 3.10+, as distributed).
"""

import sys

# The one changed line: was `from multiprocess import Pool`.
from multiprocess.dask import Pool, WorkerLostError


def collatz_steps(n):
    steps = 0
    while n != 1:
        n = 3 * n + 1 if n % 2 else n // 2
        steps += 1
    return steps


def main(address=None):
    limit = 1000
    options = {"address": address} if address else {"processes": 2}
    with Pool(**options) as pool:
        steps = pool.map(collatz_steps, range(1, limit + 1))
        best = max(range(limit), key=steps.__getitem__) + 1
        print(f"map: longest Collatz chain below {limit + 1} starts at {best} ({steps[best - 1]} steps)")

        scale = 10  # a closure: travels to the workers with the lambda
        print("imap:", list(pool.imap(lambda x: x * scale, range(5))))
        print("starmap:", pool.starmap(lambda a, b: a**b, [(2, 10), (3, 4)]))

        seen = []
        result = pool.apply_async(sum, ([1, 2, 3],), callback=seen.append)
        print("apply_async:", result.get(timeout=60), "callback saw", seen)

        try:
            pool.apply(lambda: 1 / 0)
        except ZeroDivisionError as exc:
            print(
                "remote error arrived as", type(exc).__name__, "with the worker's traceback:", exc.__cause__ is not None
            )
        print("a dead worker would fail its chunk with", WorkerLostError.__name__, "and the pool would go on")


if __name__ == "__main__":  # dask starts its local workers by spawning: the guard is needed
    main(sys.argv[1] if len(sys.argv) > 1 else None)

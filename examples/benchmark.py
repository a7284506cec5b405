"""The same work with multiprocess and with the standard library: time and ratio.

Maps a CPU-bound function over a range with a pool of each library and
prints the wall times and their ratio.  (``tools/bench`` is the full,
careful benchmark; this is the five-second version.)

Run: python examples/benchmark.py [start-method] [n]
"""

import multiprocessing
import sys
import time

import multiprocess


def work(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def timed_map(library, method: str, n: int) -> float:
    ctx = library.get_context(method)
    with ctx.Pool(2) as pool:
        pool.map(work, [10] * 4)  # warm up the workers
        started = time.perf_counter()
        result = pool.map(work, [2000] * n)
        elapsed = time.perf_counter() - started
    pool.join()
    assert result == [work(2000)] * n
    return elapsed


def main(method: str, n: int) -> None:
    ours = timed_map(multiprocess, method, n)
    stdlib = timed_map(multiprocessing, method, n)
    print(f"{n} tasks, start method {method}")
    print(f"multiprocess:    {ours * 1000:8.1f} ms")
    print(f"multiprocessing: {stdlib * 1000:8.1f} ms")
    print(f"ratio (multiprocess / multiprocessing): {ours / stdlib:.2f}")


if __name__ == "__main__":
    main(
        sys.argv[1] if len(sys.argv) > 1 else multiprocess.get_start_method(),
        int(sys.argv[2]) if len(sys.argv) > 2 else 2000,
    )

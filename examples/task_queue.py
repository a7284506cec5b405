"""The worker / task-queue pattern: a JoinableQueue of tasks, a queue of results.

Run: python examples/task_queue.py [start-method]
"""

import sys

import multiprocess as mp


def worker(tasks, results):
    while True:
        task = tasks.get()
        try:
            if task is None:
                return
            func, args = task
            results.put((func.__name__, args, func(*args)))
        finally:
            tasks.task_done()


def add(a, b):
    return a + b


def mul(a, b):
    return a * b


def main(method: str) -> None:
    ctx = mp.get_context(method)
    tasks, results = ctx.JoinableQueue(), ctx.Queue()
    workers = [ctx.Process(target=worker, args=(tasks, results)) for _ in range(2)]
    for w in workers:
        w.start()
    jobs = [(add, (i, 7)) for i in range(5)] + [(mul, (i, 7)) for i in range(5)]
    for job in jobs:
        tasks.put(job)
    tasks.join()  # every task_done() has been called
    collected = sorted(results.get(timeout=30) for _ in jobs)
    for _ in workers:
        tasks.put(None)
    for w in workers:
        w.join()
    for name, args, value in collected:
        print(f"{name}{args} = {value}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else mp.get_start_method())

"""Processes and a queue: producers put lambdas' results, the parent collects them.

Run: python examples/process_queue.py [start-method]
"""

import sys

import multiprocess as mp


def produce(queue, worker_id, transform):
    for i in range(5):
        queue.put((worker_id, transform(i)))
    queue.put((worker_id, None))  # this producer is done


def main(method: str) -> None:
    ctx = mp.get_context(method)
    queue = ctx.Queue()
    power = 2
    # The transform is a lambda closing over a local: dill carries it to
    # each child, whatever the start method.
    workers = [ctx.Process(target=produce, args=(queue, n, lambda x: x**power)) for n in range(3)]
    for w in workers:
        w.start()
    results: dict[int, list[int]] = {n: [] for n in range(3)}
    running = len(workers)
    while running:
        worker_id, value = queue.get(timeout=30)
        if value is None:
            running -= 1
        else:
            results[worker_id].append(value)
    for w in workers:
        w.join()
    for worker_id, values in sorted(results.items()):
        print(f"worker {worker_id}: {values}")
    print("exit codes:", [w.exitcode for w in workers])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else mp.get_start_method())

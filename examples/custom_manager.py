"""A custom manager: a server process owns a Counter; processes use it through a proxy.

Run: python examples/custom_manager.py [start-method]
"""

import sys
import threading

import multiprocess as mp
from multiprocess.managers import BaseManager, BaseProxy


class Counter:
    # The server runs each client's calls in a thread of its own: a method
    # that reads and writes shared state takes a lock (without it, two
    # processes incrementing at once can lose an update).
    def __init__(self, start=0):
        self._value = start
        self._lock = threading.Lock()

    def increment(self, by=1):
        with self._lock:
            self._value += by
            return self._value

    def value(self):
        return self._value

    def reset(self):  # not exposed below: proxies cannot call it
        with self._lock:
            self._value = 0


class CounterProxy(BaseProxy):
    _exposed_ = ("increment", "value")

    def increment(self, by=1):
        return self._callmethod("increment", (by,))

    def value(self):
        return self._callmethod("value")


class CounterManager(BaseManager):
    pass


CounterManager.register("Counter", Counter, proxytype=CounterProxy)


def bump(counter, times):
    for _ in range(times):
        counter.increment()


def main(method: str) -> None:
    ctx = mp.get_context(method)
    with CounterManager(ctx=ctx) as manager:
        counter = manager.Counter(100)
        procs = [ctx.Process(target=bump, args=(counter, 50)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        print("counter value:", counter.value())
        try:
            counter._callmethod("reset")
        except Exception as exc:
            print("reset refused:", type(exc).__name__)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else mp.get_start_method())

"""Which cluster a pool runs on, and what the pool must shut down when it ends.

Three ways to reach one (``Pool(client=...)``, ``Pool(address=...)``, or
neither):

* ``client``: the caller's ``distributed.Client``; the pool closes nothing
  of it;
* ``address``: a scheduler already running (``"tcp://host:8786"``); the
  pool opens its own ``Client`` to it and closes that client, never the
  cluster;
* neither: a ``LocalCluster`` of ``processes`` worker processes (one
  thread each) on this machine, which the pool starts and owns.  Its
  scheduler runs in this process, its workers are children of this
  process started by their nannies, and they exit when this process dies,
  even by SIGKILL (dask's nanny children watch a pipe to their parent).

The owned cluster's scheduler fails a task at once when the worker running
it dies (``allowed_failures=0``): a task that kills its worker would
otherwise be handed to the next worker, and the next, before the caller
hears of it.  A scheduler the pool does not own keeps its own setting
(``distributed.scheduler.allowed-failures``, 3 by default).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional

from ._distributed import distributed

__all__ = ["Cluster"]


def _default_processes() -> int:
    count = getattr(os, "process_cpu_count", os.cpu_count)()
    return count or 1


class Cluster:
    """The client a pool submits through, and the cluster it owns (if any).

    Raises ``ValueError`` when both ``client`` and ``address`` are given,
    and what ``distributed.Client`` raises when the scheduler cannot be
    reached within ``connect_timeout`` seconds (``OSError``, whose
    ``TimeoutError`` subclass names the address).
    """

    def __init__(
        self,
        processes: Optional[int],
        address: Optional[str],
        client: Optional[distributed.Client],
        connect_timeout: Optional[float],
        cluster_options: Optional[Mapping[str, Any]],
    ) -> None:
        if client is not None and address is not None:
            raise ValueError("give the pool a client or a scheduler address, not both")
        if cluster_options and (client is not None or address is not None):
            raise ValueError("cluster_options only apply to the LocalCluster a pool starts itself")
        self.local: Optional[distributed.LocalCluster] = None
        timeout = {} if connect_timeout is None else {"timeout": connect_timeout}
        if client is not None:
            self.client = client
            self.owns_client = False
        elif address is not None:
            self.client = distributed.Client(address, set_as_default=False, **timeout)
            self.owns_client = True
        else:
            options: dict[str, Any] = {
                "n_workers": processes or _default_processes(),
                "threads_per_worker": 1,
                "processes": True,
                # A free port: a fixed one (dask's 8787) collides with the next cluster on the machine.
                "dashboard_address": ":0",
                "scheduler_kwargs": {"allowed_failures": 0},
            }
            options.update(cluster_options or {})
            self.local = distributed.LocalCluster(**options)
            try:
                self.client = distributed.Client(self.local, set_as_default=False, **timeout)
            except BaseException:
                self.local.close()
                raise
            self.owns_client = True

    @property
    def address(self) -> str:
        """The scheduler's address (``tcp://127.0.0.1:...``)."""
        return str(self.client.scheduler.address)

    def worker_threads(self) -> int:
        """How many tasks the cluster runs at once now (its workers' threads), at least 1."""
        return max(1, sum(self.client.nthreads().values()))

    def shutdown(self) -> None:
        """Close what the pool owns: its client, and its LocalCluster with every worker process."""
        try:
            if self.owns_client:
                self.client.close()
        finally:
            local, self.local = self.local, None
            if local is not None:
                local.close()

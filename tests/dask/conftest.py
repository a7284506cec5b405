"""A dask cluster shared by a test module, and the pools the tests run on it.

distributed installs on CPython 3.10+ only: each test module starts with
``pytest.importorskip`` so that elsewhere it is reported as skipped, with the
reason.  The cluster's worker processes are children of the test process
that live across the module's tests: they are registered as such with the
leak check (``support.KEPT_ALIVE``) while the cluster runs.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterator

import pytest

from ..support import KEPT_ALIVE

#: Why the dask tests skip where distributed is not installed.
NEEDS_DISTRIBUTED = "mp-dask needs distributed, whose current releases need CPython 3.10+ (not installed here)"

#: Passed to every LocalCluster of the tests: dask's logging of workers that
#: die (on purpose here) and of cluster start and stop is noise in the output.
QUIET = {"silence_logs": logging.CRITICAL}


@pytest.fixture(scope="session", autouse=True)
def dask_scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """dask's scratch space (its lock files, the workers' directories) in a temporary folder of the session.

    By default dask keeps it in ``/tmp/dask-scratch-space`` and leaves its
    lock files there; the variable reaches the programs the tests start (and
    their workers), the configuration this process, where dask is imported.
    """
    folder = str(tmp_path_factory.mktemp("dask-scratch"))
    previous = os.environ.get("DASK_TEMPORARY_DIRECTORY")
    os.environ["DASK_TEMPORARY_DIRECTORY"] = folder
    try:
        import dask

        with dask.config.set({"temporary-directory": folder}):
            yield
    except ImportError:  # no dask on this interpreter: its tests skip
        yield
    finally:
        if previous is None:
            os.environ.pop("DASK_TEMPORARY_DIRECTORY", None)
        else:
            os.environ["DASK_TEMPORARY_DIRECTORY"] = previous


@pytest.fixture(scope="module", autouse=True)
def quiet_dask() -> Iterator[None]:
    """dask's loggers in this process (the scheduler, the nannies, the clients) say only what is critical."""
    loggers = [logging.getLogger(name) for name in ("distributed", "dask")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A LocalCluster of 2 worker processes, one thread each, that fails a task at once when its worker dies."""
    distributed = pytest.importorskip("distributed", reason=NEEDS_DISTRIBUTED)
    local = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        scheduler_kwargs={"allowed_failures": 0},
        **QUIET,
    )

    def workers() -> set[int]:
        return {nanny.pid for nanny in list(local.workers.values()) if getattr(nanny, "pid", None)}

    KEPT_ALIVE.append(workers)
    try:
        yield local
    finally:
        local.close()
        KEPT_ALIVE.remove(workers)


@pytest.fixture(scope="module")
def client(cluster: Any) -> Iterator[Any]:
    """A client of the module's cluster (the caller's client: pools leave it open)."""
    distributed = pytest.importorskip("distributed", reason=NEEDS_DISTRIBUTED)
    with distributed.Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture
def pool(client: Any) -> Iterator[Any]:
    """An ``mp_dask.Pool`` on the module's cluster, terminated after the test."""
    import mp_dask

    p = mp_dask.Pool(client=client)
    try:
        yield p
    finally:
        p.terminate()
        p.join()

"""mp_dask.Pool has multiprocess.pool.Pool's API: the same methods, accepting every call theirs accepts.

As tests/compat/test_parity.py does against the standard library, with its
``compatible``: every public method of ``multiprocess.pool.Pool`` exists on
``mp_dask.Pool`` and accepts every way of calling it; what we leave out and
what we add are listed here with the reason.
"""

from __future__ import annotations

import inspect

import pytest

from ..compat.test_parity import class_attributes, compatible, extra_parameters
from .conftest import NEEDS_DISTRIBUTED

pytest.importorskip("mp_dask", reason=NEEDS_DISTRIBUTED)  # before distributed: see mp_dask._distributed

import mp_dask  # noqa: E402
import mp_pool.pool  # noqa: E402

#: Public attributes of multiprocess.pool.Pool that mp_dask.Pool does not have, and why.
LEFT_OUT = {
    "Process": "dask starts and replaces its worker processes itself: there is no process factory to override",
}

#: What mp_dask.Pool adds to multiprocess.pool.Pool ("method(parameter)" or "attribute"), and why.
ADDED = {
    "Pool(address)": "the scheduler to run on",
    "Pool(client)": "the distributed.Client to run on",
    "Pool(connect_timeout)": "how long reaching the scheduler may take",
    "Pool(cluster_options)": "more arguments of the LocalCluster the pool starts",
    "client": "the distributed.Client the pool submits through",
    "scheduler_address": "the address of that client's scheduler",
}


def test_every_public_attribute_of_the_local_pool_is_here():
    missing = class_attributes(mp_pool.pool.Pool) - class_attributes(mp_dask.Pool) - set(LEFT_OUT)
    assert not missing
    assert not set(LEFT_OUT) & class_attributes(mp_dask.Pool)


def test_every_attribute_we_add_is_listed():
    added = class_attributes(mp_dask.Pool) - class_attributes(mp_pool.pool.Pool)
    assert added == {name for name in ADDED if "(" not in name}


@pytest.mark.parametrize("name", sorted(class_attributes(mp_pool.pool.Pool) - set(LEFT_OUT)))
def test_methods_accept_every_call_the_local_pools_accept(name):
    theirs, ours = getattr(mp_pool.pool.Pool, name), getattr(mp_dask.Pool, name)
    if callable(theirs):
        assert compatible(theirs, ours) is None
        assert extra_parameters(theirs, ours) == [p for p in _added_parameters(name)]


def test_the_constructor_accepts_every_call_the_local_pools_accepts():
    assert compatible(mp_pool.pool.Pool, mp_dask.Pool) is None
    assert extra_parameters(mp_pool.pool.Pool, mp_dask.Pool) == _added_parameters("Pool")
    assert list(inspect.signature(mp_dask.Pool).parameters)[:5] == [
        "processes",
        "initializer",
        "initargs",
        "maxtasksperchild",
        "context",
    ]


def test_the_face_module_is_mp_dask():
    import multiprocess.dask
    import multiprocess.pool

    assert multiprocess.dask.Pool is mp_dask.Pool
    assert multiprocess.dask.WorkerLostError is multiprocess.pool.WorkerLostError
    assert multiprocess.dask.AsyncResult is multiprocess.pool.AsyncResult


def _added_parameters(method: str) -> list[str]:
    prefix = f"{method}("
    return [name[len(prefix) : -1] for name in ADDED if name.startswith(prefix)]

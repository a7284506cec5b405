"""The manager a fuzzer attacks: only cheap, non-blocking types, short handshake deadline.

Kept apart from the fuzzer (which imports hypothesis) so that a spawned
server process imports nothing more than it serves.
"""

from __future__ import annotations

from mp_managers.managers import (
    BaseManager,
    DictProxy,
    IteratorProxy,
    ListProxy,
    Namespace,
    NamespaceProxy,
    Server,
    Value,
    ValueProxy,
)

__all__ = ["FuzzedServer", "FuzzedManager", "HANDSHAKE_TIMEOUT"]

#: Seconds a peer has for the whole handshake: short, since stalled peers
#: cost the run that long each; long enough for the harness's own clients
#: on a loaded machine (0.5 s was not).
HANDSHAKE_TIMEOUT = 2.0


class FuzzedServer(Server):
    handshake_timeout = HANDSHAKE_TIMEOUT
    max_pending_handshakes = 16
    eviction_age = 1.0


class FuzzedManager(BaseManager):
    """Shares dicts, lists, namespaces and values: no type whose methods block or start processes."""

    _Server = FuzzedServer


FuzzedManager.register("dict", dict, DictProxy)
FuzzedManager.register("list", list, ListProxy)
FuzzedManager.register("Namespace", Namespace, NamespaceProxy)
FuzzedManager.register("Value", Value, ValueProxy)
FuzzedManager.register("Iterator", proxytype=IteratorProxy, create_method=False)

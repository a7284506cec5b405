"""The manager servers running in this process, by address.

A proxy unpickled in the process of the server that holds its referent
(a managed list stored in a managed dict, say) counts its reference
directly in that server instead of through a connection to itself; this
registry is how it finds the server.  It is its own module so that the
proxies (which look servers up) and the server (which registers itself)
do not import each other.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, Optional

    from ._server import Server

__all__ = ["local_server", "add", "discard"]

_servers: dict[Any, Server] = {}

if hasattr(os, "register_at_fork"):
    # A forked child (a pool worker of the server, say) serves nothing.
    os.register_at_fork(after_in_child=_servers.clear)


def local_server(address: Any) -> Optional[Server]:
    """The server running in this process at ``address``, if any."""
    return _servers.get(address)


def add(server: Server) -> None:
    """Record ``server`` as serving at its address in this process (from ``serve_forever``)."""
    _servers[server.address] = server


def discard(server: Server) -> None:
    """Forget ``server`` (once it has stopped); a later server at the same address stays."""
    if _servers.get(server.address) is server:
        del _servers[server.address]

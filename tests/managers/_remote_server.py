"""A manager server in a program of its own, for test_remote.

    python _remote_server.py AUTHKEY

Prints the TCP port it listens on (127.0.0.1), serves until a client asks
for ``shutdown``, then prints ``stopped``.
"""

from __future__ import annotations

import sys

from mp_managers.managers import SyncManager

if __name__ == "__main__":
    server = SyncManager(address=("127.0.0.1", 0), authkey=sys.argv[1].encode()).get_server()
    print(server.address[1], flush=True)
    server.serve_forever()
    print("stopped", flush=True)

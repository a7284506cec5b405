"""A small TCP server whose request handlers run in a process pool.

The server accepts connections on 127.0.0.1, reads one line per request,
hands the work to a pool, and answers with the result.  A client in this
same program sends a few requests and prints the answers.

Run: python examples/socket_server.py [start-method]
"""

import socket
import sys
import threading

import multiprocess as mp


def handle(line: str) -> str:
    words = line.split()
    return f"{len(words)} words, longest {max(words, key=len) if words else '-'}"


def serve(listener: socket.socket, pool, stop: threading.Event) -> None:
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            continue
        with conn, conn.makefile("rw") as stream:
            for line in stream:
                stream.write(pool.apply(handle, (line.strip(),)) + "\n")
                stream.flush()


def main(method: str) -> None:
    ctx = mp.get_context(method)
    with ctx.Pool(2) as pool, socket.create_server(("127.0.0.1", 0)) as listener:
        stop = threading.Event()
        server = threading.Thread(target=serve, args=(listener, pool, stop))
        server.start()
        try:
            with (
                socket.create_connection(listener.getsockname(), timeout=30) as client,
                client.makefile("rw") as stream,
            ):
                for request in ("hello multiprocess world", "a pool behind a socket", ""):
                    stream.write(request + "\n")
                    stream.flush()
                    print(f"{request!r} -> {stream.readline().strip()}")
        finally:
            stop.set()
            server.join()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else mp.get_start_method())

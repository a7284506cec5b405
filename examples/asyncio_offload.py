"""asyncio: a small HTTP server whose handlers offload CPU work to a process pool.

The handlers ``await pool.apply_async(...)`` (a lambda, sent with dill) and
stream results with ``async for`` over ``pool.imap_unordered(...)``; the
event loop keeps serving while the workers compute, and no thread waits
for a result.  The program starts the server on an ephemeral port of
127.0.0.1, sends it a few requests at once as its own client, prints the
answers and exits.

Run: python examples/asyncio_offload.py [start-method]
"""

import asyncio
import sys
from urllib.parse import parse_qs, urlsplit

import multiprocess as mp


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    divisor = 2
    while divisor * divisor <= n:
        if n % divisor == 0:
            return False
        divisor += 1
    return True


class BadRequest(Exception):
    pass


def integer(query: dict, name: str) -> int:
    try:
        return int(query[name][0])
    except (KeyError, ValueError):
        raise BadRequest(f"{name} must be an integer") from None


async def primes(pool, query: dict) -> str:
    below = integer(query, "below")
    # The whole count runs in a worker: the lambda closes over ``below``.
    count = await pool.apply_async(lambda: sum(1 for n in range(below) if is_prime(n)))
    return f"{count} primes below {below}"


async def squares(pool, query: dict) -> str:
    upto = integer(query, "upto")
    total = received = 0
    async for square in pool.imap_unordered(lambda x: x * x, range(upto + 1), chunksize=4):
        total += square
        received += 1
    return f"sum of {received} squares: {total}"


async def divide(pool, query: dict) -> str:
    by = integer(query, "by")
    return f"100 / {by} = {await pool.apply_async(lambda: 100 / by)}"


ROUTES = {"/primes": primes, "/squares": squares, "/divide": divide}


async def serve(pool, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request_line = (await reader.readline()).decode("latin-1")
    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
        pass  # headers: not needed here
    try:
        _method, target, _version = request_line.split()
        url = urlsplit(target)
        handler = ROUTES[url.path]
    except (ValueError, KeyError):
        status, body = "404 Not Found", "no such page"
    else:
        try:
            status, body = "200 OK", await handler(pool, parse_qs(url.query))
        except BadRequest as exc:
            status, body = "400 Bad Request", str(exc)
        except Exception as exc:  # the task's own error, raised by the await
            status, body = "500 Internal Server Error", f"{type(exc).__name__}: {exc}"
    payload = body.encode()
    writer.write(
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + payload
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def fetch(port: int, target: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = response.decode().partition("\r\n\r\n")
    status = head.split(" ", 2)[1]
    return f"GET {target} -> {status} {body}"


async def main(pool) -> None:
    server = await asyncio.start_server(lambda r, w: serve(pool, r, w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    targets = [
        "/primes?below=20000",
        "/primes?below=50000",
        "/squares?upto=100",
        "/divide?by=4",
        "/divide?by=0",
        "/primes?below=many",
        "/nowhere",
    ]
    try:
        # All at once: the loop accepts and answers while the workers compute.
        for line in await asyncio.gather(*(fetch(port, target) for target in targets)):
            print(line)
    finally:
        server.close()
        await server.wait_closed()


if __name__ == "__main__":
    method = sys.argv[1] if len(sys.argv) > 1 else None
    with mp.get_context(method).Pool(2) as pool:
        asyncio.run(main(pool))
    print("server stopped")

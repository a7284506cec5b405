"""Several threads waiting for one child: each of them sees its real exit code."""

from __future__ import annotations

import os
import threading

import pytest

pytestmark = pytest.mark.timeout(120)


def exit_when_told(conn, code):
    conn.recv_bytes()
    os._exit(code)


# The test's own joining threads are alive when it starts the next child.
@pytest.mark.filterwarnings("ignore:This process .*is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize("rounds", [12])
def test_every_joining_thread_sees_the_exit_code(ctx, rounds):
    for _ in range(rounds):
        reader, writer = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=exit_when_told, args=(reader, 7), daemon=True)
        proc.start()
        reader.close()
        seen = []
        ready = threading.Barrier(4)

        def join_and_look(timeout, proc=proc, seen=seen, ready=ready):
            ready.wait(30)
            proc.join(timeout)
            seen.append((proc.exitcode, proc.is_alive()))

        # Blocking joins and joins with a timeout race to collect the status.
        threads = [threading.Thread(target=join_and_look, args=(t,)) for t in (None, 60, None)]
        for thread in threads:
            thread.start()
        ready.wait(30)
        writer.send_bytes(b"go")
        for thread in threads:
            thread.join(60)
        writer.close()
        assert seen == [(7, False)] * 3
        proc.close()

"""How a process that forks children for another reports them: a pid, then an exit code, per child.

The fork server and a pool's zygote (``_zygote``) fork children on behalf
of the process that asked, and reap them.  Each child has a socket of its
own between them and the asker: the child's pid goes down it once forked,
its exit code once reaped, then the socket closes; the asker's end is the
child's ``sentinel`` (``popen_forkserver.Popen.poll`` reads it).  This
module is that wire, small enough to import in a process that must start
fast (the zygote).
"""

from __future__ import annotations

import os
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:  # (socket's import costs a pool's first start milliseconds: annotations only)
    from _socket import socket

__all__ = ["SIGNED_STRUCT", "read_signed", "recv_exactly", "drain", "report_exited_children"]

SIGNED_STRUCT = struct.Struct("q")  # the wire format of pids and exit codes


def read_signed(fd: int) -> int:
    """Read one pid or exit code sent by the server; ``EOFError`` if it hung up."""
    data = b""
    while len(data) < SIGNED_STRUCT.size:
        chunk = os.read(fd, SIGNED_STRUCT.size - len(data))
        if not chunk:
            raise EOFError("unexpected EOF")
        data += chunk
    return SIGNED_STRUCT.unpack(data)[0]


def recv_exactly(sock: socket, size: int) -> bytes:
    """``size`` bytes from ``sock``; ``EOFError`` if the peer hangs up first."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("the peer closed the connection")
        data += chunk
    return data


def drain(fd: int) -> None:
    """Read a non-blocking descriptor (a signal wake-up pipe) until it is empty."""
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def report_exited_children(pid_to_conn: dict[int, socket]) -> None:
    """Reap every child that has exited; send each one's exit code on its socket and close it."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = pid_to_conn.pop(pid, None)
        if conn is None:
            continue
        returncode = os.waitstatus_to_exitcode(status)
        try:
            conn.sendall(SIGNED_STRUCT.pack(returncode))
        except OSError:
            pass  # the asker went away; nobody is waiting for this code
        conn.close()

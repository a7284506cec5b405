"""``FrameReader``: many ``mp_core.connection`` frames per ``read`` system call.

``Connection.recv_bytes`` reads one message with two reads (header, then
payload) and never reads ahead, which is right for a general connection.
A pool's pipes carry only this package's frames and have one reader, so
reading ahead is safe: one ``read`` of up to ``READ_SIZE`` bytes yields
every frame that is waiting, each returned as a view into the block read
(no copy).  The rest of a frame cut by the end of a read is read straight
into a buffer of its size.

The reader works on a non-blocking descriptor (``read_available``, for the
pool's event loop, which must never block on one worker) or a blocking one
(``next_frame``, for a worker waiting for its next task).
"""

from __future__ import annotations

import os
import struct
from collections import deque
from typing import Any, Union

from mp_core import _io

__all__ = ["FrameReader"]

READ_SIZE = 256 * 1024
_SHORT = struct.Struct("!i")
_LONG = struct.Struct("!Q")

Payload = Union[memoryview, bytearray]


class FrameReader:
    """Splits the byte stream of a descriptor into frame payloads.

    Frames come back as read-only memoryviews into the block that was read
    (no copy per frame); a frame that was cut by the end of a read gets a
    ``bytearray`` of its own, completed in place by the next reads.
    """

    __slots__ = ("fd", "eof", "_data", "_pos", "_head", "_partial", "_got", "_ready", "_short")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.eof = False
        self._data = b""          # the block last read, parsed up to _pos
        self._pos = 0
        self._head = b""          # a size header cut in two by the end of a read
        self._partial: Any = None  # bytearray of the frame being completed in place
        self._got = 0
        self._ready: deque[Payload] = deque()
        self._short = False        # the last read got less than it asked for

    def read_available(self) -> list[Payload]:
        """Read what a non-blocking descriptor holds; return the frames completed (sets ``eof``)."""
        out: list[Payload] = []
        try:
            # Read until a read comes back short: the descriptor is then
            # empty (usually after one read of every frame that was waiting).
            while self._fill():
                self._parse(out)
                if self._short:
                    break
        except BlockingIOError:
            pass
        return out

    def next_frame(self) -> Payload:
        """The next frame of a blocking descriptor; ``EOFError`` at end of file."""
        ready = self._ready
        while not ready:
            if not self._fill():
                raise EOFError
            self._parse(ready)
        return ready.popleft()

    def _fill(self) -> bool:
        """One read; false (and ``eof`` set) at end of file."""
        partial = self._partial
        if partial is not None:
            wanted = len(partial) - self._got
            count = _io.readinto(self.fd, memoryview(partial)[self._got:])
            if not count:
                self.eof = True
                return False
            self._got += count
            self._short = count < wanted
            return True
        data = os.read(self.fd, READ_SIZE)
        if not data:
            self.eof = True
            return False
        self._short = len(data) < READ_SIZE
        if self._head:
            data = self._head + data  # rare: at most 11 bytes were left over
            self._head = b""
        self._data = data
        self._pos = 0
        return True

    def _parse(self, out: Any) -> None:
        partial = self._partial
        if partial is not None:
            if self._got < len(partial):
                return
            out.append(partial)
            self._partial = None
        data = self._data
        pos = self._pos
        end = len(data)
        view = memoryview(data)
        while pos < end:
            if end - pos < 4:
                break
            size = _SHORT.unpack_from(data, pos)[0]
            start = pos + 4
            if size < 0:
                if end - pos < 12:
                    break
                size = _LONG.unpack_from(data, start)[0]
                start += 8
            have = end - start
            if have >= size:
                out.append(view[start:start + size])
                pos = start + size
            else:
                partial = bytearray(size)
                partial[:have] = view[start:end]
                self._partial = partial
                self._got = have
                pos = end
        # What is left is a cut header (or nothing): keep it for the next read.
        self._head = bytes(view[pos:end]) if pos < end else b""
        self._data = b""
        self._pos = 0

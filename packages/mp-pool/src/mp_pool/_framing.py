"""``FrameReader``: many ``mp_core.connection`` frames per ``read`` system call.

``Connection.recv_bytes`` reads one message with two reads (header, then
payload) and never reads ahead, which is right for a general connection.
A pool's pipes carry only this package's frames and have one reader, so
reading ahead is safe: one ``read`` of up to ``READ_SIZE`` bytes yields
every small frame that is waiting.  A large frame is read straight into a
buffer of its size, without copying it through the read-ahead buffer.

The reader works on a non-blocking descriptor (``read_available``, for the
pool's event loop, which must never block on one worker) or a blocking one
(``next_frame``, for a worker waiting for its next task).
"""

from __future__ import annotations

import os
import struct
from collections import deque
from typing import Any, Union

__all__ = ["FrameReader"]

READ_SIZE = 256 * 1024
# A frame at least this big that is not complete in the read-ahead buffer
# gets a buffer of its own, read into in place.
_BIG = 64 * 1024
_SHORT = struct.Struct("!i")
_LONG = struct.Struct("!Q")

Payload = Union[bytes, bytearray]


class FrameReader:
    """Splits the byte stream of a descriptor into frame payloads."""

    __slots__ = ("fd", "eof", "_buf", "_pos", "_big", "_got", "_ready")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.eof = False
        self._buf = bytearray()
        self._pos = 0
        self._big: Any = None     # bytearray for the frame being read in place
        self._got = 0
        self._ready: deque[Payload] = deque()

    def read_available(self) -> list[Payload]:
        """Read what a non-blocking descriptor holds; return the frames completed (sets ``eof``)."""
        out: list[Payload] = []
        try:
            # One read brings in every small frame that was waiting; a large
            # frame is read until the pipe is empty or the frame complete.
            while self._fill():
                self._parse(out)
                if self._big is None:
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
        big = self._big
        if big is not None:
            count = os.readv(self.fd, [memoryview(big)[self._got:]])
            if not count:
                self.eof = True
                return False
            self._got += count
            return True
        data = os.read(self.fd, READ_SIZE)
        if not data:
            self.eof = True
            return False
        if self._pos == len(self._buf):
            self._buf = bytearray(data)
            self._pos = 0
        else:
            self._buf += data
        return True

    def _parse(self, out: Any) -> None:
        big = self._big
        if big is not None:
            if self._got < len(big):
                return
            out.append(big)
            self._big = None
        buf = self._buf
        pos = self._pos
        end = len(buf)
        with memoryview(buf) as view:
            while end - pos >= 4:
                size = _SHORT.unpack_from(buf, pos)[0]
                start = pos + 4
                if size < 0:
                    if end - pos < 12:
                        break
                    size = _LONG.unpack_from(buf, start)[0]
                    start += 8
                have = end - start
                if have >= size:
                    out.append(bytes(view[start:start + size]))
                    pos = start + size
                elif size >= _BIG:
                    big = bytearray(size)
                    big[:have] = view[start:end]
                    self._big = big
                    self._got = have
                    pos = end
                    break
                else:
                    break
        if pos == end:
            self._buf = bytearray()
            self._pos = 0
        elif pos > READ_SIZE:
            del buf[:pos]
            self._pos = 0
        else:
            self._pos = pos

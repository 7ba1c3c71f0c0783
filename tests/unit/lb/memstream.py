"""In-memory asyncio transport pairs for testing byte pumps without sockets.

``pair(loop, proto_a, proto_b)`` connects two protocols as if over TCP: ordered delivery
on the loop, half-close with ``write_eof``, ``pause_reading`` backpressure that makes the
writer's protocol see ``pause_writing``/``resume_writing`` at a high/low watermark, ``close``
(FIN after pending data) and ``abort`` (reset on both ends).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class MemTransport(asyncio.Transport):
    HIGH = 64 * 1024
    LOW = 16 * 1024

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self.loop = loop
        self.protocol = protocol
        self.peer: MemTransport = None  # type: ignore[assignment]
        self.inbox: deque[bytes] = deque()
        self.inbox_bytes = 0
        self.eof_in = False
        self.eof_delivered = False
        self.reading = True
        self.closed = False
        self.write_closed = False
        self.writer_paused = False
        self.written = 0

    # writing -------------------------------------------------------------------------------
    def write(self, data: Any) -> None:
        if self.write_closed or self.closed:
            raise RuntimeError("write after write_eof/close")
        data = bytes(data)
        if not data:
            return
        self.written += len(data)
        p = self.peer
        if p.closed:
            return
        p.inbox.append(data)
        p.inbox_bytes += len(data)
        self.loop.call_soon(p._deliver)
        if p.inbox_bytes > self.HIGH and not self.writer_paused:
            self.writer_paused = True
            self.protocol.pause_writing()

    def writelines(self, lines: Any) -> None:
        self.write(b"".join(lines))

    def write_eof(self) -> None:
        if self.write_closed:
            return
        self.write_closed = True
        self.peer.eof_in = True
        self.loop.call_soon(self.peer._deliver)

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return self.peer.inbox_bytes

    # reading -------------------------------------------------------------------------------
    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        if not self.reading:
            self.reading = True
            self.loop.call_soon(self._deliver)

    def is_reading(self) -> bool:
        return self.reading

    def _deliver(self) -> None:
        while self.reading and self.inbox and not self.closed:
            d = self.inbox.popleft()
            self.inbox_bytes -= len(d)
            self.protocol.data_received(d)
        w = self.peer
        if w.writer_paused and self.inbox_bytes <= self.LOW and not w.closed:
            w.writer_paused = False
            w.protocol.resume_writing()
        if (not self.inbox and self.eof_in and not self.eof_delivered and not self.closed):
            self.eof_delivered = True
            keep = self.protocol.eof_received()
            if not keep:
                self.close()

    # closing -------------------------------------------------------------------------------
    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if self.closed:
            return
        if not self.write_closed:
            self.write_eof()
        self.closed = True
        self.loop.call_soon(self.protocol.connection_lost, None)
        # the peer sees end of file, then (once it closes too) the connection is gone

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.call_soon(self.protocol.connection_lost, ConnectionResetError("aborted"))
        p = self.peer
        if not p.closed:
            p.closed = True
            self.loop.call_soon(p.protocol.connection_lost, ConnectionResetError("reset"))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000)}.get(name, default)


def pair(loop: asyncio.AbstractEventLoop, a: asyncio.Protocol,
         b: asyncio.Protocol) -> tuple[MemTransport, MemTransport]:
    ta, tb = MemTransport(loop, a), MemTransport(loop, b)
    ta.peer, tb.peer = tb, ta
    a.connection_made(ta)
    b.connection_made(tb)
    return ta, tb


class Endpoint(asyncio.Protocol):
    """A test peer that records what it gets."""

    def __init__(self, keep_open_on_eof: bool = True) -> None:
        self.data = bytearray()
        self.eof = False
        self.lost: Exception | None | bool = False
        self.keep = keep_open_on_eof
        self.transport: MemTransport = None  # type: ignore[assignment]
        self.paused = 0
        self.got = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.got.set()

    def eof_received(self) -> bool:
        self.eof = True
        self.got.set()
        return self.keep

    def pause_writing(self) -> None:
        self.paused += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc if exc is not None else True
        self.got.set()

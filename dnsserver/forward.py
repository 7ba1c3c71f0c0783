"""Forwarding names outside our domains to recursors, with timeout and failover.

Why not aiodns: the issue suggested it, but aiodns (pycares) resolves a name and returns parsed
records (``query``/``query_dns``). A forwarder must hand the client the recursor's answer
faithfully: its rcode (NXDOMAIN vs NODATA), flags (AD, TC), authority section (the SOA that
drives negative caching, RFC 2308), TTLs, EDNS options and record types c-ares does not model.
Rebuilding a packet from parsed results loses those, so we forward the raw query over UDP
(TCP when the client came over TCP), restore the client's ID, and check that the answer comes
from the recursor we asked, with our ID and the same question (basic anti-spoofing).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct

from .config import DNSConfig, parse_recursor
from .counters import DNSCounters

__all__ = ["Forwarder"]

log = logging.getLogger(__name__)


class _UpstreamProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: Forwarder) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12:
            return
        key = ((data[0] << 8) | data[1], addr[0], addr[1])
        waiting = self.owner._pending.get(key)
        if waiting is None:
            return                          # stray or late: nobody asked this
        fut, question = waiting
        # Wrong question for our ID and address: a spoof or a stray; keep waiting.
        if not fut.done() and _same_question(data, question):
            fut.set_result(data)

    def error_received(self, exc: Exception) -> None:
        log.debug("recursor socket error err=%s", exc)


class Forwarder:
    """Sends raw queries to the configured recursors; one shared UDP socket per family."""

    def __init__(self, config: DNSConfig, counters: DNSCounters,
                 rng: random.Random | None = None) -> None:
        self.recursors = [parse_recursor(r) for r in config.recursors]
        self.timeout = config.recursor_timeout
        self.shuffle = config.recursor_strategy == "random"
        self.counters = counters
        self.rng = rng or random.SystemRandom()
        self._pending: dict[tuple[int, str, int], tuple[asyncio.Future[bytes], bytes]] = {}
        self._transports: dict[int, asyncio.DatagramTransport] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for fam in {socket.AF_INET6 if ":" in h else socket.AF_INET for h, _ in self.recursors}:
            local = ("::", 0) if fam == socket.AF_INET6 else ("0.0.0.0", 0)
            tr, _ = await loop.create_datagram_endpoint(
                lambda: _UpstreamProtocol(self), local_addr=local, family=fam)
            self._transports[fam] = tr

    def close(self) -> None:
        for tr in self._transports.values():
            tr.close()
        self._transports.clear()
        for fut, _q in self._pending.values():
            if not fut.done():
                fut.cancel()
        self._pending.clear()

    async def forward(self, data: bytes, tcp: bool, question: bytes) -> bytes | None:
        """The recursor's answer with the client's ID, or None when every recursor failed."""
        self.counters.forwarded += 1
        out = await self.ask(data, tcp, question)
        if out is None:
            self.counters.forward_failures += 1
        return out

    async def ask(self, data: bytes, tcp: bool, question: bytes) -> bytes | None:
        """Send ``data`` to the recursors in turn (each given ``recursor_timeout``); the first
        answer with ``data``'s ID, or None. Also used to chase a CNAME target's records
        (:mod:`dnsserver.chase`), which is why it does not count a forward."""
        order = list(self.recursors)
        if self.shuffle:
            self.rng.shuffle(order)
        for host, port in order:
            try:
                if tcp:
                    out = await asyncio.wait_for(self._tcp(data, host, port, question), self.timeout)
                else:
                    out = await self._udp(data, host, port, question)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                self.counters.forward_timeouts += 1
                log.debug("recursor failed recursor=%s:%s err=%r", host, port, exc)
                continue
            if out is not None:
                return data[:2] + out[2:]
        return None

    def _new_id(self, host: str, port: int) -> int:
        for _ in range(16):
            qid = self.rng.getrandbits(16)
            if (qid, host, port) not in self._pending:
                return qid
        raise ValueError("no free query id")

    async def _udp(self, data: bytes, host: str, port: int, question: bytes) -> bytes | None:
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        tr = self._transports.get(fam)
        if tr is None:
            raise OSError("forwarder not started")
        qid = self._new_id(host, port)
        key = (qid, host, port)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bytes] = loop.create_future()
        self._pending[key] = (fut, question)
        try:
            tr.sendto(struct.pack("!H", qid) + data[2:], (host, port))
            return await asyncio.wait_for(fut, self.timeout)
        finally:
            self._pending.pop(key, None)

    async def _tcp(self, data: bytes, host: str, port: int, question: bytes) -> bytes | None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            qid = self.rng.getrandbits(16)
            msg = struct.pack("!H", qid) + data[2:]
            writer.write(struct.pack("!H", len(msg)) + msg)
            await writer.drain()
            ln = struct.unpack("!H", await reader.readexactly(2))[0]
            out = await reader.readexactly(ln)
            if len(out) < 12 or (out[0] << 8 | out[1]) != qid or not _same_question(out, question):
                raise ValueError("answer does not match the query")
            return out
        finally:
            writer.close()


def _same_question(resp: bytes, question: bytes) -> bool:
    """True when ``resp`` carries exactly ``question`` (names compared case-insensitively)."""
    if len(resp) < 12 or not resp[2] & 0x80:
        return False
    qd = (resp[4] << 8) | resp[5]
    if qd == 0:
        return True     # some servers omit the question in errors (FORMERR/SERVFAIL)
    got = resp[12:12 + len(question)]
    return (len(got) == len(question) and got[:-4].lower() == question[:-4].lower()
            and got[-4:] == question[-4:])

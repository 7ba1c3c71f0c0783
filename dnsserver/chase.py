"""Chasing a host-name CNAME target through the recursors (sans-I/O part).

A service or node whose ``Address`` is a host name answers with a CNAME to that name. Consul
then asks its recursors for the target's records and adds them to the answer, so a client gets
the addresses in one round trip. The resolver (:mod:`dnsserver.resolver`) builds the answer from
what this cache holds; when a target is missing it hands the query back to the server as a
:class:`~dnsserver.resolver.Forward` carrying the names to chase, the server asks the recursors
(:meth:`dnsserver.forward.Forwarder.ask`), stores each raw answer here with :meth:`learn`, and
asks the resolver again.

What is kept per (target, type): the records of the recursor's answer that belong to the target,
i.e. the CNAME chain starting at it and then the records of the asked type at its end, and the
time they expire: now + the smallest TTL among them (at least ``min_ttl``, so a TTL of 0 does not
make every query a recursor query; at most ``max_ttl``). A negative answer (NXDOMAIN or no
records) is kept for the SOA minimum of its authority section (RFC 2308), within the same bounds;
a failure (no answer in time, SERVFAIL, a packet we cannot read) for ``negative_ttl``. An entry
is never served after it expires: :meth:`get` answers None, and the resolver chases again.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .wire import CNAME, NOERROR, NXDOMAIN, SOA

__all__ = ["ChaseCache", "Chased", "parse_answer", "query_packet"]

Labels = tuple[bytes, ...]

_MAX_CHAIN = 8          # CNAME hops followed inside one recursor answer
_RR = struct.Struct("!HHIH")


@dataclass(frozen=True, slots=True)
class Record:
    """One record of a recursor's answer: owner (lower case), type, TTL and rdata; a CNAME's
    rdata is its target's labels (re-encoded by the resolver with its own compression)."""

    owner: Labels
    rtype: int
    ttl: int
    rdata: bytes | Labels


@dataclass(frozen=True, slots=True)
class Chased:
    """What the recursors said about one (target, type): records (possibly none) and expiry."""

    records: tuple[Record, ...]
    expires: float


def query_packet(name: Labels, qtype: int) -> bytes:
    """A recursive query (RD set, EDNS0 with 1232 bytes) for ``name``; ID 0 (the forwarder
    puts in its own)."""
    out = bytearray(struct.pack("!6H", 0, 0x0100, 1, 0, 0, 1))
    for lab in name:
        out.append(len(lab))
        out += lab
    out += b"\x00" + struct.pack("!HH", qtype, 1)
    out += b"\x00" + _RR.pack(41, 1232, 0, 0)
    return bytes(out)


def _read_name(data: bytes, pos: int) -> tuple[Labels, int]:
    """A (possibly compressed) name at ``pos``: its lower-cased labels and the offset after it.
    Raises ValueError on anything malformed (loops, out of bounds, a name too long)."""
    labels: list[bytes] = []
    end = -1
    n = len(data)
    total = 0
    for _ in range(128):
        if pos >= n:
            raise ValueError("name runs past the packet")
        ln = data[pos]
        if ln == 0:
            return tuple(labels), (pos + 1 if end < 0 else end)
        if ln & 0xC0 == 0xC0:
            if pos + 2 > n:
                raise ValueError("pointer runs past the packet")
            if end < 0:
                end = pos + 2
            pos = ((ln & 0x3F) << 8) | data[pos + 1]
            continue
        if ln > 63 or pos + 1 + ln > n:
            raise ValueError("bad label")
        total += ln + 1
        if total > 255:
            raise ValueError("name too long")
        labels.append(data[pos + 1:pos + 1 + ln].lower())
        pos += ln + 1
    raise ValueError("too many labels or a pointer loop")


def parse_answer(data: bytes) -> tuple[int, list[Record], int | None]:
    """A recursor's response: (rcode, answer records of class IN, SOA minimum from the
    authority section or None). Raises ValueError when the packet is malformed."""
    if len(data) < 12:
        raise ValueError("short packet")
    _qid, flags, qd, an, ns, _ar = struct.unpack_from("!6H", data)
    if not flags & 0x8000:
        raise ValueError("not a response")
    pos = 12
    for _ in range(qd):
        _, pos = _read_name(data, pos)
        pos += 4
    out: list[Record] = []
    soa_min: int | None = None
    for i in range(an + ns):
        owner, pos = _read_name(data, pos)
        if pos + 10 > len(data):
            raise ValueError("record runs past the packet")
        rtype, rclass, ttl, rdlen = _RR.unpack_from(data, pos)
        pos += 10
        if pos + rdlen > len(data):
            raise ValueError("rdata runs past the packet")
        ttl &= 0x7FFFFFFF
        if i < an and rclass == 1:
            if rtype == CNAME:
                target, _ = _read_name(data, pos)
                out.append(Record(owner, rtype, ttl, target))
            else:
                out.append(Record(owner, rtype, ttl, data[pos:pos + rdlen]))
        elif i >= an and rtype == SOA:
            _, p = _read_name(data, pos)          # mname
            _, p = _read_name(data, p)            # rname
            if p + 20 > pos + rdlen:
                raise ValueError("short SOA")
            soa_min = min(ttl, struct.unpack_from("!I", data, p + 16)[0])
        pos += rdlen
    return flags & 0xF, out, soa_min


def chain(name: Labels, rtype: int, records: list[Record]) -> list[Record]:
    """The records of ``records`` that answer (name, rtype): the CNAME chain from ``name``,
    then the ``rtype`` records at its end (RFC 1034 §4.3.2). Order kept."""
    out: list[Record] = []
    cur = name
    seen = {cur}
    for _ in range(_MAX_CHAIN):
        nxt = next((r for r in records if r.rtype == CNAME and r.owner == cur), None)
        if nxt is None or rtype == CNAME:
            break
        out.append(nxt)
        cur = nxt.rdata  # type: ignore[assignment]
        if cur in seen:
            return []                      # a loop: nothing usable
        seen.add(cur)
    out.extend(r for r in records if r.rtype == rtype and r.owner == cur)
    return out


class ChaseCache:
    """Chased records by (target, type), each until it expires (see the module doc)."""

    def __init__(self, *, min_ttl: float = 1.0, max_ttl: float = 3600.0,
                 negative_ttl: float = 5.0, max_entries: int = 4096) -> None:
        self.min_ttl = min_ttl
        """Shortest time an answer is kept, seconds (a TTL of 0 still spares the recursor
        for this long). Default 1."""
        self.max_ttl = max_ttl
        """Longest time an answer is kept, seconds. Default 3600."""
        self.negative_ttl = negative_ttl
        """Time a failure (timeout, SERVFAIL, unreadable answer) is kept, seconds, during which
        the answer is the CNAME alone. Default 5."""
        self.max_entries = max_entries
        """Entries kept; the oldest go first. Default 4096."""
        self._entries: dict[tuple[Labels, int], Chased] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: Labels, rtype: int, now: float) -> Chased | None:
        """The live entry for (name, rtype) (``name`` lower case), or None: never asked, or
        expired (then it is dropped)."""
        key = (name, rtype)
        e = self._entries.get(key)
        if e is None:
            return None
        if now >= e.expires:
            del self._entries[key]
            return None
        return e

    def learn(self, name: Labels, rtype: int, response: bytes | None, now: float) -> Chased:
        """Store what a recursor answered for (name, rtype); ``None`` means it failed."""
        rcode = -1
        records: list[Record] = []
        soa_min: int | None = None
        if response is not None:
            try:
                rcode, got, soa_min = parse_answer(response)
                records = chain(name, rtype, got)
            except ValueError:
                rcode, records = -1, []
        if records and rcode == NOERROR:
            keep = float(min(r.ttl for r in records))
        elif rcode in (NOERROR, NXDOMAIN):
            records = []
            keep = float(soa_min) if soa_min is not None else self.negative_ttl
        else:
            records = []
            keep = self.negative_ttl
        keep = min(max(keep, self.min_ttl), self.max_ttl)
        entry = Chased(tuple(records), now + keep)
        key = (name, rtype)
        self._entries.pop(key, None)
        while len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = entry
        return entry

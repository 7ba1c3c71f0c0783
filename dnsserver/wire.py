"""DNS wire format: a strict parser of queries and the small encoder the answers need.

Only this module and :mod:`dnsserver.resolver`'s fast path know byte offsets (RFC 1035 §4).
Answers are encoded so that every compression pointer points into the *question* (offset 12
onwards) and nowhere else: each resource record is then position-independent, so a cached
answer can be re-assembled in any order (round-robin) or cut short (truncation) by
concatenating bytes, and the client's question bytes can be spliced in unchanged (which echoes
its 0x20 mixed case, and keeps every pointer valid because the length does not change).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import MalformedQuery

__all__ = [
    "AAAA",
    "ANY",
    "AXFR",
    "CNAME",
    "FORMERR",
    "IXFR",
    "NOERROR",
    "NOTIMP",
    "NS",
    "NXDOMAIN",
    "OPT",
    "PTR",
    "REFUSED",
    "SERVFAIL",
    "SOA",
    "SRV",
    "TXT",
    "A",
    "Compressor",
    "ParsedQuery",
    "header_only",
    "parse_query",
    "rr",
]

A, NS, CNAME, SOA, PTR, TXT, AAAA, SRV, OPT, IXFR, AXFR, ANY = (
    1, 2, 5, 6, 12, 16, 28, 33, 41, 251, 252, 255)
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5

MAX_ADDITIONAL = 4
"""Records accepted in a query's additional section (an OPT, maybe a TSIG); more is FORMERR."""

_RR_FIXED = struct.Struct("!HHIH")
_H = struct.Struct("!H")


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    """A query as the slow path sees it."""

    id: int
    flags: int
    labels: tuple[bytes, ...]      # as sent (case kept)
    qtype: int
    qclass: int
    question: bytes                # the raw question section (name + type + class)
    edns: bool
    edns_size: int                 # advertised UDP payload size (0 without EDNS)
    edns_do: bool
    edns_version: int


def _name_end(data: bytes, pos: int) -> int:
    """Skip a (possibly compressed) name without following pointers; return the next offset."""
    n = len(data)
    for _ in range(128):
        if pos >= n:
            raise MalformedQuery("truncated", FORMERR)
        ln = data[pos]
        if ln == 0:
            return pos + 1
        if ln & 0xC0 == 0xC0:
            if pos + 2 > n:
                raise MalformedQuery("truncated", FORMERR)
            return pos + 2
        if ln > 63:
            raise MalformedQuery("bad_label", FORMERR)
        pos += ln + 1
    raise MalformedQuery("bad_label", FORMERR)


def parse_query(data: bytes, *, max_size: int = 65535) -> ParsedQuery:
    """Parse a query, or raise MalformedQuery(reason, rcode) with rcode None meaning "drop"."""
    n = len(data)
    if n < 12:
        raise MalformedQuery("short")
    if n > max_size:
        raise MalformedQuery("oversized")
    qid, flags, qd, an, ns, ar = struct.unpack_from("!6H", data)
    if flags & 0x8000:
        raise MalformedQuery("response")
    opcode = (flags >> 11) & 0xF
    if opcode != 0:
        raise MalformedQuery("opcode", NOTIMP)
    if qd != 1:
        raise MalformedQuery("qdcount", FORMERR)
    if an or ns:
        raise MalformedQuery("records_in_query", FORMERR)
    if ar > MAX_ADDITIONAL:
        raise MalformedQuery("arcount", FORMERR)
    pos = 12
    labels: list[bytes] = []
    while True:
        if pos >= n:
            raise MalformedQuery("truncated", FORMERR)
        ln = data[pos]
        if ln == 0:
            pos += 1
            break
        if ln & 0xC0 == 0xC0:
            # A pointer in the first name of a packet can only point at itself or the header.
            raise MalformedQuery("pointer_in_question", FORMERR)
        if ln > 63:
            raise MalformedQuery("bad_label", FORMERR)
        if pos + 1 + ln > n:
            raise MalformedQuery("truncated", FORMERR)
        labels.append(data[pos + 1:pos + 1 + ln])
        pos += ln + 1
        if pos - 12 > 255:
            raise MalformedQuery("name_too_long", FORMERR)
    if pos + 4 > n:
        raise MalformedQuery("truncated", FORMERR)
    qtype, qclass = struct.unpack_from("!HH", data, pos)
    qend = pos + 4
    edns = False
    size = 0
    do = False
    version = 0
    pos = qend
    for _ in range(ar):
        start = pos
        pos = _name_end(data, pos)
        if pos + 10 > n:
            raise MalformedQuery("truncated", FORMERR)
        rtype, rclass, ttl, rdlen = _RR_FIXED.unpack_from(data, pos)
        pos += 10
        if pos + rdlen > n:
            raise MalformedQuery("truncated", FORMERR)
        if rtype == OPT:
            if edns or data[start] != 0:
                raise MalformedQuery("bad_opt", FORMERR)   # RFC 6891 §6.1.1
            # Options (cookies, padding...) are ignored, as on the fast path.
            edns = True
            size = rclass
            version = (ttl >> 16) & 0xFF
            do = bool(ttl & 0x8000)
        pos += rdlen
    return ParsedQuery(qid, flags, tuple(labels), qtype, qclass, data[12:qend], edns, size, do,
                       version)


def header_only(data: bytes, rcode: int, question: bytes = b"") -> bytes | None:
    """An error response echoing the ID, opcode and RD of ``data`` (None if no ID to echo)."""
    if len(data) < 12:
        return None
    flags = 0x8000 | (((data[2] << 8) | data[3]) & 0x7900) | rcode   # opcode + RD kept
    return data[:2] + struct.pack("!5H", flags, 1 if question else 0, 0, 0, 0) + question


class Compressor:
    """Encodes names, pointing only at suffixes of the question name (see module doc)."""

    __slots__ = ("_table", "question")

    def __init__(self, qlabels: tuple[bytes, ...]) -> None:
        self.question = qlabels
        self._table: dict[tuple[bytes, ...], int] = {}
        off = 12
        low = tuple(x.lower() for x in qlabels)
        for i in range(len(low)):
            self._table.setdefault(low[i:], off)
            off += len(low[i]) + 1

    def name(self, labels: tuple[bytes, ...] | list[bytes]) -> bytes:
        """Wire form of ``labels``; raises ValueError for a label that cannot be encoded."""
        out = bytearray()
        low = tuple(x.lower() for x in labels)
        for i, lab in enumerate(labels):
            ptr = self._table.get(low[i:])
            if ptr is not None:
                out += _H.pack(0xC000 | ptr)
                return bytes(out)
            if not 0 < len(lab) <= 63:
                raise ValueError(f"label {lab!r} cannot be encoded")
            out.append(len(lab))
            out += lab
        out.append(0)
        if len(out) > 255:
            raise ValueError("name too long")
        return bytes(out)


def rr(owner: bytes, rtype: int, ttl: int, rdata: bytes) -> bytes:
    """One resource record of class IN."""
    return owner + _RR_FIXED.pack(rtype, 1, ttl & 0x7FFFFFFF, len(rdata)) + rdata


def opt_rr(payload: int, do: bool, ext_rcode: int = 0) -> bytes:
    """Our OPT record (RFC 6891): payload size, extended rcode, version 0, DO copied."""
    ttl = (ext_rcode << 24) | (0x8000 if do else 0)
    return b"\x00" + _RR_FIXED.pack(OPT, payload, ttl, 0)


def labels_of(name: str) -> tuple[bytes, ...]:
    """'web.service.rumor.' -> (b'web', b'service', b'rumor')."""
    return tuple(x.encode("utf-8") for x in name.rstrip(".").split(".") if x)

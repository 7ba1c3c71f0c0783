"""Hostile and odd queries: each gets FORMERR/NOTIMP or is dropped, and is counted."""

from __future__ import annotations

import struct

import dns.message
import pytest

from dnsserver import DNSConfig, MemoryView, Resolver
from dnsserver.wire import Compressor, parse_query


def _hdr(qid: int = 0x1234, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0,
         ar: int = 0) -> bytes:
    return struct.pack("!6H", qid, flags, qd, an, ns, ar)


_Q = b"\x03web\x07service\x05rumor\x00\x00\x01\x00\x01"


@pytest.mark.parametrize("packet, expect, reason", [
    (b"", None, "short"),
    (b"\x12\x34\x01", None, "short"),
    (_hdr(flags=0x8100) + _Q, None, "response"),
    (_hdr() + b"\x00" * 5000, None, "oversized"),
    (_hdr(flags=0x2100) + _Q, 4, "opcode"),               # UPDATE... NOTIFY (4) too
    (_hdr(flags=0x2900) + _Q, 4, "opcode"),
    (_hdr(qd=0), 1, "qdcount"),
    (_hdr(qd=2) + _Q + _Q, 1, "qdcount"),
    (_hdr(qd=300) + _Q, 1, "qdcount"),
    (_hdr(an=1) + _Q, 1, "records_in_query"),
    (_hdr(ar=9) + _Q, 1, "arcount"),
    (_hdr() + b"\x03web", 1, "truncated"),
    (_hdr() + b"\x03web\x00\x00", 1, "truncated"),
    (_hdr() + b"\xc0\x0c\x00\x01\x00\x01", 1, "pointer_in_question"),
    (_hdr() + b"\x41" + b"a" * 65 + b"\x00\x00\x01\x00\x01", 1, "bad_label"),
    (_hdr() + b"\x3f" + b"a" * 63 + b"\x3f" + b"a" * 63 + b"\x3f" + b"a" * 63 + b"\x3f"
     + b"a" * 63 + b"\x00\x00\x01\x00\x01", 1, "name_too_long"),
    (_hdr(ar=1) + _Q + b"\x00\x00\x29\x10", 1, "truncated"),
    (_hdr(ar=1) + _Q + b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x10", 1, "truncated"),
    (_hdr(ar=2) + _Q + (b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00") * 2, 1, "bad_opt"),
    (_hdr(ar=1) + _Q + b"\x03foo\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00", 1, "bad_opt"),
    (_hdr(ar=1) + _Q + b"\xc0\x0c\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00", 1, "bad_opt"),
    (_hdr(ar=1) + _Q + b"\xc0", 1, "truncated"),
])
def test_hostile(packet: bytes, expect: int | None, reason: str) -> None:
    res = Resolver(DNSConfig(), MemoryView())
    out = res.handle(packet)
    if expect is None:
        assert out is None
    else:
        assert isinstance(out, bytes)
        assert out[:2] == packet[:2]
        assert out[2] & 0x80                                 # QR
        assert out[3] & 0xF == expect
    assert res.counters.drops == {reason: 1}


def test_trailing_garbage_and_extra_records_are_tolerated() -> None:
    v = MemoryView()
    v.add_node("n", "10.0.0.1")
    v.register("n", "web", port=1)
    res = Resolver(DNSConfig(), v)
    out = res.handle(_hdr() + _Q + b"junk")
    assert isinstance(out, bytes) and dns.message.from_wire(out).answer
    # A TSIG-like record next to an OPT: parsed, ignored.
    tsig = b"\x03key\x00\x00\xfa\x00\xff\x00\x00\x00\x00\x00\x02ab"
    out = res.handle(_hdr(ar=2) + _Q + b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00" + tsig)
    assert isinstance(out, bytes) and out[3] & 0xF == 0


def test_parse_query_ok() -> None:
    q = parse_query(_hdr(ar=1) + _Q + b"\x00\x00\x29\x04\xd0\x00\x00\x80\x00\x00\x00")
    assert q.edns and q.edns_size == 1232 and q.edns_do and q.edns_version == 0
    assert q.labels == (b"web", b"service", b"rumor") and (q.qtype, q.qclass) == (1, 1)


def test_compressor_points_into_question_only() -> None:
    c = Compressor((b"Web", b"Service", b"dc1", b"Rumor"))
    assert c.name((b"web", b"service", b"dc1", b"rumor")) == b"\xc0\x0c"
    assert c.name((b"n1", b"node", b"dc1", b"rumor")) == b"\x02n1\x04node\xc0\x18"
    assert c.name((b"other",)) == b"\x05other\x00"
    with pytest.raises(ValueError):
        c.name((b"x" * 64,))

"""The sans-I/O resolver: query bytes + a catalog view -> response bytes.

Theory of operation
-------------------
An answer is a pure function of (question, view). ``Resolver.handle(data, tcp=...)`` returns

* ``bytes``: the response to send;
* ``None``: drop the packet (no ID to echo, a response sent to us, oversized...), counted;
* a :class:`Forward`: the name is outside our domains and recursors are configured; the
  server sends the raw query upstream (see :mod:`dnsserver.forward`).

Hot path. A hand-written scan of the header and the question (no general parser) builds the
cache key ``(lower-cased qname wire bytes, qtype+qclass bytes, variant)`` where ``variant``
packs the transport size limit (512 without EDNS; the advertised EDNS size rounded down to a
few classes and capped by ``max_udp_size``; 65535 over TCP), TCP-or-UDP, EDNS present, the DO
bit and the query's RD/CD bits. The key is the question, never the whole packet: dig sends a
new EDNS cookie every time. The cache holds *encoded* responses for the current
``view.index``; it is flushed whenever the index moves, so an answer is never staler than the
catalog. A hit costs a dict lookup and a splice: the client's ID and its question bytes (its
0x20 case) go in, the rest of the packet is cached. Answers with several records keep one
pre-assembled packet per rotation (up to ``cache_max_rotations``) and hand them out in turn:
that is the round-robin.

In front of that, for UDP queries without EDNS options (stub resolvers, dnsperf), a second
index maps the exact bytes after the ID to the same cache entry, so a repeated query costs
one dict lookup and one concatenation (about 0.35 us against about 1 us for the scan). Hits
are counted on the entry and added to the counters on ``sync()`` (``snapshot()`` calls it).

Miss path. :func:`dnsserver.wire.parse_query` parses strictly (and produces FORMERR/NOTIMP or a
drop), then ``_resolve`` walks Consul's name grammar and encodes each record once, with
compression pointers only into the question so records can be re-ordered and cut freely.
``_assemble`` fits records into the size limit: without EDNS 512 bytes, with EDNS the
advertised size (capped by ``max_udp_size``), over TCP 65535; when answer records are left out
TC is set (``enable_truncate``) so the client retries over TCP and gets them all.

Chased CNAME targets. An instance or node whose address is a host name outside our domains
answers a CNAME that, with recursors, is completed with the target's records from them
(:mod:`dnsserver.chase`). Such an answer is a function of (question, view, chase cache): when a
target is missing, ``handle`` returns ``Forward(chase=...)`` (nothing cached), the server fills
the chase cache and calls :meth:`Resolver.complete`. The answer is then cached with an expiry
(``_Entry.exp``, the first of its records' expiry by the injected clock), checked on the
level-2 path; it is kept out of the level-1 index, which the C path reads without a clock. The
catalog index flushes it like any other.

Name grammar (Consul's, RFC 2782 included), after the domain or alt domain is taken off:
``<svc>.service[.<dc>]``, ``<tag>.<svc>.service[.<dc>]``, ``_<svc>._<tag|tcp|udp>[.service]
[.<dc>]``, ``<node>.node[.<dc>]``, ``<hexip>.addr[.<dc>]``, ``ns``, and the apex; reverse
names under in-addr.arpa / ip6.arpa resolve to nodes and service addresses.
"""

from __future__ import annotations

import bisect
import ipaddress
import logging
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .chase import ChaseCache, Labels
from .config import DNSConfig
from .counters import DNSCounters
from .errors import MalformedQuery
from .view import Instance, View
from .wire import (
    AAAA,
    ANY,
    AXFR,
    CNAME,
    IXFR,
    NOERROR,
    NOTIMP,
    NS,
    NXDOMAIN,
    PTR,
    REFUSED,
    SOA,
    SRV,
    TXT,
    A,
    Compressor,
    ParsedQuery,
    header_only,
    labels_of,
    opt_rr,
    parse_query,
    rr,
)

__all__ = ["Forward", "Resolver", "answer"]

log = logging.getLogger(__name__)

_QD1 = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_QD1AR1 = b"\x00\x01\x00\x00\x00\x00\x00\x01"
_SOA_TIMERS = struct.Struct("!5I")
_SRV_FIXED = struct.Struct("!HHH")
_KEYWORDS = frozenset({"service", "node", "addr", "query", "connect", "ingress", "virtual"})
_BADVERS = 16
_SIZE_CLASSES = (512, 1232, 1432, 2048, 4096, 8192, 16384, 32768, 65535)


@dataclass(frozen=True, slots=True)
class Forward:
    """The query must go elsewhere; ``data`` is the query as received. With ``datacenter``
    empty it goes to a recursor; otherwise the name belongs to that other datacenter and the
    server answers it from that datacenter's view (:class:`dnsserver.view.RemoteViews`)."""

    data: bytes
    tcp: bool
    datacenter: str = ""
    query: str = ""
    """A prepared query's name (``<name>.query.<domain>``): the server answers from the view
    of its results (:meth:`dnsserver.view.RemoteViews.query_view`)."""
    chase: tuple[tuple[Labels, int], ...] = ()
    """Host names (lower-case labels) and types to ask the recursors for: the answer has a
    CNAME to them that the resolver cannot complete yet. The server asks, stores the answers
    in :attr:`Resolver.chased` and calls :meth:`Resolver.complete` (see
    :mod:`dnsserver.chase`)."""


@dataclass(frozen=True, slots=True)
class _Elsewhere:
    """Answered by another view: another datacenter's, or a prepared query's results."""

    datacenter: str = ""
    query: str = ""


class _Answer:
    """An answer before assembly: encoded records per section."""

    __slots__ = ("addr_limited", "answers", "authority", "extra", "follow", "groups", "rcode",
                 "rotate")

    def __init__(self, rcode: int, answers: list[bytes] | None = None,
                 groups: list[list[bytes]] | None = None, authority: list[bytes] | None = None,
                 extra: list[bytes] | None = None, rotate: bool = False,
                 addr_limited: bool = False, follow: list[list[bytes]] | None = None) -> None:
        self.rcode = rcode
        self.answers = answers or []
        self.groups = groups                 # additional records tied to each answer (SRV)
        self.follow = follow                 # answer records that follow each answer (a
        #                                      CNAME's chased target records)
        self.authority = authority or []
        self.extra = extra or []             # additional records not tied to an answer
        self.rotate = rotate
        self.addr_limited = addr_limited     # a_record_limit applies (A/AAAA answers)


class _Entry:
    """A cached response: one packet per rotation (filled lazily), a turn counter."""

    __slots__ = (
        "ans",
        "chase",
        "count",
        "exp",
        "folded",
        "forward",
        "hits",
        "limit",
        "n",
        "opt",
        "partial",
        "qlen",
        "qtype",
        "rcode",
        "remote",
        "size",
        "tails",
        "tc",
    )

    def __init__(self) -> None:
        self.tails: list[bytes | None] = []   # per rotation: the response without its ID
        self.size = 64          # bytes held, for cache_max_bytes (roughly)
        self.n = 1              # rotations; 0 for a name that is forwarded
        self.hits = 0           # cache hits so far; also the turn of the rotation
        self.folded = 0         # hits already added to the counters (see _fold)
        self.qtype = 0
        self.tc = False
        self.rcode = 0
        self.ans: _Answer | None = None
        self.qlen = 0
        self.limit = 512
        self.count = 0
        self.opt = b""
        self.forward = False
        self.remote: _Elsewhere | None = None   # the view that answers it (forward is True)
        self.exp = 0.0          # clock time it stops being valid (chased records); 0: never
        self.chase: tuple[tuple[Labels, int], ...] = ()   # targets to chase first (not cached)
        self.partial = False    # a chased target was missing: answered once, never cached


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _hexip(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return addr.packed.hex()


class Resolver:
    """Answers DNS queries from a catalog view; owns the encoded-answer cache.

    ``forwarding`` (default: whether ``config.recursors`` is non-empty) decides whether names
    outside the domain yield :class:`Forward` (the server forwards) or REFUSED. ``remote``
    decides whether names of another datacenter yield ``Forward(datacenter=...)`` (the server
    answers them from that datacenter's view) or NXDOMAIN.

    ``chase`` (default: ``forwarding``) decides whether a CNAME to a host name outside the
    domains is completed with the target's records from the recursors (:mod:`dnsserver.chase`):
    a query whose answer needs a target not in :attr:`chased` yields ``Forward(chase=...)``.
    An answer that holds chased records is cached until the first of them expires by
    ``clock`` (and, like every answer, until the view's index moves); it is never put in the
    exact-bytes index that the C fast path reads, which cannot check expiry.
    """

    def __init__(self, config: DNSConfig, view: View, *, counters: DNSCounters | None = None,
                 forwarding: bool | None = None, remote: bool = False,
                 query_view: bool = False, chase: bool | None = None,
                 chased: ChaseCache | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.remote = remote
        self.query_view = query_view   # this view holds a prepared query's results
        self.config = config
        self.view = view
        self.counters = counters if counters is not None else DNSCounters()
        self.forwarding = bool(config.recursors) if forwarding is None else forwarding
        self._ra = 0x80 if self.forwarding else 0
        self._domains: list[tuple[bytes, ...]] = [labels_of(config.domain)]
        if config.alt_domain:
            self._domains.append(labels_of(config.alt_domain))
        self._cache: dict[tuple[bytes, bytes, int], _Entry] = {}
        self._exact: dict[bytes, _Entry] = {}
        self.counters.add_sync(self.sync_counters)
        self._index = -1
        self.native: Callable[[bool], None] | None = None
        """Set by the server while a C thread answers hits from a copy of this cache
        (``_udpc.Server``): called with True when the cache is flushed (the copy is emptied),
        with False when the counters are synced, to fold in the hits answered there."""
        self._max_q = config.max_query_size
        self._max_tcp = config.max_tcp_frame
        self._max_udp = config.max_udp_size
        self._max_rot = config.cache_max_rotations
        self._cap = config.cache_max_entries
        self._max_bytes = config.cache_max_bytes
        self._bytes = 0
        self._glue = _ip(config.glue_address)
        self.chase = self.forwarding if chase is None else chase
        self.chased = chased if chased is not None else ChaseCache()
        """Records of chased CNAME targets (filled by the server from the recursors)."""
        self.clock = clock
        self._want: list[tuple[Labels, int]] = []   # targets missing while building an answer
        self._exp = 0.0                             # earliest expiry of chased records used
        self._now = 0.0

    # -- the hot path ---------------------------------------------------------------------------
    def handle(self, data: bytes, tcp: bool = False) -> bytes | Forward | None:
        """Answer one query (see the module doc). Never raises."""
        try:
            idx = self.view.index
            if idx != self._index:
                self._flush(idx)
            if not tcp:
                # Level 1: the exact bytes after the ID were answered before (no EDNS cookie,
                # same case): the response is that packet with this ID.
                # dnsserver/_udpc.c (serve) does this very step in C for the batched UDP
                # path, reading _exact and each entry's n, hits and tails: keep them in step.
                # Its C thread (Server) does it from copies that server.py's _ThreadUDP puts
                # there (the same tails, the rotation continuing from hits).
                e = self._exact.get(data[2:])
                if e is not None:
                    e.hits += 1
                    n = e.n
                    if n == 1:
                        return data[:2] + e.tails[0]  # type: ignore[operator]
                    if n:
                        r = e.hits % n
                        tails = e.tails
                        t = tails[r] if r < len(tails) else None
                        return data[:2] + (t if t is not None else self._variant(e, r))
                    return self._forward(data, False, e.remote)
            # Level 2: scan the header and the question by hand; key on the question.
            n = len(data)
            if n < 17 or n > (self._max_tcp if tcp else self._max_q) or data[2] & 0xF8:
                return self._slow(data, tcp)
            hdr = data[4:12]
            if hdr != _QD1 and hdr != _QD1AR1:
                return self._slow(data, tcp)
            pos = 12
            ln = data[12]
            while ln:
                if ln > 63:
                    return self._slow(data, tcp)
                pos += ln + 1
                if pos >= n:
                    return self._slow(data, tcp)
                ln = data[pos]
            name_end = pos + 1
            qend = name_end + 4
            if qend > n or name_end > 267:
                return self._slow(data, tcp)
            if data[11] == 0:     # ARCOUNT 0: hdr == _QD1 (the other accepted one is _QD1AR1)
                if qend != n:
                    return self._slow(data, tcp)
                variant = 65535 << 5 | 4 if tcp else 512 << 5
            else:
                # Exactly one OPT record (root name, type 41) ending the packet, version 0.
                if (n < qend + 11 or data[qend] != 0 or data[qend + 1] != 0
                        or data[qend + 2] != 41 or data[qend + 6] != 0
                        or qend + 11 + ((data[qend + 9] << 8) | data[qend + 10]) != n):
                    return self._slow(data, tcp)
                if tcp:
                    variant = 65535 << 5 | 7 if data[qend + 7] & 0x80 else 65535 << 5 | 5
                else:
                    size = self._size_class((data[qend + 3] << 8) | data[qend + 4])
                    variant = size << 5 | (3 if data[qend + 7] & 0x80 else 1)
            variant |= ((data[2] & 1) << 3) | ((data[3] & 0x10) << 1)
            e = self._cache.get((data[12:name_end].lower(), data[name_end:qend], variant))
            if e is None or (e.exp and self.clock() >= e.exp):
                return self._slow(data, tcp)
            e.hits += 1
            if e.forward:
                return self._forward(data, tcp, e.remote)
            r = e.hits % e.n if e.n > 1 else 0
            t = e.tails[r] if r < len(e.tails) else None
            if t is None:
                t = self._variant(e, r)
            if not tcp:
                self._remember_exact(data, qend, e)
            return data[:2] + t[:10] + data[12:qend] + t[qend - 2:]
        except Exception:
            # A bug (ours or the view's): SERVFAIL, counted, logged in full the first time.
            if self.counters.drop("internal_error"):
                log.exception("dns resolver failed on a query len=%s", len(data))
            else:
                log.debug("dns resolver failed on a query len=%s", len(data), exc_info=True)
            return header_only(data, 2)

    def _size_class(self, size: int) -> int:
        """The UDP size limit for an advertised EDNS size: the largest class <= size.

        Keying the cache on a few classes rather than on every advertised value bounds the
        number of entries one question can take (rounding down always fits the client)."""
        if size >= self._max_udp:
            return self._max_udp
        if size <= 512:
            return 512
        return _SIZE_CLASSES[bisect.bisect_right(_SIZE_CLASSES, size) - 1]

    def _remember_exact(self, data: bytes, qend: int, e: _Entry) -> None:
        """Index ``e`` by the exact query bytes when its packets carry this very question."""
        first = e.tails[0] if e.tails else None
        n = len(data)
        if n != qend and n != qend + 11:
            return        # EDNS options (a cookie changes every query): never seen twice
        if e.exp:
            return        # expires by the clock: the level-1 index (and C) cannot check that
        if first is not None and first[10:qend - 2] != data[12:qend]:
            return
        if len(self._exact) >= self._cap:
            self._exact.clear()
        self._exact[data[2:]] = e

    def _evict_oldest(self) -> None:
        old = self._cache.pop(next(iter(self._cache)))
        self._bytes -= old.size
        self._fold(old)
        self._exact.clear()      # it may point at the evicted entry
        self.counters.cache_evictions += 1

    def fold(self, e: _Entry, hits: int) -> None:
        """Count ``hits`` more hits of ``e`` answered elsewhere (the C thread's)."""
        e.hits += hits
        self._fold(e)

    def _fold(self, e: _Entry) -> None:
        """Add an entry's uncounted hits to the counters."""
        h = e.hits - e.folded
        if not h:
            return
        e.folded = e.hits       # hits keeps rising: it also drives the rotation
        c = self.counters
        c.queries += h
        c.cache_hits += h
        c.qtypes[e.qtype] = c.qtypes.get(e.qtype, 0) + h
        if not e.forward:
            c.rcodes[e.rcode] += h
            if e.tc:
                c.truncated += h

    def close(self) -> None:
        """Fold the cache's counts into the counters and stop being synced by them."""
        self.sync_counters()
        self.counters.remove_sync(self.sync_counters)

    def sync_counters(self) -> None:
        """Bring the counters up to date (hits are counted per cache entry on the hot path)."""
        if self.native is not None:
            self.native(False)
        for e in self._cache.values():
            self._fold(e)

    def _flush(self, idx: int) -> None:
        if self.native is not None:
            self.native(True)
        if self._cache:
            self.counters.cache_flushes += 1
            for e in self._cache.values():
                self._fold(e)
            self._cache.clear()
            self._exact.clear()
            self._bytes = 0
        self._index = idx

    # -- the slow path: strict parse, resolve, encode -------------------------------------------
    def complete(self, data: bytes, tcp: bool = False) -> bytes | None:
        """The answer to a query that came back as ``Forward(chase=...)``, once the server has
        stored the recursors' answers in :attr:`chased` (a target still missing, e.g. added
        by a catalog change meanwhile, is answered with its CNAME alone). Never raises."""
        try:
            out = self._slow(data, tcp, chase=False)
        except Exception:
            if self.counters.drop("internal_error"):
                log.exception("dns resolver failed completing a chased query len=%s", len(data))
            return header_only(data, 2)
        return out if isinstance(out, bytes) else None

    def _slow(self, data: bytes, tcp: bool, chase: bool = True) -> bytes | Forward | None:
        c = self.counters
        try:
            q = parse_query(data, max_size=self._max_tcp if tcp else self._max_q)
        except MalformedQuery as exc:
            if c.drop(exc.reason):
                log.warning("bad dns query reason=%s len=%s", exc.reason, len(data))
            else:
                log.debug("bad dns query reason=%s len=%s", exc.reason, len(data))
            if exc.rcode is None:
                return None
            c.rcodes[exc.rcode] += 1
            return header_only(data, exc.rcode)
        if q.edns and q.edns_version != 0:
            # RFC 6891 §6.1.3: BADVERS, with our OPT saying which version we speak.
            c.queries += 1
            c.qtypes[q.qtype] = c.qtypes.get(q.qtype, 0) + 1
            c.rcodes[_BADVERS] += 1
            flags = 0x8000 | (q.flags & 0x0110) | 0x0400
            return (data[:2] + struct.pack("!5H", flags, 1, 0, 0, 1) + q.question
                    + opt_rr(self._max_udp, q.edns_do, _BADVERS >> 4))
        if tcp:
            limit = 65535
            variant = 65535 << 5 | 4 | (1 if q.edns else 0) | (2 if q.edns and q.edns_do else 0)
        elif q.edns:
            limit = self._size_class(q.edns_size)
            variant = limit << 5 | 1 | (2 if q.edns_do else 0)
        else:
            limit = 512
            variant = 512 << 5
        variant |= ((q.flags >> 8) & 1) << 3 | ((q.flags & 0x10) << 1)
        qn = len(q.question) - 4
        key = (q.question[:qn].lower(), q.question[qn:], variant)
        idx = self.view.index
        if idx != self._index:
            self._flush(idx)
        e = self._cache.get(key)
        if e is not None and e.exp and self.clock() >= e.exp:
            self._expire(key, e)
            e = None
        r = 0
        if e is not None:
            e.hits += 1
            if not chase:
                # the query was counted when it was asked; only its answer is counted now
                e.folded += 1
                c.rcodes[e.rcode] += 1
                if e.tc:
                    c.truncated += 1
            if e.n > 1:
                r = e.hits % e.n
        else:
            if chase:          # (a completed chase was counted when it was asked)
                c.cache_misses += 1
                c.queries += 1
                c.qtypes[q.qtype] = c.qtypes.get(q.qtype, 0) + 1
            e = self._build(q, tcp, limit, chase)
            if e.chase:
                c.chases += 1
                return Forward(data, tcp, chase=e.chase)
            if not e.partial:
                self._bytes += e.size
                while self._cache and (len(self._cache) >= self._cap
                                       or self._bytes > self._max_bytes):
                    self._evict_oldest()
                self._cache[key] = e
            if not e.forward:
                c.rcodes[e.rcode] += 1
                if e.tc:
                    c.truncated += 1
        if e.forward:
            return self._forward(data, tcp, e.remote)
        t = e.tails[r] if r < len(e.tails) else None
        if t is None:
            t = self._variant(e, r)
        qend = 12 + len(q.question)
        return data[:2] + t[:10] + data[12:qend] + t[qend - 2:]

    def _expire(self, key: tuple[bytes, bytes, int], e: _Entry) -> None:
        """Drop an entry whose chased records expired (it is in no exact-bytes index)."""
        del self._cache[key]
        self._bytes -= e.size
        self._fold(e)

    def _build(self, q: ParsedQuery, tcp: bool, limit: int, chase: bool = True) -> _Entry:
        e = _Entry()
        e.qtype = q.qtype
        self._want = []
        self._exp = 0.0
        self._now = 0.0
        ans = self._resolve(q)
        want = self._want
        if want:
            self._want = []
            if chase:
                e.chase = tuple(dict.fromkeys(want))
                e.n = 0
                return e
            e.partial = True
        e.exp = self._exp
        if ans is None or isinstance(ans, _Elsewhere):
            e.forward = True
            e.remote = ans
            e.n = 0
            return e
        e.ans = ans
        e.rcode = ans.rcode
        e.qlen = len(q.question)
        e.limit = limit
        count = len(ans.answers)
        cfg = self.config
        if ans.addr_limited and cfg.a_record_limit:
            count = min(count, cfg.a_record_limit)
        if not tcp and cfg.udp_answer_limit and ans.answers:
            count = min(count, cfg.udp_answer_limit)
        e.count = count
        e.opt = opt_rr(self._max_udp, q.edns_do) if q.edns else b""
        e.n = len(ans.answers) if ans.rotate and len(ans.answers) > 1 else 1
        flags = 0x8000 | 0x0400 | self._ra | ans.rcode | (q.flags & 0x0110)
        if ans.rcode == REFUSED:
            flags &= ~0x0400
        first, e.tc = self._assemble(e, 0, flags, q.question)
        e.tails = [first[2:]]
        e.size = len(first) + 64 + sum(len(x) for x in ans.answers)
        if ans.follow:
            e.size += sum(len(x) for f in ans.follow for x in f)
        return e

    def _variant(self, e: _Entry, r: int) -> bytes:
        """Rotation ``r`` of a cached answer, without the ID (kept if within
        cache_max_rotations and the byte budget)."""
        first = e.tails[0]
        assert first is not None
        flags = ((first[0] << 8) | first[1]) & ~0x0200
        pkt, _tc = self._assemble(e, r, flags, first[10:10 + e.qlen])
        tail = pkt[2:]
        if r < self._max_rot and self._bytes + len(tail) <= self._max_bytes:
            while len(e.tails) <= r:
                e.tails.append(None)
            e.tails[r] = tail
            e.size += len(tail)
            self._bytes += len(tail)
        return tail

    def _assemble(self, e: _Entry, r: int, flags: int, question: bytes) -> tuple[bytes, bool]:
        """Fit rotation ``r`` of ``e.ans`` into ``e.limit`` bytes; returns (packet, truncated)."""
        ans = e.ans
        assert ans is not None
        answers = ans.answers
        groups = ans.groups
        k = len(answers)
        order = list(range(k))
        if r and k:
            r %= k
            order = order[r:] + order[:r]
        order = order[:e.count]
        budget = e.limit - 12 - len(question) - len(e.opt)
        out_an: list[bytes] = []
        out_ad: list[bytes] = []
        tc = False
        follow = ans.follow
        for i in order:
            a = answers[i]
            g = groups[i] if groups else []
            f = follow[i] if follow else []
            need = len(a) + sum(len(x) for x in g) + sum(len(x) for x in f)
            if need > budget:
                if len(a) <= budget and not out_an:
                    out_an.append(a)          # the record without its glue, rather than none
                    budget -= len(a)
                tc = True
                break
            out_an.append(a)
            out_an.extend(f)
            out_ad.extend(g)
            budget -= need
        out_ns: list[bytes] = []
        for a in ans.authority:
            if len(a) > budget:
                tc = True
                break
            out_ns.append(a)
            budget -= len(a)
        for a in ans.extra:
            if len(a) <= budget:
                out_ad.append(a)
                budget -= len(a)
        truncated = tc
        if tc and self.config.enable_truncate:
            flags |= 0x0200
        ar = len(out_ad) + (1 if e.opt else 0)
        head = struct.pack("!6H", 0, flags, 1, len(out_an), len(out_ns), ar)
        return b"".join([head, question, *out_an, *out_ns, *out_ad, e.opt]), truncated

    # -- name grammar and records -------------------------------------------------------------
    @staticmethod
    def _forward(data: bytes, tcp: bool, where: _Elsewhere | None) -> Forward:
        if where is None:
            return Forward(data, tcp)
        return Forward(data, tcp, where.datacenter, where.query)

    def _resolve(self, q: ParsedQuery) -> _Answer | _Elsewhere | None:
        """The answer to a well-formed question, None when it must be forwarded, or the name
        of the other datacenter whose view answers it."""
        qtype = q.qtype
        if q.qclass not in (1, 255):
            return _Answer(REFUSED)
        if qtype in (AXFR, IXFR):
            return _Answer(NOTIMP)
        low = tuple(x.lower() for x in q.labels)
        comp = Compressor(q.labels)
        for dom in self._domains:
            if len(low) >= len(dom) and low[len(low) - len(dom):] == dom:
                asked = q.labels[len(q.labels) - len(dom):]
                rest = [x.decode("utf-8", "replace") for x in low[:len(low) - len(dom)]]
                return self._in_domain(rest, qtype, asked, comp)
        if len(low) >= 2 and low[-1] == b"arpa" and low[-2] in (b"in-addr", b"ip6"):
            ans = self._reverse(low, qtype, comp)
            if ans is not None:
                return ans
            if self.forwarding:
                return None
            return self._negative(NXDOMAIN, labels_of(self.config.domain), comp)
        if self.forwarding:
            return None
        return _Answer(REFUSED)

    def _soa(self, dom: tuple[bytes, ...], comp: Compressor) -> bytes:
        soa = self.config.soa
        rdata = (comp.name((b"ns", *dom)) + comp.name((b"hostmaster", *dom))
                 + _SOA_TIMERS.pack(self.view.index & 0xFFFFFFFF, soa.refresh, soa.retry,
                                    soa.expire, soa.min_ttl))
        return rr(comp.name(dom), SOA, soa.min_ttl, rdata)

    def _negative(self, rcode: int, dom: tuple[bytes, ...], comp: Compressor) -> _Answer:
        """NXDOMAIN or NODATA (rcode NOERROR) with the SOA in authority (RFC 2308)."""
        return _Answer(rcode, authority=[self._soa(dom, comp)])

    def _outside(self, low: Labels) -> bool:
        """True when ``low`` (lower-case labels) is under none of our domains."""
        for dom in self._domains:
            if len(low) >= len(dom) and low[len(low) - len(dom):] == dom:
                return False
        return True

    def _chased_rrs(self, target: Labels, rtype: int, ttl: int, comp: Compressor) -> list[bytes]:
        """The recursors' records for a CNAME target outside our domains (its own CNAME chain,
        then its ``rtype`` records), encoded with TTL min(``ttl``, theirs, time left); [] when
        chasing is off, the target is ours, or they gave nothing. A target not asked yet is
        noted in ``_want`` (the server chases it, then :meth:`complete` builds the answer)."""
        low = tuple(x.lower() for x in target)
        if not self.chase or not low or not self._outside(low):
            return []
        if not self._now:
            self._now = self.clock()
        now = self._now
        got = self.chased.get(low, rtype, now)
        if got is None:
            self._want.append((low, rtype))
            return []
        exp = got.expires
        left = int(exp - now)
        if got.records and ttl > 0:
            # the TTLs we hand out count down: rebuild this answer at least every second
            exp = min(exp, now + 1.0)
        if not self._exp or exp < self._exp:
            self._exp = exp
        out: list[bytes] = []
        try:
            for r in got.records:
                rdata = comp.name(r.rdata) if isinstance(r.rdata, tuple) else r.rdata
                out.append(rr(comp.name(r.owner), r.rtype, max(0, min(ttl, r.ttl, left)), rdata))
        except ValueError:
            return []
        return out

    def _in_domain(self, rest: list[str], qtype: int, dom: tuple[bytes, ...],
                   comp: Compressor) -> _Answer | _Elsewhere:
        view = self.view
        if len(rest) >= 4 and rest[-1] == "dc" and rest[-3] in _KEYWORDS:
            rest = rest[:-1]             # Consul's explicit form: <name>.<kind>.<dc>.dc
        if not rest:
            return self._apex(qtype, dom, comp)
        if rest == ["ns"]:
            return self._ns_host(qtype, dom, comp)
        kind = ""
        dc: str | None = None
        parts: list[str] = []
        if len(rest) in (2, 3) and rest[0].startswith("_") and rest[1].startswith("_"):
            kind, parts = "service", rest[:2]          # RFC 2782 without ".service"
            dc = rest[2] if len(rest) == 3 else None
            if dc == "service":
                dc = None
        elif rest[-1] in _KEYWORDS:
            kind, parts = rest[-1], rest[:-1]
        elif len(rest) >= 2 and rest[-2] in _KEYWORDS:
            kind, parts, dc = rest[-2], rest[:-2], rest[-1]
        if not kind or not parts:
            return self._negative(NXDOMAIN, dom, comp)
        if dc is not None and dc != view.datacenter.lower():
            if self.remote and kind in ("service", "node"):
                return _Elsewhere(datacenter=dc)   # answered from that datacenter's view
            return self._negative(NXDOMAIN, dom, comp)
        if kind == "service":
            return self._service(parts, qtype, dom, comp)
        if kind == "node":
            return self._node(".".join(parts), qtype, dom, comp)
        if kind == "addr":
            return self._addr(parts, qtype, dom, comp)
        if kind == "query" and len(parts) == 1:
            if self.query_view:            # the results are registered under the query's name
                return self._service(parts, qtype, dom, comp)
            if self.remote:
                return _Elsewhere(query=parts[0])
        return self._negative(NXDOMAIN, dom, comp)       # connect, ingress: not served

    def _apex(self, qtype: int, dom: tuple[bytes, ...], comp: Compressor) -> _Answer:
        answers: list[bytes] = []
        extra: list[bytes] = []
        if qtype in (SOA, ANY):
            answers.append(self._soa(dom, comp))
        if qtype in (NS, ANY):
            answers.append(rr(comp.name(dom), NS, self.config.soa.min_ttl,
                              comp.name((b"ns", *dom))))
            extra.extend(self._glue_rrs(dom, comp, 0))
        if not answers:
            return self._negative(NOERROR, dom, comp)
        return _Answer(NOERROR, answers, extra=extra)

    def _glue_rrs(self, dom: tuple[bytes, ...], comp: Compressor, qtype: int) -> list[bytes]:
        g = self._glue
        if g is None:
            return []
        rtype = A if g.version == 4 else AAAA
        if qtype not in (0, ANY, rtype):
            return []
        return [rr(comp.name((b"ns", *dom)), rtype, int(self.config.node_ttl), g.packed)]

    def _ns_host(self, qtype: int, dom: tuple[bytes, ...], comp: Compressor) -> _Answer:
        recs = self._glue_rrs(dom, comp, qtype)
        if not recs:
            return self._negative(NOERROR, dom, comp)
        return _Answer(NOERROR, recs)

    def _service(self, parts: list[str], qtype: int, dom: tuple[bytes, ...],
                 comp: Compressor) -> _Answer:
        tag: str | None = None
        if len(parts) == 1:
            svc = parts[0]
        elif len(parts) == 2 and parts[0].startswith("_") and parts[1].startswith("_"):
            svc, tag = parts[0][1:], parts[1][1:]
            if tag in ("tcp", "udp"):
                tag = None                 # the protocol label of RFC 2782, not a tag
        elif len(parts) == 2:
            tag, svc = parts
        else:
            return self._negative(NXDOMAIN, dom, comp)
        if not svc:
            return self._negative(NXDOMAIN, dom, comp)
        insts = self.view.instances(svc, tag, passing_only=self.config.only_passing)
        if not insts:
            return self._negative(NXDOMAIN, dom, comp)
        ttl = self.config.ttl_for_service(svc)
        owner = comp.name(comp.question)
        if qtype == SRV:
            return self._srv(insts, owner, ttl, dom, comp)
        if qtype in (A, AAAA, ANY):
            answers: list[bytes] = []
            cnames: list[bytes] = []
            targets: list[Labels] = []
            seen: set[bytes] = set()
            seen_names: set[bytes] = set()
            for inst in insts:
                host = inst.address or inst.node_address
                ip = _ip(host)
                if ip is None:
                    # A host name as the address: Consul answers with a CNAME to it.
                    try:
                        labels = labels_of(host)
                        target = comp.name(labels)
                    except ValueError:
                        continue
                    if target not in seen_names:
                        seen_names.add(target)
                        cnames.append(rr(owner, CNAME, ttl, target))
                        targets.append(labels)
                    continue
                rtype = A if ip.version == 4 else AAAA
                if (qtype != ANY and rtype != qtype) or ip.packed in seen:
                    continue
                seen.add(ip.packed)
                answers.append(rr(owner, rtype, ttl, ip.packed))
            if answers:
                # A CNAME cannot share its name with other data (RFC 1034 §3.6.2): when some
                # instances have addresses, the host-named ones are left out.
                return _Answer(NOERROR, answers, rotate=True, addr_limited=True)
            if cnames:
                # ... followed by the target's A/AAAA from the recursors (as Consul does)
                follow = None
                if qtype != ANY and self.chase:
                    follow = [self._chased_rrs(t, qtype, ttl, comp) for t in targets]
                return _Answer(NOERROR, cnames, rotate=True, follow=follow)
        return self._negative(NOERROR, dom, comp)

    def _srv(self, insts: Sequence[Instance], owner: bytes, ttl: int, dom: tuple[bytes, ...],
             comp: Compressor) -> _Answer:
        answers: list[bytes] = []
        groups: list[list[bytes]] = []
        for inst in insts:
            weight = inst.weight_passing if inst.health == "passing" else inst.weight_warning
            glue: list[bytes] = []
            dc = inst.datacenter.encode()
            try:
                addr = inst.address
                if not addr or addr == inst.node_address:
                    target = comp.name((*labels_of(inst.node), b"node", dc, *dom))
                    ip = _ip(inst.node_address)
                else:
                    ip = _ip(addr)
                    if ip is not None:
                        target = comp.name((_hexip(ip).encode(), b"addr", dc, *dom))
                    else:
                        # a host name: its records from the recursors as glue, when chasing
                        labels = labels_of(addr)
                        target = comp.name(labels)
                        if self.chase:
                            for rtype in (A, AAAA):
                                for g in self._chased_rrs(labels, rtype, ttl, comp):
                                    if g not in glue:      # a CNAME chain shared by both
                                        glue.append(g)
                if ip is not None:
                    glue.append(rr(target, A if ip.version == 4 else AAAA, ttl, ip.packed))
            except ValueError:
                continue                                       # a name we cannot encode
            rdata = _SRV_FIXED.pack(1, max(0, min(weight, 65535)), inst.port & 0xFFFF) + target
            answers.append(rr(owner, SRV, ttl, rdata))
            groups.append(glue)
        if not answers:
            return self._negative(NOERROR, dom, comp)
        return _Answer(NOERROR, answers, groups, rotate=True)

    def _node(self, name: str, qtype: int, dom: tuple[bytes, ...], comp: Compressor) -> _Answer:
        node = self.view.node(name)
        if node is None or node.status == "left":
            return self._negative(NXDOMAIN, dom, comp)
        ttl = int(self.config.node_ttl)
        owner = comp.name(comp.question)
        answers: list[bytes] = []
        extra: list[bytes] = []
        ip = _ip(node.address)
        if ip is not None:
            rtype = A if ip.version == 4 else AAAA
            if qtype in (rtype, ANY):
                answers.append(rr(owner, rtype, ttl, ip.packed))
        elif node.address and qtype in (A, AAAA, ANY):
            # A host name as the node's address: a CNAME (and, for A/AAAA, the target's
            # records from the recursors), as for a service.
            try:
                labels = labels_of(node.address)
                cname = rr(owner, CNAME, ttl, comp.name(labels))
            except ValueError:
                cname = b""
            if cname:
                follow = [] if qtype == ANY else self._chased_rrs(labels, qtype, ttl, comp)
                return _Answer(NOERROR, [cname], follow=[follow])
        # One TXT record per meta key, "key=value" (Consul's form).
        txts = [rr(owner, TXT, ttl, t) for t in self._txt(node.meta)]
        if qtype in (TXT, ANY):
            answers.extend(txts)
        elif answers and self.config.enable_additional_node_meta_txt:
            extra.extend(txts)            # as Consul: node meta in the additional section
        if not answers:
            return self._negative(NOERROR, dom, comp)
        return _Answer(NOERROR, answers, extra=extra)

    @staticmethod
    def _txt(meta: Mapping[str, str]) -> list[bytes]:
        out = []
        for k, v in sorted(meta.items()):
            s = f"{k}={v}".encode()[:255]
            out.append(bytes([len(s)]) + s)
        return out

    def _addr(self, parts: list[str], qtype: int, dom: tuple[bytes, ...],
              comp: Compressor) -> _Answer:
        if len(parts) != 1 or len(parts[0]) not in (8, 32):
            return self._negative(NXDOMAIN, dom, comp)
        try:
            raw = bytes.fromhex(parts[0])
        except ValueError:
            return self._negative(NXDOMAIN, dom, comp)
        rtype = A if len(raw) == 4 else AAAA
        if qtype not in (rtype, ANY):
            return self._negative(NOERROR, dom, comp)
        owner = comp.name(comp.question)
        return _Answer(NOERROR, [rr(owner, rtype, int(self.config.node_ttl), raw)])

    def _reverse(self, low: tuple[bytes, ...], qtype: int, comp: Compressor) -> _Answer | None:
        try:
            if low[-2] == b"in-addr":
                octets = low[:-2]
                if len(octets) != 4:
                    return None
                ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(
                    ".".join(x.decode() for x in reversed(octets)))
            else:
                nibbles = low[:-2]
                if len(nibbles) != 32 or any(len(x) != 1 for x in nibbles):
                    return None
                ip = ipaddress.IPv6Address(bytes.fromhex("".join(x.decode()
                                                                for x in reversed(nibbles))))
        except (ValueError, UnicodeDecodeError):
            return None
        view = self.view
        dom = labels_of(self.config.domain)
        dc = view.datacenter.encode()
        targets: list[tuple[bytes, ...]] = []
        for node in view.nodes():
            if _ip(node.address) == ip and node.status != "left":
                targets.append((*labels_of(node.name), b"node", node.datacenter.encode(), *dom))
        for svc in sorted(view.services()):
            for inst in view.instances(svc):
                if inst.address and _ip(inst.address) == ip:
                    t = (*labels_of(inst.service), b"service", dc, *dom)
                    if t not in targets:
                        targets.append(t)
        if not targets:
            return None
        if qtype not in (PTR, ANY):
            return self._negative(NOERROR, dom, comp)
        owner = comp.name(comp.question)
        answers = []
        ttl = int(self.config.node_ttl)
        for t in targets:
            try:
                answers.append(rr(owner, PTR, ttl, comp.name(t)))
            except ValueError:
                continue
        return _Answer(NOERROR, answers)


def answer(query: bytes, view: View, config: DNSConfig | None = None, *, tcp: bool = False,
           counters: DNSCounters | None = None) -> bytes | None:
    """Answer one query without sockets or cache state (sans-I/O). ``None`` means drop.

    Names outside the domain get REFUSED here (no forwarding without I/O); for the cached,
    forwarding-aware form use :class:`Resolver`.
    """
    res = Resolver(config or DNSConfig(), view, counters=counters, forwarding=False)
    out = res.handle(query, tcp)
    res.close()
    if isinstance(out, Forward):     # pragma: no cover - forwarding=False never forwards
        return header_only(query, REFUSED)
    return out

"""The batched UDP path (dnsserver/_udpc.c: recvmmsg/sendmmsg) against the reference path
(the asyncio datagram transport), on real loopback sockets.

Both paths must give byte-for-byte the same answers to the same queries in the same order
(rotation included), the batched one must answer what is queued without waiting for a batch to
fill, and its cache must follow every catalog change (no stale answer in a burst either)."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import struct
import sysconfig
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import pytest

from dnsserver import DNSConfig, DNSServer, MemoryView
from dnsserver import server as server_mod
from tests.harness.ci_skips import in_ci

from .conftest import addrs, populated_view

NOT_BUILT = ("the C extension dnsserver/_udpc.c is not built here: it needs gcc and Python's "
             "headers (python3-dev) at install; scripts/setup-system.sh installs both")


@pytest.fixture(scope="module")
def udpc() -> object:
    """The C module; in CI its absence is a failure, elsewhere the C-only tests skip."""
    mod = server_mod._udpc
    if mod is None:
        if in_ci() and not os.environ.get("RUMOR_PURE_PYTHON"):
            pytest.fail(NOT_BUILT)
        pytest.skip(NOT_BUILT)
    return mod


def test_the_c_extension_is_built_where_a_compiler_is() -> None:
    """The batched path must not silently go missing: with a compiler and Python's headers
    (as on CI) the install builds it, and the server uses it by default."""
    if os.environ.get("RUMOR_PURE_PYTHON"):
        pytest.skip("pure Python forced by RUMOR_PURE_PYTHON")
    headers = Path(sysconfig.get_paths()["include"], "Python.h").exists()
    if not in_ci() and not (shutil.which("cc") and headers):
        pytest.skip("no C compiler or Python headers here")
    assert server_mod.HAVE_BATCH, NOT_BUILT
    assert DNSServer(DNSConfig(), MemoryView("dc1")).udp_batch
    if not os.environ.get("RUMOR_DNS_NO_THREAD"):
        assert DNSServer(DNSConfig(), MemoryView("dc1")).udp_thread   # the view can subscribe


# -- the two functions on raw sockets --------------------------------------------------------------
def _pair() -> tuple[socket.socket, socket.socket]:
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    srv.setblocking(False)
    cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cli.bind(("127.0.0.1", 0))
    cli.settimeout(2)
    return srv, cli


def test_recv_takes_what_is_queued_and_never_waits(udpc: object) -> None:
    srv, cli = _pair()
    try:
        assert udpc.recv(srv.fileno(), 64, 4096) == []          # type: ignore[attr-defined]
        sent = [bytes([i]) * (i + 1) for i in range(10)]
        for d in sent:
            cli.sendto(d, srv.getsockname())
        got: list[tuple[bytes, bytes]] = []
        for _ in range(200):                       # loopback delivery is immediate, but poll
            got += udpc.recv(srv.fileno(), 4, 4096)  # type: ignore[attr-defined]
            if len(got) == len(sent):
                break
        assert [d for d, _ in got] == sent
        # The peer is the raw sockaddr_in of the client: family, port, address.
        fam, port = struct.unpack_from("=HH", got[0][1])
        assert fam == socket.AF_INET
        assert socket.ntohs(port) == cli.getsockname()[1]
        assert socket.inet_ntoa(got[0][1][4:8]) == "127.0.0.1"
        # send() answers to those raw addresses, as sendto() would.
        n = udpc.send(srv.fileno(), [(b"re:" + d, a) for d, a in got])  # type: ignore[attr-defined]
        assert n == len(got)
        assert [cli.recv(100) for _ in got] == [b"re:" + d for d in sent]
    finally:
        srv.close()
        cli.close()


def test_recv_cuts_an_oversized_datagram_so_it_stays_oversized(udpc: object) -> None:
    srv, cli = _pair()
    try:
        cli.sendto(b"x" * 3000, srv.getsockname())
        cli.sendto(b"y" * 100, srv.getsockname())
        got: list[tuple[bytes, bytes]] = []
        for _ in range(200):
            got += udpc.recv(srv.fileno(), 64, 512)  # type: ignore[attr-defined]
            if len(got) == 2:
                break
        assert [len(d) for d, _ in got] == [513, 100]
    finally:
        srv.close()
        cli.close()


def test_send_rejects_what_is_not_bytes_pairs(udpc: object) -> None:
    srv, _cli = _pair()
    try:
        with pytest.raises(TypeError):
            udpc.send(srv.fileno(), [("text", b"")])  # type: ignore[attr-defined]
        with pytest.raises(ValueError):
            udpc.send(srv.fileno(), [(b"x", b"a" * 1000)])  # type: ignore[attr-defined]
        assert udpc.send(srv.fileno(), []) == 0  # type: ignore[attr-defined]
    finally:
        srv.close()
        _cli.close()


# -- the server, both paths ---------------------------------------------------------------------
def _queries() -> list[bytes]:
    """Queries of every kind the hot and slow paths see, with fixed IDs."""
    rng = random.Random(7)
    out = []
    names = [("web.service.rumor", "A"), ("_web._tcp.service.rumor", "SRV"),
             ("big.service.rumor", "A"), ("n1.node.rumor", "TXT"), ("nope.service.rumor", "A"),
             ("WeB.SeRvIcE.rumor", "A"), ("api6.service.rumor", "AAAA"), ("rumor", "SOA"),
             ("example.org", "A"), ("0a000001.addr.dc1.rumor", "A")]
    for i in range(4):
        for name, rd in names:
            q = dns.message.make_query(name, rd, use_edns=i % 2 == 1)
            q.id = rng.randrange(65536)
            out.append(q.to_wire())
    out.append(b"\x12\x34garbage")                       # malformed: dropped
    out.append(b"\x12\x34" + b"\x01\x00" + b"\x00" * 8)    # no question: FORMERR
    out.append(b"x" * 5000)                              # oversized: dropped
    return out


async def _ask_all(port: int, queries: list[bytes], burst: bool) -> list[bytes | None]:
    """Send the queries (one at a time, or all at once as a burst) and collect the answers,
    matched to the queries by ID and question (None when the server dropped one)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect(("127.0.0.1", port))
    answers: list[bytes | None] = []
    try:
        if burst:
            for q in queries:
                sock.send(q)
            got: list[bytes] = []
            want = sum(1 for q in queries if _answerable(q))
            try:
                async with asyncio.timeout(3):
                    while len(got) < want:
                        got.append(await loop.sock_recv(sock, 65535))
            except TimeoutError:
                pass
            return sorted(got)       # type: ignore[return-value]
        for q in queries:
            sock.send(q)
            try:
                async with asyncio.timeout(0.3 if not _answerable(q) else 3):
                    answers.append(await loop.sock_recv(sock, 65535))
            except TimeoutError:
                answers.append(None)
    finally:
        sock.close()
    return answers


def _answerable(q: bytes) -> bool:
    return len(q) >= 12 and len(q) <= 4096 and not q.endswith(b"garbage")


PATHS = {"reference": False, "batched": True, "thread": "thread"}
"""The three UDP paths: the asyncio transport, recvmmsg/sendmmsg on the loop (_BatchUDP), and
cache hits on the C thread (_ThreadUDP)."""


async def _serve(view: MemoryView, batch: bool | str) -> DNSServer:
    thread = batch == "thread"
    srv = DNSServer(DNSConfig(port=0, bind_addr="127.0.0.1"), view, udp_batch=bool(batch),
                    udp_thread=thread)
    await srv.start()
    assert (srv._thread is not None) is thread
    return srv


async def test_both_paths_give_the_same_answers(udpc: object) -> None:
    results: dict[object, object] = {}
    for batch in PATHS.values():
        srv = await _serve(populated_view(), batch)
        try:
            assert srv.udp_batch is bool(batch)
            results[batch] = await _ask_all(srv.udp_port, _queries(), burst=False)
            snap = srv.counters.snapshot()
            results[(batch, "counters")] = {k: snap[k] for k in ("queries", "cache_hits")}
        finally:
            await srv.stop()
    assert results[True] == results[False] == results["thread"]
    assert (results[(True, "counters")] == results[(False, "counters")]
            == results[("thread", "counters")])
    assert results[True][-1] is None and results[True][-3] is None      # dropped by both
    assert dns.message.from_wire(results[True][-2]).rcode() == dns.rcode.FORMERR  # type: ignore[arg-type]


async def test_repeated_queries_rotate_the_same_on_both(udpc: object) -> None:
    """The same bytes again and again: answered by the C side's level-1 hits on the batched
    path, by Resolver.handle on the reference path; the round-robin turns must be the same."""
    results: dict[object, object] = {}
    for batch in PATHS.values():
        srv = await _serve(populated_view(), batch)
        try:
            qs = []
            for name in ("web.service.rumor", "big.service.rumor", "_web._tcp.service.rumor"):
                rd = "SRV" if name.startswith("_") else "A"
                q = dns.message.make_query(name, rd, use_edns=False)
                q.id = 4242
                qs += [q.to_wire()] * 7
            results[batch] = await _ask_all(srv.udp_port, qs, burst=False)
            snap = srv.counters.snapshot()
            results[(batch, "hits")] = snap["cache_hits"]
        finally:
            await srv.stop()
    assert results[True] == results[False] == results["thread"]
    assert (results[(True, "hits")] == results[(False, "hits")] == results[("thread", "hits")]
            == 18)
    firsts = [dns.message.from_wire(w).answer[0][0].to_text() for w in results[True][:7]]  # type: ignore[arg-type]
    assert len(set(firsts)) == 3                    # the three web instances take turns


async def test_a_burst_is_answered_whole_and_the_same_by_both(udpc: object) -> None:
    results: dict[object, list[bytes | None]] = {}
    queries = [q for q in _queries() if _answerable(q)] * 5
    for batch in PATHS.values():
        srv = await _serve(populated_view(), batch)
        try:
            results[batch] = await _ask_all(srv.udp_port, queries, burst=True)
        finally:
            await srv.stop()
    assert len(results[True]) == len(queries)
    assert results[True] == results[False]
    # The C thread answers the repeats of a name while the loop may still be answering the
    # first ones, each rotating the records from where its own copy stood: under load the
    # order of the records within an answer can differ from the loop's (never the records).
    assert [_unordered(w) for w in results["thread"]] == [_unordered(w) for w in results[True]]


def _unordered(wire: bytes | None) -> object:
    """An answer with the order of the records inside each section left out."""
    if wire is None:
        return None
    m = dns.message.from_wire(wire)
    return (m.id, m.flags, m.rcode(), [str(q) for q in m.question],
            *(sorted(line for rrset in section for line in rrset.to_text().splitlines())
              for section in (m.answer, m.authority, m.additional)))


@pytest.mark.parametrize("path", ["batched", "thread"])
async def test_the_batched_cache_follows_every_catalog_change(udpc: object, path: str) -> None:
    """A burst, a change, a burst: every answer of the second burst sees the change."""
    view = populated_view()
    srv = await _serve(view, PATHS[path])
    q = dns.message.make_query("web.service.rumor", "A", use_edns=False).to_wire()
    try:
        for step in range(5):
            got = await _ask_all(srv.udp_port, [q] * 20, burst=True)
            assert len(got) == 20
            want = {"10.0.0.1", "10.1.1.2", "10.0.0.3"} | {f"10.9.0.{i + 1}" for i in range(step)}
            for wire in got:
                assert set(addrs(dns.message.from_wire(wire))) == want   # type: ignore[arg-type]
            view.add_node(f"new{step}", f"10.9.0.{step + 1}")
            view.register(f"new{step}", "web", port=80)
    finally:
        await srv.stop()


async def test_rate_limiting_keeps_the_reference_path() -> None:
    from dnsserver import RateLimitConfig

    cfg = DNSConfig(port=0, bind_addr="127.0.0.1",
                    rate_limit=RateLimitConfig(responses_per_second=1000))
    assert DNSServer(cfg, MemoryView("dc1")).udp_batch is False
    if server_mod.HAVE_BATCH:
        with pytest.raises(ValueError):
            DNSServer(cfg, MemoryView("dc1"), udp_batch=True)


async def test_one_queued_query_is_answered_at_once_not_held_for_a_batch(udpc: object) -> None:
    """At low rates a wake-up finds one datagram: it is answered and sent within that call
    (the answer is in the client's queue when readable() returns), never held for more."""
    import select

    srv = await _serve(populated_view(), True)             # the loop's batched path
    batch = srv._batch
    assert batch is not None
    asyncio.get_running_loop().remove_reader(batch.fd)     # drive it by hand
    cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        cli.connect(("127.0.0.1", srv.udp_port))
        for _ in range(3):                                # a miss, then level-1 hits
            q = dns.message.make_query("web.service.rumor", "A", use_edns=False)
            cli.send(q.to_wire())
            assert select.select([batch.fd], [], [], 2)[0]   # queued on the server socket
            batch.readable()
            assert select.select([cli], [], [], 0)[0], "not answered within the call"
            assert dns.message.from_wire(cli.recv(512)).id == q.id
        batch.readable()                                  # nothing queued: returns at once
        assert not select.select([cli], [], [], 0)[0]
    finally:
        cli.close()
        await srv.stop()


@pytest.mark.parametrize("path", ["batched", "thread"])
async def test_the_batched_path_serves_ipv6(udpc: object, path: str) -> None:
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.fail("no IPv6 loopback here: the batched path's sockaddr_in6 goes untested")
    srv = DNSServer(DNSConfig(port=0, bind_addr="::1"), populated_view(), udp_batch=True,
                    udp_thread=path == "thread")
    await srv.start()
    cli = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    cli.settimeout(3)
    try:
        q = dns.message.make_query("web.service.rumor", "A", use_edns=False)
        for _ in range(5):                      # misses, then hits (on the thread's path)
            cli.sendto(q.to_wire(), ("::1", srv.udp_port))
            m = dns.message.from_wire(await asyncio.to_thread(cli.recv, 512))
            assert m.id == q.id and len(addrs(m)) == 3
    finally:
        cli.close()
        await srv.stop()


# -- the C thread (_udpc.Server) on raw sockets ----------------------------------------------------
def _wait_readable(fd: int, timeout: float = 5) -> bool:
    import select

    return bool(select.select([fd], [], [], timeout)[0])


def test_the_thread_answers_what_it_holds_at_the_current_generation_only(udpc: Any) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cli.settimeout(5)
    cli.connect(srv.getsockname())
    t = udpc.Server(srv.fileno(), 512, 4096, 2, [1000, 10_000], 8, 64)
    owner = type("Owner", (), {})()
    try:
        key = b"\x01\x00question"
        tails = [b"-one", b"-two", b"-three"]
        assert t.generation == 1
        assert t.put(key, 0, tails, 0, owner) is False          # built before a change
        assert t.put(key, 1, tails, 0, owner) is True
        got = []
        for i in range(4):                      # the rotation goes on from turn 0: 1, 2, 0, 1
            cli.send(bytes([0xAB, i]) + key)
            got.append(cli.recv(100))
        assert got == [b"\xab\x00-two", b"\xab\x01-three", b"\xab\x02-one", b"\xab\x03-two"]
        assert not _wait_readable(t.eventfd, 0)                 # nothing went to Python
        assert t.hits() == [(owner, 4)] and t.hits() == []      # taken once
        # a change: the same bytes now go to Python, with the sender's raw address
        assert t.bump() == 2 and t.generation == 2
        cli.send(b"\xab\x09" + key)
        assert _wait_readable(t.eventfd)
        (data, addr), = t.take()
        assert data == b"\xab\x09" + key
        assert socket.inet_ntoa(addr[4:8]) == "127.0.0.1"
        assert int.from_bytes(addr[2:4], "big") == cli.getsockname()[1]
        assert not _wait_readable(t.eventfd, 0) and t.take() == []   # reset by take()
        # too short, and longer than size: Python's (which drops them), never looked up
        cli.send(b"\xab")
        cli.send(b"\xab\x0a" + key + b"x" * 600)
        items: list[tuple[bytes, bytes]] = []
        while len(items) < 2 and _wait_readable(t.eventfd):
            items += t.take()
        assert [len(d) for d, _ in items] == [1, 513]           # cut to size + 1
        # the table is capped (max_entries=2) and a clear empties it, returning its hits
        assert t.put(key, 2, [b"-x"], 0, owner) and t.put(b"k2", 2, [b"-y"], 0, owner)
        assert t.put(b"k3", 2, [b"-z"], 0, owner) is False and t.entries == 2
        cli.send(b"\x00\x01" + key)
        assert cli.recv(100) == b"\x00\x01-x"
        assert t.clear() == [(owner, 1)] and t.entries == 0
        # and so are its bytes (max_bytes=64: keys and packets)
        assert t.put(b"k" * 30, 2, [b"-" * 30], 0, owner) is True         # 60
        assert t.put(b"k4", 2, [b"-" * 10], 0, owner) is False             # 72 > 64
        assert t.put(b"k" * 30, 2, [b"+" * 34], 0, owner) is True          # replaced: 64
        assert t.entries == 1
        t.clear()
        # one sampling sequence across both sides: one turn in 8 is timed
        # (the thread's own 5 answers count in the same sequence)
        assert sum(t.tick(1) for _ in range(32)) == 4
        assert [t.tick(8), t.tick(16), t.tick(0)] == [1, 2, 0]
    finally:
        t.stop()
        srv.close()
        cli.close()
    assert t.dropped == 0


def test_the_thread_stops_at_once_and_answers_nothing_after(udpc: Any) -> None:
    import time

    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cli.connect(srv.getsockname())
    t = udpc.Server(srv.fileno(), 512, 4096, 10, [], 0)
    try:
        assert t.put(b"\x01\x00q", 1, [b"-a"], 0, None)
        start = time.monotonic()
        t.stop()                                  # wakes the blocked recvmmsg (shutdown)
        assert time.monotonic() - start < 0.9     # not the one-second receive timeout
        cli.send(b"\x00\x01\x01\x00q")
        cli.settimeout(0.3)
        with pytest.raises(TimeoutError):
            cli.recv(100)
    finally:
        srv.close()
        cli.close()

"""Forwarding to recursors (a dnslib server, dnsmasq), failover, SERVFAIL, and dnsmasq in front."""

from __future__ import annotations

import asyncio
import re
import shutil
import time

import pytest

from dnsserver import DNSConfig, DNSServer

from .dns_runner import StaticRecursor, demo_view, dig, dnsmasq, free_port


def _status(out: str) -> str:
    m = re.search(r"status: (\w+)", out)
    assert m, out
    return m.group(1)


async def _serve(*recursors: str, timeout: float = 0.5) -> DNSServer:
    server = DNSServer(DNSConfig(port=0, recursors=recursors, recursor_timeout=timeout),
                       demo_view())
    await server.start()
    return server


async def test_forward_udp_and_tcp() -> None:
    with StaticRecursor() as rec:
        server = await _serve(f"127.0.0.1:{rec.port}")
        try:
            out = await dig(server.udp_port, "www.x.test")
            assert _status(out) == "NOERROR" and "ra" in re.search(r"flags: ([a-z ]+);",
                                                                   out).group(1)  # type: ignore[union-attr]
            assert re.search(r"www\.x\.test\.\s+42\s+IN\s+A\s+1\.2\.3\.4", out), out
            out = await dig(server.udp_port, "WwW.X.tEsT", "+tcp", "+short")
            assert out.split() == ["1.2.3.4"]
            # the upstream's NXDOMAIN and its SOA come through untouched
            out = await dig(server.udp_port, "nothing.example")
            assert _status(out) == "NXDOMAIN" and "h.test." in out
            # a big upstream answer: TC passed through over UDP, complete over TCP
            out = await dig(server.udp_port, "big.x.test", "+noedns", "+ignore")
            assert " tc" in out.split("flags:")[1].split(";")[0], out
            out = await dig(server.udp_port, "big.x.test", "+noedns")
            assert "Truncated, retrying in TCP mode" in out
            assert len(re.findall(r"big\.x\.test\.\s+42\s+IN\s+A", out)) == 60
            # our own names are still ours
            assert len((await dig(server.udp_port, "web.service.rumor", "+short")).split()) == 3
            assert server.counters.forwarded >= 3
        finally:
            await server.stop()


async def test_failover_between_recursors() -> None:
    dead = free_port()          # nothing listens there
    with StaticRecursor() as rec:
        server = await _serve(f"127.0.0.1:{dead}", f"127.0.0.1:{rec.port}", timeout=0.3)
        try:
            t0 = time.monotonic()
            out = await dig(server.udp_port, "a.x.test", "+short", "+time=3")
            assert out.split() == ["1.2.3.4"]
            assert time.monotonic() - t0 < 2.5
            out = await dig(server.udp_port, "a.x.test", "+short", "+tcp", "+time=3")
            assert out.split() == ["1.2.3.4"]
            assert server.counters.forward_timeouts >= 2
        finally:
            await server.stop()


async def test_servfail_when_all_recursors_are_down() -> None:
    server = await _serve(f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}", timeout=0.2)
    try:
        out = await dig(server.udp_port, "a.x.test", "+time=3", "+tries=1")
        assert _status(out) == "SERVFAIL"
        assert "a.x.test." in out.split("QUESTION SECTION")[1]
        out = await dig(server.udp_port, "a.x.test", "+tcp", "+time=3", "+tries=1")
        assert _status(out) == "SERVFAIL"
        assert server.counters.forward_failures == 2
    finally:
        await server.stop()


@pytest.mark.skipif(not shutil.which("dnsmasq") and not __import__("os").path.exists(
    "/usr/sbin/dnsmasq"), reason="needs dnsmasq")
async def test_dnsmasq_as_recursor() -> None:
    loop = asyncio.get_running_loop()
    cm = dnsmasq("--address=/x.test/1.2.3.4")
    _proc, port = await loop.run_in_executor(None, cm.__enter__)
    try:
        server = await _serve(f"127.0.0.1:{port}")
        try:
            assert (await dig(server.udp_port, "foo.x.test", "+short")).split() == ["1.2.3.4"]
        finally:
            await server.stop()
    finally:
        await loop.run_in_executor(None, cm.__exit__, None, None, None)


@pytest.mark.skipif(not shutil.which("dnsmasq") and not __import__("os").path.exists(
    "/usr/sbin/dnsmasq"), reason="needs dnsmasq")
async def test_dnsmasq_in_front_forwards_to_rumor() -> None:
    """The production setup in reverse: dnsmasq answers the host, Rumor answers ``rumor.``."""
    server = await _serve()
    loop = asyncio.get_running_loop()
    cm = dnsmasq(f"--server=/rumor/127.0.0.1#{server.udp_port}", "--no-negcache")
    _proc, port = await loop.run_in_executor(None, cm.__enter__)
    try:
        direct = sorted((await dig(server.udp_port, "web.service.rumor", "+short")).split())
        via = sorted((await dig(port, "web.service.rumor", "+short")).split())
        assert via == direct == ["10.0.0.1", "10.0.0.3", "10.1.1.2"]
        srv = await dig(port, "_web._tcp.service.rumor", "SRV", "+short")
        assert sorted(srv.splitlines()) == ["1 10 8080 n1.node.dc1.rumor.",
                                            "1 10 8082 n3.node.dc1.rumor.",
                                            "1 2 8081 0a010102.addr.dc1.rumor."]
        assert _status(await dig(port, "nope.service.rumor")) == "NXDOMAIN"
        # 40 instances through dnsmasq: dnsmasq relays TC, dig retries over TCP via dnsmasq
        out = await dig(port, "big.service.rumor", "+short")
        assert len(out.split()) == 40
    finally:
        await loop.run_in_executor(None, cm.__exit__, None, None, None)
        await server.stop()


async def test_spoofed_or_stray_answers_are_ignored() -> None:
    """An upstream answer with the wrong question (or wrong ID) never reaches the client."""
    import dns.message
    import dns.rrset

    loop = asyncio.get_running_loop()

    class Upstream(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.tr = transport

        def datagram_received(self, data: bytes, addr: object) -> None:
            q = dns.message.from_wire(data)
            wrong = dns.message.make_response(dns.message.make_query("evil.example.", "A"))
            wrong.id = q.id
            wrong.answer.append(dns.rrset.from_text("evil.example.", 60, "IN", "A", "6.6.6.6"))
            bad_id = dns.message.make_response(q)
            bad_id.id = (q.id + 1) & 0xFFFF
            bad_id.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A",
                                                     "6.6.6.7"))
            good = dns.message.make_response(q)
            good.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A",
                                                   "1.2.3.4"))
            for m in (wrong, bad_id, good):
                self.tr.sendto(m.to_wire(), addr)  # type: ignore[attr-defined]

    tr, _ = await loop.create_datagram_endpoint(Upstream, local_addr=("127.0.0.1", 0))
    port = tr.get_extra_info("sockname")[1]
    server = await _serve(f"127.0.0.1:{port}", timeout=1.0)
    try:
        out = await dig(server.udp_port, "a.y.test", "+short")
        assert out.split() == ["1.2.3.4"]
    finally:
        await server.stop()
        tr.close()


def test_same_question_check() -> None:
    from dnsserver.forward import _same_question

    q = b"\x03abc\x04test\x00\x00\x01\x00\x01"
    resp = b"\x00\x01\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00" + q
    assert _same_question(resp, q)
    assert _same_question(resp.replace(b"abc", b"ABC"), q)          # 0x20 by the upstream
    assert not _same_question(resp.replace(b"abc", b"abd"), q)
    assert not _same_question(resp[:2] + b"\x01" + resp[3:], q)     # QR not set
    assert not _same_question(resp[:-1] + b"\x02", q)               # another class


async def test_random_recursor_strategy_uses_both() -> None:
    with StaticRecursor("1.1.1.1") as r1, StaticRecursor("2.2.2.2") as r2:
        server = DNSServer(DNSConfig(port=0, recursors=(f"127.0.0.1:{r1.port}",
                                                        f"127.0.0.1:{r2.port}"),
                                     recursor_strategy="random"), demo_view())
        await server.start()
        try:
            import dns.asyncquery
            import dns.message
            seen = set()
            for i in range(24):
                q = dns.message.make_query(f"h{i}.x.test.", "A")
                r = await dns.asyncquery.udp(q, "127.0.0.1", port=server.udp_port, timeout=3)
                seen.update(rr.to_text() for rrset in r.answer for rr in rrset)
            assert seen == {"1.1.1.1", "2.2.2.2"}
        finally:
            await server.stop()


async def _until(cond: object, what: str, deadline: float = 5.0) -> None:
    end = time.monotonic() + deadline
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_stop_cancels_forwards_in_flight_and_leaves_no_task() -> None:
    """Forwards are tasks of the server's task group: stop() cancels and awaits them all, long
    before the recursor timeout, and nothing is left running."""
    import dns.message

    loop = asyncio.get_running_loop()
    # a recursor that takes queries over UDP and TCP and never answers
    silent_tcp = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = silent_tcp.sockets[0].getsockname()[1]
    silent, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                    local_addr=("127.0.0.1", port))
    before = asyncio.all_tasks()
    server = await _serve(f"127.0.0.1:{port}", timeout=30.0)
    client, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=("127.0.0.1", server.udp_port))
    try:
        client.sendto(dns.message.make_query("a.x.test.", "A").to_wire())
        _r, w = await asyncio.open_connection("127.0.0.1", server.tcp_port)
        wire = dns.message.make_query("b.x.test.", "A").to_wire()
        w.write(len(wire).to_bytes(2, "big") + wire)
        await _until(lambda: server.forwards_in_flight == 2, "two forwards in flight")
        started = asyncio.all_tasks() - before - {asyncio.current_task()}
        assert started
        t0 = time.monotonic()
        async with asyncio.timeout(5):
            await server.stop()
        assert time.monotonic() - t0 < 5
        assert all(t.done() for t in started), started
        assert server.forwards_in_flight == 0
        w.close()
    finally:
        client.close()
        silent.close()
        silent_tcp.close()
        await server.stop()


async def test_a_failing_forward_is_counted_and_cancels_no_other() -> None:
    """A bug in one forward is logged and counted; the task group does not abort, so another
    forward in flight still gets its answer."""
    import dns.asyncquery
    import dns.message

    with StaticRecursor() as rec:
        server = await _serve(f"127.0.0.1:{rec.port}", timeout=2.0)
        assert server.forwarder is not None
        real = server.forwarder.forward
        gate = asyncio.Event()

        async def forward(data: bytes, tcp: bool, question: bytes) -> bytes | None:
            if b"\x04boom" in question:
                raise RuntimeError("injected fault in forwarding")
            await gate.wait()             # hold the good one until the bad one has failed
            return await real(data, tcp, question)

        server.forwarder.forward = forward  # type: ignore[method-assign]
        try:
            good = asyncio.ensure_future(dns.asyncquery.udp(
                dns.message.make_query("www.x.test.", "A"), "127.0.0.1",
                port=server.udp_port, timeout=5))
            await _until(lambda: server.forwards_in_flight == 1, "the good forward")
            bad, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=("127.0.0.1", server.udp_port))
            bad.sendto(dns.message.make_query("boom.x.test.", "A").to_wire())
            await _until(lambda: server.counters.drops.get("internal_error", 0) >= 1,
                         "the failure to be counted")
            bad.close()
            assert not good.done()
            gate.set()
            answer = await good
            assert [rr.to_text() for rrset in answer.answer for rr in rrset] == ["1.2.3.4"]
            assert server.forwards_in_flight == 0
        finally:
            await server.stop()

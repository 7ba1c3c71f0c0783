"""The HTTP proxy's protocol objects driven without sockets: fake transports record what is
written, so head rewriting, framing and hostile bytes are checked fast and exactly."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lb import LBConfig, LBCounters, ListenerSpec, MemInstance, MemoryView
from lb.http import ClientConn, HttpListener, UpstreamConn
from lb.httphead import forwarding_fields, rewrite_request_head


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self.closed = False
        self.eof = False
        self.reading = True

    def write(self, data: Any) -> None:
        assert not self.closed and not self.eof, "write after close"
        self.data += data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("192.0.2.7", 5555) if name == "peername" else default

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True


class Rig:
    def __init__(self, listener: HttpListener) -> None:
        self.listener = listener
        self.client = ClientConn(listener)
        self.ct = FakeTransport()
        self.client.connection_made(self.ct)
        self.ups: list[UpstreamConn] = []
        assert listener.default_pool is not None
        for b in listener.default_pool.backends:
            for _ in range(2):
                u = UpstreamConn(listener, b)
                u.connection_made(FakeTransport())
                b.idle.append(u)
                self.ups.append(u)

    def sent_upstream(self) -> list[tuple[UpstreamConn, bytes]]:
        return [(u, bytes(u.transport.data)) for u in self.ups  # type: ignore[attr-defined]
                if u.transport.data]  # type: ignore[attr-defined]

    def current_upstream(self) -> UpstreamConn:
        up = self.client.exchanges[0].upstream
        assert up is not None
        return up


@pytest.fixture
async def listener() -> AsyncIterator[HttpListener]:
    view = MemoryView()
    view.set_instances("web", [MemInstance("web", 9000 + i, node=f"n{i}") for i in range(2)])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    spec = ListenerSpec.from_dict({"Name": "h", "Bind": "127.0.0.1:0", "Mode": "http",
                                   "Service": "web"})
    lst = HttpListener(spec, LBConfig(max_body=10_000, max_headers=20,
                                      max_header_bytes=4096), sock, LBCounters())
    lst.refresh(view)
    yield lst
    sock.close()


RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: x\r\n\r\nok"


async def test_request_head_rewrite(listener: HttpListener) -> None:
    rig = Rig(listener)
    rig.client.data_received(
        b"GET /a?b=1 HTTP/1.1\r\nHost: Example.com\r\nConnection: keep-alive, X-Hop\r\n"
        b"X-Hop: 1\r\nTE: trailers\r\nUpgrade-Insecure-Requests: 1\r\nAccept: */*\r\n\r\n")
    [(up, sent)] = rig.sent_upstream()
    assert sent == (b"GET /a?b=1 HTTP/1.1\r\nHost: Example.com\r\n"
                    b"Upgrade-Insecure-Requests: 1\r\nAccept: */*\r\n"
                    b"X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n"
                    b'Forwarded: for=192.0.2.7;proto=http;host="Example.com"\r\n'
                    b"X-Forwarded-Host: Example.com\r\n\r\n")
    up.data_received(RESP)
    assert bytes(rig.ct.data) == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert up in up.backend.idle                      # back in the keep-alive pool


async def test_repeated_fields_reuse_the_rewrite_and_stay_exact(listener: HttpListener) -> None:
    """A keep-alive client repeating its fields gets the previous rewrite after a new request
    line; anything the rewrite depends on beyond the fields takes the full path again. Every
    head sent upstream equals what rewrite_request_head makes of that request."""
    rig = Rig(listener)
    fields = forwarding_fields("192.0.2.7", listener.host_header)
    host = b"Host: h\r\nAccept: */*\r\n"
    requests = [
        (b"GET", b"/a", host), (b"GET", b"/b?q=1", host), (b"HEAD", b"/c", host),
        (b"DELETE", b"/d", host + b"X-Extra: 1\r\n"), (b"GET", b"/e", host),
        (b"GET", b"http://abs.example/f", host), (b"GET", b"/g", host),
        (b"POST", b"/h", host + b"Content-Length: 2\r\n"),
        (b"POST", b"/i", host + b"Content-Length: 2\r\n"),
    ]
    for method, target, more in requests:
        body = b"ok" if method == b"POST" else b""
        before = len(rig.sent_upstream())
        rig.client.data_received(b"%s %s HTTP/1.1\r\n%s\r\n%s" % (method, target, more, body))
        up = rig.current_upstream()
        sent = bytes(up.transport.data)  # type: ignore[attr-defined]
        parsed = [tuple(line.split(b": ", 1)) for line in more.split(b"\r\n") if line]
        want = rewrite_request_head(method, target, parsed, False,  # type: ignore[arg-type]
                                    fields, listener.config)[0]
        assert sent == want + body, (method, target)
        up.transport.data.clear()  # type: ignore[attr-defined]
        up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" if method == b"HEAD"
                         else RESP)
        assert len(rig.sent_upstream()) <= before + 1
    assert bytes(rig.ct.data).count(b"HTTP/1.1 200 OK") == len(requests)
    assert not rig.client.closed


async def test_chunked_request_and_response_reframed(listener: HttpListener) -> None:
    rig = Rig(listener)
    rig.client.data_received(b"POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"3\r\nabc\r\n")
    rig.client.data_received(b"2\r\nde\r\n0\r\n\r\n")
    [(up, sent)] = rig.sent_upstream()
    assert sent.endswith(b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    up.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwxyz\r\n")
    up.data_received(b"0\r\n\r\n")
    assert bytes(rig.ct.data) == (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  b"4\r\nwxyz\r\n0\r\n\r\n")


async def test_head_then_get_on_same_backend_connection(listener: HttpListener) -> None:
    rig = Rig(listener)
    rig.client.data_received(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
    up = rig.current_upstream()
    up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n")
    assert bytes(rig.ct.data) == b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"
    assert not rig.client.exchanges and up in up.backend.idle
    # the same connection serves the next request with a fresh parser
    rig.client.data_received(b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n")
    first = rig.current_upstream()
    first.data_received(RESP)
    second = rig.current_upstream()
    assert second.backend is not first.backend       # round robin per request
    second.data_received(RESP)
    assert bytes(rig.ct.data).count(b"HTTP/1.1 200 OK") == 3


async def test_interim_100_continue_is_relayed(listener: HttpListener) -> None:
    rig = Rig(listener)
    rig.client.data_received(b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                             b"Expect: 100-continue\r\n\r\n")
    up = rig.current_upstream()
    up.data_received(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert bytes(rig.ct.data) == b"HTTP/1.1 100 Continue\r\n\r\n"
    rig.client.data_received(b"abc")
    assert bytes(up.transport.data).endswith(b"\r\n\r\nabc")  # type: ignore[attr-defined]
    up.data_received(RESP)
    assert bytes(rig.ct.data).endswith(b"\r\n\r\nok")


async def test_backend_garbage_is_502_and_not_pooled(listener: HttpListener) -> None:
    rig = Rig(listener)
    rig.client.data_received(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    up = rig.current_upstream()
    up.data_received(b"\x00\x01garbage\r\n\r\n")
    assert bytes(rig.ct.data).startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert up.closed and up not in up.backend.idle


async def test_response_too_many_headers_is_502(listener: HttpListener) -> None:
    rig = Rig(listener)
    rig.client.data_received(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    rig.current_upstream().data_received(
        b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(30)) + b"\r\n")
    assert bytes(rig.ct.data).startswith(b"HTTP/1.1 502")


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=600), cuts=st.lists(st.integers(0, 600), max_size=4),
       prefix=st.sampled_from([b"", b"GET / HTTP/1.1\r\n", b"POST / HTTP/1.1\r\nHost: h\r\n"]))
async def test_hostile_client_bytes_never_escape(listener: HttpListener, data: bytes,
                                                 cuts: list[int], prefix: bytes) -> None:
    rig = Rig(listener)
    payload = prefix + data
    points = sorted({min(c, len(payload)) for c in cuts} | {0, len(payload)})
    for a, b in itertools.pairwise(points):
        rig.client.data_received(payload[a:b])       # must not raise
    for up, _ in rig.sent_upstream():
        up.data_received(RESP)
    out = bytes(rig.ct.data)
    assert out == b"" or out.startswith(b"HTTP/1.1 ")
    assert "internal_error" not in listener.counters.snapshot()


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400), prefix=st.sampled_from(
    [b"", b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]))
async def test_hostile_backend_bytes_never_escape(listener: HttpListener, data: bytes,
                                                  prefix: bytes) -> None:
    rig = Rig(listener)
    rig.client.data_received(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    up = rig.current_upstream()
    up.data_received(prefix + data)                   # must not raise
    up.connection_lost(None)
    out = bytes(rig.ct.data)
    assert out == b"" or out.startswith(b"HTTP/1.1 ")
    assert "internal_error" not in listener.counters.snapshot()


async def test_absolute_form_target_becomes_origin_form(listener: HttpListener) -> None:
    rig = Rig(listener)
    rig.client.data_received(b"GET http://Shop.Example.com:8080/cart?x=1 HTTP/1.1\r\n"
                             b"Host: ignored\r\n\r\n")
    [(_up, sent)] = rig.sent_upstream()
    assert sent.startswith(b"GET /cart?x=1 HTTP/1.1\r\nHost: Shop.Example.com:8080\r\n")
    assert b"ignored" not in sent


UPGRADE_REQ = (b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
               b"Sec-WebSocket-Key: x\r\nSec-WebSocket-Version: 13\r\n\r\n")


async def test_upgrade_switches_to_byte_pumping(listener: HttpListener) -> None:
    rig = Rig(listener)
    rig.client.data_received(UPGRADE_REQ + b"early-frame")      # bytes right after the head
    up = rig.current_upstream()
    sent = bytes(up.transport.data)  # type: ignore[attr-defined]
    assert b"Connection: upgrade\r\nUpgrade: websocket\r\n" in sent
    assert not sent.endswith(b"early-frame")                     # held until the 101
    up.data_received(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                     b"Upgrade: websocket\r\nSec-WebSocket-Accept: y\r\n\r\nserver-frame")
    out = bytes(rig.ct.data)
    assert out.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Upgrade: websocket" in out and out.endswith(b"server-frame")
    assert bytes(up.transport.data).endswith(b"early-frame")  # type: ignore[attr-defined]
    rig.client.data_received(b"\x81\x05hello")                   # now raw, both ways
    assert bytes(up.transport.data).endswith(b"\x81\x05hello")  # type: ignore[attr-defined]
    up.data_received(b"\x81\x02ok")
    assert bytes(rig.ct.data).endswith(b"\x81\x02ok")
    assert rig.client.tunnel is up and up not in up.backend.idle


async def test_upgrade_refused_by_backend_closes_after_answer(listener: HttpListener) -> None:
    rig = Rig(listener)
    rig.client.data_received(UPGRADE_REQ)
    up = rig.current_upstream()
    up.data_received(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 2\r\n\r\nno")
    out = bytes(rig.ct.data)
    assert out.startswith(b"HTTP/1.1 426") and b"Connection: close" in out
    assert rig.ct.closed

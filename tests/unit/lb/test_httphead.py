"""rewrite_request_head from a table of cases (one rule each), plus properties every forwarded
head has, whatever fields come in."""

from __future__ import annotations

from dataclasses import dataclass, field

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lb import LBConfig
from lb.httphead import Rejection, RequestHead, forwarding_fields, rewrite_request_head

FIELDS = forwarding_fields("192.0.2.7", b"10.0.0.1:8080")
LIMITS = LBConfig(max_body=10_000, max_headers=20, max_header_bytes=4096)
H = list[tuple[bytes, bytes]]


def fwd(host: bytes) -> bytes:
    """What the first proxy on the way adds for a request with ``Host: host``."""
    return (b"X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n"
            b'Forwarded: for=192.0.2.7;proto=http;host="' + host + b'"\r\n'
            b"X-Forwarded-Host: " + host + b"\r\n")


@dataclass(frozen=True)
class Case:
    name: str
    method: bytes
    target: bytes
    headers: H
    expect: RequestHead | Rejection
    upgrade: bool = False
    seen: int = 0
    limits: LBConfig = field(default=LIMITS)


CASES = [
    # -- the common case and X-Forwarded-* / Forwarded (RFC 7239) --------------------------
    Case("plain GET: fields in order, forwarding fields added",
         b"GET", b"/a?b=1", [(b"Host", b"h"), (b"Accept", b"*/*")],
         (b"GET /a?b=1 HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n" + fwd(b"h") + b"\r\n",
          b"h", b"/a?b=1", False, False, False)),
    Case("no Host (HTTP/1.0): the listener's address, no X-Forwarded-Host, line says 1.1",
         b"GET", b"/", [],
         ((b"GET / HTTP/1.1\r\nHost: 10.0.0.1:8080\r\nX-Forwarded-For: 192.0.2.7\r\n"
          b"X-Forwarded-Proto: http\r\nForwarded: for=192.0.2.7;proto=http\r\n\r\n"),
          None, b"/", False, False, False)),
    Case("X-Forwarded-For and Forwarded from an earlier proxy are appended to",
         b"GET", b"/", [(b"Host", b"h"), (b"X-Forwarded-For", b"1.2.3.4"),
                        (b"Forwarded", b"for=9.9.9.9")],
         ((b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4, 192.0.2.7\r\n"
          b"X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n"
          b'Forwarded: for=9.9.9.9, for=192.0.2.7;proto=http;host="h"\r\n\r\n'),
          b"h", b"/", False, False, False)),
    Case("repeated X-Forwarded-For lines are joined in order",
         b"GET", b"/", [(b"x-forwarded-for", b"a"), (b"Host", b"h"), (b"X-Forwarded-For", b"b")],
         ((b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: a, b, 192.0.2.7\r\n"
          b"X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n"
          b'Forwarded: for=192.0.2.7;proto=http;host="h"\r\n\r\n'),
          b"h", b"/", False, False, False)),
    Case("X-Forwarded-Proto and X-Forwarded-Host already there are kept, not added",
         b"GET", b"/", [(b"Host", b"h"), (b"X-Forwarded-Proto", b"https"),
                        (b"X-Forwarded-Host", b"orig")],
         ((b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: orig\r\n"
          b"X-Forwarded-For: 192.0.2.7\r\nForwarded: for=192.0.2.7;proto=http;host=\"h\"\r\n"
          b"\r\n"), b"h", b"/", False, False, False)),
    Case("a quote in Host cannot break out of Forwarded's quoted host",
         b"GET", b"/", [(b"Host", b'we"ird')],
         (b'GET / HTTP/1.1\r\nHost: we"ird\r\n' + fwd(b"weird") + b"\r\n",
          b"weird", b"/", False, False, False)),
    # -- hop-by-hop fields (RFC 9110 7.6.1) ------------------------------------------------
    Case("Keep-Alive, Proxy-Connection, TE, Trailer and Connection are not forwarded",
         b"GET", b"/", [(b"Host", b"h"), (b"Keep-Alive", b"timeout=5"),
                        (b"Proxy-Connection", b"x"), (b"TE", b"trailers"), (b"Trailer", b"X"),
                        (b"Connection", b"keep-alive"), (b"Accept", b"*/*")],
         (b"GET / HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n" + fwd(b"h") + b"\r\n",
          b"h", b"/", False, False, False)),
    Case("a field named by Connection is dropped too",
         b"GET", b"/", [(b"Host", b"h"), (b"Connection", b"keep-alive, X-Hop"),
                        (b"X-Hop", b"1"), (b"Accept", b"*/*")],
         (b"GET / HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n" + fwd(b"h") + b"\r\n",
          b"h", b"/", False, False, False)),
    Case("Connection naming a field keeps Content-Length and the body",
         b"POST", b"/u", [(b"Host", b"h"), (b"Content-Length", b"5"),
                          (b"Connection", b"X-Hop"), (b"X-Hop", b"1")],
         (b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n" + fwd(b"h") + b"\r\n",
          b"h", b"/u", False, False, True)),
    # -- bodies and the smuggling rule (RFC 9112 6.3) ---------------------------------------
    Case("Content-Length is forwarded as sent",
         b"PUT", b"/x", [(b"Host", b"h"), (b"Content-Length", b"5")],
         (b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n" + fwd(b"h") + b"\r\n",
          b"h", b"/x", False, False, True)),
    Case("Content-Length 0 is no body",
         b"POST", b"/", [(b"Host", b"h"), (b"Content-Length", b"0")],
         (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n" + fwd(b"h") + b"\r\n",
          b"h", b"/", False, False, False)),
    Case("Transfer-Encoding goes last, re-framed chunked",
         b"POST", b"/", [(b"Transfer-Encoding", b"gzip, chunked"), (b"Host", b"h")],
         (b"POST / HTTP/1.1\r\nHost: h\r\n" + fwd(b"h") +
          b"Transfer-Encoding: gzip, chunked\r\n\r\n", b"h", b"/", False, True, True)),
    Case("Transfer-Encoding and Content-Length: only Transfer-Encoding is forwarded",
         b"POST", b"/", [(b"Host", b"h"), (b"Content-Length", b"5"),
                         (b"Transfer-Encoding", b"chunked")],
         (b"POST / HTTP/1.1\r\nHost: h\r\n" + fwd(b"h") + b"Transfer-Encoding: chunked\r\n\r\n",
          b"h", b"/", False, True, True)),
    Case("... also when Connection names a field (the rebuilt head keeps no Content-Length)",
         b"POST", b"/", [(b"Host", b"h"), (b"Content-Length", b"5"),
                         (b"Transfer-Encoding", b"chunked"), (b"Connection", b"X-Hop")],
         (b"POST / HTTP/1.1\r\nHost: h\r\n" + fwd(b"h") + b"Transfer-Encoding: chunked\r\n\r\n",
          b"h", b"/", False, True, True)),
    Case("Content-Length over max_body: 413",
         b"POST", b"/", [(b"Host", b"h"), (b"Content-Length", b"20000")],
         Rejection(413, "request body of 20000 bytes is larger than the limit of 10000",
                   "body_too_large")),
    Case("max_body 0 means no limit",
         b"POST", b"/", [(b"Host", b"h"), (b"Content-Length", b"20000")],
         (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 20000\r\n" + fwd(b"h") + b"\r\n",
          b"h", b"/", False, False, True),
         limits=LBConfig(max_body=0)),
    # -- upgrades ---------------------------------------------------------------------------
    Case("an upgrade the parser accepted goes on as Connection: upgrade",
         b"GET", b"/ws", [(b"Host", b"h"), (b"Connection", b"Upgrade"),
                          (b"Upgrade", b"websocket"), (b"Sec-WebSocket-Key", b"k")],
         (b"GET /ws HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: k\r\n" + fwd(b"h") +
          b"Connection: upgrade\r\nUpgrade: websocket\r\n\r\n", b"h", b"/ws", True, False, False),
         upgrade=True),
    Case("an Upgrade field the parser did not take as an upgrade is dropped",
         b"GET", b"/ws", [(b"Host", b"h"), (b"Upgrade", b"websocket")],
         (b"GET /ws HTTP/1.1\r\nHost: h\r\n" + fwd(b"h") + b"\r\n",
          b"h", b"/ws", False, False, False)),
    # -- request targets (RFC 9112 3.2) ----------------------------------------------------
    Case("absolute form: routed on its authority, forwarded in origin form, Host replaced",
         b"GET", b"http://Shop.Example.com:8080/cart?x=1", [(b"Host", b"ignored")],
         (b"GET /cart?x=1 HTTP/1.1\r\nHost: Shop.Example.com:8080\r\n" +
          fwd(b"Shop.Example.com:8080") + b"\r\n",
          b"Shop.Example.com:8080", b"/cart?x=1", False, False, False)),
    Case("absolute form without a path is /",
         b"GET", b"http://h", [],
         (b"GET / HTTP/1.1\r\nHost: h\r\n" + fwd(b"h") + b"\r\n", b"h", b"/", False, False,
          False)),
    Case("the scheme is case-insensitive, https too",
         b"GET", b"HTTPS://other/zz", [(b"Host", b"h")],
         (b"GET /zz HTTP/1.1\r\nHost: other\r\n" + fwd(b"other") + b"\r\n",
          b"other", b"/zz", False, False, False)),
    Case("another scheme is not absolute form: forwarded as it came",
         b"GET", b"httpx://foo/", [(b"Host", b"h")],
         (b"GET httpx://foo/ HTTP/1.1\r\nHost: h\r\n" + fwd(b"h") + b"\r\n",
          b"h", b"httpx://foo/", False, False, False)),
    # -- refusals ---------------------------------------------------------------------------
    Case("CONNECT: 405",
         b"CONNECT", b"example.com:443", [(b"Host", b"example.com:443")],
         Rejection(405, "CONNECT is not supported by a reverse proxy", "bad_method")),
    Case("two Host fields: 400 (RFC 9112 3.2)",
         b"GET", b"/", [(b"Host", b"a"), (b"Accept", b"*/*"), (b"host", b"b")],
         Rejection(400, "more than one Host field", "bad_request")),
    Case("two Host fields and an absolute-form target: the target's authority wins",
         b"GET", b"http://abs/x", [(b"Host", b"a"), (b"Host", b"b")],
         (b"GET /x HTTP/1.1\r\nHost: abs\r\n" + fwd(b"abs") + b"\r\n",
          b"abs", b"/x", False, False, False)),
    Case("more than max_headers fields: 431, before anything else",
         b"CONNECT", b"/", [(b"X-%d" % i, b"v") for i in range(21)],
         Rejection(431, "more than 20 header fields", "too_many_headers")),
    Case("max_headers fields exactly: fine",
         b"GET", b"/", [(b"Host", b"h")] + [(b"X-%d" % i, b"v") for i in range(19)],
         (b"GET / HTTP/1.1\r\nHost: h\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(19))
          + fwd(b"h") + b"\r\n", b"h", b"/", False, False, False)),
    Case("a head over max_header_bytes: 431",
         b"GET", b"/", [(b"Host", b"h"), (b"X-Big", b"b" * 4100)],
         Rejection(431, "request head larger than 4096 bytes", "header_too_large"), seen=4200),
    Case("the size is checked only when the bytes read could exceed the limit",
         b"GET", b"/", [(b"Host", b"h"), (b"X-Big", b"b" * 4100)],
         (b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"b" * 4100 + b"\r\n" + fwd(b"h") +
          b"\r\n", b"h", b"/", False, False, False), seen=100),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rewrite_request_head(case: Case) -> None:
    headers = list(case.headers)
    if isinstance(case.expect, Rejection):
        with pytest.raises(Rejection) as caught:
            rewrite_request_head(case.method, case.target, headers, case.upgrade, FIELDS,
                                 case.limits, case.seen)
        got = caught.value
        assert (got.status, got.reason, got.counter) == (
            case.expect.status, case.expect.reason, case.expect.counter)
    else:
        got_head = rewrite_request_head(case.method, case.target, headers, case.upgrade, FIELDS,
                                        case.limits, case.seen)
        assert got_head == case.expect
    assert headers == case.headers            # the caller's list is never changed


def test_ipv6_client_is_quoted_in_forwarded() -> None:
    """RFC 7239 6: an IPv6 node is a quoted, bracketed string."""
    head = rewrite_request_head(b"GET", b"/", [(b"Host", b"h")], False,
                                forwarding_fields("2001:db8::1", b"[::1]:80"), LIMITS)[0]
    assert b"X-Forwarded-For: 2001:db8::1\r\n" in head
    assert b'Forwarded: for="[2001:db8::1]";proto=http;host="h"\r\n' in head
    head = rewrite_request_head(b"GET", b"/", [], False,
                                forwarding_fields("2001:db8::1", b"[::1]:80"), LIMITS)[0]
    assert head.startswith(b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n")


# -- properties -----------------------------------------------------------------------------
_POOL = [
    (b"Host", b"h"), (b"Host", b"Example.com:8080"), (b"X-Forwarded-For", b"1.2.3.4"),
    (b"Forwarded", b"for=9.9.9.9"), (b"X-Forwarded-Proto", b"https"),
    (b"X-Forwarded-Host", b"orig"), (b"Content-Length", b"5"), (b"Transfer-Encoding", b"chunked"),
    (b"Connection", b"keep-alive"), (b"Connection", b"close, X-Hop"), (b"connection", b"te"),
    (b"X-Hop", b"1"), (b"Upgrade", b"websocket"), (b"Keep-Alive", b"timeout=5"),
    (b"Proxy-Connection", b"x"), (b"TE", b"trailers"), (b"Trailer", b"X"), (b"Accept", b"*/*"),
]
_HOP = {b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade", b"connection"}


class _Collect:
    def __init__(self) -> None:
        self.fields: list[tuple[bytes, bytes]] = []
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.done = True


@settings(max_examples=300, deadline=None)
@given(headers=st.lists(st.sampled_from(_POOL), max_size=10),
       method=st.sampled_from([b"GET", b"POST", b"HEAD", b"DELETE"]),
       target=st.sampled_from([b"/", b"/p?q", b"http://abs.example/x"]),
       upgrade=st.booleans())
def test_every_forwarded_head_is_clean(headers: H, method: bytes, target: bytes,
                                       upgrade: bool) -> None:
    """Whatever came in: the head parses, it has one Host, no hop-by-hop field except the
    proxy's own upgrade pair, never both framings, and this hop appended to X-Forwarded-For."""
    if sum(k == b"Content-Length" for k, _ in headers) > 1:
        return                                    # the parser refuses that before us
    if sum(k == b"Host" for k, _ in headers) > 1 and not target.startswith(b"http://"):
        with pytest.raises(Rejection) as caught:       # RFC 9112 3.2
            rewrite_request_head(method, target, headers, upgrade, FIELDS, LIMITS)
        assert caught.value.status == 400
        return
    head, host, path, is_upgrade, chunked, _has_body = rewrite_request_head(
        method, target, headers, upgrade, FIELDS, LIMITS)
    sink = _Collect()
    parser = httptools.HttpRequestParser(sink)
    try:
        parser.feed_data(head)
    except httptools.HttpParserUpgrade:
        assert is_upgrade
    assert sink.done
    names = [k for k, _ in sink.fields]
    assert names.count(b"host") == 1
    assert not (b"content-length" in names and b"transfer-encoding" in names)
    assert (b"transfer-encoding" in names) == chunked
    hop = [k for k in names if k in _HOP]
    assert hop == ([b"connection", b"upgrade"] if is_upgrade else [])
    named = {t.strip().lower() for k, v in headers if k.lower() == b"connection"
             for t in v.split(b",")} - {b"close", b"keep-alive", b"upgrade", b""}
    assert not named & set(names)
    xff = [v for k, v in sink.fields if k == b"x-forwarded-for"]
    assert len(xff) == 1 and xff[0].endswith(b"192.0.2.7")
    assert head.startswith(method + b" " + path + b" HTTP/1.1\r\n")
    assert (b"host", host if host is not None else b"10.0.0.1:8080") in sink.fields

"""The request head as the proxy forwards it: a pure function of the parsed head.

:func:`rewrite_request_head` takes what the parser saw (method, target, header fields in
order, whether the parser saw an Upgrade) plus what this connection and listener contribute
(the client's address, already formatted, and the limits) and returns either the head to send
upstream with what the proxy needs to know about the message, or raises a :class:`Rejection`:
the status, the plain-text reason and the counter to bump. No sockets, no clock, no state: the
unit tests drive it from a table of cases (tests/unit/lb/test_httphead.py), as h11's tests do.

The rules, in the order they apply:

1. more than ``max_headers`` fields: 431; ``CONNECT``: 405 (a reverse proxy tunnels nothing
   on request);
2. an absolute-form target (RFC 9112 3.2.2) is routed on its authority and path and forwarded
   in origin form, its authority replacing any Host field; otherwise more than one Host
   field is a 400 (RFC 9112 3.2);
3. a head larger than ``max_header_bytes`` (checked only when the bytes read so far could
   exceed it, so the common case costs nothing): 431;
4. hop-by-hop fields (Connection and every field it names, Keep-Alive, Proxy-Connection, TE,
   Trailer, Transfer-Encoding, Upgrade) are not forwarded as sent; Transfer-Encoding is
   re-added at the end, and when both Transfer-Encoding and Content-Length came, only
   Transfer-Encoding goes on (RFC 9112 6.3: it wins; forwarding both is request smuggling);
5. X-Forwarded-For and Forwarded are appended to (or added), X-Forwarded-Proto and
   X-Forwarded-Host added unless present; an HTTP/1.0 request without Host gets the
   listener's address as Host, since it goes out as HTTP/1.1, which requires one;
6. an upgrade the parser accepted goes on as ``Connection: upgrade`` with its Upgrade field;
7. a Content-Length over ``max_body``: 413.

The request line always says HTTP/1.1: the proxy speaks 1.1 to backends whatever the client
spoke, so the client's version does not enter the rewrite (the caller keeps it for the answer).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

__all__ = ["ForwardingFields", "Rejection", "RequestHead", "forwarding_fields",
           "redirect_response", "rewrite_request_head"]

# how each special request field is treated (the lookup key is the lower-cased name)
_SKIP, _HOST, _XFF, _FWD, _XFP, _XFH, _CLEN, _TE, _CONN, _UPG = range(10)
_REQ_SPECIAL = {
    b"host": _HOST, b"x-forwarded-for": _XFF, b"forwarded": _FWD, b"x-forwarded-proto": _XFP,
    b"x-forwarded-host": _XFH, b"content-length": _CLEN, b"transfer-encoding": _TE,
    b"connection": _CONN, b"upgrade": _UPG, b"keep-alive": _SKIP,
    b"proxy-connection": _SKIP, b"te": _SKIP, b"trailer": _SKIP,
}
# Connection tokens that name no other field: nothing else to drop when only these come
_BENIGN_CONN_TOKENS = {b"close", b"keep-alive", b"upgrade", b""}
_KEEP_WITH_TE = (None, _HOST, _XFP, _XFH)
_KEEP = (None, _HOST, _CLEN, _XFP, _XFH)


class HeadLimits(Protocol):
    """The limits the rewrite enforces (``lb.LBConfig`` has them)."""

    @property
    def max_headers(self) -> int: ...

    @property
    def max_header_bytes(self) -> int: ...

    @property
    def max_body(self) -> int: ...


class ForwardingFields(NamedTuple):
    """What one client connection adds to every request head, formatted once per connection."""

    ip: bytes
    """The client's address, as X-Forwarded-For carries it."""
    forwarded_for: bytes
    """This hop's Forwarded element without its host (RFC 7239: ``for=...;proto=http``)."""
    common: bytes
    """The lines of the common case (no forwarding fields yet), up to Forwarded's host."""
    listener_host: bytes
    """The Host given to a request that has none (HTTP/1.0): the listener's address."""
    proto: bytes = b"http"
    """The scheme the client spoke to us: ``https`` on a listener that terminates TLS."""


def forwarding_fields(client_ip: str, listener_host: bytes,
                      proto: bytes = b"http") -> ForwardingFields:
    """Format the forwarding fields for a client at ``client_ip`` (IPv6 quoted, RFC 7239 6)
    that spoke ``proto`` (``http`` or ``https``) to the listener."""
    ip = client_ip.encode()
    fwd_for = b"for=" + (b'"[' + ip + b']"' if b":" in ip else ip) + b";proto=" + proto
    common = (b"X-Forwarded-For: " + ip + b"\r\nX-Forwarded-Proto: " + proto + b"\r\n"
              b"Forwarded: " + fwd_for + b';host="')
    return ForwardingFields(ip, fwd_for, common, listener_host, proto)


RequestHead = tuple[bytes, bytes | None, bytes, bool, bool, bool]
"""A head to forward and what the proxy must know about its message, in this order:

- ``head``: the request line and fields to send upstream, ending with the blank line;
- ``host``: the Host to route on (the absolute-form authority when there was one), or None;
- ``path``: the origin-form target, forwarded and routed on;
- ``upgrade``: an upgrade (WebSocket...) request: a 101 answer makes the exchange a tunnel;
- ``chunked``: the body comes chunked (Transfer-Encoding) and is forwarded re-framed;
- ``has_body``: a body follows the head (chunked, or a Content-Length above zero).

A plain tuple, not a NamedTuple: this runs once per request and the caller unpacks it at once
(building a NamedTuple cost about 3% of the proxy's own time per request)."""


class Rejection(Exception):
    """The request is refused: answer ``status`` with ``reason``, count it as ``counter``.

    Raised rather than returned, so the common path has no result to test. The proxy raises
    it from its other parser callbacks too (a backend's bad answer: 502), since raising is how
    a callback stops httptools' parser."""

    def __init__(self, status: int, reason: str, counter: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.counter = counter

    def __repr__(self) -> str:
        return f"Rejection({self.status}, {self.reason!r}, {self.counter!r})"


def rewrite_request_head(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                         upgrade: bool, fields: ForwardingFields, limits: HeadLimits,
                         seen: int = 0) -> RequestHead:
    """The head to forward for a request; raises :class:`Rejection` when it is refused (see
    the module docstring).

    ``upgrade`` is the parser's verdict (an Upgrade field with ``Connection: upgrade``);
    ``seen`` is an upper bound of the head's size in bytes as read so far: the exact size
    is computed only when ``seen`` is over ``limits.max_header_bytes``.
    """
    if len(headers) > limits.max_headers:
        raise Rejection(431, f"more than {limits.max_headers} header fields",
                         "too_many_headers")
    if method == b"CONNECT":
        raise Rejection(405, "CONNECT is not supported by a reverse proxy", "bad_method")
    url = target
    if url[:1] != b"/" and url[:4].lower() == b"http":
        # absolute form (RFC 9112 3.2.2): route on its host and path, forward origin form
        scheme, sep, rest = url.partition(b"://")
        if sep and scheme.lower() in (b"http", b"https"):
            authority, slash, path = rest.partition(b"/")
            url = b"/" + path if slash else b"/"
            headers = [(k, v) for k, v in headers if k.lower() != b"host"]
            headers.append((b"Host", authority))
    host = xff = fwd = upg = None
    xfp = xfh = False
    clen = -1
    clen_at = -1
    te = False
    te_value = b"chunked"
    conn_tokens: list[bytes] = []
    out = [method, b" ", url, b" HTTP/1.1\r\n"]
    special = _REQ_SPECIAL
    for name, value in headers:
        kind = special.get(name.lower())
        if kind is None:
            out += (name, b": ", value, b"\r\n")
            continue
        if kind == _HOST:
            if host is not None:
                # RFC 9112 3.2: more than one Host line is a 400 (which one would route?)
                raise Rejection(400, "more than one Host field", "bad_request")
            host = value
            out += (name, b": ", value, b"\r\n")
        elif kind == _CLEN:
            clen = int(value)
            out += (name, b": ", value, b"\r\n")
            clen_at = len(out) - 4
        elif kind == _XFF:
            xff = value if xff is None else xff + b", " + value
        elif kind == _FWD:
            fwd = value if fwd is None else fwd + b", " + value
        elif kind == _XFP:
            xfp = True
            out += (name, b": ", value, b"\r\n")
        elif kind == _XFH:
            xfh = True
            out += (name, b": ", value, b"\r\n")
        elif kind == _TE:
            te = True
            te_value = value
        elif kind == _CONN:
            conn_tokens.extend(t.strip().lower() for t in value.split(b","))
        elif kind == _UPG:
            upg = value
    limit = limits.max_header_bytes
    if seen > limit and len(url) + sum(len(k) + len(v) + 4 for k, v in headers) > limit:
        raise Rejection(431, f"request head larger than {limit} bytes", "header_too_large")
    if te and clen_at >= 0:
        # RFC 9112 6.3: Transfer-Encoding wins; never forward both (request smuggling)
        del out[clen_at:clen_at + 4]
    if conn_tokens and any(t not in _BENIGN_CONN_TOKENS for t in conn_tokens):
        # Connection names fields that are hop-by-hop too (RFC 9110 7.6.1): rebuild without
        named = {t for t in conn_tokens if t not in _BENIGN_CONN_TOKENS}
        keep = _KEEP_WITH_TE if te else _KEEP
        out = [method, b" ", url, b" HTTP/1.1\r\n"] + [
            piece for name, value in headers
            if name.lower() not in named and special.get(name.lower()) in keep
            for piece in (name, b": ", value, b"\r\n")]
    if host is not None and xff is None and fwd is None and not xfp and not xfh:
        # the common case: the first proxy on the way, the lines mostly precomputed
        if b'"' in host:
            host = host.replace(b'"', b"")
        out += (fields.common, host, b'"\r\nX-Forwarded-Host: ', host, b"\r\n")
    else:
        ip = fields.ip
        if host is None:
            # HTTP/1.0 without Host, forwarded as HTTP/1.1 which requires one
            out += (b"Host: ", fields.listener_host, b"\r\n")
        out += (b"X-Forwarded-For: ", (xff + b", " + ip) if xff else ip, b"\r\n")
        if not xfp:
            out += (b"X-Forwarded-Proto: ", fields.proto, b"\r\n")
        if host is not None and not xfh:
            out += (b"X-Forwarded-Host: ", host, b"\r\n")
        this = fields.forwarded_for
        if host is not None:
            this += b';host="' + host.replace(b'"', b"") + b'"'
        out += (b"Forwarded: ", (fwd + b", " + this) if fwd else this, b"\r\n")
    is_upgrade = upgrade and upg is not None
    if is_upgrade:
        out += (b"Connection: upgrade\r\nUpgrade: ", upg, b"\r\n")  # type: ignore[arg-type]
    has_body = False
    if te:
        out += (b"Transfer-Encoding: ", te_value, b"\r\n")
        has_body = True
    elif clen > 0:
        has_body = True
        if limits.max_body and clen > limits.max_body:
            raise Rejection(413, f"request body of {clen} bytes is larger than the limit of "
                             f"{limits.max_body}", "body_too_large")
    out.append(b"\r\n")
    return b"".join(out), host, url, is_upgrade, te, has_body


# a host as it may appear in a URL: a registered name or IPv4 (RFC 3986 3.2.2), or [IPv6]
_HOST_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_~%")
_V6_BYTES = frozenset(b"0123456789abcdefABCDEF:.")
_REDIRECT_PHRASES = {301: b"Moved Permanently", 302: b"Found", 303: b"See Other",
                     307: b"Temporary Redirect", 308: b"Permanent Redirect"}


def redirect_response(code: int, host: bytes | None, target: bytes, port: int,
                      fallback_host: bytes, keep_alive: bool = True,
                      http10: bool = False) -> bytes:
    """The whole answer of an HTTP -> HTTPS redirecting listener to one request.

    ``Location`` is ``https://`` + the request's Host without its port (``fallback_host``,
    the listener's address, when the request has none) + ``:port`` unless 443 + the target
    in origin form (path and query as sent; an absolute-form target gives its authority and
    path). A Host that cannot be put in a URL raises :class:`Rejection` (400), so nothing the
    client sent can split the answer's head.
    """
    url = target
    if url[:1] != b"/" and url[:4].lower() == b"http":
        _, sep, rest = url.partition(b"://")
        if sep:
            authority, slash, path = rest.partition(b"/")
            host = authority
            url = b"/" + path if slash else b"/"
    if url[:1] != b"/":
        url = b"/" + url if url != b"*" else b"/"
    name = host if host else fallback_host
    if name[:1] == b"[":
        end = name.find(b"]")
        if end < 0 or not set(name[1:end]) <= _V6_BYTES:
            raise Rejection(400, "invalid Host for the HTTPS redirect", "bad_request")
        name = name[:end + 1]
    else:
        if name.count(b":") > 1 and set(name) <= _V6_BYTES:
            name = b"[" + name + b"]"       # a bare IPv6 listener address
        else:
            h, colon, p = name.rpartition(b":")
            if colon and p.isdigit():
                name = h
            if not name or not set(name) <= _HOST_BYTES:
                raise Rejection(400, "invalid Host for the HTTPS redirect", "bad_request")
    location = b"https://" + name + (b":%d" % port if port != 443 else b"") + url
    head = [b"HTTP/1.1 %d %s\r\nLocation: " % (code, _REDIRECT_PHRASES.get(code, b"Redirect")),
            location, b"\r\nContent-Length: 0\r\n"]
    if not keep_alive:
        head.append(b"Connection: close\r\n")
    elif http10:
        head.append(b"Connection: keep-alive\r\n")
    head.append(b"\r\n")
    return b"".join(head)

"""The pure parts of lb's TLS: the specs, the SNI table, the failure reasons (from real
handshakes over memory BIOs), and the redirect answer."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from lb import ConfigError, ListenerSpec
from lb.httphead import Rejection, redirect_response
from lb.tls import CertificateTable, DefaultCertificateLoader, handshake_failure_reason
from tests.harness.pki import make_pki


def spec(**kw: object) -> ListenerSpec:
    return ListenerSpec.from_dict({"Name": "t", "Bind": "127.0.0.1:0", "Mode": "http",
                                   "Service": "web", **kw})


def test_tls_spec_round_trip_and_versions() -> None:
    s = spec(TLS={"Certificates": [{"CertFile": "a.pem", "KeyFile": "a-key.pem"}],
                  "MinVersion": "tlsv1_3"})
    assert s.tls is not None and s.tls.min_version == "TLSv1.3"
    assert ListenerSpec.from_dict(s.to_dict()) == s
    assert spec(tls={"certificates": {"cert_file": "a", "key_file": "b"}}).tls is not None


@pytest.mark.parametrize(("tls", "words"), [
    ({"Certificates": []}, "Certificates: required"),
    ({"Certificates": [{"CertFile": "a.pem"}]}, "CertFile and KeyFile are both required"),
    ({"Certificates": [{"CertFile": "a", "KeyFile": "b", "Pass": "x"}]}, "unknown key 'pass'"),
    ({"Certificates": [{"CertFile": "a", "KeyFile": "b"}], "MinVersion": "TLSv1.1"}, "too old"),
    ({"Certificates": [{"CertFile": "a", "KeyFile": "b"}], "MinVersion": "v9"},
     "not a TLS version"),
    ("yes", "must be an object"),
])
def test_tls_spec_errors(tls: object, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        spec(TLS=tls)


def test_backend_tls_and_redirect_specs() -> None:
    s = spec(BackendTLS={"CAFile": "ca.pem", "ServerName": "api", "SkipVerify": "false"})
    assert s.backend_tls is not None and s.backend_tls.server_name == "api"
    assert spec(BackendTLS=True).backend_tls is not None
    r = ListenerSpec.from_dict({"Name": "r", "Bind": "127.0.0.1:0", "Mode": "http",
                                "RedirectHTTPS": {"Port": 8443}})
    assert r.redirect_https is not None and r.redirect_https.port == 8443
    assert r.redirect_https.code == 308
    assert ListenerSpec.from_dict(r.to_dict()) == r
    with pytest.raises(ConfigError, match="Code: 200 is not a redirect"):
        spec(RedirectHTTPS={"Code": 200}, Service="")
    with pytest.raises(ConfigError, match="leave Service"):
        spec(RedirectHTTPS=True)
    with pytest.raises(ConfigError, match="needs Mode http and no TLS"):
        ListenerSpec.from_dict({"Name": "r", "Bind": "127.0.0.1:0", "Mode": "tcp",
                                "RedirectHTTPS": True})


@pytest.mark.parametrize(("name", "want"), [
    ("a.example.com", "A"), ("A.Example.COM.", "A"), ("b.example.com", "B"),
    ("x.wild.example.com", "B"), ("wild.example.com", "default"),
    ("y.x.wild.example.com", "default"),       # a wildcard covers one label only
    ("shared.example.com", "A"),                 # first certificate wins a shared name
    ("exact.wild.example.com", "C"),             # exact beats wildcard
    (None, "default"), ("", "default"), ("nothing.test", "default"),
])
def test_certificate_table(name: str | None, want: str) -> None:
    table = CertificateTable([("default", ["default.test"]),
                              ("A", ["a.example.com", "shared.example.com"]),
                              ("B", ["b.example.com", "*.wild.example.com",
                                     "shared.example.com"]),
                              ("C", ["exact.wild.example.com"])])
    assert table.pick(name) == want


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext,
               first: bytes | None = None) -> BaseException:
    """Run a handshake over memory BIOs; the server side's exception."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    srv = server.wrap_bio(s_in, s_out, server_side=True)
    cli = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    if first is not None:
        s_in.write(first)
    for _ in range(20):
        if first is None:
            try:
                cli.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                pass
            s_in.write(c_out.read())
        try:
            srv.do_handshake()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as e:
            return e
        c_in.write(s_out.read())
    raise AssertionError("the handshake did not fail")


def test_failure_reasons_from_real_handshakes(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    cert, key, _ = pki.issue("srv")
    server, _names = DefaultCertificateLoader().load_certificate(cert, key)
    server.minimum_version = ssl.TLSVersion.TLSv1_2
    server.set_ciphers("ECDHE+AESGCM")
    e = _handshake(server, ssl.create_default_context(cafile=pki.ca),
                   first=b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert handshake_failure_reason(e) == "http_request"
    rsa_only = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    rsa_only.check_hostname = False
    rsa_only.verify_mode = ssl.CERT_NONE
    rsa_only.maximum_version = ssl.TLSVersion.TLSv1_2
    rsa_only.set_ciphers("AES128-SHA")
    assert handshake_failure_reason(_handshake(server, rsa_only)) == "no_shared_cipher"
    stranger = ssl.create_default_context()        # the system's CAs: ours is unknown
    stranger.check_hostname = False
    assert handshake_failure_reason(_handshake(server, stranger)) == "unknown_ca"


@pytest.mark.parametrize(("exc", "want"), [
    (ConnectionAbortedError("SSL handshake is taking longer than 10.0 seconds: aborting"),
     "timeout"),
    (TimeoutError(), "timeout"),
    (ConnectionResetError(), "eof"),
    (BrokenPipeError(), "eof"),
    (ValueError("?"), "other"),
])
def test_failure_reasons_of_the_loop(exc: BaseException, want: str) -> None:
    assert handshake_failure_reason(exc) == want


@pytest.mark.parametrize(("host", "target", "port", "want"), [
    (b"example.com", b"/a?b=1", 443, b"https://example.com/a?b=1"),
    (b"example.com:8080", b"/", 8443, b"https://example.com:8443/"),
    (b"[::1]:8080", b"/x", 443, b"https://[::1]/x"),
    (None, b"/x", 8443, b"https://10.0.0.1:8443/x"),
    (b"ignored", b"http://other.test:80/p?q", 443, b"https://other.test/p?q"),
    (b"example.com", b"*", 443, b"https://example.com/"),
])
def test_redirect_location(host: bytes | None, target: bytes, port: int, want: bytes) -> None:
    out = redirect_response(308, host, target, port, b"10.0.0.1")
    assert out.startswith(b"HTTP/1.1 308 Permanent Redirect\r\n")
    assert b"\r\nLocation: " + want + b"\r\n" in out
    assert out.endswith(b"Content-Length: 0\r\n\r\n")


@pytest.mark.parametrize("host", [b"exa<mple.com", b"a b", b"[::1", b"[zz]", b"x\"y"])
def test_redirect_refuses_hosts_that_do_not_fit_a_url(host: bytes) -> None:
    with pytest.raises(Rejection) as e:
        redirect_response(308, host, b"/", 443, b"10.0.0.1")
    assert e.value.status == 400


def test_redirect_connection_fields() -> None:
    assert b"Connection: close" in redirect_response(301, b"h", b"/", 443, b"", False)
    assert b"Connection: keep-alive" in redirect_response(307, b"h", b"/", 443, b"", True, True)
    assert redirect_response(302, b"h", b"/", 443, b"").startswith(b"HTTP/1.1 302 Found")

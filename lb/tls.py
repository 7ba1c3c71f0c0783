"""TLS at the load balancer: listener certificates chosen by SNI and reloaded in place, the
client contexts used towards backends, and why a client's handshake failed.

Theory of operation
-------------------
A TLS listener accepts its sockets itself and wraps each with the current *outer* context,
the one of its first (default) certificate. With several certificates, that context's SNI
callback, which OpenSSL calls on every handshake (also when the client sends no name), points
the connection at the context of the certificate for the client's server name: an exact name
first, then a ``*.parent`` wildcard (which covers exactly one label, RFC 6125 6.4.3), else
the default. That table is a :class:`CertificateTable`, built from the files in one go.
:meth:`ServerTLS.reload` builds fresh contexts and swaps them in: sockets accepted after the
swap present the new certificates, and connections already open keep the session they have.
Contexts that fail to build (a missing file, a key that does not match) raise
:class:`lb.ConfigError` and the old ones stay.

Every context gets the same policy: TLS 1.2 or later (``MinVersion``), ECDHE key exchange with
AES-GCM or ChaCha20-Poly1305 for TLS 1.2 (TLS 1.3 suites are all AEAD), no renegotiation, no
compression, the server's cipher order, and ALPN ``http/1.1`` in http mode.

Where certificates come from: ``lb`` imports nothing of Rumor's, so it declares what it needs
as :class:`CertificateLoader`. The agent injects the registry's loader, which checks the files
in the one place DESIGN.md names (not found, not PEM, expired, key does not match);
:class:`DefaultCertificateLoader` is the plain stand-alone one (OpenSSL's own checks only).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from .config import BackendTLSSpec, ListenerSpec, TLSSpec
from .errors import ConfigError

if TYPE_CHECKING:
    from .strategy import Backend

log = logging.getLogger(__name__)

__all__ = [
    "HANDSHAKE_FAILURE_REASONS",
    "MODERN_CIPHERS",
    "CertificateLoader",
    "CertificateTable",
    "DefaultCertificateLoader",
    "ListenerTLS",
    "LoadedCertificate",
    "ServerTLS",
    "certificate_names",
    "handshake_failure_reason",
    "prepare_listener_tls",
]

MODERN_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
"""TLS 1.2 cipher suites offered (OpenSSL syntax): forward secrecy and AEAD only."""

HANDSHAKE_FAILURE_REASONS = ("timeout", "http_request", "unsupported_protocol",
                             "no_shared_cipher", "unknown_ca", "bad_certificate", "eof", "other")
"""The reasons :func:`handshake_failure_reason` gives, in the metrics' ``reason`` label."""

_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}

LoadedCertificate = tuple[ssl.SSLContext, tuple[str, ...]]
"""A server context holding one certificate and its key, and the DNS names the certificate
is for (``*.example.com`` for a wildcard), which SNI is matched against."""


class CertificateLoader(Protocol):
    """Loads certificate files for ``lb``; errors are ``ValueError`` or ``OSError`` whose
    message names the file and the problem."""

    def load_certificate(self, cert_file: str, key_file: str) -> LoadedCertificate:
        """A server context with this certificate (chain) and key, and its names."""
        ...

    def trust_context(self, ca_file: str) -> ssl.SSLContext:
        """A client context trusting ``ca_file`` (the system's CAs when empty)."""
        ...


def certificate_names(cert: Any) -> tuple[str, ...]:
    """The DNS names of a ``cryptography`` certificate: its subjectAltName DNS entries, or its
    common name when it has none (as clients did before RFC 6125)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return tuple(str(a.value).lower() for a in cns)
    return tuple(n.lower() for n in san.value.get_values_for_type(x509.DNSName))


class DefaultCertificateLoader:
    """Plain loading for ``lb`` on its own: OpenSSL's checks, names read with cryptography."""

    def load_certificate(self, cert_file: str, key_file: str) -> LoadedCertificate:
        from cryptography import x509

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            with open(cert_file, "rb") as f:
                pem = f.read()
            ctx.load_cert_chain(cert_file, key_file)
        except FileNotFoundError as e:
            raise ConfigError(f"{e.filename}: file not found") from None
        except ssl.SSLError as e:
            raise ConfigError(f"{cert_file}, {key_file}: OpenSSL refused the certificate and "
                              f"key ({e.reason or e})") from None
        try:
            cert = x509.load_pem_x509_certificates(pem)[0]
        except ValueError:
            raise ConfigError(f"{cert_file}: not a PEM certificate") from None
        return ctx, certificate_names(cert)

    def trust_context(self, ca_file: str) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=ca_file or None)
        except FileNotFoundError:
            raise ConfigError(f"{ca_file}: file not found") from None
        except ssl.SSLError as e:
            raise ConfigError(f"{ca_file}: not a PEM CA certificate ({e.reason or e})") from None


T = TypeVar("T")


class CertificateTable(Generic[T]):
    """Which context answers which SNI name. Exact names win over wildcards, and the first
    certificate listed wins a name two certificates share; pure (tested with strings)."""

    __slots__ = ("default", "exact", "wild")

    def __init__(self, entries: Sequence[tuple[T, Sequence[str]]]) -> None:
        if not entries:
            raise ValueError("a certificate table needs at least one certificate")
        self.default = entries[0][0]
        self.exact: dict[str, T] = {}
        self.wild: dict[str, T] = {}
        for ctx, names in entries:
            for name in names:
                n = name.lower().rstrip(".")
                if n.startswith("*."):
                    self.wild.setdefault(n[2:], ctx)
                elif n:
                    self.exact.setdefault(n, ctx)

    def pick(self, server_name: str | None) -> T:
        if server_name:
            name = server_name.lower().rstrip(".")
            found = self.exact.get(name)
            if found is not None:
                return found
            _, dot, parent = name.partition(".")
            if dot:
                found = self.wild.get(parent)
                if found is not None:
                    return found
        return self.default


def _policy(ctx: ssl.SSLContext, min_version: str, alpn: Sequence[str]) -> ssl.SSLContext:
    ctx.minimum_version = _VERSIONS[min_version]
    ctx.set_ciphers(MODERN_CIPHERS)
    ctx.options |= (ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
                    | ssl.OP_NO_RENEGOTIATION)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


class ServerTLS:
    """A listener's certificates: the context each accepted socket is wrapped with
    (:attr:`outer`), choosing by SNI among several. Built (and reloaded) off the event loop:
    it reads files."""

    def __init__(self, spec: TLSSpec, loader: CertificateLoader, *, alpn: Sequence[str],
                 what: str) -> None:
        self.spec = spec
        self.loader = loader
        self.alpn = tuple(alpn)
        self.what = what
        self.reloads = 0
        self.outer, self.table, self.names = self._build()

    def _load(self, i: int, cert_file: str, key_file: str) -> LoadedCertificate:
        try:
            return self.loader.load_certificate(cert_file, key_file)
        except (ValueError, OSError) as e:
            raise ConfigError(f"{self.what}.Certificates[{i}]: {e}") from None

    def _build(self) -> tuple[ssl.SSLContext, CertificateTable[ssl.SSLContext],
                              list[tuple[str, ...]]]:
        entries = []
        for i, c in enumerate(self.spec.certificates):
            ctx, names = self._load(i, c.cert_file, c.key_file)
            entries.append((_policy(ctx, self.spec.min_version, self.alpn), names))
        table = CertificateTable(entries)
        outer = table.default
        if len(entries) > 1:
            # OpenSSL calls this on every handshake, with or without a server name; one
            # certificate needs no callback (a Python call per handshake saved)
            def pick(conn: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
                ctx = table.pick(server_name)
                if ctx is not outer:
                    conn.context = ctx
            outer.sni_callback = pick
        return outer, table, [n for _, n in entries]

    def reload(self) -> None:
        """Read the files again and swap the contexts: sockets accepted from now on are
        wrapped with the new ones, open connections keep theirs. ConfigError (old contexts
        kept) on a bad file."""
        self.outer, self.table, self.names = self._build()
        self.reloads += 1


@dataclass
class ListenerTLS:
    """What a listener needs for TLS on either side; all None for a plain listener."""

    server: ServerTLS | None = None
    """Client side: the certificates this listener presents (``TLS``)."""
    backend: ssl.SSLContext | None = None
    """Backend side: the client context of ``BackendTLS``."""
    tagged: ssl.SSLContext | None = None
    """Backend side for instances with the ``tls`` tag: ``backend``, else the system's CAs."""

    def backend_ssl(self, spec: ListenerSpec, b: Backend,
                    timeout: float) -> dict[str, Any]:
        """``create_connection`` keyword arguments for a connection to ``b`` ({} = plain)."""
        bt = spec.backend_tls
        if bt is not None and not bt.tagged_only:
            ctx = self.backend
        elif b.tls:
            ctx = self.tagged       # None in tcp mode without BackendTLS, and with PROXY
        else:
            return {}
        if ctx is None:
            return {}
        name = bt.server_name if bt is not None and bt.server_name else b.host
        return {"ssl": ctx, "server_hostname": name, "ssl_handshake_timeout": timeout}

    def reload(self, spec: ListenerSpec, loader: CertificateLoader) -> None:
        """Re-read every file (blocking); all or nothing: ConfigError keeps the old ones."""
        built = self.server._build() if self.server is not None else None
        fresh = prepare_listener_tls(replace(spec, tls=None), loader)
        if self.server is not None and built is not None:
            self.server.outer, self.server.table, self.server.names = built
            self.server.reloads += 1
        self.backend, self.tagged = fresh.backend, fresh.tagged


def _client_context(loader: CertificateLoader, spec: BackendTLSSpec | None, *,
                    alpn: Sequence[str], what: str) -> ssl.SSLContext:
    ca_file = spec.ca_file if spec is not None else ""
    try:
        ctx = loader.trust_context(ca_file)
    except (ValueError, OSError) as e:
        raise ConfigError(f"{what}.CAFile: {e}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if spec is not None and spec.skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def prepare_listener_tls(spec: ListenerSpec, loader: CertificateLoader) -> ListenerTLS:
    """Load every file a listener's TLS needs; ConfigError naming the field, the file and the
    problem. Blocking (reads files): run it off the event loop."""
    alpn = ("http/1.1",) if spec.mode == "http" else ()
    out = ListenerTLS()
    if spec.tls is not None:
        out.server = ServerTLS(spec.tls, loader, alpn=alpn, what=f"listener {spec.name}: TLS")
    what = f"listener {spec.name}: BackendTLS"
    if spec.backend_tls is not None:
        out.backend = _client_context(loader, spec.backend_tls, alpn=alpn, what=what)
        out.tagged = out.backend
    elif not spec.proxy_protocol and spec.mode == "http":
        # the ``tls`` tag alone: verified against the system's CAs and the instance's address
        out.tagged = _client_context(loader, None, alpn=alpn, what=what)
    return out


def handshake_failure_reason(exc: BaseException) -> str:
    """Why a client's TLS handshake failed, as one of :data:`HANDSHAKE_FAILURE_REASONS`."""
    if isinstance(exc, ssl.SSLError):
        r = (exc.reason or "").upper()
        if r in ("HTTP_REQUEST", "HTTPS_PROXY_REQUEST"):
            return "http_request"          # plain HTTP sent to the TLS port
        if r in ("UNSUPPORTED_PROTOCOL", "WRONG_VERSION_NUMBER", "VERSION_TOO_LOW",
                 "TLSV1_ALERT_PROTOCOL_VERSION", "UNKNOWN_PROTOCOL"):
            return "unsupported_protocol"
        if "NO_SHARED_CIPHER" in r or "NO_CIPHERS" in r or "NO_SUITABLE" in r:
            return "no_shared_cipher"
        if "UNKNOWN_CA" in r:
            return "unknown_ca"            # the client does not trust our certificate's CA
        if "CERTIFICATE" in r:
            return "bad_certificate"       # the client rejected our certificate otherwise
        if isinstance(exc, ssl.SSLEOFError) or "EOF" in r:
            return "eof"
        return "other"
    if isinstance(exc, TimeoutError) or (isinstance(exc, ConnectionAbortedError)
                                         and "taking longer" in str(exc)):
        return "timeout"                   # asyncio's ssl_handshake_timeout
    if isinstance(exc, (ConnectionError, EOFError)):
        return "eof"                       # the client went away mid-handshake
    return "other"

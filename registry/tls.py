"""TLS for the HTTP API: Consul's settings, files checked before start-up, reload on SIGHUP.

Certificates are loaded and validated here and nowhere else (DESIGN.md: one place, handed out
as ``SSLContext``s). Every problem with a file is a :class:`ConfigError` that names the file and
says what is wrong: missing or unreadable, not PEM, a key that does not belong to the
certificate, a certificate that has expired or is not yet valid.

Reload without dropping connections: the listening socket keeps one *outer* context for its
whole life. Its SNI callback, which OpenSSL calls on every handshake (also when the client sends
no server name), points the new connection at the *current* context. ``reload()`` builds a
fresh context from the files and swaps it in: handshakes after the swap present the new
certificate and trust the new CA, while connections already open keep the session they have.
Whether client certificates are required (``verify_incoming``) and the minimum version belong to
the outer context, so changing those needs a restart; reload says so in the log.
"""

from __future__ import annotations

import datetime
import logging
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gossip.dclass import dataclass

from .errors import ConfigError

log = logging.getLogger(__name__)

__all__ = [
    "LEGACY_TLS_KEYS",
    "LBCertificateLoader",
    "ReloadableServerContext",
    "TLSFiles",
    "client_context",
    "server_context",
    "tls_files_from",
]

_VERSIONS = {
    "tlsv1_2": ssl.TLSVersion.TLSv1_2, "tls12": ssl.TLSVersion.TLSv1_2,
    "tlsv1_3": ssl.TLSVersion.TLSv1_3, "tls13": ssl.TLSVersion.TLSv1_3,
}
_TOO_OLD = {"tlsv1_0", "tls10", "tlsv1_1", "tls11"}

LEGACY_TLS_KEYS = frozenset({
    "ca_file", "ca_path", "cert_file", "key_file", "verify_incoming", "verify_incoming_https",
    "verify_outgoing", "verify_server_hostname", "tls_min_version", "tls_cipher_suites",
    "tls_prefer_server_cipher_suites",
})
"""Consul's pre-1.12 top-level TLS keys; read as ``tls.defaults``."""

_KEYS = frozenset({"ca_file", "ca_path", "cert_file", "key_file", "verify_incoming",
                   "verify_outgoing", "verify_server_hostname", "tls_min_version",
                   "tls_cipher_suites", "use_auto_cert"})
_IGNORED = frozenset({"verify_outgoing", "verify_server_hostname", "tls_cipher_suites",
                      "use_auto_cert", "tls_prefer_server_cipher_suites"})


@dataclass(frozen=True, kw_only=True)
class TLSFiles:
    """The TLS settings of the HTTPS API (Consul's ``tls.defaults`` overlaid by ``tls.https``)."""

    ca_file: str = ""
    """PEM file of the CA(s) that sign client certificates (for ``verify_incoming``)."""
    ca_path: str = ""
    """Directory of PEM CA files, as ``ca_file``."""
    cert_file: str = ""
    """PEM certificate (chain) the API presents."""
    key_file: str = ""
    """PEM private key of ``cert_file``."""
    verify_incoming: bool = False
    """Require a client certificate signed by ``ca_file``/``ca_path`` (mutual TLS)."""
    tls_min_version: str = "TLSv1_2"
    """Oldest TLS version accepted: ``TLSv1_2`` (default) or ``TLSv1_3``."""


def tls_files_from(tls: Mapping[str, Any], *, legacy: Mapping[str, Any] | None = None) -> TLSFiles:
    """Read Consul's ``tls`` block: ``defaults``, then ``https`` over it; the old top-level
    keys (``legacy``) are the lowest layer. Unknown keys raise ConfigError."""
    merged: dict[str, Any] = {}
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if legacy:
        layers.append(("", legacy))
    for section, value in tls.items():
        if section not in ("defaults", "https", "internal_rpc", "grpc"):
            raise ConfigError(f"tls.{section}: unknown section; use tls.defaults or tls.https")
        if not isinstance(value, Mapping):
            raise ConfigError(f"tls.{section}: must be an object like {{\"cert_file\": ...}}")
    if isinstance(tls.get("defaults"), Mapping):
        layers.append(("tls.defaults.", tls["defaults"]))
    if isinstance(tls.get("https"), Mapping):
        layers.append(("tls.https.", tls["https"]))
    for prefix, layer in layers:
        for k, v in layer.items():
            key = "verify_incoming" if k == "verify_incoming_https" else k
            if key not in _KEYS and not (not prefix and key in LEGACY_TLS_KEYS):
                raise ConfigError(f"{prefix}{k}: unknown TLS setting; use ca_file, ca_path, "
                                  "cert_file, key_file, verify_incoming or tls_min_version")
            if key in _IGNORED or key == "tls_prefer_server_cipher_suites":
                continue
            if key == "verify_incoming":
                if not isinstance(v, bool):
                    raise ConfigError(f"{prefix}{k}: {v!r} must be true or false")
            elif not isinstance(v, str):
                raise ConfigError(f"{prefix}{k}: {v!r} must be a string")
            merged[key] = v
    files = TLSFiles(**merged)
    version = files.tls_min_version.lower()
    if version in _TOO_OLD:
        raise ConfigError(f"tls_min_version: {files.tls_min_version!r} is too old; Rumor "
                          "accepts TLSv1_2 or TLSv1_3")
    if version not in _VERSIONS:
        raise ConfigError(f"tls_min_version: {files.tls_min_version!r} is not a TLS version; "
                          "use TLSv1_2 or TLSv1_3")
    return files


def _read(path: str, setting: str) -> bytes:
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{setting}: {path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{setting}: {path}: is a directory, not a PEM file") from None
    except OSError as e:
        raise ConfigError(f"{setting}: {path}: cannot read it ({e.strerror})") from None


def _check_certificate(path: str, setting: str) -> Any:
    """Parse the PEM certificate chain at ``path``; its leaf, after the validity checks."""
    from cryptography import x509

    data = _read(path, setting)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(f"{setting}: {path}: not a PEM certificate (expected a "
                          "'-----BEGIN CERTIFICATE-----' block)") from None
    now = datetime.datetime.now(datetime.UTC)
    for cert in certs:
        if cert.not_valid_after_utc < now:
            raise ConfigError(f"{setting}: {path}: the certificate for "
                              f"{cert.subject.rfc4514_string()!r} expired on "
                              f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; renew it")
        if cert.not_valid_before_utc > now:
            raise ConfigError(f"{setting}: {path}: the certificate is not valid before "
                              f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (check the clock)")
    return certs[0]


def _check_key_matches(cert: Any, key_path: str, cert_path: str, setting: str) -> None:
    from cryptography.hazmat.primitives import serialization

    data = _read(key_path, setting)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(f"{setting}: {key_path}: the key is encrypted with a passphrase; "
                          "give an unencrypted PEM key") from None
    except ValueError:
        raise ConfigError(f"{setting}: {key_path}: not a PEM private key (expected a "
                          "'-----BEGIN ... PRIVATE KEY-----' block)") from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != cert.public_key().public_bytes(der, spki):
        raise ConfigError(f"{setting}: {key_path}: this key does not belong to the certificate "
                          f"in {cert_path}; give the key the certificate was issued for")


def _load_cas(ctx: ssl.SSLContext, files: TLSFiles) -> None:
    if files.ca_file:
        _check_certificate(files.ca_file, "tls.defaults.ca_file")
        ctx.load_verify_locations(cafile=files.ca_file)
    if files.ca_path:
        if not Path(files.ca_path).is_dir():
            raise ConfigError(f"tls.defaults.ca_path: {files.ca_path}: not a directory")
        ctx.load_verify_locations(capath=files.ca_path)


def server_context(files: TLSFiles) -> ssl.SSLContext:
    """A server context for the HTTPS API; ConfigError naming the file on any problem."""
    if not files.cert_file or not files.key_file:
        raise ConfigError("ports.https is set but tls.defaults.cert_file and key_file are not; "
                          "give the certificate and key the API should present")
    if files.verify_incoming and not (files.ca_file or files.ca_path):
        raise ConfigError("tls.defaults.verify_incoming is on but no ca_file or ca_path says "
                          "which CA signs client certificates")
    cert = _check_certificate(files.cert_file, "tls.defaults.cert_file")
    _check_key_matches(cert, files.key_file, files.cert_file, "tls.defaults.key_file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[files.tls_min_version.lower()]
    try:
        ctx.load_cert_chain(files.cert_file, files.key_file)
    except ssl.SSLError as e:
        raise ConfigError(f"tls.defaults.cert_file: {files.cert_file}: OpenSSL refused the "
                          f"certificate and key ({e.reason or e})") from None
    _load_cas(ctx, files)
    if files.verify_incoming:
        ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class ReloadableServerContext:
    """The context a listener keeps for life, delegating each handshake to the current one."""

    def __init__(self, files: TLSFiles) -> None:
        self.files = files
        self.current = server_context(files)
        self.outer = server_context(files)
        self.outer.sni_callback = self._pick
        self.reloads = 0

    def _pick(self, conn: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        conn.context = self.current

    def reload(self, files: TLSFiles) -> None:
        """Swap in contexts built from ``files``; ConfigError (old ones kept) on a bad file."""
        fresh = server_context(files)
        if (files.verify_incoming, files.tls_min_version) != (self.files.verify_incoming,
                                                             self.files.tls_min_version):
            log.warning("tls reload: verify_incoming and tls_min_version changes take effect "
                        "at the next restart; certificates and CAs were reloaded")
        self.current = fresh
        self.files = files
        self.reloads += 1


def client_context(*, ca_file: str = "", client_cert: str = "", client_key: str = "",
                   verify: bool = True) -> ssl.SSLContext:
    """A client context for the CLI: the system CAs or ``ca_file``, an optional client cert."""
    ctx = ssl.create_default_context(cafile=ca_file or None)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if client_cert:
        ctx.load_cert_chain(client_cert, client_key or None)
    return ctx


class LBCertificateLoader:
    """The load balancer's certificates, checked here like the API's (``lb.CertificateLoader``,
    injected by the agent): file not found, not PEM, expired or not yet valid, key not
    matching, each named with its file. The listener's policy (versions, ciphers, ALPN, SNI)
    is ``lb``'s to set on the contexts handed back."""

    def load_certificate(self, cert_file: str, key_file: str) -> tuple[ssl.SSLContext,
                                                                       tuple[str, ...]]:
        from lb import certificate_names

        cert = _check_certificate(cert_file, "CertFile")
        _check_key_matches(cert, key_file, cert_file, "KeyFile")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_cert_chain(cert_file, key_file)
        except ssl.SSLError as e:
            raise ConfigError(f"CertFile: {cert_file}: OpenSSL refused the certificate and key "
                              f"({e.reason or e})") from None
        return ctx, certificate_names(cert)

    def trust_context(self, ca_file: str) -> ssl.SSLContext:
        if ca_file:
            _check_certificate(ca_file, "CAFile")
        return ssl.create_default_context(cafile=ca_file or None)

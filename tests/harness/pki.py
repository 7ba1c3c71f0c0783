"""A small PKI for tests: a CA, and server or client certificates it signs (ECDSA P-256),
written as PEM files; made with ``cryptography`` so every test makes its own."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["PKI", "make_pki"]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


@dataclass
class PKI:
    dir: Path
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate
    ca_name: str = "ca"

    @property
    def ca(self) -> str:
        return str(self.dir / f"{self.ca_name}.pem")

    def issue(self, name: str, *, server: bool = True, days: int = 30,
              not_before_days: int = -1, dns: Sequence[str] = ("localhost",),
              ips: Sequence[str] = ("127.0.0.1",), cn: str | None = None,
              out: str | None = None) -> tuple[str, str, int]:
        """Write ``out or name``.pem and -key.pem signed by the CA; (cert, key, serial).
        Server certificates carry ``dns`` and ``ips`` as subjectAltName."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        serial = x509.random_serial_number()
        b = (x509.CertificateBuilder().subject_name(_name(cn or name))
             .issuer_name(self.ca_cert.subject)
             .public_key(key.public_key()).serial_number(serial)
             .not_valid_before(now + datetime.timedelta(days=not_before_days))
             .not_valid_after(now + datetime.timedelta(days=days)))
        if server:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(d) for d in dns]
                + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]),
                critical=False)
        cert = b.sign(self.ca_key, hashes.SHA256())
        base = out or name
        cp, kp = self.dir / f"{base}.pem", self.dir / f"{base}-key.pem"
        cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, kp)
        return str(cp), str(kp), serial


def make_pki(d: Path, name: str = "ca") -> PKI:
    """A fresh CA in ``d`` (``name``.pem); issue certificates with :meth:`PKI.issue`."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cn = "Rumor test CA" if name == "ca" else f"Rumor test CA {name}"
    cert = (x509.CertificateBuilder().subject_name(_name(cn))
            .issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (d / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return PKI(d, key, cert, name)

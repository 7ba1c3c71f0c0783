"""Errors raised by the DNS server; one base class, blame made explicit."""

from __future__ import annotations


class DNSError(Exception):
    """Base class of every error ``dnsserver`` raises on purpose."""


class ConfigError(DNSError, ValueError):
    """The operator's DNS configuration is wrong; the message names the setting and the fix."""


class MalformedQuery(DNSError):
    """A peer sent a packet we cannot answer normally (their fault, never raised to callers).

    ``rcode`` is the response code to answer with (1 FORMERR, 4 NOTIMP), or ``None`` when the
    packet must be dropped without an answer; ``reason`` names the drop counter.
    """

    def __init__(self, reason: str, rcode: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rcode = rcode

"""Errors raised by the gossip package; one base class, blame made explicit.

``MalformedPacket`` is the peer's fault: a receive path catches it, drops the input and counts
it under ``exc.reason``. Everything else is a local problem (bad configuration, misuse of an API).
This file is meant to grow additively: add classes, do not rename the existing ones.
"""

from __future__ import annotations

# Machine-readable reasons carried by MalformedPacket; counters are keyed by these strings.
REASON_TRUNCATED = "truncated"
REASON_BAD_TYPE = "bad_type"
REASON_BAD_MSGPACK = "bad_msgpack"
REASON_BAD_FIELD = "bad_field"
REASON_CRC_MISMATCH = "crc_mismatch"
REASON_DECRYPT_FAILED = "decrypt_failed"
REASON_NOT_ENCRYPTED = "not_encrypted"
REASON_TOO_LARGE = "too_large"
REASON_TOO_MANY_PARTS = "too_many_parts"
REASON_TOO_DEEP = "too_deep"
REASON_DECOMPRESS_LIMIT = "decompress_limit"
REASON_BAD_COMPRESSION = "bad_compression"

MALFORMED_REASONS: frozenset[str] = frozenset(
    {
        REASON_TRUNCATED,
        REASON_BAD_TYPE,
        REASON_BAD_MSGPACK,
        REASON_BAD_FIELD,
        REASON_CRC_MISMATCH,
        REASON_DECRYPT_FAILED,
        REASON_NOT_ENCRYPTED,
        REASON_TOO_LARGE,
        REASON_TOO_MANY_PARTS,
        REASON_TOO_DEEP,
        REASON_DECOMPRESS_LIMIT,
        REASON_BAD_COMPRESSION,
    }
)


class GossipError(Exception):
    """Base class of every error the gossip package raises on purpose."""


class MalformedPacket(GossipError, ValueError):
    """A peer sent bytes we cannot accept (remote fault).

    ``reason`` is a short machine string from ``MALFORMED_REASONS`` used as a counter key;
    the message text is for logs only.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class DecryptionFailed(MalformedPacket):
    """No installed key opens the packet or stream frame (or it was tampered with)."""

    def __init__(self, detail: str = "no installed key decrypts the data") -> None:
        super().__init__(REASON_DECRYPT_FAILED, detail)


class EncryptionError(GossipError, ValueError):
    """Local misuse of encryption: a key of the wrong size, no primary key, and so on."""


class KeyringError(EncryptionError):
    """A keyring operation was refused (unknown key, removing the primary key...)."""


class EncodeError(GossipError, ValueError):
    """A message cannot be put on the wire as given (local fault: value out of range, too big)."""


class ConfigError(GossipError, ValueError):
    """A gossip setting is invalid (local fault); the message names the setting and the fix."""

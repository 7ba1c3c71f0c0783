"""Keyring and AES-GCM as memberlist 0.2.2 uses them (memberlist-wire.md §4.5 and §5.1).

Encrypted payload layout: ``vsn(1) nonce(12) ciphertext tag(16)``. Version 1 (what we send and
what every protocol >= 2 peer sends) encrypts the plaintext as is; version 0 (protocol 1 peers)
PKCS7-pads it to 16 bytes first. UDP packets use no additional authenticated data; TCP stream
frames use their 5-byte header (``0x0a`` + big-endian length) as AAD.

The keyring follows memberlist/Serf semantics: the primary key encrypts, every key (primary
first) is tried to decrypt, ``use`` needs an installed key, removing the primary is refused.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .errors import DecryptionFailed, EncryptionError, KeyringError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def _aesgcm(key: bytes) -> AESGCM:
    """AES-GCM for ``key``. cryptography is imported on first use (~6 MiB of RSS that an
    agent without encryption never needs)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)

#: Version byte we send.
ENCRYPTION_VERSION = 1
#: Highest version byte we accept.
MAX_ENCRYPTION_VERSION = 1
NONCE_SIZE = 12
TAG_SIZE = 16
#: Bytes a version-1 encryption adds: version + nonce + tag.
ENCRYPTION_OVERHEAD = 1 + NONCE_SIZE + TAG_SIZE
#: Worst case for version 0 (a full padding block).
ENCRYPTION_OVERHEAD_V0 = ENCRYPTION_OVERHEAD + 16
#: Valid AES key sizes (AES-128, AES-192, AES-256).
KEY_SIZES = (16, 24, 32)


def validate_key(key: bytes) -> None:
    """Raise ``EncryptionError`` unless ``key`` is 16, 24 or 32 bytes."""
    if not isinstance(key, (bytes, bytearray)):
        raise EncryptionError(f"key must be bytes, not {type(key).__name__}")
    if len(key) not in KEY_SIZES:
        raise EncryptionError(f"key is {len(key)} bytes; use 16, 24 or 32 bytes (AES-128/192/256)")


def decode_key(text: str) -> bytes:
    """Decode a base64 key as ``serf keygen`` prints it; raise ``EncryptionError`` if invalid."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EncryptionError(f"key is not valid base64: {exc}") from None
    validate_key(key)
    return key


def encode_key(key: bytes) -> str:
    """Base64 text of a key (the form Serf's key commands and responses use)."""
    return base64.b64encode(key).decode("ascii")


def generate_key(size: int = 32) -> bytes:
    """A fresh random key (32 bytes, like ``serf keygen``)."""
    if size not in KEY_SIZES:
        raise EncryptionError(f"key size {size}: use 16, 24 or 32")
    return os.urandom(size)


class Keyring:
    """Installed encryption keys; ``primary`` encrypts, all are tried to decrypt."""

    __slots__ = ("_ciphers", "_keys")

    def __init__(self, keys: Iterable[bytes] = (), primary: bytes | None = None) -> None:
        self._keys: list[bytes] = []
        self._ciphers: dict[bytes, AESGCM] = {}
        key_list = [bytes(k) for k in keys]
        if primary is None and key_list:
            primary = key_list[0]
        if primary is not None:
            self.install(primary)
        for key in key_list:
            self.install(key)

    @classmethod
    def from_base64(cls, keys: Iterable[str], primary: str | None = None) -> Keyring:
        """Build a keyring from base64 keys (the first one is primary unless ``primary``)."""
        return cls(
            [decode_key(k) for k in keys], decode_key(primary) if primary is not None else None
        )

    @property
    def primary(self) -> bytes | None:
        """The key that encrypts outgoing data, or None when the keyring is empty."""
        return self._keys[0] if self._keys else None

    @property
    def keys(self) -> tuple[bytes, ...]:
        """Every installed key, primary first."""
        return tuple(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._ciphers

    def install(self, key: bytes) -> None:
        """Add ``key`` (no-op when present). The first key installed becomes primary."""
        key = bytes(key)
        validate_key(key)
        if key in self._ciphers:
            return
        self._ciphers[key] = _aesgcm(key)
        self._keys.append(key)

    def use(self, key: bytes) -> None:
        """Make an installed ``key`` the primary key."""
        key = bytes(key)
        if key not in self._ciphers:
            raise KeyringError("Requested key is not in the keyring")
        self._keys.remove(key)
        self._keys.insert(0, key)

    def remove(self, key: bytes) -> None:
        """Remove ``key``; removing the primary key is refused, an unknown key is a no-op."""
        key = bytes(key)
        if self._keys and key == self._keys[0]:
            raise KeyringError("Removing the primary key is not allowed")
        if key in self._ciphers:
            del self._ciphers[key]
            self._keys.remove(key)

    def list_base64(self) -> tuple[list[str], str]:
        """(all keys, primary key) as base64 text, as in Serf's list-keys response."""
        primary = self.primary
        return [encode_key(k) for k in self._keys], encode_key(primary) if primary else ""

    def encrypt(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        """Encrypt with the primary key: ``vsn(1) nonce ciphertext tag``."""
        if not self._keys:
            raise EncryptionError("keyring has no primary key")
        return _seal(self._ciphers[self._keys[0]], plaintext, aad)

    def decrypt(self, data: bytes, aad: bytes = b"") -> bytes:
        """Try every key, primary first; raise ``DecryptionFailed`` if none opens ``data``."""
        return _open(data, [self._ciphers[k] for k in self._keys], aad)


def _seal(cipher: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_SIZE)
    return (
        bytes((ENCRYPTION_VERSION,)) + nonce + cipher.encrypt(nonce, bytes(plaintext), aad or None)
    )


def _open(data: bytes, ciphers: list[AESGCM], aad: bytes) -> bytes:
    if len(data) < ENCRYPTION_OVERHEAD:
        raise DecryptionFailed(f"{len(data)} bytes is shorter than the encryption overhead")
    if not ciphers:
        raise DecryptionFailed("no keys installed")
    vsn = data[0]
    if vsn > MAX_ENCRYPTION_VERSION:
        raise DecryptionFailed(f"unsupported encryption version {vsn}")
    from cryptography.exceptions import InvalidTag

    nonce = bytes(data[1 : 1 + NONCE_SIZE])
    sealed = bytes(data[1 + NONCE_SIZE :])
    for cipher in ciphers:
        try:
            plain = cipher.decrypt(nonce, sealed, aad or None)
        except InvalidTag:
            continue
        if vsn == 0:
            return _pkcs7_unpad(plain)
        return plain
    raise DecryptionFailed()


def _pkcs7_unpad(buf: bytes) -> bytes:
    if not buf:
        raise DecryptionFailed("empty version-0 plaintext")
    pad = buf[-1]
    if pad < 1 or pad > 16 or pad > len(buf):
        raise DecryptionFailed(f"bad PKCS7 padding {pad}")
    return buf[:-pad]


def _pkcs7_pad(buf: bytes) -> bytes:
    pad = 16 - (len(buf) % 16)
    return buf + bytes((pad,)) * pad


def encrypt_payload(key: bytes, plaintext: bytes, aad: bytes = b"", *, version: int = 1) -> bytes:
    """Encrypt ``plaintext`` with one key (``version`` 0 pads with PKCS7, for tests/old peers)."""
    validate_key(key)
    if version not in (0, 1):
        raise EncryptionError(f"encryption version {version}: use 0 or 1")
    cipher = _aesgcm(bytes(key))
    nonce = os.urandom(NONCE_SIZE)
    plain = _pkcs7_pad(bytes(plaintext)) if version == 0 else bytes(plaintext)
    return bytes((version,)) + nonce + cipher.encrypt(nonce, plain, aad or None)


def decrypt_payload(keys: Iterable[bytes], data: bytes, aad: bytes = b"") -> bytes:
    """Decrypt with the first of ``keys`` that works; raise ``DecryptionFailed`` otherwise."""
    return _open(data, [_aesgcm(bytes(k)) for k in keys], aad)


__all__ = [
    "ENCRYPTION_OVERHEAD",
    "ENCRYPTION_OVERHEAD_V0",
    "ENCRYPTION_VERSION",
    "KEY_SIZES",
    "NONCE_SIZE",
    "TAG_SIZE",
    "Keyring",
    "decode_key",
    "decrypt_payload",
    "encode_key",
    "encrypt_payload",
    "generate_key",
    "validate_key",
]

"""Keyring semantics (as Serf's key commands expect) and AES-GCM framing."""

from __future__ import annotations

import base64

import pytest

from gossip.errors import DecryptionFailed, EncryptionError, KeyringError, MalformedPacket
from gossip.security import (
    ENCRYPTION_OVERHEAD,
    Keyring,
    decode_key,
    decrypt_payload,
    encode_key,
    encrypt_payload,
    generate_key,
    validate_key,
)

from .vectors_util import VECTORS_DIR, by_name

K1 = bytes(range(32))
K2 = bytes(range(1, 33))
K3 = bytes(16)


def test_capture_keys_decode() -> None:
    for name in ("encrypt_capture.key.b64", "extras_capture.key.b64"):
        key = decode_key((VECTORS_DIR / name).read_text())
        assert len(key) == 32
        assert encode_key(key) == (VECTORS_DIR / name).read_text().strip()


@pytest.mark.parametrize("size", [16, 24, 32])
def test_valid_key_sizes(size: int) -> None:
    key = generate_key(size)
    validate_key(key)
    ring = Keyring([key])
    assert ring.decrypt(ring.encrypt(b"hello")) == b"hello"


@pytest.mark.parametrize("size", [0, 1, 15, 17, 31, 33, 64])
def test_invalid_key_sizes(size: int) -> None:
    with pytest.raises(EncryptionError):
        validate_key(bytes(size))
    with pytest.raises(EncryptionError):
        Keyring([bytes(size)])


def test_decode_key_errors() -> None:
    with pytest.raises(EncryptionError):
        decode_key("not base64!!")
    with pytest.raises(EncryptionError):
        decode_key(base64.b64encode(b"short").decode())


def test_keyring_install_use_remove() -> None:
    ring = Keyring([K1])
    assert ring.primary == K1
    ring.install(K2)
    ring.install(K2)  # installing twice is a no-op
    assert ring.keys == (K1, K2)
    with pytest.raises(KeyringError):
        ring.use(K3)  # use needs an installed key
    ring.use(K2)
    assert ring.primary == K2 and ring.keys == (K2, K1)
    with pytest.raises(KeyringError):
        ring.remove(K2)  # the primary cannot be removed
    ring.remove(K1)
    ring.remove(K3)  # removing an unknown key is a no-op
    assert list(ring.keys) == [K2]
    keys, primary = ring.list_base64()
    assert keys == [encode_key(K2)] and primary == encode_key(K2)


def test_keyring_explicit_primary_and_empty() -> None:
    ring = Keyring([K1, K2], primary=K2)
    assert ring.keys == (K2, K1)
    empty = Keyring()
    assert not empty and empty.primary is None and len(empty) == 0
    with pytest.raises(EncryptionError):
        empty.encrypt(b"x")
    with pytest.raises(DecryptionFailed):
        empty.decrypt(bytes(40))
    assert Keyring.from_base64([encode_key(K1)]).primary == K1


def test_decrypt_tries_every_key_primary_first() -> None:
    old = Keyring([K1])
    sealed = old.encrypt(b"rotate")
    new = Keyring([K2, K1])
    assert new.primary == K2
    assert new.decrypt(sealed) == b"rotate"
    assert decrypt_payload([K3, K1], sealed) == b"rotate"


def test_layout_and_overhead() -> None:
    sealed = encrypt_payload(K1, b"x" * 10)
    assert sealed[0] == 1
    assert len(sealed) == 10 + ENCRYPTION_OVERHEAD == 39
    v0 = encrypt_payload(K1, b"x" * 10, version=0)
    assert v0[0] == 0 and len(v0) == 1 + 12 + 16 + 16
    assert decrypt_payload([K1], v0) == b"x" * 10


def test_nonces_are_random() -> None:
    assert encrypt_payload(K1, b"same") != encrypt_payload(K1, b"same")


def test_aad_is_authenticated() -> None:
    sealed = encrypt_payload(K1, b"state", aad=b"\x0a\x00\x00\x00\x22")
    assert decrypt_payload([K1], sealed, aad=b"\x0a\x00\x00\x00\x22") == b"state"
    with pytest.raises(DecryptionFailed):
        decrypt_payload([K1], sealed, aad=b"\x0a\x00\x00\x00\x23")
    with pytest.raises(DecryptionFailed):
        decrypt_payload([K1], sealed)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x01", b"\x01" + bytes(27), b"\x02" + bytes(60), b"\xff" * 64],
    ids=["empty", "1", "28", "vsn2", "vsn255"],
)
def test_decrypt_garbage(data: bytes) -> None:
    with pytest.raises(MalformedPacket) as info:
        Keyring([K1]).decrypt(data)
    assert info.value.reason == "decrypt_failed"


def test_bad_pkcs7_padding_in_version_0() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = bytes(12)
    sealed = b"\x00" + nonce + AESGCM(K1).encrypt(nonce, b"abc" + b"\x20" * 13, None)
    with pytest.raises(DecryptionFailed):
        decrypt_payload([K1], sealed)


def test_capture_vector_17_opens_with_its_key() -> None:
    vec = by_name("17_")
    assert vec.key is not None
    plain = Keyring([vec.key]).decrypt(vec.data)
    assert plain[0] == 0 and len(plain) == 61

"""UDP packet layers (§4): compound, compress (LZW), hasCrc and encryption, both ways."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Sequence

from .. import lzw
from ..dclass import dataclass
from ..errors import (
    REASON_BAD_COMPRESSION,
    REASON_BAD_TYPE,
    REASON_CRC_MISMATCH,
    REASON_DECOMPRESS_LIMIT,
    REASON_TOO_DEEP,
    REASON_TOO_LARGE,
    REASON_TOO_MANY_PARTS,
    REASON_TRUNCATED,
    DecryptionFailed,
    EncodeError,
    MalformedPacket,
)
from ..messages import (
    COMPRESSION_LZW,
    Compress,
    Message,
    MessageType,
    PacketMessage,
    UserMsg,
)
from ..security import Keyring
from .gomsgpack import (
    as_struct,
    go_pack,
    go_unpack_prefix,
)
from .limits import (
    CRC_OVERHEAD,
    DEFAULT_LIMITS,
    MAX_COMPOUND_PARTS,
    CodecLimits,
)
from .messages import (
    BODY_DECODERS,
    TYPE_NAMES,
    decode_compress_body,
    decode_simple,
    encode_message,
)


def make_compound(parts: Sequence[bytes]) -> bytes:
    """``07 N len_1..len_N msg_1..msg_N`` (N <= 255, each part < 64 KiB)."""
    if len(parts) > MAX_COMPOUND_PARTS:
        raise EncodeError(f"compound of {len(parts)} parts; at most {MAX_COMPOUND_PARTS}")
    head = bytearray((MessageType.COMPOUND, len(parts)))
    for part in parts:
        if len(part) > 0xFFFF:
            raise EncodeError(f"compound part of {len(part)} bytes; at most 65535")
        head += struct.pack(">H", len(part))
    return bytes(head) + b"".join(bytes(p) for p in parts)


def split_compound(buf: bytes | memoryview) -> tuple[list[bytes], int]:
    """Split a compound message (starting with 0x07) into parts.

    Returns ``(parts, truncated)`` where ``truncated`` counts the parts the buffer was too short
    for (Go keeps the parts that fit). Raises ``MalformedPacket`` when the header is cut short.
    """
    if len(buf) < 2 or buf[0] != MessageType.COMPOUND:
        raise MalformedPacket(REASON_TRUNCATED, "missing compound length byte")
    count = buf[1]
    pos = 2 + 2 * count
    if len(buf) < pos:
        raise MalformedPacket(REASON_TRUNCATED, "compound length table cut short")
    lengths = struct.unpack_from(f">{count}H", buf, 2)
    parts: list[bytes] = []
    for idx, length in enumerate(lengths):
        end = pos + length
        if end > len(buf):
            return parts, count - idx
        parts.append(bytes(buf[pos:end]))
        pos = end
    return parts, 0


def add_crc(payload: bytes) -> bytes:
    """``0c crc32(payload) payload`` (CRC-32/IEEE, big-endian)."""
    return struct.pack(">BI", MessageType.HAS_CRC, zlib.crc32(payload) & 0xFFFFFFFF) + payload


def strip_crc(buf: bytes) -> bytes:
    """Check and remove a hasCrc wrapper; raise ``MalformedPacket("crc_mismatch")`` if wrong."""
    if len(buf) < CRC_OVERHEAD or buf[0] != MessageType.HAS_CRC:
        raise MalformedPacket(REASON_TRUNCATED, "not a hasCrc message")
    (expected,) = struct.unpack_from(">I", buf, 1)
    payload = buf[CRC_OVERHEAD:]
    if zlib.crc32(payload) & 0xFFFFFFFF != expected:
        raise MalformedPacket(REASON_CRC_MISMATCH, f"crc32 {expected:08x} does not match")
    return bytes(payload)


def compress_message(buf: bytes) -> bytes:
    """``09 msgpack{Algo: 0, Buf: LZW(buf)}``."""
    return b"\x09" + go_pack({"Algo": COMPRESSION_LZW, "Buf": lzw.compress(buf)})


def decompress_message(buf: bytes | memoryview, max_size: int) -> bytes:
    """Unwrap a compress message (starting with 0x09); the result is at most ``max_size``."""
    if not len(buf) or buf[0] != MessageType.COMPRESS:
        raise MalformedPacket(REASON_BAD_TYPE, "not a compress message")
    obj, _ = go_unpack_prefix(buf, 1)
    return inflate(decode_compress_body(as_struct(obj, "compress")), max_size)


def inflate(c: Compress, max_size: int) -> bytes:
    if c.algo != COMPRESSION_LZW:
        raise MalformedPacket(REASON_BAD_COMPRESSION, f"unknown compression algorithm {c.algo}")
    try:
        out = lzw.decompress(c.buf, max_size)
    except lzw.LZWLimitExceeded:
        raise MalformedPacket(REASON_DECOMPRESS_LIMIT, f"more than {max_size} bytes") from None
    except lzw.LZWError as exc:
        raise MalformedPacket(REASON_BAD_COMPRESSION, str(exc)) from None
    if not out:
        raise MalformedPacket(REASON_TRUNCATED, "compressed message is empty")
    return out


def wrap_packet(
    payload: bytes,
    *,
    crc: bool = False,
    compress: bool = False,
    keyring: Keyring | None = None,
) -> bytes:
    """Apply Go's UDP send layers to one message or compound (§4.1 steps 4-6).

    ``compress``: LZW, used only when the result is shorter. ``crc``: add hasCrc (the receiver
    advertises PMax >= 5). ``keyring``: encrypt with its primary key when it has one.
    """
    out = bytes(payload)
    if compress:
        packed = compress_message(out)
        if len(packed) < len(out):
            out = packed
    if crc:
        out = add_crc(out)
    if keyring:
        out = keyring.encrypt(out)
    return out


def encode_packet(
    messages: Sequence[Message | bytes],
    *,
    crc: bool = False,
    compress: bool = False,
    keyring: Keyring | None = None,
) -> bytes:
    """One UDP packet: a single message bare, several as a compound, then ``wrap_packet``.

    Items may be message objects or already encoded messages (type byte + body).
    """
    if not messages:
        raise EncodeError("a packet needs at least one message")
    parts = [m if isinstance(m, (bytes, bytearray)) else encode_message(m) for m in messages]
    payload = bytes(parts[0]) if len(parts) == 1 else make_compound(parts)
    return wrap_packet(payload, crc=crc, compress=compress, keyring=keyring)



_DEDUP_TYPES = frozenset((MessageType.ALIVE, MessageType.SUSPECT, MessageType.DEAD,
                          MessageType.USER))

KnownFilter = Callable[[bytes], "int | None"]
"""``known(message) -> None`` for a copy of a broadcast handled lately (skip it), else a hash
to remember once the packet was handled."""


@dataclass(frozen=True, slots=True)
class DecodedPacket:
    """What ``decode_packet`` found: messages in wire order, and the parts it had to drop."""

    messages: tuple[PacketMessage, ...]
    errors: tuple[MalformedPacket, ...] = ()
    encrypted: bool = False
    crc: bool = False
    compressed: bool = False
    duplicates: int = 0
    """Messages skipped as copies of recent ones (``known`` said so)."""
    fresh: tuple[int, ...] = ()
    """Hashes (from ``known``) of the broadcast messages decoded here, for the caller to
    remember once they have been handled (a packet whose handling fails is not remembered, so a later copy
    of what it carried is still read)."""


class _PacketWalk:
    __slots__ = ("compressed", "duplicates", "errors", "fresh", "known", "limits", "messages")

    def __init__(self, limits: CodecLimits, known: KnownFilter | None = None) -> None:
        self.limits = limits
        self.messages: list[PacketMessage] = []
        self.errors: list[MalformedPacket] = []
        self.compressed = False
        self.known = known
        self.duplicates = 0
        self.fresh: list[int] = []

    def dispatch(self, buf: bytes, depth: int) -> None:
        if not buf:
            raise MalformedPacket(REASON_TRUNCATED, "empty message")
        msg_type = buf[0]
        h: int | None = None
        if msg_type in _DEDUP_TYPES and self.known is not None:
            h = self.known(buf)
            if h is None:
                self.duplicates += 1
                return
        if msg_type in BODY_DECODERS or msg_type == MessageType.USER:
            self._add(decode_simple(msg_type, buf, 1) if msg_type in BODY_DECODERS
                      else UserMsg(bytes(buf[1:])))
            if h is not None:
                self.fresh.append(h)
        elif msg_type == MessageType.COMPOUND:
            if depth >= self.limits.max_nesting_depth:
                raise MalformedPacket(REASON_TOO_DEEP, f"more than {depth} nested layers")
            parts, truncated = split_compound(buf)
            if len(parts) + truncated > self.limits.max_compound_parts:
                raise MalformedPacket(REASON_TOO_MANY_PARTS, f"{len(parts) + truncated} parts")
            for part in parts:
                try:
                    self.dispatch(part, depth + 1)
                except MalformedPacket as exc:
                    # Structural attacks end the whole packet; an ordinary bad part does not.
                    if exc.reason in (REASON_TOO_MANY_PARTS, REASON_TOO_DEEP):
                        raise
                    self.errors.append(exc)
            if truncated:
                self.errors.append(
                    MalformedPacket(REASON_TRUNCATED, f"compound: {truncated} parts cut short")
                )
        elif msg_type == MessageType.COMPRESS:
            if depth >= self.limits.max_nesting_depth:
                raise MalformedPacket(REASON_TOO_DEEP, f"more than {depth} nested layers")
            self.compressed = True
            self.dispatch(decompress_message(buf, self.limits.max_packet_decompressed), depth + 1)
        else:
            name = TYPE_NAMES.get(msg_type, "unknown")
            raise MalformedPacket(REASON_BAD_TYPE, f"message type {msg_type} ({name}) on UDP")

    def _add(self, msg: PacketMessage) -> None:
        if len(self.messages) >= self.limits.max_packet_messages:
            raise MalformedPacket(
                REASON_TOO_MANY_PARTS, f"more than {self.limits.max_packet_messages} messages"
            )
        self.messages.append(msg)


def decode_packet(
    data: bytes | bytearray | memoryview,
    keyring: Keyring | None = None,
    *,
    limits: CodecLimits = DEFAULT_LIMITS,
    verify_incoming: bool = True,
    known: KnownFilter | None = None,
) -> DecodedPacket:
    """Peel every layer off one UDP datagram and decode the messages inside (§4.1 receive).

    With a non-empty ``keyring`` the packet is decrypted with each key, primary first; when no
    key works it is refused (``DecryptionFailed``) if ``verify_incoming``, or else read as
    plaintext. A top-level hasCrc is checked. Raises ``MalformedPacket`` when the packet as a
    whole is unusable; a bad compound part lands in ``errors`` and the rest is kept. With
    ``known``, each broadcast message (alive, suspect, dead, user) is first shown to it: None
    means "a copy of one handled lately", and the message is skipped and only counted
    (``DecodedPacket.duplicates``); otherwise it returns the message's hash, collected in
    ``DecodedPacket.fresh`` for the caller to remember once it has handled the packet (the
    cache itself belongs to the core: ``gossip.recent.RecentMessages``).
    """
    buf = bytes(data)
    if len(buf) > limits.max_packet_size:
        raise MalformedPacket(REASON_TOO_LARGE, f"{len(buf)} byte packet")
    if not buf:
        raise MalformedPacket(REASON_TRUNCATED, "empty packet")
    encrypted = False
    if keyring:
        try:
            buf = keyring.decrypt(buf)
            encrypted = True
        except DecryptionFailed:
            if verify_incoming:
                raise
    has_crc = False
    if len(buf) >= CRC_OVERHEAD and buf[0] == MessageType.HAS_CRC:
        buf = strip_crc(buf)
        has_crc = True
    walk = _PacketWalk(limits, known)
    walk.dispatch(buf, 0)
    return DecodedPacket(
        messages=tuple(walk.messages),
        errors=tuple(walk.errors),
        encrypted=encrypted,
        crc=has_crc,
        compressed=walk.compressed,
        duplicates=walk.duplicates,
        fresh=tuple(walk.fresh),
    )

"""Sizes the wire fixes and the caps (``CodecLimits``) every decoder enforces."""

from __future__ import annotations

from ..dclass import dataclass
from ..security import ENCRYPTION_OVERHEAD

#: Bytes a compound adds once (type byte + part count).
COMPOUND_HEADER_OVERHEAD = 2
#: Bytes a compound adds per part (its u16 length).
COMPOUND_PART_OVERHEAD = 2
#: Most parts one compound can hold (the count is one byte).
MAX_COMPOUND_PARTS = 255
#: Bytes the hasCrc wrapper adds.
CRC_OVERHEAD = 5
#: Bytes an encrypted TCP frame header has (0x0a + u32 length); the AAD of the frame.
STREAM_FRAME_HEADER_SIZE = 5
#: Re-exported for packet budgeting: bytes encryption adds to a UDP packet.
PACKET_ENCRYPTION_OVERHEAD = ENCRYPTION_OVERHEAD

_MiB = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class CodecLimits:
    """Caps on everything the network fills; decoders refuse input beyond them."""

    max_packet_size: int = 65536
    """Largest UDP datagram accepted, in bytes (memberlist's receive buffer). Default 65536."""

    max_compound_parts: int = MAX_COMPOUND_PARTS
    """Most parts read from one compound (the wire allows 255). Default 255."""

    max_nesting_depth: int = 4
    """Most compound/compress layers nested inside one packet. Default 4 (Go sends at most 2)."""

    max_packet_messages: int = 1024
    """Most messages one UDP packet may expand to, over all nested compounds. Default 1024."""

    max_packet_decompressed: int = 1 * _MiB
    """Largest decompressed UDP payload, in bytes. Default 1 MiB (a datagram is <= 64 KiB)."""

    max_stream_size: int = 20 * _MiB
    """Largest inbound TCP stream / encrypted frame, in bytes (memberlist's 20 MiB cap)."""

    max_stream_decompressed: int = 20 * _MiB
    """Largest decompressed TCP stream message, in bytes. Default 20 MiB."""

    max_push_pull_nodes: int = 65536
    """Most node states one push/pull may announce. Default 65536."""

    max_container_len: int = 131072
    """Most entries of any one msgpack array or map in a stream. Default 131072."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field when a limit is unusable."""
        for name in (
            "max_packet_size",
            "max_compound_parts",
            "max_nesting_depth",
            "max_packet_messages",
            "max_packet_decompressed",
            "max_stream_size",
            "max_stream_decompressed",
            "max_push_pull_nodes",
            "max_container_len",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"codec.{name}: {value!r} must be a positive integer")
        if self.max_compound_parts > MAX_COMPOUND_PARTS:
            raise ValueError(
                f"codec.max_compound_parts: {self.max_compound_parts} exceeds the wire's 255"
            )


DEFAULT_LIMITS = CodecLimits()

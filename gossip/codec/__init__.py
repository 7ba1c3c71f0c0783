"""The memberlist 0.2.2 / Serf 0.9.4 wire format: the only package that knows the bytes.

Theory of operation
-------------------
A memberlist *message* is ``type byte + msgpack map`` (:mod:`.messages`: ``encode_message`` /
``decode_message``). The maps follow go-msgpack 0.5.5 with a zero ``MsgpackHandle``
(memberlist-wire.md §1; :mod:`.gomsgpack`): keys are the Go field names written in sorted
order, strings and byte slices both go out as the old raw type (``packb(use_bin_type=False)``),
nil slices as ``0xc0``, integers in their smallest form. On input we decode with
``raw=False, unicode_errors="surrogateescape"`` so that str-family and bin values stay
distinguishable: a Go ``string`` field must be str-family (and, our own rule, valid UTF-8), a
``[]byte`` field takes either. Unknown keys are skipped, nil leaves the zero value, any integer
width is accepted if the value fits the Go type, anything else is ``MalformedPacket("bad_field")``.

A UDP *packet* (:mod:`.packet`) wraps messages in layers, outermost first (§4): encryption
(keyring), ``hasCrc`` (12), ``compress`` (9, LZW) and ``compound`` (7). ``wrap_packet`` builds
them in Go's order (compound → compress if shorter → CRC → encrypt); ``decode_packet`` peels
them off again, recursing through compound/compress at most ``limits.max_nesting_depth`` levels
and never producing more than ``limits.max_packet_messages`` messages. A bad part of a compound
is reported in ``DecodedPacket.errors`` and the good parts are kept (Go handles each part on its
own); a bad outer layer raises ``MalformedPacket``.

A TCP *stream* (:mod:`.stream`) carries one message (§5): plain, compressed (``09`` + one msgpack
object) or in an encrypted frame (``0a`` + u32 length + AES-GCM with the 5-byte header as AAD).
Plain streams carry no length, so ``StreamReader`` parses incrementally.

Serf messages (``serf type byte + msgpack``, :mod:`.serf`) ride inside memberlist user messages:
``encode_serf`` / ``decode_serf``, plus the Meta tag blob and the Vivaldi coordinate payload.

Every decoder raises only ``MalformedPacket`` (``DecryptionFailed`` is a subclass), whatever the
input. Encoders raise ``EncodeError`` for values that cannot go on the wire. Every size the
network fills is capped by :class:`CodecLimits` (:mod:`.limits`).
"""

from __future__ import annotations

from .gomsgpack import ip_from_bytes, ip_to_bytes
from .limits import (
    COMPOUND_HEADER_OVERHEAD,
    COMPOUND_PART_OVERHEAD,
    CRC_OVERHEAD,
    DEFAULT_LIMITS,
    MAX_COMPOUND_PARTS,
    PACKET_ENCRYPTION_OVERHEAD,
    STREAM_FRAME_HEADER_SIZE,
    CodecLimits,
)
from .messages import (
    decode_message,
    encode_message,
    encode_node_state,
    encode_user_msg_stream,
    push_pull_bytes,
)
from .packet import (
    DecodedPacket,
    KnownFilter,
    add_crc,
    compress_message,
    decode_packet,
    decompress_message,
    encode_packet,
    make_compound,
    split_compound,
    strip_crc,
    wrap_packet,
)
from .serf import (
    decode_coordinate,
    decode_serf,
    decode_tags,
    encode_coordinate,
    encode_serf,
    encode_serf_user_msg,
    encode_tags,
    iter_serf_messages,
)
from .stream import LazyStates, StreamReader, decode_stream, encode_stream

__all__ = [
    "COMPOUND_HEADER_OVERHEAD",
    "COMPOUND_PART_OVERHEAD",
    "CRC_OVERHEAD",
    "DEFAULT_LIMITS",
    "MAX_COMPOUND_PARTS",
    "PACKET_ENCRYPTION_OVERHEAD",
    "STREAM_FRAME_HEADER_SIZE",
    "CodecLimits",
    "DecodedPacket",
    "KnownFilter",
    "LazyStates",
    "StreamReader",
    "add_crc",
    "compress_message",
    "decode_coordinate",
    "decode_message",
    "decode_packet",
    "decode_serf",
    "decode_stream",
    "decode_tags",
    "decompress_message",
    "encode_coordinate",
    "encode_message",
    "encode_node_state",
    "encode_packet",
    "encode_serf",
    "encode_serf_user_msg",
    "encode_stream",
    "encode_tags",
    "encode_user_msg_stream",
    "ip_from_bytes",
    "ip_to_bytes",
    "iter_serf_messages",
    "make_compound",
    "push_pull_bytes",
    "split_compound",
    "strip_crc",
    "wrap_packet",
]

"""msgpack as go-msgpack 0.5.5 writes it: packing, and typed reads of Go struct fields.

Encoders pack with the old raw type (strings and byte slices alike); decoders read with
``surrogateescape`` so str-family and bin stay apart, and every typed read raises
``MalformedPacket("bad_field")`` for a value the Go field could not hold.

Used by the other codec modules only; everything else imports from :mod:`gossip.codec`."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import msgpack  # type: ignore[import-untyped]

from ..errors import (
    REASON_BAD_FIELD,
    REASON_BAD_MSGPACK,
    REASON_TRUNCATED,
    EncodeError,
    MalformedPacket,
)


def go_pack(obj: Any) -> bytes:
    try:
        return msgpack.packb(obj, use_bin_type=False)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(f"cannot encode {obj!r}: {exc}") from None


def go_unpack_prefix(buf: bytes | memoryview, pos: int = 0) -> tuple[Any, int]:
    """Decode the first msgpack object of ``buf[pos:]``; return it and the offset after it.

    Trailing bytes are allowed, as Go's decoder reads one object and stops.
    """
    data = buf[pos:] if pos else buf
    if not len(data):
        raise MalformedPacket(REASON_TRUNCATED, "empty message body")
    try:
        obj = msgpack.unpackb(
            data, raw=False, unicode_errors="surrogateescape", strict_map_key=True
        )
        return obj, len(buf)
    except msgpack.ExtraData as extra:
        return extra.unpacked, len(buf) - len(extra.extra)
    except ValueError as exc:
        # unpackb caps every length at the input size, so "exceeds max_*_len" also means the
        # data claims more than it holds.
        text = str(exc)
        if "incomplete" in text or "exceeds max_" in text:
            raise MalformedPacket(REASON_TRUNCATED, f"msgpack: {exc}") from None
        raise MalformedPacket(REASON_BAD_MSGPACK, f"msgpack: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - msgpack raises assorted types on hostile input
        raise MalformedPacket(REASON_BAD_MSGPACK, f"msgpack: {type(exc).__name__}") from None


def bad_value(field: str, value: Any, want: str) -> MalformedPacket:
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return MalformedPacket(REASON_BAD_FIELD, f"{field}: want {want}, got {shown}")


def as_struct(obj: Any, what: str) -> dict[str, Any]:
    """A decoded struct map (nil = empty struct); keys must be strings."""
    if obj is None:
        return {}
    if type(obj) is not dict:
        raise bad_value(what, obj, "a map")
    for key in obj:
        if type(key) is not str:
            raise bad_value(what, key, "string map keys")
    return obj


def as_str(value: Any, field: str) -> str:
    if value is None:
        return ""
    if type(value) is not str:
        raise bad_value(field, value, "a string")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise bad_value(field, value, "valid UTF-8") from None
    return value


def as_bytes_or_none(value: Any, field: str) -> bytes | None:
    if value is None:
        return None
    if type(value) is bytes:
        return value
    if type(value) is str:
        return value.encode("utf-8", "surrogateescape")
    raise bad_value(field, value, "bytes")


def as_bytes(value: Any, field: str) -> bytes:
    out = as_bytes_or_none(value, field)
    return b"" if out is None else out


def as_uint(value: Any, field: str, bits: int) -> int:
    if value is None:
        return 0
    if type(value) is not int or value < 0 or value >> bits:
        raise bad_value(field, value, f"a uint{bits}")
    return value


def as_int(value: Any, field: str, bits: int = 64) -> int:
    if value is None:
        return 0
    limit = 1 << (bits - 1)
    if type(value) is not int or not -limit <= value < limit:
        raise bad_value(field, value, f"an int{bits}")
    return value


def as_bool(value: Any, field: str) -> bool:
    if value is None:
        return False
    if type(value) is not bool:
        raise bad_value(field, value, "a bool")
    return value


def as_float(value: Any, field: str) -> float:
    if value is None:
        return 0.0
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    raise bad_value(field, value, "a float")


def as_str_list(value: Any, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if type(value) is not list:
        raise bad_value(field, value, "an array of strings")
    return tuple(as_str(v, field) for v in value)


def as_str_map(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if type(value) is not dict:
        raise bad_value(field, value, "a map of strings")
    return {as_str(k, field): as_str(v, field) for k, v in value.items()}


def as_u64_map(value: Any, field: str) -> dict[str, int]:
    if value is None:
        return {}
    if type(value) is not dict:
        raise bad_value(field, value, "a map of integers")
    return {as_str(k, field): as_uint(v, field, 64) for k, v in value.items()}


def as_vsn(value: Any, field: str = "Vsn") -> tuple[int, ...]:
    if value is None:
        return ()
    if type(value) is bytes:
        return tuple(value)
    if type(value) is str:
        return tuple(value.encode("utf-8", "surrogateescape"))
    if type(value) is list:
        return tuple(as_uint(v, field, 8) for v in value)
    raise bad_value(field, value, "bytes or an array of uint8")


_V4_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"


def as_ip(value: Any, field: str) -> str:
    raw = as_bytes(value, field)
    n = len(raw)
    if n == 0:
        return ""
    if n == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    if n == 16:
        if raw[:12] == _V4_MAPPED_PREFIX:
            return socket.inet_ntop(socket.AF_INET, raw[12:])
        return socket.inet_ntop(socket.AF_INET6, raw)
    raise bad_value(field, raw, "a 4- or 16-byte IP address")


@lru_cache(maxsize=4096)
def ip_to_bytes(addr: str) -> bytes | None:
    """Wire form of an address: 4 bytes for IPv4, 16 for IPv6, None (nil) for ''."""
    if not addr:
        return None
    try:
        return socket.inet_pton(socket.AF_INET, addr)
    except (OSError, ValueError, TypeError):
        pass
    try:
        raw = socket.inet_pton(socket.AF_INET6, addr)
    except (OSError, ValueError, TypeError):
        raise EncodeError(f"{addr!r} is not an IP address") from None
    return raw


def ip_from_bytes(raw: bytes) -> str:
    """Text form of a wire address (4 or 16 bytes; IPv4-mapped IPv6 gives dotted IPv4)."""
    return as_ip(raw, "ip")


def check_uint(value: int, field: str, bits: int) -> int:
    if type(value) is bool or not isinstance(value, int) or value < 0 or value >> bits:
        raise EncodeError(f"{field}: {value!r} is not a uint{bits}")
    return int(value)


def check_int(value: int, field: str, bits: int = 64) -> int:
    limit = 1 << (bits - 1)
    if type(value) is bool or not isinstance(value, int) or not -limit <= value < limit:
        raise EncodeError(f"{field}: {value!r} is not an int{bits}")
    return int(value)


def vsn_out(vsn: Sequence[int]) -> bytes | None:
    if not vsn:
        return None
    try:
        return bytes(vsn)
    except (TypeError, ValueError):
        raise EncodeError(f"Vsn: {vsn!r} is not a sequence of uint8") from None

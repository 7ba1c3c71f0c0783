"""GIF-style LZW, byte-compatible with Go's ``compress/lzw`` (LSB order, literal width 8).

memberlist's compress wrapper (algorithm 0) carries this format (memberlist-wire.md §4.4):

* codes 0-255 are literals, 256 is *clear*, 257 is *end of data*, new codes start at 258;
* codes are packed least-significant bit first, starting 9 bits wide; the width grows by one when
  the next free code reaches 512, 1024 and 2048 (12 bits at most);
* Go >= 1.17 writes a clear code first (Debian's serf is built with Go 1.19); when the next free
  code reaches 4095 the writer emits a clear (at 12 bits) and starts over; the stream ends with
  the end code and the partial last byte.

``compress`` reproduces Go's writer exactly (the captured blobs re-compress byte for byte).
``decompress`` follows Go's reader: clear may appear anywhere, the end code is required, bytes
after it are ignored, and it stops with ``LZWLimitExceeded`` as soon as the output would pass
``max_size``, so a decompression bomb costs at most ``max_size`` bytes of memory.

Speed: gossip/_lzwc.c is a C version of both functions, built with the package when a C
compiler is there (it is optional: without it the pure-Python code below runs, 40-90x slower:
bench/lzw_speed.py).
LZW is most of what a gossip packet costs in Python (a full 1.4 KB packet: ~0.2 ms to compress
and as much to decompress in Python, a few microseconds in C), so the C version matters most in
a join burst, when every packet is full. Both must agree byte for byte; the tests compare them.
``RUMOR_PURE_PYTHON=1`` in the environment forces the Python version. In pure Python the
decoder keeps each table entry as a ``bytes`` object (one concatenation per code, no per-bit
loop); the encoder does one dict probe per input byte.
"""

from __future__ import annotations

import os
from typing import Any

_CLEAR = 256
_EOF = 257
_FIRST = 258
_MAX_CODE = 4095
_FULL_TABLE: tuple[bytes, ...] = (*(bytes((i,)) for i in range(256)),) + (b"",) * (4096 - 256)


class LZWError(ValueError):
    """The compressed data is not a valid LZW stream (bad code, missing end code)."""


class LZWLimitExceeded(LZWError):
    """Decompressing would produce more than the allowed number of bytes."""


def py_compress(data: bytes | bytearray | memoryview) -> bytes:
    """Compress ``data`` exactly as Go's ``lzw.NewWriter(w, lzw.LSB, 8)`` does (pure Python)."""
    src = bytes(data)
    out = bytearray()
    bits = _CLEAR  # the leading clear code, 9 bits wide
    nbits = 9
    if not src:
        bits |= _EOF << nbits
        nbits += 9
        while nbits > 0:
            out.append(bits & 0xFF)
            bits >>= 8
            nbits -= 8
        return bytes(out)

    table: dict[int, int] = {}
    get = table.get
    width = 9
    hi = _EOF
    overflow = 512
    code = src[0]
    for lit in src[1:]:
        key = (code << 8) | lit
        nxt = get(key)
        if nxt is not None:
            code = nxt
            continue
        # Emit the current code; the literal starts the next string.
        bits |= code << nbits
        nbits += width
        if nbits >= 32:
            out += (bits & 0xFFFFFFFF).to_bytes(4, "little")
            bits >>= 32
            nbits -= 32
        code = lit
        hi += 1
        if hi == overflow:
            width += 1
            overflow <<= 1
        if hi == _MAX_CODE:
            # Out of codes: emit clear at the current (12-bit) width and start over.
            bits |= _CLEAR << nbits
            nbits += width
            if nbits >= 32:
                out += (bits & 0xFFFFFFFF).to_bytes(4, "little")
                bits >>= 32
                nbits -= 32
            width = 9
            hi = _EOF
            overflow = 512
            table.clear()
            continue
        table[key] = hi

    # Close: the pending code, then (after bumping hi, which may widen) the end code.
    bits |= code << nbits
    nbits += width
    hi += 1
    if hi == overflow:
        width += 1
        overflow <<= 1
    if hi == _MAX_CODE:
        bits |= _CLEAR << nbits
        nbits += width
        width = 9
    bits |= _EOF << nbits
    nbits += width
    while nbits > 0:
        out.append(bits & 0xFF)
        bits >>= 8
        nbits -= 8
    return bytes(out)


def py_decompress(data: bytes | bytearray | memoryview, max_size: int) -> bytes:
    """(Pure Python.) Decompress a Go ``compress/lzw`` (LSB, 8) stream, refusing more than ``max_size`` bytes.

    Raises ``LZWLimitExceeded`` when the output would exceed ``max_size`` and ``LZWError`` for an
    invalid code or a stream that ends without the end code.
    """
    src = bytes(data)
    nbits_total = len(src) * 8
    # Three bytes of padding so that every code can be read with one 24-bit window.
    buf = src + b"\x00\x00\x00"
    out: list[bytes] = []
    size = 0
    # table[i] is what code i expands to. Codes >= hi are refused before a lookup, so stale
    # entries left by a clear are never read and the table need not be wiped.
    table: list[bytes] = list(_FULL_TABLE)
    width = 9
    mask = 0x1FF
    hi = _EOF
    overflow = 512
    # ``last`` is the previous expansion; b"" right after a clear. Go skips the table write
    # then; we write it into slot 257 (hi is 257 exactly then), which is never looked up.
    last = b""
    pos = 0
    while True:
        if pos + width > nbits_total:
            raise LZWError("lzw: stream ends without the end code")
        i = pos >> 3
        code = ((buf[i] | (buf[i + 1] << 8) | (buf[i + 2] << 16)) >> (pos & 7)) & mask
        pos += width
        if code < hi:
            if code == _CLEAR:
                width = 9
                mask = 0x1FF
                hi = _EOF
                overflow = 512
                last = b""
                continue
            if code == _EOF:
                break
            entry = table[code]
            table[hi] = last + entry[:1]
        elif code == hi and last:
            # The code being defined right now: previous expansion + its own first byte.
            entry = last + last[:1]
            table[hi] = entry
        elif code == _EOF:
            break
        else:
            raise LZWError(f"lzw: invalid code {code} (next free {hi})")
        size += len(entry)
        if size > max_size:
            raise LZWLimitExceeded(f"lzw: output exceeds {max_size} bytes")
        out.append(entry)
        last = entry
        hi += 1
        if hi >= overflow:
            if hi > _MAX_CODE:
                # Table full and the writer did not clear: Go pins hi at 4095 and keeps
                # overwriting that slot, reading 12-bit codes.
                hi = _MAX_CODE
                width = 12
                mask = 0xFFF
            else:
                width += 1
                mask = (mask << 1) | 1
                overflow <<= 1
    return b"".join(out)


def _load_c() -> Any:
    if os.environ.get("RUMOR_PURE_PYTHON"):
        return None
    try:
        from . import _lzwc  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _lzwc


_c = _load_c()
HAVE_C = _c is not None


def c_decompress(data: bytes | bytearray | memoryview, max_size: int) -> bytes:
    """The C decoder with lzw's exceptions (only when ``HAVE_C``)."""
    status, out, code, hi = _c.decompress(data, max_size)
    if status == 0:
        return out  # type: ignore[no-any-return]
    if status == 1:
        raise LZWLimitExceeded(f"lzw: output exceeds {max_size} bytes")
    if status == 2:
        raise LZWError("lzw: stream ends without the end code")
    raise LZWError(f"lzw: invalid code {code} (next free {hi})")


if _c is not None:
    compress = _c.compress
    decompress = c_decompress
else:
    compress = py_compress
    decompress = py_decompress


__all__ = ["HAVE_C", "LZWError", "LZWLimitExceeded", "compress", "decompress",
           "py_compress", "py_decompress"]

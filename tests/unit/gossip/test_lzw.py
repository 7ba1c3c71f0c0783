"""GIF-style LZW as Go's compress/lzw (LSB, literal width 8) writes and reads it."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossip import lzw

from .vectors_util import read_hex


def _codes(data: bytes) -> list[int]:
    """Decode the code stream (variable width) for structural checks."""
    out = []
    bits = int.from_bytes(data, "little")
    pos, width, hi = 0, 9, 257
    while pos + width <= len(data) * 8:
        code = (bits >> pos) & ((1 << width) - 1)
        pos += width
        out.append(code)
        if code == 257:
            break
        if code == 256:
            width, hi = 9, 257
            continue
        hi += 1
        if hi >= (1 << width) and width < 12:
            width += 1
    return out


def test_vector_33_both_ways() -> None:
    plain = read_hex("33_lzw_plain.hex")
    packed = read_hex("33_lzw_compressed.hex")
    assert lzw.compress(plain) == packed
    assert lzw.decompress(packed, len(plain)) == plain


def test_stream_starts_with_clear_and_ends_with_eof() -> None:
    codes = _codes(lzw.compress(b"hello hello hello"))
    assert codes[0] == 256
    assert codes[-1] == 257


def test_empty_input() -> None:
    packed = lzw.compress(b"")
    assert _codes(packed) == [256, 257]
    assert lzw.decompress(packed, 10) == b""


@pytest.mark.parametrize(
    "data",
    [
        b"a",
        b"ab",
        b"aaaa",
        b"abababababababab",
        bytes(range(256)) * 3,
        b"a" * 100_000,  # long runs: the code == next-free-code case on every step
        os.urandom(20_000),  # the table fills and the writer clears (at 4095) many times
        bytes(random.Random(1).choice(b"abc") for _ in range(50_000)),
    ],
    ids=["1", "2", "run4", "abab", "alphabet", "run100k", "random", "abc"],
)
def test_round_trip(data: bytes) -> None:
    assert lzw.decompress(lzw.compress(data), len(data)) == data


def test_width_growth_and_reset_boundaries() -> None:
    """Inputs sized around the 512/1024/2048/4095 code boundaries survive a round trip."""
    rng = random.Random(7)
    for n in (253, 254, 255, 256, 510, 511, 512, 1022, 1023, 2046, 2047, 3836, 3837, 3838, 7700):
        data = bytes(rng.getrandbits(8) for _ in range(n))
        assert lzw.decompress(lzw.compress(data), n) == data


def test_clear_code_in_the_middle_is_honoured() -> None:
    # Two independent streams glued with a clear: strip the first's EOF by re-encoding codes.
    first = b"abcabcabc"
    packed = lzw.compress(first + first)
    assert lzw.decompress(packed, 100) == first + first
    # Hand-built: clear, 'a', clear, 'b', eof (all at 9 bits).
    codes = [256, ord("a"), 256, ord("b"), 257]
    bits = sum(c << (9 * i) for i, c in enumerate(codes))
    raw = bits.to_bytes((9 * len(codes) + 7) // 8, "little")
    assert lzw.decompress(raw, 10) == b"ab"


def test_no_leading_clear_is_accepted() -> None:
    """Writers older than Go 1.17 did not send the leading clear; the reader copes."""
    codes = [ord("x"), ord("y"), 258, 257]
    bits = sum(c << (9 * i) for i, c in enumerate(codes))
    raw = bits.to_bytes((9 * len(codes) + 7) // 8, "little")
    assert lzw.decompress(raw, 10) == b"xyxy"


def test_bytes_after_eof_are_ignored() -> None:
    packed = lzw.compress(b"payload")
    assert lzw.decompress(packed + b"\xff\xff\xff", 100) == b"payload"


def test_missing_eof_is_an_error() -> None:
    packed = lzw.compress(b"some data to compress, some data")
    with pytest.raises(lzw.LZWError):
        lzw.decompress(packed[:-2], 1000)
    with pytest.raises(lzw.LZWError):
        lzw.decompress(b"", 1000)


def test_invalid_code_is_an_error() -> None:
    codes = [256, ord("a"), 300, 257]  # 300 is far beyond the next free code (258)
    bits = sum(c << (9 * i) for i, c in enumerate(codes))
    raw = bits.to_bytes((9 * len(codes) + 7) // 8, "little")
    with pytest.raises(lzw.LZWError):
        lzw.decompress(raw, 100)
    # The first code after a clear cannot refer to the (empty) table either.
    codes = [256, 258, 257]
    bits = sum(c << (9 * i) for i, c in enumerate(codes))
    with pytest.raises(lzw.LZWError):
        lzw.decompress(bits.to_bytes(4, "little"), 100)


def test_output_cap_stops_a_bomb_early() -> None:
    bomb = lzw.compress(bytes(10 << 20))
    assert len(bomb) < 40_000
    with pytest.raises(lzw.LZWLimitExceeded):
        lzw.decompress(bomb, 1 << 20)
    assert lzw.decompress(lzw.compress(b"x" * 100), 100) == b"x" * 100
    with pytest.raises(lzw.LZWLimitExceeded):
        lzw.decompress(lzw.compress(b"x" * 101), 100)


def test_writer_that_never_clears_is_read_like_go() -> None:
    """A stream whose table stays full (hi pinned at 4095) keeps decoding with 12-bit codes."""
    # Build codes by hand: 3838 literal codes fill the table up to 4095 with no clear.
    rng = random.Random(3)
    lits = [rng.getrandbits(8) for _ in range(4000)]
    codes = [256]
    codes.extend(lits)
    codes.append(257)
    out = 0
    pos = 0
    width, hi = 9, 257
    for c in codes:
        out |= c << pos
        pos += width
        if c in (256, 257):
            continue
        hi += 1
        if hi >= (1 << width):
            if hi > 4095:
                hi = 4095
                width = 12
            else:
                width += 1
    raw = out.to_bytes((pos + 7) // 8, "little")
    assert lzw.decompress(raw, 10_000) == bytes(lits)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=3000))
def test_round_trip_property(data: bytes) -> None:
    assert lzw.decompress(lzw.compress(data), len(data)) == data


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_decompress_random_input_raises_only_lzw_errors(data: bytes) -> None:
    try:
        lzw.decompress(data, 4096)
    except lzw.LZWError:
        pass

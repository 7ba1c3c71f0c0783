"""GIF-style LZW as Go's compress/lzw (LSB, literal width 8) writes and reads it.

Every test runs against both implementations, the C one (gossip/_lzwc.c) and the pure-Python
one, and the property tests check that the two agree byte for byte and error for error."""

from __future__ import annotations

import os
import random
import shutil
import sysconfig
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossip import lzw
from tests.harness.ci_skips import in_ci

from .vectors_util import read_hex

PY = SimpleNamespace(compress=lzw.py_compress, decompress=lzw.py_decompress)
C = SimpleNamespace(compress=lzw._c.compress, decompress=lzw.c_decompress) if lzw.HAVE_C else None
IMPLS = [pytest.param(PY, id="python")] + ([pytest.param(C, id="c")] if C else [])


@pytest.fixture(params=IMPLS)
def z(request: pytest.FixtureRequest) -> SimpleNamespace:
    return request.param  # type: ignore[no-any-return]


NOT_BUILT = ("the C version (gossip/_lzwc.c) is not built here: it needs gcc and Python's "
             "headers (python3-dev) at install; scripts/setup-system.sh installs both")


@pytest.fixture(scope="module")
def c_impl() -> SimpleNamespace:
    """The C version; in CI its absence is a failure, elsewhere the C-only tests skip."""
    if C is None:
        if in_ci() and not os.environ.get("RUMOR_PURE_PYTHON"):
            pytest.fail(NOT_BUILT)
        pytest.skip(NOT_BUILT)
    return C


def test_the_c_version_is_built_where_a_compiler_is() -> None:
    """The speed-up must not silently go missing: with a compiler and Python's headers (as on
    CI), the install builds it, and lzw uses it unless RUMOR_PURE_PYTHON is set. In CI it must
    be there whatever this machine has: a stock machine without python3-dev is the case to
    catch."""
    if os.environ.get("RUMOR_PURE_PYTHON"):
        pytest.skip("pure Python forced by RUMOR_PURE_PYTHON")
    headers = Path(sysconfig.get_paths()["include"], "Python.h").exists()
    if not in_ci() and not (shutil.which("cc") and headers):
        pytest.skip("no C compiler or Python headers here")
    assert lzw.HAVE_C, NOT_BUILT
    assert lzw.compress is lzw._c.compress


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


def test_vector_33_both_ways(z: SimpleNamespace) -> None:
    plain = read_hex("33_lzw_plain.hex")
    packed = read_hex("33_lzw_compressed.hex")
    assert z.compress(plain) == packed
    assert z.decompress(packed, len(plain)) == plain


def test_stream_starts_with_clear_and_ends_with_eof(z: SimpleNamespace) -> None:
    codes = _codes(z.compress(b"hello hello hello"))
    assert codes[0] == 256
    assert codes[-1] == 257


def test_empty_input(z: SimpleNamespace) -> None:
    packed = z.compress(b"")
    assert _codes(packed) == [256, 257]
    assert z.decompress(packed, 10) == b""


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
def test_round_trip(z: SimpleNamespace, data: bytes) -> None:
    assert z.decompress(z.compress(data), len(data)) == data


def test_width_growth_and_reset_boundaries(z: SimpleNamespace) -> None:
    """Inputs sized around the 512/1024/2048/4095 code boundaries survive a round trip."""
    rng = random.Random(7)
    for n in (253, 254, 255, 256, 510, 511, 512, 1022, 1023, 2046, 2047, 3836, 3837, 3838, 7700):
        data = bytes(rng.getrandbits(8) for _ in range(n))
        assert z.decompress(z.compress(data), n) == data


def test_clear_code_in_the_middle_is_honoured(z: SimpleNamespace) -> None:
    # Two independent streams glued with a clear: strip the first's EOF by re-encoding codes.
    first = b"abcabcabc"
    packed = z.compress(first + first)
    assert z.decompress(packed, 100) == first + first
    # Hand-built: clear, 'a', clear, 'b', eof (all at 9 bits).
    codes = [256, ord("a"), 256, ord("b"), 257]
    bits = sum(c << (9 * i) for i, c in enumerate(codes))
    raw = bits.to_bytes((9 * len(codes) + 7) // 8, "little")
    assert z.decompress(raw, 10) == b"ab"


def test_no_leading_clear_is_accepted(z: SimpleNamespace) -> None:
    """Writers older than Go 1.17 did not send the leading clear; the reader copes."""
    codes = [ord("x"), ord("y"), 258, 257]
    bits = sum(c << (9 * i) for i, c in enumerate(codes))
    raw = bits.to_bytes((9 * len(codes) + 7) // 8, "little")
    assert z.decompress(raw, 10) == b"xyxy"


def test_bytes_after_eof_are_ignored(z: SimpleNamespace) -> None:
    packed = z.compress(b"payload")
    assert z.decompress(packed + b"\xff\xff\xff", 100) == b"payload"


def test_missing_eof_is_an_error(z: SimpleNamespace) -> None:
    packed = z.compress(b"some data to compress, some data")
    with pytest.raises(lzw.LZWError):
        z.decompress(packed[:-2], 1000)
    with pytest.raises(lzw.LZWError):
        z.decompress(b"", 1000)


def test_invalid_code_is_an_error(z: SimpleNamespace) -> None:
    codes = [256, ord("a"), 300, 257]  # 300 is far beyond the next free code (258)
    bits = sum(c << (9 * i) for i, c in enumerate(codes))
    raw = bits.to_bytes((9 * len(codes) + 7) // 8, "little")
    with pytest.raises(lzw.LZWError):
        z.decompress(raw, 100)
    # The first code after a clear cannot refer to the (empty) table either.
    codes = [256, 258, 257]
    bits = sum(c << (9 * i) for i, c in enumerate(codes))
    with pytest.raises(lzw.LZWError):
        z.decompress(bits.to_bytes(4, "little"), 100)


def test_output_cap_stops_a_bomb_early(z: SimpleNamespace) -> None:
    bomb = z.compress(bytes(10 << 20))
    assert len(bomb) < 40_000
    with pytest.raises(lzw.LZWLimitExceeded):
        z.decompress(bomb, 1 << 20)
    assert z.decompress(z.compress(b"x" * 100), 100) == b"x" * 100
    with pytest.raises(lzw.LZWLimitExceeded):
        z.decompress(z.compress(b"x" * 101), 100)


def test_writer_that_never_clears_is_read_like_go(z: SimpleNamespace) -> None:
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
    assert z.decompress(raw, 10_000) == bytes(lits)


def _impls() -> list[SimpleNamespace]:
    return [PY] + ([C] if C else [])


def _outcome(fn: object, data: bytes, limit: int) -> tuple[str, object]:
    try:
        return "ok", fn(data, limit)  # type: ignore[operator]
    except lzw.LZWLimitExceeded as e:
        return "limit", str(e)
    except lzw.LZWError as e:
        return "error", str(e)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=3000))
def test_round_trip_property(data: bytes) -> None:
    for z in _impls():
        assert z.decompress(z.compress(data), len(data)) == data


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_decompress_random_input_raises_only_lzw_errors(data: bytes) -> None:
    for z in _impls():
        try:
            z.decompress(data, 4096)
        except lzw.LZWError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=5000),
                 st.lists(st.sampled_from([b"alive", b"node-1", b"10.0.0.", b"\x00", b"rumor"]),
                          max_size=2000).map(b"".join)))
def test_c_and_python_write_the_same_bytes(c_impl: SimpleNamespace, data: bytes) -> None:
    assert c_impl.compress(data) == PY.compress(data)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=800), st.integers(min_value=0, max_value=5000))
def test_c_and_python_read_anything_alike(c_impl: SimpleNamespace, data: bytes, limit: int
                                          ) -> None:
    """Garbage, truncations and limits: same output, or the same error with the same message."""
    assert _outcome(c_impl.decompress, data, limit) == _outcome(PY.decompress, data, limit)
    packed = PY.compress(data)
    for cut in (len(packed), len(packed) - 1, len(packed) // 2):
        assert _outcome(c_impl.decompress, packed[:cut], limit) == \
            _outcome(PY.decompress, packed[:cut], limit)


def test_c_and_python_agree_on_large_and_adversarial_inputs(c_impl: SimpleNamespace) -> None:
    rng = random.Random(11)
    cases = [os.urandom(50_000), b"a" * 200_000, bytes(rng.choice(b"ab") for _ in range(60_000)),
             bytes(range(256)) * 40]
    for data in cases:
        packed = PY.compress(data)
        assert c_impl.compress(data) == packed
        assert c_impl.decompress(packed, len(data)) == data
        assert _outcome(c_impl.decompress, packed, len(data) - 1)[0] == "limit"

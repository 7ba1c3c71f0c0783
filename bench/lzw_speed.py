"""LZW codec speed: the C extension (gossip/_lzwc.c) against the pure-Python reference.

Inputs are shaped like real gossip: a compound of alive messages (names, addresses, tag maps)
the size of a full UDP packet (1,400 bytes) and a 10 KiB push/pull. Each figure is the median of
``--rounds`` timings of ``--n`` calls; both versions are checked to give the same bytes.

    python bench/lzw_speed.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgpack

from gossip import lzw


def gossip_like(size: int) -> bytes:
    out = b""
    i = 0
    while len(out) < size:
        out += msgpack.packb({"Incarnation": i, "Node": f"agent-{i:03d}.dc1",
                              "Addr": bytes([10, 0, i // 256 % 256, i % 256]), "Port": 8301,
                              "Meta": msgpack.packb({"rumor": "0.1.0", "role": "node",
                                                     "dc": "dc1", "id": f"{i * 7919:08x}"}),
                              "Vsn": [1, 5, 2, 2, 5, 4]})
        i += 1
    return out[:size]


def per_call_us(fn: object, arg: tuple[object, ...], n: int, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            fn(*arg)  # type: ignore[operator]
        times.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    if not lzw.HAVE_C:
        print("the C extension is not built (pip install -e .)", file=sys.stderr)
        return 1
    print("| input | op | Python (us) | C (us) | Python / C |")
    print("|---|---|---|---|---|")
    for label, size in (("1,400 B packet", 1400), ("10 KiB push/pull", 10240)):
        data = gossip_like(size)
        packed = lzw.py_compress(data)
        assert lzw._c.compress(data) == packed and lzw.c_decompress(packed, size) == data
        for op, py, c, arg in (("compress", lzw.py_compress, lzw._c.compress, (data,)),
                               ("decompress", lzw.py_decompress, lzw.c_decompress,
                                (packed, size))):
            tp = per_call_us(py, arg, args.n, args.rounds)
            tc = per_call_us(c, arg, args.n, args.rounds)
            print(f"| {label} ({len(packed)} B packed) | {op} | {tp:.1f} | {tc:.1f} | "
                  f"{tp / tc:.0f}x |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Big push-pull states: merged in slices across turns of the loop, answered from cached
per-node pieces, and hostile input in the middle of a stream."""

from __future__ import annotations

import asyncio
import random
import zlib

import msgpack

from registry.catalog import CheckRecord, NodeInfo, ServiceRecord
from registry.config import build
from registry.replication import (
    MSG_FULL,
    _deflate_piece,
    _zlib_of_pieces,
    adler32_combine,
    enc_check,
    enc_info,
    enc_service,
)
from registry.service import Registry, prepare_registry

from .fakebus import Bus

V = 1_000_000


def record(n: int, per_node: int = 5) -> list[object]:
    name = f"r{n:04d}"
    svcs, chks = [], []
    for i in range(per_node):
        sid = f"svc-{i}-{n}"
        svcs.append([V, enc_service(ServiceRecord(id=sid, service=f"svc-{i}", port=1000 + i))])
        chks.append([V, enc_check(CheckRecord(check_id=f"service:{sid}", name="c",
                                              status="passing", service_id=sid,
                                              service_name=f"svc-{i}"))])
    info = NodeInfo(name=name, address=f"10.0.{n // 250}.{n % 250}")
    return [name, V, [V, enc_info(info)], svcs, chks, []]


def state(records: list[object]) -> bytes:
    return b"\x01" + zlib.compress(msgpack.packb([MSG_FULL, records]), 6)


async def registry(name: str = "me") -> Registry:
    bus = Bus(seed=1)
    g = bus.add(name)
    cfg = build({"dev": True, "node_name": name, "bind_addr": "127.0.0.1"})
    reg = Registry(cfg, None, g, prepare_registry(cfg))
    await reg.start()
    assert reg.replicator is not None
    # gossip would report these members alive
    for n in range(400):
        reg._member_status[f"r{n:04d}"] = "alive"
    return reg


def test_adler32_combine_matches_zlib() -> None:
    rng = random.Random(5)
    for _ in range(200):
        a = rng.randbytes(rng.randrange(0, 3000))
        b = rng.randbytes(rng.randrange(0, 3000))
        assert adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b)) == zlib.adler32(a + b)


def test_pieces_deflated_apart_make_one_zlib_stream() -> None:
    rng = random.Random(6)
    parts = [rng.choice([b"", b"x" * rng.randrange(1, 70000), rng.randbytes(rng.randrange(1, 5000)),
                         b"svc-1 passing " * rng.randrange(1, 400)]) for _ in range(40)]
    stream = _zlib_of_pieces([_deflate_piece(p) for p in parts])
    assert zlib.decompress(stream) == b"".join(parts)  # checks the Adler-32 trailer too


async def test_a_big_state_is_merged_across_loop_turns() -> None:
    reg = await registry()
    rep = reg.replicator
    assert rep is not None
    rep.slice_seconds = 0.0  # one record per slice
    rep.slice_min_items = 1
    ticks = 0
    rep.merge_app_state(state([record(n) for n in range(300)]))
    partial = len(reg.catalog.node_names())
    assert 1 <= partial < 50, partial  # the rest waits for later turns of the loop

    async def count_ticks() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.get_running_loop().create_task(count_ticks())
    await rep.idle()
    ticker.cancel()
    assert len(reg.catalog.node_names()) == 301
    assert len(reg.catalog.entries("svc-3")) == 300
    assert rep.counters["merge_slices"] >= 250
    assert ticks >= 250  # the loop ran other work between slices
    assert rep.counters["full_merged"] == 1
    await rep.close()
    await reg.stop()


async def test_bad_record_in_the_middle_keeps_what_came_before_and_is_counted() -> None:
    reg = await registry()
    rep = reg.replicator
    assert rep is not None
    recs = [record(n) for n in range(20)]
    recs[10] = ["r0010", "not a version", [], [], [], []]
    rep.merge_app_state(state(recs))
    await rep.idle()
    names = set(reg.catalog.node_names())
    assert {f"r{n:04d}" for n in range(10)} <= names and "r0010" not in names
    assert rep.dropped["bad_full_state"] == 1
    # truncated compressed stream, and a header that claims more records than there are
    good = state([record(n) for n in range(30, 40)])
    rep.merge_app_state(good[: len(good) // 2])
    rep.merge_app_state(b"\x00" + msgpack.packb([MSG_FULL, [record(50)]])[:-1] + b"")
    short = bytearray(msgpack.packb([MSG_FULL, [record(60)]]))
    short[2] = 0x93  # three records announced, one sent
    rep.merge_app_state(b"\x00" + bytes(short))
    await rep.idle()
    assert rep.dropped["bad_full_state"] >= 3
    assert "r0060" in reg.catalog.node_names()
    await rep.close()
    await reg.stop()


async def test_oversized_decompression_is_refused() -> None:
    reg = await registry()
    rep = reg.replicator
    assert rep is not None
    rep.full_max_bytes = 4096
    rep.merge_app_state(state([record(n) for n in range(50)]))
    await rep.idle()
    assert rep.dropped["bad_full_state"] == 1
    assert len(reg.catalog.node_names()) < 50
    await rep.close()
    await reg.stop()


async def test_answer_to_a_joiner_comes_from_cached_pieces_and_a_cold_cache_is_partial() -> None:
    reg = await registry()
    rep = reg.replicator
    assert rep is not None
    rep.merge_app_state(state([record(n) for n in range(200)]))
    await rep.idle()
    joiner_digest = b"\x00" + msgpack.packb([3, [["joiner", 1, 0]], []])

    def answer_names() -> set[str]:
        rep.merge_app_state(joiner_digest)
        answer = rep.local_app_state()
        digest, records = rep._decode_state(answer)
        assert digest is None
        return {r[0] for r in records}

    everything = {f"r{n:04d}" for n in range(200)} | {"me"}
    assert answer_names() == everything  # the worker warmed every piece after the merge
    # change every node (a cold cache) and allow no encoding time: the answer is partial ...
    rep._pieces.clear()
    rep.slice_seconds = 0.0
    partial = answer_names()
    assert "me" in partial and len(partial) < len(everything)
    assert rep.counters["answers_partial"] >= 1
    # ... and the background encoder completes the cache for the next push-pull
    await rep.idle()
    assert answer_names() == everything
    # the answer equals a fresh full encode, record for record
    _, fresh = rep._decode_state(rep._pack([MSG_FULL, rep._records(None)]))
    _, cached = rep._decode_state(rep.full_state())
    assert sorted(fresh) == sorted(cached)
    await rep.close()
    await reg.stop()


async def test_states_beyond_the_queue_cap_are_dropped_and_counted() -> None:
    reg = await registry()
    rep = reg.replicator
    assert rep is not None
    rep.slice_seconds = 0.0
    rep.slice_min_items = 1
    first = state([record(n) for n in range(0, 100)])
    rep.merge_app_state(first)  # one record merged, the rest queued
    rep.merge_app_state(state([record(n) for n in range(100, 200)]))  # queued behind it
    rep.merge_queue_max_bytes = rep._queued_bytes + 10  # now nearly full
    rep.merge_app_state(state([record(n) for n in range(200, 300)]))
    assert rep.dropped["merge_queue_full"] == 1
    await rep.idle()
    assert rep._queued_bytes == 0
    names = set(reg.catalog.node_names())
    assert len(names) == 201 and "r0250" not in names  # the dropped one comes at a later pull
    await rep.close()
    await reg.stop()

"""The KV store as the agent runs it: persistence, blocking waits, tombstone pruning, gossip.

Every change is written to ``kv.msgpack`` in the data dir (temp file + fsync + rename +
directory fsync, see ``registry/datadir.py``). A PUT or DELETE answers only after its change is
on disk; changes learned from peers are written within ``FLUSH_DELAY``. A restart, even after
kill -9, comes back with the keyspace, its indexes and its clock, and catches up with what it
missed by anti-entropy.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import msgpack  # type: ignore[import-untyped]

from .datadir import DataDir, atomic_write
from .kv import KV_TAG, Entry, HybridClock, KVReplicator, KVStore, entry_from_wire

log = logging.getLogger(__name__)

STATE_FILE = "kv.msgpack"
FLUSH_DELAY = 0.2
"""Seconds between a change learned from a peer and its write to disk."""
PRUNE_INTERVAL = 60.0
"""Seconds between tombstone prunes."""
_FORMAT = 1


class KVService:
    def __init__(self, writer: str, datadir: DataDir | None,
                 broadcast: Callable[[str, bytes], None], *,
                 wall: Callable[[], float] = time.time, state_file: str = STATE_FILE,
                 tag: bytes = KV_TAG) -> None:
        self.datadir = datadir
        self.state_file = state_file
        self.store = KVStore(writer, clock=HybridClock(wall))
        self.replicator = KVReplicator(self.store, broadcast, tag=tag)
        self.store.listeners.append(self._on_change)
        self._changed = asyncio.Event()
        self._generation = 0
        self._written = 0
        self._write_lock = asyncio.Lock()
        self._flush_handle: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pruner: asyncio.Task[None] | None = None
        self.counters = {"persist_writes": 0, "pruned": 0}

    # --- writes from the API --------------------------------------------------------------------

    async def put(self, key: str, value: bytes, flags: int = 0) -> Entry:
        e = self.store.put(key, value, flags)
        self.replicator.on_local_writes([e], time.monotonic())
        await self.persist()
        return e

    async def delete(self, key: str, recurse: bool = False) -> list[Entry]:
        out = self.store.delete(key, recurse)
        if out:
            self.replicator.on_local_writes(out, time.monotonic())
            await self.persist()
        return out

    # --- blocking -------------------------------------------------------------------------------

    def _on_change(self, entries: list[Entry]) -> None:
        self._generation += 1
        self._changed.set()
        self._changed = asyncio.Event()
        self._flush_soon()

    async def wait(self, key: str, prefix: bool, index: int, timeout: float) -> int:
        """Wait until the read of ``key`` (prefix) answers with an index above ``index``, or
        ``timeout`` passes; returns the read's index."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            current = self.store.query_index(key, prefix)
            if current > index:
                return current
            left = deadline - loop.time()
            if left <= 0:
                return current
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass

    # --- persistence ----------------------------------------------------------------------------

    def load(self) -> int:
        """Restore the keyspace from the data dir; returns how many keys came back."""
        if self.datadir is None:
            return 0
        path = self.datadir.file(self.state_file)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return 0
        try:
            data = msgpack.unpackb(raw, strict_map_key=True)
            if not (isinstance(data, list) and len(data) == 4 and data[0] == _FORMAT):
                raise ValueError("not a KV state file")
            _, index, last, items = data
            entries = []
            for a in items:
                e = entry_from_wire(a[:5])
                e.create_index, e.modify_index = int(a[5]), int(a[6])
                entries.append(e)
        except Exception as ex:  # noqa: BLE001 - a damaged file must not stop the agent
            aside = path.with_name(path.name + ".corrupt")
            log.error("unreadable KV state moved aside path=%s to=%s error=%r", path, aside, ex)
            os.replace(path, aside)
            return 0
        self.store.restore(entries, int(index), int(last))
        return sum(1 for e in entries if e.live)

    def _snapshot(self) -> list[Any]:
        s = self.store
        return [_FORMAT, s.index, s.clock.last,
                [[*e.wire(), e.create_index, e.modify_index] for e in s.entries.values()]]

    async def persist(self) -> None:
        """Write the keyspace if it changed since the last write; returns once a write that
        covers every change made before the call is on disk."""
        if self.datadir is None:
            return
        target = self._generation
        async with self._write_lock:
            if self._written >= target:
                return
            gen = self._generation
            snap = self._snapshot()
            path = self.datadir.file(self.state_file)
            await asyncio.to_thread(lambda: atomic_write(path, msgpack.packb(snap)))
            self._written = gen
            self.counters["persist_writes"] += 1

    def _flush_soon(self) -> None:
        if self.datadir is None or self._flush_handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return

        def fire() -> None:
            self._flush_handle = None
            t = loop.create_task(self.persist())
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
        self._flush_handle = loop.call_later(FLUSH_DELAY, fire)

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._pruner = asyncio.get_running_loop().create_task(self._prune_loop())

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_INTERVAL)
            n = self.store.prune(self.store.clock.wall())
            if n:
                self.counters["pruned"] += n
                self._generation += 1
                self._flush_soon()

    async def stop(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            try:
                await self._pruner
            except asyncio.CancelledError:
                pass
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for t in list(self._tasks):
            await t
        await self.persist()

    def stats(self) -> dict[str, int]:
        out = {f"kv_{k}": v for k, v in self.store.stats().items()}
        out.update({f"kv_{k}": v for k, v in self.counters.items()})
        out.update({f"kv_repl_{k}": v for k, v in self.replicator.stats().items()})
        return out

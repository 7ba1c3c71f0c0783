"""The KV store: every agent holds the whole keyspace, replicated by gossip, without consensus.

Theory of operation
-------------------
A write (put or delete) is applied to the local copy at once and stamped with a *hybrid logical
clock* (HLC: wall-clock milliseconds in the high bits, a 16-bit counter below, never going
backwards and always above every stamp this agent has seen) and the writer's node ID. Between
two versions of a key the higher ``(stamp, writer)`` wins everywhere; a tie on both is the same
write. That merge is commutative, associative and idempotent, so agents that received the same
writes in any order, any number of times, hold the same keyspace (last writer wins, per key).

A delete is a *tombstone* (a version without a value) so that an older put arriving later
cannot bring the key back. Tombstones are kept ``tombstone_ttl`` (default 72 h, the same as
the gossip layer's ``reconnect_timeout``, after which a failed agent is forgotten anyway) and at
most ``tombstone_max`` (default 100,000; the oldest go first). An agent cut off for longer than
that may bring a deleted key back when it returns (like Cassandra's ``gc_grace_seconds``).

Writes travel two ways, like the catalog's deltas (``registry/replication.py``):

- a *delta* broadcast per written key on the gossip application channel, re-broadcast by every
  agent that learns something new from it. A delta must fit one UDP packet: larger values (the
  limit is 512 KiB, like Consul) travel only by anti-entropy;
- *anti-entropy* on every gossip push-pull: the initiating side sends a digest, one 64-bit hash
  per bucket of keys (256 buckets, each the XOR of a hash of ``(key, stamp, writer)`` for every
  version it holds, tombstones included, updated incrementally), plus its own recent writes
  that were too large for a delta. The answering side merges those, then answers with every
  version it holds in the buckets whose hash differs (up to ``answer_budget`` bytes; the rest
  goes on the next exchange). A quiet cluster exchanges 2 KiB per push-pull; an agent that missed
  broadcasts, joined late or sat on the other side of a partition converges within a few
  push-pull intervals.

Indexes (``CreateIndex``, ``ModifyIndex``, ``X-Consul-Index``) are this agent's own: a counter
that rises on every change applied here, persisted with the keyspace. They order changes as seen
by one agent (enough for blocking queries) and differ between agents, unlike Consul's Raft index.
``LockIndex`` is always 0: there are no sessions.

This module is sans-I/O: ``KVStore`` is the data and its merge, ``KVReplicator`` the wire
(deltas, digests, answers). ``registry/kv_service.py`` runs them: persistence, blocking waits,
timers.
"""

from __future__ import annotations

import bisect
import logging
import time
import zlib
from collections.abc import Callable, Iterable
from typing import Any

import msgpack  # type: ignore[import-untyped]

from gossip.dclass import dataclass

log = logging.getLogger(__name__)

VALUE_MAX = 512 * 1024
"""Bytes: the largest value (Consul's ``kv_max_value_size`` default)."""
KEY_MAX = 4096
"""Bytes: the longest key."""
TOMBSTONE_TTL = 72 * 3600.0
"""Seconds a delete is remembered (see the module docstring)."""
TOMBSTONE_MAX = 100_000
"""Most tombstones kept; the oldest are dropped first."""
BUCKETS = 256
ANSWER_BUDGET = 4 * 1024 * 1024
"""Bytes of versions (before compression) in one anti-entropy answer."""
DELTA_LIMIT = 1100
"""Bytes: the largest delta handed to the gossip broadcast queue (one UDP packet)."""
BIG_RECENT = 120.0
"""Seconds a local write too large for a delta is offered in this agent's push-pull states."""
LOGICAL_BITS = 16

KV_TAG = b"K"
"""First byte of a KV message on the shared application channel."""
_DELTA = 1
_DIGEST = 2
_ANSWER = 3


class KVError(ValueError):
    """A KV request we refuse (bad key, value too large); ``status`` is the HTTP hint."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class Malformed(ValueError):
    """A peer sent KV data we cannot decode."""


class HybridClock:
    """Hybrid logical clock: ``now()`` is above the wall clock's milliseconds and above every
    stamp issued or witnessed before (Kulkarni et al., "Logical Physical Clocks", 2014)."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self.wall = wall
        self.last = 0

    def now(self) -> int:
        physical = int(self.wall() * 1000) << LOGICAL_BITS
        self.last = max(self.last + 1, physical)
        return self.last

    def witness(self, stamp: int) -> None:
        self.last = max(self.last, stamp)


def stamp_seconds(stamp: int) -> float:
    """The wall-clock time (seconds) a stamp was taken at."""
    return (stamp >> LOGICAL_BITS) / 1000.0


@dataclass(slots=True)
class Entry:
    """One version of a key: a value, or a tombstone (``value is None``)."""

    key: str
    value: bytes | None
    flags: int
    stamp: int
    writer: str
    create_index: int = 0
    modify_index: int = 0

    @property
    def live(self) -> bool:
        return self.value is not None

    def order(self) -> tuple[int, str]:
        return self.stamp, self.writer

    def wire(self) -> list[Any]:
        return [self.key, self.value, self.flags, self.stamp, self.writer]

    def size(self) -> int:
        return len(self.key) + len(self.value or b"") + len(self.writer) + 24


def entry_from_wire(a: Any) -> Entry:
    if not (isinstance(a, list) and len(a) >= 5):
        raise Malformed("kv entry")
    key, value, flags, stamp, writer = a[:5]
    if not (isinstance(key, str) and key and len(key.encode()) <= KEY_MAX
            and (value is None or isinstance(value, bytes)) and isinstance(flags, int)
            and 0 <= flags < 2 ** 64 and isinstance(stamp, int) and 0 < stamp < 2 ** 63
            and isinstance(writer, str)):
        raise Malformed("kv entry fields")
    if value is not None and len(value) > VALUE_MAX:
        raise Malformed("kv value over the size limit")
    return Entry(key, value, flags, stamp, writer)


def cut_keys(keys: Iterable[str], prefix: str, separator: str = "") -> list[str]:
    """Sorted ``keys`` under ``prefix``, each cut after the first ``separator`` past the prefix
    (each such "folder" listed once)."""
    out: list[str] = []
    for k in keys:
        if separator:
            at = k.find(separator, len(prefix))
            if at >= 0:
                k = k[:at + len(separator)]
        if not out or out[-1] != k:
            out.append(k)
    return out


def check_key(key: str) -> str:
    if not key:
        raise KVError("Missing key name")
    if len(key.encode()) > KEY_MAX:
        raise KVError(f"Key too long: {len(key.encode())} bytes; the limit is {KEY_MAX}")
    return key


def _bucket(key: str) -> int:
    return zlib.crc32(key.encode()) % BUCKETS


def _fingerprint(e: Entry) -> int:
    import hashlib  # here, not at every agent's start, KV or not

    h = hashlib.blake2b(digest_size=8)
    h.update(e.key.encode())
    h.update(b"\x00")
    h.update(e.stamp.to_bytes(8, "big"))
    h.update(e.writer.encode())
    return int.from_bytes(h.digest(), "big")


Listener = Callable[[list[Entry]], None]


class KVStore:
    """The keyspace and its merge (see the module docstring). No I/O, no asyncio."""

    def __init__(self, writer: str, *, clock: HybridClock | None = None,
                 tombstone_ttl: float = TOMBSTONE_TTL, tombstone_max: int = TOMBSTONE_MAX) -> None:
        self.writer = writer
        self.clock = clock or HybridClock()
        self.tombstone_ttl = tombstone_ttl
        self.tombstone_max = tombstone_max
        self.entries: dict[str, Entry] = {}
        self.index = 0
        self.tombstones = 0
        self.buckets = [0] * BUCKETS
        self.listeners: list[Listener] = []
        self._sorted: list[str] | None = None

    # --- reads ----------------------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        e = self.entries.get(key)
        return e if e is not None and e.live else None

    def _keys_sorted(self) -> list[str]:
        if self._sorted is None:
            self._sorted = sorted(self.entries)
        return self._sorted

    def _prefixed(self, prefix: str) -> Iterable[Entry]:
        keys = self._keys_sorted()
        i = bisect.bisect_left(keys, prefix)
        while i < len(keys) and keys[i].startswith(prefix):
            e = self.entries.get(keys[i])
            if e is not None:
                yield e
            i += 1

    def under(self, prefix: str) -> list[Entry]:
        """Live entries whose key starts with ``prefix``, sorted by key."""
        return [e for e in self._prefixed(prefix) if e.live]

    def keys(self, prefix: str, separator: str = "") -> list[str]:
        """Consul's ``?keys``: keys under ``prefix``, cut after the first ``separator`` that
        follows the prefix (each such "folder" listed once)."""
        return cut_keys([e.key for e in self.under(prefix)], prefix, separator)

    def query_index(self, key: str, prefix: bool) -> int:
        """The index a read of ``key`` (or the prefix) answers with: the newest change to it,
        tombstones included; the store's index when nothing matches."""
        if prefix:
            best = max((e.modify_index for e in self._prefixed(key)), default=0)
        else:
            e = self.entries.get(key)
            best = e.modify_index if e is not None else 0
        return best or self.index

    # --- writes ---------------------------------------------------------------------------------

    def put(self, key: str, value: bytes, flags: int = 0) -> Entry:
        check_key(key)
        if len(value) > VALUE_MAX:
            raise KVError(f"Request body({len(value)} bytes) too large, max size: {VALUE_MAX} "
                          "bytes", 413)
        e = Entry(key, bytes(value), flags, self.clock.now(), self.writer)
        self._apply(e)
        self._changed([e])
        return e

    def delete(self, key: str, recurse: bool = False) -> list[Entry]:
        """Tombstones for ``key`` (or every live key under it); absent keys are no change."""
        targets = self.under(key) if recurse else [e for e in [self.get(key)] if e is not None]
        out = []
        for old in targets:
            t = Entry(old.key, None, 0, self.clock.now(), self.writer)
            self._apply(t)
            out.append(t)
        if out:
            self._changed(out)
        return out

    def merge(self, entries: Iterable[Entry]) -> list[Entry]:
        """Versions from a peer; returns those that won (and are now held)."""
        won = []
        for e in entries:
            self.clock.witness(e.stamp)
            cur = self.entries.get(e.key)
            if cur is not None and cur.order() >= e.order():
                continue
            if not e.live and cur is None and self._expired(e, self.clock.wall()):
                continue  # an old delete of a key we never had: nothing to remember
            self._apply(e)
            won.append(e)
        if won:
            self._changed(won)
        return won

    def _apply(self, e: Entry) -> None:
        cur = self.entries.get(e.key)
        self.index += 1
        e.modify_index = self.index
        if e.live:
            e.create_index = cur.create_index if cur is not None and cur.live else self.index
        else:
            e.create_index = 0
        b = _bucket(e.key)
        if cur is not None:
            self.buckets[b] ^= _fingerprint(cur)
            if not cur.live:
                self.tombstones -= 1
        else:
            self._sorted = None
        self.buckets[b] ^= _fingerprint(e)
        if not e.live:
            self.tombstones += 1
        self.entries[e.key] = e

    def restore(self, entries: Iterable[Entry], index: int, last_stamp: int) -> None:
        """Load a persisted keyspace (indexes as saved)."""
        for e in entries:
            self.entries[e.key] = e
            self.buckets[_bucket(e.key)] ^= _fingerprint(e)
            if not e.live:
                self.tombstones += 1
        self._sorted = None
        self.index = max(index, max((e.modify_index for e in self.entries.values()), default=0))
        self.clock.witness(last_stamp)

    def _changed(self, entries: list[Entry]) -> None:
        for fn in self.listeners:
            fn(entries)

    # --- tombstones -----------------------------------------------------------------------------

    def _expired(self, e: Entry, now: float) -> bool:
        return stamp_seconds(e.stamp) + self.tombstone_ttl < now

    def prune(self, now: float) -> int:
        """Forget tombstones past their TTL, then the oldest over the cap. Not a visible change:
        the index does not move."""
        dead = [e for e in self.entries.values() if not e.live]
        drop = [e for e in dead if self._expired(e, now)]
        over = len(dead) - len(drop) - self.tombstone_max
        if over > 0:
            keep = sorted((e for e in dead if not self._expired(e, now)), key=Entry.order)
            drop.extend(keep[:over])
        for e in drop:
            del self.entries[e.key]
            self.buckets[_bucket(e.key)] ^= _fingerprint(e)
            self.tombstones -= 1
        if drop:
            self._sorted = None
        return len(drop)

    # --- anti-entropy ---------------------------------------------------------------------------

    def digest(self) -> bytes:
        return b"".join(h.to_bytes(8, "big") for h in self.buckets)

    def differing(self, digest: bytes) -> list[int]:
        if len(digest) != 8 * BUCKETS:
            raise Malformed("kv digest length")
        return [b for b in range(BUCKETS)
                if int.from_bytes(digest[8 * b:8 * b + 8], "big") != self.buckets[b]]

    def in_buckets(self, buckets: Iterable[int], budget: int) -> list[Entry]:
        wanted = set(buckets)
        out: list[Entry] = []
        used = 0
        for e in self.entries.values():
            if _bucket(e.key) in wanted:
                used += e.size()
                if used > budget and out:
                    break
                out.append(e)
        return out

    def stats(self) -> dict[str, int]:
        return {"keys": len(self.entries) - self.tombstones, "tombstones": self.tombstones,
                "index": self.index}


Broadcast = Callable[[str, bytes], None]


class KVReplicator:
    """The KV's part of the gossip application channel (see ``registry/appchannel.py``)."""

    def __init__(self, store: KVStore, broadcast: Broadcast, *,
                 delta_limit: int = DELTA_LIMIT, answer_budget: int = ANSWER_BUDGET,
                 state_max: int = 64 * 1024 * 1024, tag: bytes = KV_TAG) -> None:
        self.store = store
        self.broadcast = broadcast
        self.tag = tag
        """First byte of this store's deltas on the shared channel (``KV_TAG`` for the KV store;
        the external-node records use the same machinery under their own tag)."""
        self.delta_limit = delta_limit
        self.answer_budget = answer_budget
        self.state_max = state_max
        self._reply: bytes | None = None
        self._big: dict[str, tuple[float, Entry]] = {}
        self.counters: dict[str, int] = {
            "deltas_sent": 0, "deltas_received": 0, "deltas_applied": 0, "deltas_stale": 0,
            "delta_oversize": 0, "states_sent": 0, "states_merged": 0, "entries_merged": 0,
            "state_bytes_sent": 0, "state_bytes_received": 0,
        }
        self.dropped: dict[str, int] = {}
        self._warned: set[str] = set()

    def _drop(self, reason: str, detail: str = "") -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        level = logging.DEBUG if reason in self._warned else logging.WARNING
        self._warned.add(reason)
        log.log(level, "kv replication input dropped reason=%s detail=%s", reason, detail)

    # --- outgoing -------------------------------------------------------------------------------

    def on_local_writes(self, entries: list[Entry], now: float) -> None:
        """Broadcast this agent's own writes (one delta each; too large: anti-entropy)."""
        for e in entries:
            msg: bytes = self.tag + msgpack.packb([_DELTA, *e.wire()])
            if len(msg) > self.delta_limit:
                self.counters["delta_oversize"] += 1
                self._big[e.key] = (now, e)
                continue
            self._big.pop(e.key, None)
            self.counters["deltas_sent"] += 1
            self.broadcast(self.tag.decode() + "\x00" + e.key, msg)

    def local_state(self, now: float) -> bytes:
        """The answer to the digest just merged, or (initiating) a digest + big recent writes."""
        if self._reply is not None:
            out, self._reply = self._reply, None
        else:
            for k in [k for k, (t, _) in self._big.items() if t + BIG_RECENT < now]:
                del self._big[k]
            big = [e.wire() for _, e in self._big.values()]
            out = _pack([_DIGEST, self.store.digest(), big])
        self.counters["states_sent"] += 1
        self.counters["state_bytes_sent"] += len(out)
        return out

    # --- incoming -------------------------------------------------------------------------------

    def notify_message(self, buf: bytes) -> None:
        """A delta from a peer (``buf`` starts with this replicator's tag). Never raises."""
        self.counters["deltas_received"] += 1
        try:
            msg = msgpack.unpackb(buf[1:], strict_map_key=True)
            if not isinstance(msg, list) or len(msg) < 6 or msg[0] != _DELTA:
                raise Malformed("not a kv delta")
            e = entry_from_wire(msg[1:])
        except Exception as ex:  # noqa: BLE001 - msgpack raises several types; none may escape
            self._drop("bad_delta", repr(ex)[:200])
            return
        try:
            won = self.store.merge([e])
        except Exception as ex:  # noqa: BLE001 - never out of a receive path
            self._drop("delta_apply_error", repr(ex)[:200])
            return
        if won:
            self.counters["deltas_applied"] += 1
            self.broadcast(self.tag.decode() + "\x00" + e.key, bytes(buf))
        else:
            self.counters["deltas_stale"] += 1

    def merge_state(self, buf: bytes) -> None:
        """A peer's push-pull part: a digest (we answer it) or an answer. Never raises."""
        self.counters["state_bytes_received"] += len(buf)
        self._reply = None
        try:
            msg = _unpack(buf, self.state_max)
            if not isinstance(msg, list) or not msg:
                raise Malformed("kv state")
            if msg[0] == _DIGEST and len(msg) >= 3 and isinstance(msg[1], bytes) \
                    and isinstance(msg[2], list):
                differ = self.store.differing(msg[1])
                entries = [entry_from_wire(a) for a in msg[2]]
            elif msg[0] == _ANSWER and len(msg) >= 2 and isinstance(msg[1], list):
                differ = None
                entries = [entry_from_wire(a) for a in msg[1]]
            else:
                raise Malformed("kv state kind")
        except Exception as ex:  # noqa: BLE001
            self._drop("bad_state", repr(ex)[:200])
            return
        try:
            won = self.store.merge(entries)
        except Exception as ex:  # noqa: BLE001
            self._drop("state_apply_error", repr(ex)[:200])
            return
        if differ is not None:
            answer = self.store.in_buckets(differ, self.answer_budget) if differ else []
            self._reply = _pack([_ANSWER, [e.wire() for e in answer]])
        self.counters["states_merged"] += 1
        self.counters["entries_merged"] += len(won)

    def stats(self) -> dict[str, int]:
        out = dict(self.counters)
        out.update({f"dropped_{k}": v for k, v in self.dropped.items()})
        return out


def _pack(msg: list[Any]) -> bytes:
    raw: bytes = msgpack.packb(msg)
    if len(raw) > 128:
        return b"\x01" + zlib.compress(raw, 6)
    return b"\x00" + raw


def _unpack(buf: bytes, cap: int) -> Any:
    if not buf:
        raise Malformed("empty")
    if buf[0] == 1:
        d = zlib.decompressobj()
        raw = d.decompress(buf[1:], cap)
        if d.unconsumed_tail:
            raise Malformed("kv state over the size cap")
    elif buf[0] == 0:
        raw = buf[1:]
    else:
        raise Malformed("unknown kv state encoding")
    return msgpack.unpackb(raw, strict_map_key=True)

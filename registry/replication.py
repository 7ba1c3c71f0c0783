"""Catalog replication over the gossip application channel.

Theory of operation
-------------------
Each node is the only writer of its own record (node info, services, checks). Every change it
makes gets a rising version ``v`` and travels as a small *delta* broadcast
``[1, node, kind, item, v, prev, payload]`` (``kind``: ``S``/``s`` service put/delete,
``C``/``c`` check put/delete, ``N`` node info: the values of ``local.ChangeKind``; ``prev`` is
the writer's version just before).
Receivers that learn something new re-broadcast it under the same key, so it spreads
epidemically like a Serf user event (the queue keeps only the newest message per key).
Changes made together (an agent's start, a re-registration, ``republish_all``) travel as
*batches* ``[4, [delta, delta, ...]]`` of the encoded deltas, as many per batch as fit the delta
limit: one gossip message instead of one per item, which is most of a joining agent's cost to
every other agent (issue 13: 200 agents with 5 services each). A batch is re-broadcast whole
when any delta in it was news; an older Rumor drops a batch as undecodable (counted) and gets
its records by push-pull.

What a receiver knows about node X is, per item, the version of its last write (a put, or a
delete kept as a tombstone), plus ``complete``: a version up to which it has *every* change of
X. An item absent from a record complete up to ``C`` is known deleted as of ``C``. Merging is a
per-item "highest version wins" where that implicit absence counts as a delete at version ``C``;
the merge is commutative and idempotent, so any order of deltas and full exchanges converges.
``complete`` advances on a delta only when its ``prev`` equals the current ``complete`` (no gap),
and jumps on a full exchange.

Full exchanges ride on push-pull anti-entropy, digest first: the side that starts a push-pull
sends a *digest* (per node: ``complete`` and the newest version it knows) plus its own record;
the answering side merges that record and answers with only the records it knows better than
the digest says (for a joiner, everything). So a quiet cluster exchanges a few bytes per node
instead of every record twice, and each push-pull is still a pull that fetches whatever the
initiator misses, which is how a node that missed broadcasts or sat on the other side of a
partition converges. (The answering side merges before it answers; memberlist's wire allows
either order.) A full state (``MSG_FULL``, every record) is still accepted from any peer. A
delta must fit one UDP packet: check output is cut to fit, and a record still too large is left
to push-pull (counted as ``delta_oversize``).

Work proportional to the cluster's size never runs as one long callback (issue 13). A received
state is read as a stream (zlib a chunk at a time, ``msgpack.Unpacker`` one node record at a
time): its header and digest at once, so that the answer is ready when gossip asks for it, then
records for ``slice_seconds`` (5 ms) per turn of the loop, the rest by a worker task
(``_StateReader``, ``_merge_slice``, ``_work``). An answer is assembled from per-node *pieces*:
each remote record msgpack-encoded and deflated once per change of that node (raw deflate ending
in a full flush, so pieces made apart concatenate into one zlib stream whose Adler-32 is combined
arithmetically); answering a joiner with 100,000 instances is then a join of bytes. Pieces that
are stale when an answer is due are re-encoded within the same budget and the rest are left for
the next push-pull while the worker re-encodes them.

Gossip status is local knowledge, never replicated: ``MemberFailed`` marks X failed in this
agent's catalog (its instances turn critical through serfHealth at once), ``MemberLeft`` and
``MemberReaped`` remove X's record and remember the last version seen, so a stale copy arriving
later from a slower peer cannot bring it back; a node that comes back publishes newer versions.
A member that comes back after a failure or a leave (a partition heals, an agent restarts), or
that refuted a suspicion (it was unreachable for a while without being declared failed), is
reconciled with at once: a push-pull with it, besides the periodic ones (``_came_back``).
So is a Rumor member that joined ``RECORD_WAIT`` to twice that many seconds ago while none of
its records has reached us (``_check_record``): each record travels by gossip twice, and a
node that missed both copies would otherwise wait for a periodic push-pull (90 s at 100
nodes).

Every decode error drops the input, counts it by reason and logs WARNING once per reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import field
from typing import Any, Protocol

import msgpack  # type: ignore[import-untyped]

from gossip.dclass import dataclass

from .catalog import Catalog, CheckRecord, NodeInfo, ServiceRecord
from .compact import SHARED
from .local import Change, ChangeKind, ItemType, LocalState

log = logging.getLogger(__name__)

MSG_DELTA = 1
MSG_FULL = 2
MSG_DIGEST = 3
MSG_BATCH = 4
_UNREADABLE = object()
"""What :meth:`Replicator._unpack_delta` returns for bytes msgpack cannot read."""
DELTA_LIMIT = 900
"""Bytes: the largest delta payload handed to ``broadcast_app`` (one UDP packet with headroom)."""
FULL_MAX_BYTES = 64 * 1024 * 1024
"""Bytes: cap on a decompressed full state from a peer."""
_COMPRESS_OVER = 128
SLICE_SECONDS = 0.005
"""Seconds of merge or encode work per turn of the event loop (the budget of a callback is
20 ms; a slice leaves room for the gossip, DNS and HTTP work around it)."""
SLICE_MIN_ITEMS = 64
"""Items (node infos, services, checks; ~15-30 us each) merged per slice whatever the clock
says: a small state, the common case, is merged at once even on a machine so loaded that 5 ms
of wall time pass in a few records; a big one still yields every couple of records."""
HEAL_BURST = 3
"""Push-pulls with members that came back, at most per ``HEAL_WINDOW`` (one exchange reaches a
whole healed side)."""
HEAL_WINDOW = 30.0
"""Seconds over which ``HEAL_BURST`` counts."""
HEAL_SPACING = 1.0
"""Seconds between two such push-pulls."""
HEAL_RETRIES = 2
"""Times a heal push-pull that failed (the connection refused or timed out: the network may
heal one host at a time) is tried again, within the same budget."""
HEAL_BRIEF = 5.0
"""Seconds: a member failed for less than this when it came back, or one that refuted a
suspicion, was away *briefly*. After a heal the other side's stale suspect and dead messages
about this side's members arrive, and this side's members refute them: each such refutation is
a brief return of a member that never left this side. Brief returns get at most one of the
window's push-pulls and yield to members that were away longer (they were on the other side).
A cut seen only a second before it heals makes every return brief, the other side's members'
too: the brief exchange goes to the member whose failure began first (the other side's were
failed before the heal began, our own side's only as its stale news arrived; a refuted
suspicion, never failed, comes last), chosen at most ``HEAL_SETTLE`` after the first brief
return."""
HEAL_SETTLE = 1.0
"""Seconds from the first brief return to its exchange: the members coming back in the same
heal are in the queue by then, and the one to reconcile with is chosen among them. A member
that failed longer ago than this is not our own side's flicker (that fails as the heal's stale
news arrives, and refutes within a gossip round or two): its exchange starts at once."""
RECORD_WAIT = 15.0
"""Seconds after a Rumor member joins (plus a random share of as many again, so that a pool
that all lacks one record does not ask at once) before we push-pull with it if none of its
records has reached us; within the heal budget above."""
MERGE_QUEUE_MAX_BYTES = 64 * 1024 * 1024
"""Bytes of received states waiting to be merged (as received, most are compressed); a state
arriving over it is dropped (counted as ``merge_queue_full``; the next push-pull brings it
again). A join burst queues dozens of states, and each dropped one costs a push-pull period."""


RawRecord = tuple[str, int, tuple[int, Any], dict[str, tuple[int, Any]],
                  dict[str, tuple[int, Any]], dict[tuple[str, str], int]]
"""A node record as decoded from a state: name, complete, (version, info), services, checks,
tombstones; the item payloads stay raw until they win a merge."""


class _Cancellable(Protocol):
    """What ``Replicator.call_later`` returns (an ``asyncio.TimerHandle`` is one)."""

    def cancel(self) -> None: ...


class Malformed(ValueError):
    """A peer sent replication data we cannot decode."""


# --- record codecs (compact positional msgpack arrays) ------------------------------------------

def enc_service(r: ServiceRecord) -> list[Any]:
    return [r.id, r.service, list(r.tags), r.address, r.port, dict(r.meta), r.weight_passing,
            r.weight_warning, dict(r.tagged_addresses), r.enable_tag_override, r.kind]


def dec_service(a: Any) -> ServiceRecord:
    if not isinstance(a, list) or len(a) < 11:
        raise Malformed("service record")
    sid, name, tags, addr, port, meta, wp, ww, tagged, eto, kind = a[:11]
    if not (isinstance(sid, str) and isinstance(name, str) and isinstance(tags, list)
            and all(isinstance(t, str) for t in tags) and isinstance(addr, str)
            and isinstance(port, int) and isinstance(meta, dict) and isinstance(wp, int)
            and isinstance(ww, int) and isinstance(tagged, dict) and isinstance(kind, str)):
        raise Malformed("service record fields")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise Malformed("service meta")
    v = SHARED.value
    return ServiceRecord(id=sid, service=v(name), tags=SHARED.strings(tags), address=v(addr),
                         port=v(port), meta=SHARED.str_map(meta), weight_passing=wp,
                         weight_warning=ww, tagged_addresses=SHARED.any_map(tagged),
                         enable_tag_override=bool(eto), kind=v(kind))


def enc_check(c: CheckRecord, output_limit: int | None = None) -> list[Any]:
    out = c.output
    if output_limit is not None and len(out.encode()) > output_limit:
        out = out.encode()[:max(0, output_limit)].decode(errors="ignore")
    return [c.check_id, c.name, c.status, out, c.notes, c.service_id, c.service_name,
            list(c.service_tags), c.type, c.interval, c.timeout]


def dec_check(a: Any) -> CheckRecord:
    if not isinstance(a, list) or len(a) < 11 or not all(
            isinstance(x, str) for i, x in enumerate(a[:11]) if i != 7):
        raise Malformed("check record")
    if not isinstance(a[7], list) or not all(isinstance(t, str) for t in a[7]):
        raise Malformed("check service tags")
    if a[2] not in ("passing", "warning", "critical"):
        raise Malformed("check status")
    v = SHARED.value
    return CheckRecord(check_id=a[0], name=v(a[1]), status=v(a[2]), output=a[3], notes=v(a[4]),
                       service_id=a[5], service_name=v(a[6]), service_tags=SHARED.strings(a[7]),
                       type=v(a[8]), interval=v(a[9]), timeout=v(a[10]))


def enc_info(i: NodeInfo) -> list[Any]:
    return [i.name, i.node_id, i.address, i.datacenter, dict(i.meta), dict(i.tagged_addresses)]


def dec_info(a: Any) -> NodeInfo:
    if not isinstance(a, list) or len(a) < 6 or not all(isinstance(x, str) for x in a[:4]) \
            or not isinstance(a[4], dict) or not isinstance(a[5], dict):
        raise Malformed("node info")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in a[4].items()):
        raise Malformed("node meta")
    return NodeInfo(name=a[0], node_id=a[1], address=a[2], datacenter=SHARED.value(a[3]),
                    meta=SHARED.str_map(a[4]), tagged_addresses=SHARED.any_map(a[5]))


_DEC: dict[ItemType, Callable[[Any], Any]] = {
    ItemType.SERVICE: dec_service, ItemType.CHECK: dec_check, ItemType.NODE: dec_info}


# --- reading a state in slices -----------------------------------------------------------------

_INFLATE_CHUNK = 256 * 1024
"""Bytes of decompressed state produced per step (~1 ms of zlib)."""


class _StateReader:
    """A push-pull state read incrementally: decompressed a chunk at a time and unpacked one
    node record at a time (``msgpack.Unpacker``), so that a 100,000-instance state never costs
    one long callback. ``read_header`` returns the digest of a ``MSG_DIGEST``."""

    def __init__(self, buf: bytes, max_bytes: int) -> None:
        if not buf:
            raise Malformed("empty")
        if buf[0] not in (0, 1):
            raise Malformed("unknown full-state encoding")
        self.size = len(buf)
        self._src = memoryview(buf)[1:]
        self._inflate = zlib.decompressobj() if buf[0] == 1 else None
        self._max = max_bytes
        self._out = 0
        self._unpacker = msgpack.Unpacker(strict_map_key=True, max_buffer_size=max_bytes)
        self.remaining = 0

    def _feed(self) -> None:
        """Give the unpacker the next chunk; Malformed when the input is exhausted."""
        if self._inflate is None:
            chunk = bytes(self._src[:_INFLATE_CHUNK])
            self._src = self._src[_INFLATE_CHUNK:]
        else:
            while True:
                chunk = self._inflate.decompress(self._src, _INFLATE_CHUNK)
                self._src = memoryview(self._inflate.unconsumed_tail)
                if chunk:
                    break
                if not self._src:
                    chunk = self._inflate.flush()
                    break
        if not chunk:
            raise Malformed("truncated state")
        self._out += len(chunk)
        if self._out > self._max:
            raise Malformed("full state over the size cap")
        self._unpacker.feed(chunk)

    def _next(self, read: Callable[[], Any]) -> Any:
        while True:
            try:
                return read()
            except msgpack.OutOfData:
                self._feed()

    def read_header(self) -> dict[str, tuple[int, int]] | None:
        u = self._unpacker
        try:
            n = self._next(u.read_array_header)
        except msgpack.UnpackValueError as e:  # not an array
            raise Malformed("not a full state or digest") from e
        tag = self._next(u.unpack) if n else None
        digest: dict[str, tuple[int, int]] | None = None
        if n == 3 and tag == MSG_DIGEST:
            entries = self._next(u.unpack)
            if not isinstance(entries, list):
                raise Malformed("digest")
            digest = {}
            for d in entries:
                if not (isinstance(d, list) and len(d) == 3 and isinstance(d[0], str)
                        and isinstance(d[1], int) and isinstance(d[2], int) and d[2] >= 0):
                    raise Malformed("digest entry")
                digest[d[0].lower()] = (d[1], d[1] + d[2])
        elif not (n == 2 and tag == MSG_FULL):
            raise Malformed("not a full state or digest")
        try:
            self.remaining = self._next(u.read_array_header)
        except msgpack.UnpackValueError as e:
            raise Malformed("records are not a list") from e
        return digest

    def next_record(self) -> Any:
        """The next raw node record, or None after the last."""
        if self.remaining <= 0:
            return None
        self.remaining -= 1
        return self._next(self._unpacker.unpack)


def _decode_record(r: Any) -> RawRecord:
    """Check one node record's framing and versions; the items stay raw until they win."""
    if not isinstance(r, list) or len(r) != 6 or not isinstance(r[0], str) \
            or not isinstance(r[1], int):
        raise Malformed("node record")
    name, complete, info, svcs, chks, tombs = r
    if not isinstance(info, list) or len(info) != 2 or not isinstance(info[0], int):
        raise Malformed("node info entry")
    if not isinstance(svcs, list) or not isinstance(chks, list) \
            or not isinstance(tombs, list):
        raise Malformed("node record lists")
    services: dict[str, tuple[int, Any]] = {}
    for e in svcs:
        if not isinstance(e, list) or len(e) != 2 or not isinstance(e[0], int) \
                or not isinstance(e[1], list) or not e[1] or not isinstance(e[1][0], str):
            raise Malformed("service entry")
        services[e[1][0]] = (e[0], e[1])
    checks: dict[str, tuple[int, Any]] = {}
    for e in chks:
        if not isinstance(e, list) or len(e) != 2 or not isinstance(e[0], int) \
                or not isinstance(e[1], list) or not e[1] or not isinstance(e[1][0], str):
            raise Malformed("check entry")
        checks[e[1][0]] = (e[0], e[1])
    tomb: dict[tuple[str, str], int] = {}
    for t in tombs:
        if not isinstance(t, list) or len(t) != 3 or t[0] not in ("s", "c") \
                or not isinstance(t[1], str) or not isinstance(t[2], int):
            raise Malformed("tombstone")
        tomb[(t[0], t[1])] = t[2]
    return name, complete, (info[0], info[1]), services, checks, tomb


# --- writing a state from cached pieces --------------------------------------------------------

def _deflate_piece(raw: bytes) -> tuple[bytes, int, int]:
    """``raw`` as raw-deflate blocks that end byte-aligned and not final (a full flush), with
    its Adler-32 and length: pieces made apart concatenate into one valid deflate stream
    (back-references of a piece never reach before its own start)."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(raw) + c.flush(zlib.Z_FULL_FLUSH), zlib.adler32(raw), len(raw)


_ADLER_MOD = 65521


def adler32_combine(a1: int, a2: int, len2: int) -> int:
    """Adler-32 of ``x + y`` from that of ``x`` (a1), of ``y`` (a2) and ``len(y)`` (zlib's
    ``adler32_combine``, which Python does not expose)."""
    s1a, s2a = a1 & 0xFFFF, a1 >> 16
    s1b, s2b = a2 & 0xFFFF, a2 >> 16
    s1 = (s1a + s1b - 1) % _ADLER_MOD
    s2 = (s2a + s2b + len2 * (s1a - 1)) % _ADLER_MOD
    return (s2 << 16) | s1


def _zlib_of_pieces(pieces: list[tuple[bytes, int, int]]) -> bytes:
    """A zlib stream (RFC 1950) of the concatenated raw data of ``pieces``."""
    adler = 1
    for _, a, n in pieces:
        adler = adler32_combine(adler, a, n)
    # 78 9c: deflate, 32 KiB window, default level; 03 00: an empty final block
    return b"".join([b"\x78\x9c", *(p for p, _, _ in pieces), b"\x03\x00",
                     adler.to_bytes(4, "big")])


# --- per-node knowledge ------------------------------------------------------------------------

class _Versions:
    """Item versions keyed by ``(kind, id)`` like a dict, stored as one dict per kind keyed by
    the ID string itself: the string is the record's own (no key tuple per item, which cost
    ~110 bytes per instance at 100,000 instances)."""

    __slots__ = ("by_kind",)

    def __init__(self) -> None:
        self.by_kind: dict[str, dict[str, int]] = {}

    def get(self, key: tuple[str, str], default: int | None = None) -> int | None:
        d = self.by_kind.get(key[0])
        return default if d is None else d.get(key[1], default)

    def __getitem__(self, key: tuple[str, str]) -> int:
        return self.by_kind[key[0]][key[1]]

    def __setitem__(self, key: tuple[str, str], v: int) -> None:
        d = self.by_kind.get(key[0])
        if d is None:
            d = self.by_kind[key[0]] = {}
        d[key[1]] = v

    def pop(self, key: tuple[str, str], default: int | None = None) -> int | None:
        d = self.by_kind.get(key[0])
        return default if d is None else d.pop(key[1], default)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 2:
            return False
        d = self.by_kind.get(key[0])
        return d is not None and key[1] in d

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for kind, d in self.by_kind.items():
            for i in d:
                yield kind, i

    def __len__(self) -> int:
        return sum(len(d) for d in self.by_kind.values())

    def values(self) -> Iterator[int]:
        for d in self.by_kind.values():
            yield from d.values()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Versions):
            return NotImplemented
        return ({k: d for k, d in self.by_kind.items() if d}
                == {k: d for k, d in other.by_kind.items() if d})

    __hash__ = None  # type: ignore[assignment]


@dataclass(slots=True)
class Knowledge:
    """What this agent knows of one remote node's record (versions only; data is in the catalog)."""

    complete: int = 0
    items: _Versions = field(default_factory=_Versions)
    tombs: dict[tuple[str, str], int] = field(default_factory=dict)
    top: int = 0
    """The newest version known (kept by :meth:`changed`; a digest reads it for every node)."""
    gen: int = 0
    """Rises on every change: the encoded record cached for push-pull answers is of one gen."""

    def changed(self) -> None:
        """Call after mutating: refresh ``top`` and invalidate the encoded record."""
        self.top = max([self.complete, *self.items.values(), *self.tombs.values()])
        self.gen += 1

    def version_of(self, key: tuple[str, str]) -> tuple[int, bool]:
        """(version, present) of the newest fact about ``key``."""
        v = self.items.get(key)
        if v is not None:
            return v, True
        t = self.tombs.get(key)
        if t is not None and t >= self.complete:
            return t, False
        return self.complete, False

    def max_version(self) -> int:
        return self.top

    def prune(self) -> None:
        for k in [k for k, v in self.tombs.items() if v <= self.complete]:
            del self.tombs[k]


Broadcast = Callable[[str, bytes], None]
MemberStatus = Callable[[str], "str | None"]


class Replicator:
    """The gossip application delegate of the registry (see module docstring)."""

    def __init__(self, catalog: Catalog, local: LocalState, *, broadcast: Broadcast,
                 member_status: MemberStatus,
                 member_addr: Callable[[str], str] = lambda name: "", delta_limit: int = DELTA_LIMIT,
                 full_max_bytes: int = FULL_MAX_BYTES,
                 push_pull: Callable[[str, Callable[[bool], None]], bool] | None = None,
                 is_peer: Callable[[str], bool] | None = None
                 ) -> None:
        self.catalog = catalog
        self.local = local
        self.broadcast = broadcast
        self.member_status = member_status
        self.member_addr = member_addr
        self.delta_limit = delta_limit
        self.full_max_bytes = full_max_bytes
        self.known: dict[str, Knowledge] = {}  # lowercase node name -> knowledge
        self.departed: dict[str, int] = {}  # lowercase node name -> last version seen
        self.counters: dict[str, int] = {
            "deltas_sent": 0, "deltas_received": 0, "deltas_applied": 0, "deltas_stale": 0,
            "deltas_rebroadcast": 0, "delta_oversize": 0, "full_sent": 0, "full_merged": 0,
            "full_bytes_sent": 0, "full_bytes_received": 0, "merge_slices": 0,
            "answers_partial": 0, "heal_push_pulls": 0, "heal_push_pull_failures": 0, "refuted": 0,
            "batches_sent": 0, "batches_received": 0, "record_wait_push_pulls": 0,
        }
        self.dropped: dict[str, int] = {}
        self._warned: set[str] = set()
        self._digest_cache: tuple[tuple[int, int], bytes] | None = None
        self._reply: bytes | None = None
        """The answer to the digest merged just now; consumed by the next local_app_state."""
        self.slice_seconds = SLICE_SECONDS
        self.slice_min_items = SLICE_MIN_ITEMS
        self.push_pull = push_pull
        """Starts a push-pull with a member now (gossip's ``push_pull``); None: no fast heal."""
        self.is_peer = is_peer
        """Whether a member is a Rumor agent (has records); None: every member is."""
        self.record_wait = RECORD_WAIT
        self.rng = random.Random()
        """Draws the random share of ``record_wait`` (a simulation seeds its own)."""
        self._record_checks: dict[str, _Cancellable] = {}
        """Members (lowercase) whose first record we wait for -> the pending check."""
        self._returned: list[str] = []
        """Members (gossip's names) back after being away longer than ``HEAL_BRIEF`` or after
        a leave: the first to reconcile with."""
        self._brief: dict[str, float] = {}
        """Members back after a brief absence or a refuted suspicion (see ``HEAL_BRIEF``) ->
        when their failure began (``clock``; infinity for a refuted suspicion)."""
        self._brief_times: deque[float] = deque()
        """When the recent heal push-pulls with brief returns started."""
        self._heal_failures: dict[str, int] = {}
        """Failed heal push-pulls in a row, by member (gossip's name)."""
        self._heal_times: deque[float] = deque()
        """When the recent heal push-pulls started (monotonic seconds)."""
        self.heal_burst, self.heal_window, self.heal_spacing = HEAL_BURST, HEAL_WINDOW, HEAL_SPACING
        self._failed: dict[str, float] = {}
        """Members whose last event was MemberFailed, or whose record we first took from a
        peer while gossip did not list them alive (lowercase) -> when (``clock``): back when
        they join."""
        self._heal_handle: asyncio.Handle | asyncio.TimerHandle | _Cancellable | None = None
        self._heal_due = 0.0
        """When the pending ``_heal_handle`` fires (``clock``)."""
        self.heal_settle = HEAL_SETTLE
        self.clock: Callable[[], float] = time.monotonic
        """Seconds; the heal budget's clock (the simulator passes its virtual one)."""
        self.call_later: Callable[[float, Callable[[], None]], _Cancellable] | None = None
        """Schedules the next heal push-pull; None: the running loop's ``call_later``."""
        self.after_merge: Callable[[], None] = lambda: None
        """Called after a slice of a push-pull merge changed the catalog (the agent freezes
        the heap there, see ``Agent``: a full garbage collection over a large catalog is the
        other long stall)."""
        self._queue: deque[_StateReader] = deque()
        self._queued_bytes = 0
        self.merge_queue_max_bytes = MERGE_QUEUE_MAX_BYTES
        self._worker: asyncio.Task[None] | None = None
        self._pieces: dict[str, tuple[int, tuple[bytes, int, int]]] = {}
        """lowercase node -> (Knowledge.gen, its record encoded for answers, see _piece)"""
        self._local_piece: tuple[tuple[int, int], tuple[bytes, int, int]] | None = None
        self._dirty: set[str] = set()
        """Nodes whose knowledge changed since their piece was encoded (the warm-up's list)."""
        local.listeners.append(self.on_local_changes)

    # --- drops ----------------------------------------------------------------------------------

    def _drop(self, reason: str, detail: str = "") -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        if reason not in self._warned:
            self._warned.add(reason)
            log.warning("replication input dropped reason=%s detail=%s", reason, detail)
        else:
            log.debug("replication input dropped reason=%s detail=%s", reason, detail)

    # --- outgoing -------------------------------------------------------------------------------

    def _local_payload(self, kind: ChangeKind, item: str, limit: int | None) -> Any:
        if kind == ChangeKind.SERVICE_PUT:
            return enc_service(self.local.services[item].record)
        if kind == ChangeKind.CHECK_PUT:
            rec = self.local.check_record(item)
            return enc_check(rec, limit) if rec is not None else None
        if kind == ChangeKind.NODE_INFO:
            return enc_info(self.local.info)
        return None

    def _encode_delta(self, node: str, kind: ChangeKind, item: str, v: int, prev: int,
                      payload_fn: Callable[[int | None], Any]) -> bytes | None:
        msg: bytes = msgpack.packb([MSG_DELTA, node, kind, item, v, prev, payload_fn(None)])
        if len(msg) <= self.delta_limit:
            return msg
        if kind == ChangeKind.CHECK_PUT:
            # cut the output so that the status still travels at once
            over = len(msg) - self.delta_limit
            msg = msgpack.packb([MSG_DELTA, node, kind, item, v, prev,
                                 payload_fn(max(0, 4096 - over - 64))])
            if len(msg) <= self.delta_limit:
                return msg
            msg = msgpack.packb([MSG_DELTA, node, kind, item, v, prev, payload_fn(0)])
            if len(msg) <= self.delta_limit:
                return msg
        self.counters["delta_oversize"] += 1
        return None

    def on_local_changes(self, changes: list[Change]) -> None:
        """LocalState changed: broadcast its deltas (newest per item wins), several changes
        made together in batches (see the module docstring)."""
        node = self.local.info.name
        out: list[tuple[str, bytes]] = []
        for kind, item, v, prev in changes:
            msg: bytes | None
            if not kind.deletes:
                if kind == ChangeKind.SERVICE_PUT and item not in self.local.services:
                    continue
                if kind == ChangeKind.CHECK_PUT and item not in self.local.checks:
                    continue

                def payload(lim: int | None, k: ChangeKind = kind, i: str = item) -> Any:
                    return self._local_payload(k, i, lim)
                msg = self._encode_delta(node, kind, item, v, prev, payload)
            else:
                msg = msgpack.packb([MSG_DELTA, node, kind, item, v, prev, None])
            if msg is None:
                continue
            self.counters["deltas_sent"] += 1
            out.append((_key(node, kind, item), msg))
        for key, msg in self._batched(out):
            self.broadcast(key, msg)

    def _batched(self, deltas: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        """(queue key, message) pairs: single deltas as they are, consecutive ones packed into
        ``MSG_BATCH`` messages of at most ``delta_limit`` bytes."""
        out: list[tuple[str, bytes]] = []
        group: list[tuple[str, bytes]] = []
        size = 0

        def flush() -> None:
            if len(group) == 1:
                out.append(group[0])
            elif group:
                out.append((_batch_key([k for k, _ in group]),
                            msgpack.packb([MSG_BATCH, [m for _, m in group]])))
                self.counters["batches_sent"] += 1
            group.clear()

        for key, msg in deltas:
            cost = len(msg) + 5   # the bin header of the delta inside the batch
            if group and size + cost > self.delta_limit:
                flush()
                size = 0
            group.append((key, msg))
            size += cost + (8 if len(group) == 1 else 0)   # the batch's own header
        flush()
        return out

    def local_app_state(self, join: bool = False) -> bytes:
        """What goes into a push-pull: the answer to the digest just merged, when this agent is
        the answering side; otherwise (it starts the exchange) its digest and own record."""
        if self._reply is not None:
            out, self._reply = self._reply, None
        else:
            key = (self.catalog.index, self.local.version)
            if self._digest_cache is None or self._digest_cache[0] != key:
                self._digest_cache = (key, self._pack(
                    [MSG_DIGEST, self._digest(), self._records({self.local.info.name.lower()})]))
            out = self._digest_cache[1]
        self.counters["full_sent"] += 1
        self.counters["full_bytes_sent"] += len(out)
        return out

    def full_state(self) -> bytes:
        """Every record this agent knows (``MSG_FULL``), from the cached encoded records."""
        return self._assemble(None, None)

    def _digest(self) -> list[list[Any]]:
        """[name, complete, newest version - complete] for this agent and every node it knows
        (the difference is nearly always 0: one byte instead of another 8-byte version)."""
        out: list[list[Any]] = [[self.local.info.name, self.local.version, 0]]
        for key, k in self.known.items():
            info = self.catalog.node_info(key)
            if info is not None:
                out.append([info.name, k.complete, k.top - k.complete])
        return out

    def _answer(self, digest: Mapping[str, tuple[int, int]]) -> bytes:
        """The records this agent knows better than ``digest`` (lowercase name -> versions)."""
        wanted: set[str] = set()
        me = self.local.info.name.lower()
        theirs = digest.get(me)
        # our own record is complete up to our version: whoever is complete up to less lacks
        # something, also when a later change reached it (a gap: its newest equals ours)
        if theirs is None or theirs[0] < self.local.version:
            wanted.add(me)
        for key, k in self.known.items():
            theirs = digest.get(key)
            if theirs is None or k.complete > theirs[0] or k.top > theirs[1]:
                wanted.add(key)
        return self._assemble(wanted, time.perf_counter() + self.slice_seconds)

    @staticmethod
    def _pack(msg: list[Any]) -> bytes:
        raw: bytes = msgpack.packb(msg)
        if len(raw) > _COMPRESS_OVER:
            return b"\x01" + zlib.compress(raw, 6)
        return b"\x00" + raw

    # An answer is a MSG_FULL whose records come from per-node pieces, each encoded and
    # deflated once per change of that node (its Knowledge.gen): answering a joiner with
    # 100,000 instances is then a join of bytes, not 2 s of msgpack and zlib on the loop.

    def _assemble(self, names: set[str] | None, deadline: float | None) -> bytes:
        """``MSG_FULL`` of the records in ``names`` (None: all). Records whose piece is stale
        are re-encoded until ``deadline`` and left out after it (counted in
        ``answers_partial``; the encoder warms them up in the background and the next
        push-pull carries them)."""
        pieces: list[tuple[bytes, int, int]] = []
        me = self.local.info.name.lower()
        if names is None or me in names:
            pieces.append(self._piece_local())
        left_out = 0
        for key, k in self.known.items():
            if names is not None and key not in names:
                continue
            cached = self._pieces.get(key)
            if cached is not None and cached[0] == k.gen:
                pieces.append(cached[1])
            elif deadline is None or time.perf_counter() < deadline:
                p = self._piece(key, k)
                if p is not None:
                    pieces.append(p)
            else:
                left_out += 1
                self._dirty.add(key)
        if left_out:
            self.counters["answers_partial"] += 1
            self._start_worker()
        if not pieces:
            return self._pack([MSG_FULL, []])
        header = msgpack.Packer()
        head = header.pack_array_header(2) + header.pack(MSG_FULL) + \
            header.pack_array_header(len(pieces))
        return b"\x01" + _zlib_of_pieces([_deflate_piece(head), *pieces])

    def _piece(self, key: str, k: Knowledge) -> tuple[bytes, int, int] | None:
        rec = self._remote_record(key, k)
        if rec is None:
            return None
        p = _deflate_piece(msgpack.packb(rec))
        self._pieces[key] = (k.gen, p)
        return p

    def _piece_local(self) -> tuple[bytes, int, int]:
        key = (self.local.version, self.catalog.key_index(f"node:{self.local.info.name.lower()}"))
        if self._local_piece is None or self._local_piece[0] != key:
            self._local_piece = (key, _deflate_piece(msgpack.packb(self._local_record())))
        return self._local_piece[1]

    def _stale(self) -> bool:
        return bool(self._dirty)

    def _warm(self, deadline: float | None) -> None:
        """Re-encode the pieces of changed nodes until ``deadline`` (None: all of them)."""
        while self._dirty:
            key = self._dirty.pop()
            k = self.known.get(key)
            c = self._pieces.get(key)
            if k is not None and (c is None or c[0] != k.gen):
                self._piece(key, k)
                if deadline is not None and time.perf_counter() >= deadline:
                    return

    def _records(self, names: set[str] | None) -> list[Any]:
        """Node records (own and remote) whose lowercase names are in ``names`` (None: all)."""
        records: list[Any] = []
        if names is None or self.local.info.name.lower() in names:
            records.append(self._local_record())
        for key, k in self.known.items():
            if names is not None and key not in names:
                continue
            rec = self._remote_record(key, k)
            if rec is not None:
                records.append(rec)
        return records

    def _local_record(self) -> list[Any]:
        loc = self.local
        return [
            loc.info.name, loc.version, [loc.item_versions.get(("n", ""), loc.version),
                                         enc_info(loc.info)],
            [[loc.item_versions.get(("s", sid), loc.version), enc_service(s.record)]
             for sid, s in loc.services.items()],
            [[loc.item_versions.get(("c", cid), loc.version), enc_check(rec)]
             for cid in loc.checks if (rec := loc.check_record(cid)) is not None],
            [],
        ]

    def _remote_record(self, key: str, k: Knowledge) -> list[Any] | None:
        info = self.catalog.node_info(key)
        if info is None:
            return None
        services = self.catalog.node_services(key)
        checks = self.catalog.node_check_records(key)
        return [
            info.name, k.complete, [k.items.get(("n", ""), 0), enc_info(info)],
            [[k.items.get(("s", sid), 0), enc_service(r)] for sid, r in services.items()],
            [[k.items.get(("c", cid), 0), enc_check(r)] for cid, r in checks.items()],
            [[kk[0], kk[1], v] for kk, v in k.tombs.items()],
        ]

    # --- incoming -------------------------------------------------------------------------------

    def notify_app_message(self, buf: bytes) -> None:
        """A delta or a batch of them from a peer; re-broadcast when it brought news. Never
        raises."""
        msg = self._unpack_delta(buf)
        if msg is _UNREADABLE:
            return
        if isinstance(msg, list) and len(msg) == 2 and msg[0] == MSG_BATCH:
            self.counters["batches_received"] += 1
            inner = msg[1]
            if not isinstance(inner, list) or not all(isinstance(d, bytes) for d in inner):
                self._drop("bad_delta", "batch")
                return
            keys: list[str] = []
            news = False
            for d in inner:
                one = self._unpack_delta(d)
                if one is _UNREADABLE:
                    continue
                key, applied = self._receive_delta(d, one)
                if key is not None:
                    keys.append(key)
                news = news or applied
            if news and keys:
                self.counters["deltas_rebroadcast"] += 1
                self.broadcast(_batch_key(keys), buf)
            return
        key, applied = self._receive_delta(buf, msg)
        if applied and key is not None:
            self.counters["deltas_rebroadcast"] += 1
            self.broadcast(key, buf)

    def _unpack_delta(self, buf: bytes) -> Any:
        """``buf`` decoded, or ``_UNREADABLE`` (dropped and counted as a bad delta)."""
        try:
            return msgpack.unpackb(buf, strict_map_key=True)
        except Exception as e:  # noqa: BLE001 - msgpack raises several types; none may escape
            self.counters["deltas_received"] += 1
            self._drop("bad_delta", repr(e)[:200])
            return _UNREADABLE

    def _receive_delta(self, buf: bytes, msg: Any) -> tuple[str | None, bool]:
        """Apply one delta (``msg``, decoded from ``buf``): its queue key (None: dropped) and
        whether it was news. Never raises."""
        self.counters["deltas_received"] += 1
        try:
            if not isinstance(msg, list) or len(msg) != 7 or msg[0] != MSG_DELTA:
                raise Malformed("not a delta")
            _, node, letter, item, v, prev, payload = msg
            if not (isinstance(node, str) and node and isinstance(letter, str)
                    and isinstance(item, str) and isinstance(v, int) and isinstance(prev, int)):
                raise Malformed("delta header")
            try:
                kind = ChangeKind(letter)
            except ValueError:
                raise Malformed(f"delta kind {letter!r}") from None
            rec = None if kind.deletes else _DEC[kind.item_type](payload)
        except Exception as e:  # noqa: BLE001 - a bad payload raises several types
            self._drop("bad_delta", repr(e)[:200])
            return None, False
        try:
            applied = self._apply_delta(node, kind, item, v, prev, rec)
        except Exception as e:  # noqa: BLE001 - never out of a receive path
            self._drop("delta_apply_error", repr(e)[:200])
            return None, False
        if applied:
            self.counters["deltas_applied"] += 1
        else:
            self.counters["deltas_stale"] += 1
        return _key(node, kind, item), applied

    def _is_local(self, node: str) -> bool:
        return node.lower() == self.local.info.name.lower()

    def _blocked(self, node: str, version: int) -> bool:
        """A departed node's stale data must not come back; a left member's neither."""
        key = node.lower()
        dep = self.departed.get(key)
        if dep is not None:
            if version <= dep:
                return True
            del self.departed[key]
        return self.member_status(node) == "left"

    def _status_for(self, node: str) -> str:
        s = self.member_status(node)
        return s if s is not None else "failed"

    def _apply_delta(self, node: str, kind: ChangeKind, item: str, v: int, prev: int,
                     rec: Any) -> bool:
        if self._is_local(node):
            if v > self.local.version:
                self._reassert_local(v)
            return False
        if self._blocked(node, v):
            return False
        key = node.lower()
        k = self.known.get(key)
        if k is None:
            k = self.known[key] = Knowledge()
        ikey: tuple[str, str] = (kind.item_type, item)
        cur, _ = k.version_of(ikey)
        contiguous = prev == k.complete
        if v <= cur:
            if contiguous and v > k.complete:
                k.complete = v
                k.changed()
                self._dirty.add(key)
            return False
        with self.catalog.batch():
            self._ensure_node(node)
            match kind:
                case ChangeKind.NODE_INFO:
                    self.catalog.put_node(rec)
                case ChangeKind.SERVICE_PUT:
                    self.catalog.put_service(node, rec)
                case ChangeKind.CHECK_PUT:
                    self.catalog.put_check(node, rec)
                case ChangeKind.SERVICE_DELETE:
                    self.catalog.remove_service(node, item)
                case ChangeKind.CHECK_DELETE:
                    self.catalog.remove_check(node, item)
            if kind.deletes:
                k.items.pop(ikey, None)
                k.tombs[ikey] = v
            else:
                k.items[ikey] = v
                k.tombs.pop(ikey, None)
            if contiguous:
                k.complete = v
                k.prune()
            k.changed()
            self._dirty.add(key)
        return True

    def _ensure_node(self, node: str) -> None:
        if not self.catalog.has_node(node):
            # services arrived before the node's own info: use what gossip knows of it
            self.catalog.put_node(NodeInfo(name=node, datacenter=self.catalog.datacenter,
                                           address=self.member_addr(node)),
                                  self._status_for(node))

    def _reassert_local(self, seen: int) -> None:
        """A peer holds a newer copy of our record than we do (we lost our data dir, or the
        clock went back): restamp everything above it so that our current record wins."""
        log.warning("a peer holds a newer record of this node; republishing version=%d", seen)
        loc = self.local
        loc.raise_version_above(seen)
        loc.republish_all()

    def merge_app_state(self, buf: bytes, join: bool = False) -> None:
        """A peer's push-pull state: records to merge, and for a digest, the answer to give
        (see the module docstring). Never raises.

        The header (and a digest) is read at once, so that the answer is ready for the
        ``local_app_state`` that follows; records are merged for at most ``slice_seconds``
        here and the rest in later turns of the loop (see :class:`_StateReader`)."""
        self.counters["full_bytes_received"] += len(buf)
        self._reply = None
        if self._queued_bytes + len(buf) > self.merge_queue_max_bytes:
            self._drop("merge_queue_full", f"{len(self._queue)} states waiting")
            return
        try:
            job = _StateReader(buf, self.full_max_bytes)
            digest = job.read_header()
        except Exception as e:  # noqa: BLE001 - msgpack and zlib raise several types; none may escape
            self._drop("bad_full_state", repr(e)[:200])
            return
        if digest is not None:
            self._reply = self._answer(digest)
        if self._queue or not self._merge_slice(job):
            self._queue.append(job)
            self._queued_bytes += job.size
            self._start_worker()

    def _merge_slice(self, job: _StateReader) -> bool:
        """Merge records of ``job`` for up to ``slice_seconds``; True once it is finished
        (merged, or dropped as malformed)."""
        deadline = time.perf_counter() + self.slice_seconds
        index = self.catalog.index
        n = 0
        try:
            with self.catalog.batch():
                while True:
                    raw = job.next_record()
                    if raw is None:
                        break
                    rec = _decode_record(raw)
                    self._merge_record(*rec)
                    n += 1 + len(rec[3]) + len(rec[4])
                    if n >= self.slice_min_items and time.perf_counter() >= deadline:
                        self.counters["merge_slices"] += 1
                        return False
        except Exception as e:  # noqa: BLE001 - a bad record stops this state; the rest stands
            self._drop("bad_full_state" if isinstance(e, (Malformed, ValueError))
                       else "full_apply_error", repr(e)[:200])
            return True
        finally:
            if self.catalog.index != index:
                self.after_merge()
        self.counters["full_merged"] += 1
        return True

    def _decode_state(self, buf: bytes) -> tuple[dict[str, tuple[int, int]] | None,
                                                  list[RawRecord]]:
        """A whole state decoded at once: its digest (None for ``MSG_FULL``) and its records."""
        job = _StateReader(buf, self.full_max_bytes)
        digest = job.read_header()
        records: list[RawRecord] = []
        while (raw := job.next_record()) is not None:
            records.append(_decode_record(raw))
        return digest, records

    def _start_worker(self) -> None:
        if self._worker is not None and not self._worker.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): finish here
            while self._queue:
                if self._merge_slice(self._queue[0]):
                    self._queued_bytes -= self._queue.popleft().size
            self._warm(None)
            return
        self._worker = loop.create_task(self._work(), name="replication-merge")

    async def _work(self) -> None:
        """Merge queued states slice by slice, then re-encode stale records for answers."""
        while self._queue or self._stale():
            await asyncio.sleep(0)
            if self._queue:
                if self._merge_slice(self._queue[0]):
                    self._queued_bytes -= self._queue.popleft().size
            else:
                self._warm(time.perf_counter() + self.slice_seconds)

    async def idle(self) -> None:
        """Wait until every queued state is merged (tests and benchmarks)."""
        while self._worker is not None and not self._worker.done():
            await asyncio.shield(self._worker)

    async def close(self) -> None:
        if self._heal_handle is not None:
            self._heal_handle.cancel()
            self._heal_handle = None
        for handle in self._record_checks.values():
            handle.cancel()
        self._record_checks.clear()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._queue.clear()
        self._queued_bytes = 0

    def _merge_record(self, name: str, complete: int, info: tuple[int, Any],
                      services: Mapping[str, tuple[int, Any]],
                      checks: Mapping[str, tuple[int, Any]],
                      tombs: Mapping[tuple[str, str], int]) -> None:
        top = max([complete, info[0], *(v for v, _ in services.values()),
                   *(v for v, _ in checks.values())])
        if self._is_local(name):
            if top > self.local.version:
                self._reassert_local(top)
            return
        if self._blocked(name, top):
            return
        key = name.lower()
        k = self.known.get(key)
        if k is None:
            k = self.known[key] = Knowledge()
            if self.member_status(name) in (None, "failed"):
                # A record taken from a peer while gossip does not list its node alive (an
                # agent (re)started during a cut learns the other side's records from its
                # own side, and a joiner's gossip holds no failed member): when the node
                # joins, it comes back from a failure, with what it wrote meanwhile.
                self._failed.setdefault(key, self.clock())
        theirs = Knowledge(complete=complete)
        shared: dict[int, int] = {}  # one int object per distinct version of this record
        for sid, (v, _) in services.items():
            theirs.items[("s", sid)] = shared.setdefault(v, v)
        for cid, (v, _) in checks.items():
            theirs.items[("c", cid)] = shared.setdefault(v, v)
        theirs.items[("n", "")] = info[0]
        theirs.tombs.update(tombs)
        if complete == k.complete and theirs.items == k.items and theirs.tombs == k.tombs:
            return  # the same knowledge: the common case on a quiet cluster
        keys = set(k.items) | set(k.tombs) | set(theirs.items) | set(theirs.tombs)
        new_complete = max(k.complete, complete)
        # decode the winners first, so a malformed record changes nothing of this node
        wins: list[tuple[tuple[str, str], int, Any]] = []
        for ikey in keys:
            mine_v, _ = k.version_of(ikey)
            their_v, their_present = theirs.version_of(ikey)
            if their_v <= mine_v:
                continue  # ties keep ours: equal versions are the same write
            kind, item = ikey
            rec: Any = None
            if their_present:
                if kind == "n":
                    rec = dec_info(info[1])
                    if rec.name != name:
                        raise Malformed("node info names another node")
                elif kind == "s":
                    rec = dec_service(services[item][1])
                else:
                    rec = dec_check(checks[item][1])
            wins.append((ikey, their_v, rec))
        with self.catalog.batch():
            self._ensure_node(name)
            for ikey, their_v, rec in wins:
                kind, item = ikey
                if rec is not None:
                    k.items[ikey] = their_v
                    k.tombs.pop(ikey, None)
                    if kind == "n":
                        self.catalog.put_node(rec)
                    elif kind == "s":
                        self.catalog.put_service(name, rec)
                    else:
                        self.catalog.put_check(name, rec)
                else:
                    k.items.pop(ikey, None)
                    if kind == "s":
                        self.catalog.remove_service(name, item)
                    elif kind == "c":
                        self.catalog.remove_check(name, item)
                    if their_v > new_complete or ikey in theirs.tombs:
                        k.tombs[ikey] = their_v
            k.complete = new_complete
            k.prune()
            k.changed()
            self._dirty.add(key)

    # --- membership -----------------------------------------------------------------------------

    def on_member_status(self, name: str, status: str | None, *, joined: bool = False) -> None:
        """Gossip's status of the remote member ``name`` changed (None: it was reaped; ``joined``:
        it (re)joined). The registry service decodes gossip's events; this never raises."""
        try:
            if status is None or status == "left":
                self.forget(name)
                return
            key = name.lower()
            if status == "failed":
                self._failed.setdefault(key, self.clock())
            came_back = joined and (key in self._failed or key in self.departed)
            brief = False
            failed_at = None
            if joined:
                failed_at = self._failed.pop(key, None)
                brief = (key not in self.departed and failed_at is not None
                         and self.clock() - failed_at < HEAL_BRIEF)
                # back after a leave: its record may come again (it restamps it on rejoin)
                self.departed.pop(key, None)
            self.catalog.set_status(name, status)
            if came_back:
                self._came_back(name, brief=brief,
                                since=failed_at if failed_at is not None else math.inf)
            elif joined and status == "alive" and key not in self.known:
                self._expect_record(name)
        except Exception:
            log.exception("member status handling failed node=%s status=%s", name, status)

    def _expect_record(self, name: str) -> None:
        """A Rumor member joined and none of its records is here yet: check in
        ``record_wait`` to twice that seconds (``_check_record``)."""
        key = name.lower()
        if (self.push_pull is None or key in self._record_checks
                or (self.is_peer is not None and not self.is_peer(name))):
            return
        handle = self._timer(self.record_wait * (1.0 + self.rng.random()),
                             lambda: self._check_record(name))
        if handle is not None:
            self._record_checks[key] = handle

    def _check_record(self, name: str) -> None:
        """Still no record of ``name``, a member all along: we missed what gossip carried of
        it, so pull it (a push-pull with it, in the heal budget). Never raises."""
        try:
            key = name.lower()
            self._record_checks.pop(key, None)
            if key in self.known or self.member_status(name) != "alive":
                return
            self.counters["record_wait_push_pulls"] += 1
            log.info("no record of a member that joined %.0f s or more ago: reconciling node=%s",
                     self.record_wait, name)
            self._came_back(name)
        except Exception:
            log.exception("record check failed node=%s", name)

    def on_member_refuted(self, name: str) -> None:
        """Gossip suspected ``name`` and it refuted: it stayed a member, but it was unreachable
        for a while (packet loss, a short partition, a paused process), so deltas between us
        may be lost. Reconcile as with a member that came back. Never raises."""
        try:
            self.counters["refuted"] += 1
            self._came_back(name, brief=True)
        except Exception:
            log.exception("refuted member handling failed node=%s", name)

    # --- fast heal -------------------------------------------------------------------------

    def _came_back(self, name: str, brief: bool = False, since: float = math.inf) -> None:
        """A member is back after a failure (partition heal, restart) or a leave: while it
        was away, both sides may have written records the other missed, and deltas sent then
        are gone. Reconcile now with a push-pull (each side does it for the other, so each
        pulls what it lacks) instead of waiting for the periodic one. A heal brings back many
        members within seconds and one exchange with any of them fetches their side's catalog:
        at most ``HEAL_BURST`` such push-pulls per ``HEAL_WINDOW``, ``HEAL_SPACING`` apart.
        Members away longer go first; a ``brief`` return (see ``HEAL_BRIEF``; ``since``: when
        its failure began) gets at most one of them, at most ``HEAL_SETTLE`` after the first,
        with the member whose failure began first, so that the other side's stale suspicions
        of our own side, refuted as a heal begins, never use up the budget before the members
        of the other side are back. Members coming back beyond the budget are left to the
        periodic push-pull."""
        if self.push_pull is None:
            return
        if brief:
            if name not in self._returned:
                self._brief[name] = min(since, self._brief.get(name, math.inf))
                if len(self._brief) > self.heal_burst:
                    # keep those whose failure began first: the likeliest other side
                    del self._brief[max(self._brief, key=self._brief.__getitem__)]
        else:
            self._brief.pop(name, None)  # away longer after all (failed again since)
            if name not in self._returned and len(self._returned) < self.heal_burst:
                self._returned.append(name)
        if not self._returned and not self._brief:
            return
        now = self.clock()
        due = now
        if self._heal_times:
            due = max(due, self._heal_times[-1] + self.heal_spacing)
        if not self._returned:
            # the settle, counted from the failure of the likeliest other-side member
            due = max(due, min(now, min(self._brief.values())) + self.heal_settle)
        if self._heal_handle is not None:
            if self._heal_due <= due:
                return
            self._heal_handle.cancel()  # a member away longer is back: sooner
        # not from inside the gossip event being delivered: on a later turn of the loop
        self._heal_due = due
        self._heal_handle = self._later(due - now)

    def _timer(self, wait: float, fn: Callable[[], None]) -> _Cancellable | None:
        """``fn`` in ``wait`` seconds on ``call_later`` or the running loop; None (and nothing
        scheduled) without either."""
        if self.call_later is not None:
            return self.call_later(wait, fn)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return loop.call_later(wait, fn)

    def _later(self, wait: float) -> _Cancellable | None:
        """``_heal`` in ``wait`` seconds (at once without a loop: a synchronous caller)."""
        handle = self._timer(wait, self._heal)
        if handle is None:
            self._heal()
        return handle

    def _heal(self) -> None:
        self._heal_handle = None
        now = self.clock()
        for times in (self._heal_times, self._brief_times):
            while times and times[0] <= now - self.heal_window:
                times.popleft()
        if len(self._heal_times) >= self.heal_burst:
            # the budget is spent: the periodic push-pull covers them
            self._returned.clear()
            self._brief.clear()
            return
        if self._brief_times:
            self._brief.clear()  # this window's one brief exchange is done
        if self.push_pull is None:
            return
        since = math.inf
        if self._returned:
            name, brief = self._returned.pop(0), False
        elif self._brief:
            name = min(self._brief, key=self._brief.__getitem__)
            since, brief = self._brief.pop(name), True
        else:
            return
        # counted before it starts: its outcome may come back before push_pull returns
        self._heal_times.append(now)
        if brief:
            self._brief_times.append(now)
        started = False
        try:
            started = self.push_pull(name, lambda ok: self._heal_done(name, brief, ok, since))
        except Exception:  # never out of a loop callback
            log.exception("heal push-pull failed node=%s", name)
        if started:
            self.counters["heal_push_pulls"] += 1
            log.info("reconciling with a member that came back node=%s brief=%s", name, brief)
        else:
            self._heal_times.pop()
            if brief and self._brief_times:
                self._brief_times.pop()
        if (self._returned or self._brief) and self._heal_handle is None and (
                self.call_later is not None or _loop_running()):
            self._heal_due = now + self.heal_spacing
            self._heal_handle = self._later(self.heal_spacing)

    def _heal_done(self, name: str, brief: bool, ok: bool, since: float = math.inf) -> None:
        """Gossip's word on a heal push-pull (called from inside gossip: nothing here calls
        back into it; a retry goes through the queue and a later turn of the loop)."""
        if ok:
            self._heal_failures.pop(name, None)
            return
        self.counters["heal_push_pull_failures"] += 1
        if brief and self._brief_times:
            self._brief_times.pop()  # a failed brief exchange does not use up the brief one
        tries = self._heal_failures.get(name, 0) + 1
        if tries > HEAL_RETRIES:
            self._heal_failures.pop(name, None)
            return  # the periodic push-pull is left
        self._heal_failures[name] = tries
        if self.call_later is not None or _loop_running():
            self._came_back(name, brief=brief, since=since)

    def forget(self, name: str) -> None:
        """The node left or was reaped: its records disappear everywhere."""
        key = name.lower()
        if (check := self._record_checks.pop(key, None)) is not None:
            check.cancel()
        k = self.known.pop(key, None)
        self._pieces.pop(key, None)
        self._dirty.discard(key)
        self._failed.pop(key, None)
        last = k.max_version() if k is not None else 0
        self.departed[key] = max(self.departed.get(key, 0), last)
        if self.catalog.remove_node(name):
            log.info("node records removed node=%s", name)

    def stats(self) -> dict[str, int]:
        out = dict(self.counters)
        for reason, n in self.dropped.items():
            out[f"dropped_{reason}"] = n
        out["known_nodes"] = len(self.known)
        return out


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _key(node: str, kind: ChangeKind, item: str) -> str:
    """The broadcast queue key: a put and a delete of one item replace each other."""
    return f"{node}\x00{kind.item_type}\x00{item}"


def _batch_key(keys: list[str]) -> str:
    """A batch's queue key: a later batch of the same items (a re-registration of the same
    record) replaces it; other batches and single deltas spread beside it (versions decide)."""
    return "\x01".join(["B", *keys])


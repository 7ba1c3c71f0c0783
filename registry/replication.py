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
either order.) A full state (``MSG_FULL``, every record) is still accepted from any peer. A delta must fit one UDP packet: check output is cut to fit, and a record still too
large is left to push-pull (counted as ``delta_oversize``).

Gossip status is local knowledge, never replicated: ``MemberFailed`` marks X failed in this
agent's catalog (its instances turn critical through serfHealth at once), ``MemberLeft`` and
``MemberReaped`` remove X's record and remember the last version seen, so a stale copy arriving
later from a slower peer cannot bring it back; a node that comes back publishes newer versions.

Every decode error drops the input, counts it by reason and logs WARNING once per reason.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack  # type: ignore[import-untyped]

from .catalog import Catalog, CheckRecord, NodeInfo, ServiceRecord
from .local import Change, ChangeKind, ItemType, LocalState

log = logging.getLogger(__name__)

MSG_DELTA = 1
MSG_FULL = 2
MSG_DIGEST = 3
DELTA_LIMIT = 900
"""Bytes: the largest delta payload handed to ``broadcast_app`` (one UDP packet with headroom)."""
FULL_MAX_BYTES = 64 * 1024 * 1024
"""Bytes: cap on a decompressed full state from a peer."""
_COMPRESS_OVER = 128


RawRecord = tuple[str, int, tuple[int, Any], dict[str, tuple[int, Any]],
                  dict[str, tuple[int, Any]], dict[tuple[str, str], int]]
"""A node record as decoded from a state: name, complete, (version, info), services, checks,
tombstones; the item payloads stay raw until they win a merge."""


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
    return ServiceRecord(id=sid, service=name, tags=tuple(tags), address=addr, port=port,
                         meta=meta, weight_passing=wp, weight_warning=ww, tagged_addresses=tagged,
                         enable_tag_override=bool(eto), kind=kind)


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
    return CheckRecord(check_id=a[0], name=a[1], status=a[2], output=a[3], notes=a[4],
                       service_id=a[5], service_name=a[6], service_tags=tuple(a[7]), type=a[8],
                       interval=a[9], timeout=a[10])


def enc_info(i: NodeInfo) -> list[Any]:
    return [i.name, i.node_id, i.address, i.datacenter, dict(i.meta), dict(i.tagged_addresses)]


def dec_info(a: Any) -> NodeInfo:
    if not isinstance(a, list) or len(a) < 6 or not all(isinstance(x, str) for x in a[:4]) \
            or not isinstance(a[4], dict) or not isinstance(a[5], dict):
        raise Malformed("node info")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in a[4].items()):
        raise Malformed("node meta")
    return NodeInfo(name=a[0], node_id=a[1], address=a[2], datacenter=a[3], meta=a[4],
                    tagged_addresses=a[5])


_DEC: dict[ItemType, Callable[[Any], Any]] = {
    ItemType.SERVICE: dec_service, ItemType.CHECK: dec_check, ItemType.NODE: dec_info}


# --- per-node knowledge ------------------------------------------------------------------------

@dataclass(slots=True)
class Knowledge:
    """What this agent knows of one remote node's record (versions only; data is in the catalog)."""

    complete: int = 0
    items: dict[tuple[str, str], int] = field(default_factory=dict)
    tombs: dict[tuple[str, str], int] = field(default_factory=dict)

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
        return max([self.complete, *self.items.values(), *self.tombs.values()])

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
                 full_max_bytes: int = FULL_MAX_BYTES) -> None:
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
            "full_bytes_sent": 0, "full_bytes_received": 0,
        }
        self.dropped: dict[str, int] = {}
        self._warned: set[str] = set()
        self._full_cache: tuple[tuple[int, int], bytes] | None = None
        self._digest_cache: tuple[tuple[int, int], bytes] | None = None
        self._reply: bytes | None = None
        """The answer to the digest merged just now; consumed by the next local_app_state."""
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
        """LocalState changed: broadcast one delta per change (newest per item wins)."""
        node = self.local.info.name
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
            self.broadcast(_key(node, kind, item), msg)

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
        """Every record this agent knows (``MSG_FULL``), cached per catalog index (at 10,000
        instances an encode takes ~0.15 s of loop time)."""
        key = (self.catalog.index, self.local.version)
        if self._full_cache is None or self._full_cache[0] != key:
            self._full_cache = (key, self._pack([MSG_FULL, self._records(None)]))
        return self._full_cache[1]

    def _digest(self) -> list[list[Any]]:
        """[name, complete, newest version - complete] for this agent and every node it knows
        (the difference is nearly always 0: one byte instead of another 8-byte version)."""
        out: list[list[Any]] = [[self.local.info.name, self.local.version, 0]]
        for key, k in self.known.items():
            info = self.catalog.node_info(key)
            if info is not None:
                out.append([info.name, k.complete, k.max_version() - k.complete])
        return out

    def _answer(self, digest: Mapping[str, tuple[int, int]]) -> bytes:
        """The records this agent knows better than ``digest`` (lowercase name -> versions)."""
        wanted: set[str] = set()
        me = self.local.info.name.lower()
        theirs = digest.get(me)
        if theirs is None or theirs[1] < self.local.version:
            wanted.add(me)
        for key, k in self.known.items():
            theirs = digest.get(key)
            if theirs is None or k.complete > theirs[0] or k.max_version() > theirs[1]:
                wanted.add(key)
        return self._pack([MSG_FULL, self._records(wanted)])

    @staticmethod
    def _pack(msg: list[Any]) -> bytes:
        raw: bytes = msgpack.packb(msg)
        if len(raw) > _COMPRESS_OVER:
            return b"\x01" + zlib.compress(raw, 6)
        return b"\x00" + raw

    def _records(self, names: set[str] | None) -> list[Any]:
        """Node records (own and remote) whose lowercase names are in ``names`` (None: all)."""
        records: list[Any] = []
        loc = self.local
        if names is None or loc.info.name.lower() in names:
            records.append([
                loc.info.name, loc.version, [loc.item_versions.get(("n", ""), loc.version),
                                             enc_info(loc.info)],
                [[loc.item_versions.get(("s", sid), loc.version), enc_service(s.record)]
                 for sid, s in loc.services.items()],
                [[loc.item_versions.get(("c", cid), loc.version), enc_check(rec)]
                 for cid in loc.checks if (rec := loc.check_record(cid)) is not None],
                [],
            ])
        for key, k in self.known.items():
            if names is not None and key not in names:
                continue
            info = self.catalog.node_info(key)
            if info is None:
                continue
            services = self.catalog.node_services(key)
            checks = self.catalog.node_check_records(key)
            records.append([
                info.name, k.complete, [k.items.get(("n", ""), 0), enc_info(info)],
                [[k.items.get(("s", sid), 0), enc_service(r)] for sid, r in services.items()],
                [[k.items.get(("c", cid), 0), enc_check(r)] for cid, r in checks.items()],
                [[kk[0], kk[1], v] for kk, v in k.tombs.items()],
            ])
        return records

    # --- incoming -------------------------------------------------------------------------------

    def notify_app_message(self, buf: bytes) -> None:
        """A delta from a peer. Never raises."""
        self.counters["deltas_received"] += 1
        try:
            msg = msgpack.unpackb(buf, strict_map_key=True)
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
        except Exception as e:  # noqa: BLE001 - msgpack raises several types; none may escape
            self._drop("bad_delta", repr(e)[:200])
            return
        try:
            applied = self._apply_delta(node, kind, item, v, prev, rec)
        except Exception as e:  # noqa: BLE001 - never out of a receive path
            self._drop("delta_apply_error", repr(e)[:200])
            return
        if applied:
            self.counters["deltas_applied"] += 1
            self.counters["deltas_rebroadcast"] += 1
            self.broadcast(_key(node, kind, item), buf)
        else:
            self.counters["deltas_stale"] += 1

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
        (see the module docstring). Never raises."""
        self.counters["full_bytes_received"] += len(buf)
        self._reply = None
        try:
            digest, records = self._decode_state(buf)
        except Exception as e:  # noqa: BLE001 - msgpack and zlib raise several types; none may escape
            self._drop("bad_full_state", repr(e)[:200])
            return
        if digest is not None:
            self._reply = self._answer(digest)
        try:
            with self.catalog.batch():
                for r in records:
                    self._merge_record(*r)
        except Exception as e:  # noqa: BLE001
            self._drop("full_apply_error", repr(e)[:200])
            return
        self.counters["full_merged"] += 1

    def _decode_state(self, buf: bytes) -> tuple[dict[str, tuple[int, int]] | None,
                                                  list[RawRecord]]:
        """Check the framing and the versions; records stay raw until one wins a merge (a
        peer mostly sends what we already have, and decoding 10,000 records costs ~0.4 s).
        Returns the digest (for ``MSG_DIGEST``; None for ``MSG_FULL``) and the records."""
        if not buf:
            raise Malformed("empty")
        if buf[0] == 1:
            d = zlib.decompressobj()
            raw = d.decompress(buf[1:], self.full_max_bytes)
            if d.unconsumed_tail:
                raise Malformed("full state over the size cap")
        elif buf[0] == 0:
            raw = buf[1:]
        else:
            raise Malformed("unknown full-state encoding")
        msg = msgpack.unpackb(raw, strict_map_key=True)
        digest: dict[str, tuple[int, int]] | None = None
        if isinstance(msg, list) and len(msg) == 3 and msg[0] == MSG_DIGEST \
                and isinstance(msg[1], list) and isinstance(msg[2], list):
            digest = {}
            for d in msg[1]:
                if not (isinstance(d, list) and len(d) == 3 and isinstance(d[0], str)
                        and isinstance(d[1], int) and isinstance(d[2], int) and d[2] >= 0):
                    raise Malformed("digest entry")
                digest[d[0].lower()] = (d[1], d[1] + d[2])
            raw_records = msg[2]
        elif isinstance(msg, list) and len(msg) == 2 and msg[0] == MSG_FULL \
                and isinstance(msg[1], list):
            raw_records = msg[1]
        else:
            raise Malformed("not a full state or digest")
        out: list[RawRecord] = []
        for r in raw_records:
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
            out.append((name, complete, (info[0], info[1]), services, checks, tomb))
        return digest, out

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
        theirs = Knowledge(complete=complete)
        for sid, (v, _) in services.items():
            theirs.items[("s", sid)] = v
        for cid, (v, _) in checks.items():
            theirs.items[("c", cid)] = v
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

    # --- membership -----------------------------------------------------------------------------

    def on_member_status(self, name: str, status: str | None, *, joined: bool = False) -> None:
        """Gossip's status of the remote member ``name`` changed (None: it was reaped; ``joined``:
        it (re)joined). The registry service decodes gossip's events; this never raises."""
        try:
            if status is None or status == "left":
                self.forget(name)
                return
            if joined:
                # back after a leave: its record may come again (it restamps it on rejoin)
                self.departed.pop(name.lower(), None)
            self.catalog.set_status(name, status)
        except Exception:
            log.exception("member status handling failed node=%s status=%s", name, status)

    def forget(self, name: str) -> None:
        """The node left or was reaped: its records disappear everywhere."""
        key = name.lower()
        k = self.known.pop(key, None)
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


def _key(node: str, kind: ChangeKind, item: str) -> str:
    """The broadcast queue key: a put and a delete of one item replace each other."""
    return f"{node}\x00{kind.item_type}\x00{item}"

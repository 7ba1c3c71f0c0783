"""The Serf layer: a sans-I/O state machine on top of the memberlist core (Serf 0.9.4 semantics).

Theory of operation
-------------------
memberlist tells us which nodes are alive or dead; Serf turns that into a member list with four
statuses and adds cluster-wide messages ordered by three Lamport clocks
(``reference/memberlist-wire.md`` §7):

* **member clock** orders join and leave *intents*. Each member has a ``status_ltime``; an intent
  is applied only when its LTime is newer. Intents for names memberlist has not reported yet are
  kept (newest per name) for ``recent_intent_timeout`` and applied when the node appears.
* **event clock** orders user events. A 512-slot ring indexed by ``LTime % 512`` de-duplicates
  (LTime, Name, Payload); events older than ``clock - 512`` or than ``event_min_time`` (set when
  we join without replay) are dropped. New events are delivered and re-gossiped.
* **query clock** orders queries, de-duplicated by (LTime, ID) in a second ring. Queries are
  re-gossiped even when their filters exclude us; acks and responses go straight back by UDP,
  and through ``relay_factor`` random Rumor/Serf peers (PMax >= 5) when asked.

Member status transitions (§7.9), with the method that makes each one::

    memberlist join ............ none/failed/left/leaving/alive -> alive   (MemberJoined)
                                                                  node_joined
    leave intent (newer) ....... alive   -> leaving                handle_leave_intent
    memberlist dead/left ....... leaving -> left    (MemberLeft)   node_left
    memberlist dead/left ....... alive   -> failed  (MemberFailed) node_left
    leave intent (force-leave) . failed  -> left    (MemberLeft)   handle_leave_intent
    join intent (newer) ........ leaving -> alive                  handle_join_intent
    reap (timeouts) / prune .... failed/left -> removed            _reap, handle_leave_intent,
                                             (MemberReaped)        node_left (via _erase)

The layer never touches a socket or a clock. It is one half of :class:`gossip.core.GossipCore`:
memberlist's callbacks reach it through :class:`SerfDelegate`, each with the ``now`` of the call
that caused it; the core calls :meth:`handle_timer` when :meth:`next_deadline` is due (its one
timer covers both layers) and moves on what accumulates here after every entry point:
:meth:`next_event`, :meth:`packets_to_send` (direct UDP user messages: query acks, responses and
relays) and :meth:`next_action` (memberlist work: reconnect joins). Broadcasts are pulled by
memberlist through :meth:`get_broadcasts`.
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import field
from typing import Any

from . import codec
from .broadcast import Broadcast, TransmitLimitedQueue
from .dclass import dataclass
from .errors import GossipError, MalformedPacket
from .events import (
    GossipEvent,
    Member,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberReaped,
    MemberUpdated,
    QueryReceived,
    UserEventReceived,
)
from .serf_config import RUMOR_TAG, SerfConfig
from .serf_messages import (
    QUERY_FLAG_ACK,
    QUERY_FLAG_NO_BROADCAST,
    AppMessage,
    ConflictResponse,
    Coordinate,
    JoinIntent,
    LeaveIntent,
    NodeFilter,
    Query,
    QueryFilter,
    QueryResponse,
    Relay,
    SerfPushPull,
    TagFilter,
    UserEvent,
    UserEventData,
    UserEvents,
)
from .serf_messages import Member as WireMember
from .serf_messages import MemberStatus as WireStatus
from .vivaldi import VivaldiClient

log = logging.getLogger(__name__)

INTERNAL_QUERY_PREFIX = "_serf_"
ALIVE, LEAVING, LEFT, FAILED = "alive", "leaving", "left", "failed"
_WIRE_STATUS = {ALIVE: WireStatus.ALIVE, LEAVING: WireStatus.LEAVING, LEFT: WireStatus.LEFT,
                FAILED: WireStatus.FAILED}


class SerfError(GossipError, ValueError):
    """A local Serf operation was refused (too large, not running...)."""


def encode_tags(tags: Mapping[str, str]) -> bytes:
    """Serf protocol >= 3 tag blob: ``0xff + msgpack(map)``."""
    return codec.encode_tags(dict(tags))


def decode_tags(meta: bytes) -> dict[str, str]:
    """Tags from a node's Meta; legacy Meta (no 0xff) is ``{"role": meta}`` (§7.8)."""
    try:
        return dict(codec.decode_tags(meta))
    except MalformedPacket:
        return {}


class LamportClock:
    """A Lamport clock as Serf keeps it; starts at 1 (one increment on creation)."""

    __slots__ = ("_t",)

    def __init__(self, start: int = 1) -> None:
        self._t = start

    def time(self) -> int:
        return self._t

    def increment(self) -> int:
        self._t += 1
        return self._t

    def witness(self, t: int) -> None:
        """Move past ``t``: if t >= now, now = t + 1."""
        if t >= self._t:
            self._t = t + 1



# -- members, intents, queries ---------------------------------------------------------------


@dataclass
class _MemberState:
    name: str
    addr: str
    port: int
    tags: dict[str, str]
    vsn: tuple[int, ...]
    status: str = ALIVE
    status_ltime: int = 0
    leave_time: float = 0.0
    prune_when_left: bool = False

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        object.__setattr__(self, "_snap", None)    # any change: the next snapshot is new

    def snapshot(self) -> Member:
        """This member as a frozen :class:`Member`: the same object until a field changes, so
        readers that poll (``/v1/agent/members``) can tell what changed by identity. ``tags``
        is only ever replaced, never changed in place."""
        snap = self.__dict__.get("_snap")
        if snap is None:
            v = tuple(self.vsn) + (0,) * (6 - len(self.vsn))
            snap = Member(
                name=self.name, addr=self.addr, port=self.port, tags=dict(self.tags),
                status=self.status, protocol_min=v[0], protocol_max=v[1], protocol_cur=v[2],
                delegate_min=v[3], delegate_max=v[4], delegate_cur=v[5],
            )
            object.__setattr__(self, "_snap", snap)
        return snap


@dataclass
class _Intent:
    kind: str  # "join" | "leave"
    ltime: int
    at: float


@dataclass
class _EventSlot:
    ltime: int
    events: list[tuple[str, bytes]]


@dataclass
class _QuerySlot:
    ltime: int
    ids: set[int]


@dataclass
class PendingQuery:
    """A query we sent, collecting acks and responses until ``deadline`` (driver awaits it)."""

    name: str
    ltime: int
    id: int
    deadline: float
    ack_requested: bool
    acks: list[str] = field(default_factory=list)
    responses: dict[str, bytes] = field(default_factory=dict)
    closed: bool = False
    max_entries: int = 4096
    on_progress: Callable[[PendingQuery], None] | None = None

    def finished(self, now: float) -> bool:
        return self.closed or now >= self.deadline


@dataclass(frozen=True, slots=True)
class ReconnectRequested:
    """Action for the driver: try a memberlist join (push/pull) with this failed member."""

    name: str
    addr: str
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryParams:
    """How to send a query (Serf's QueryParam)."""

    filter_nodes: tuple[str, ...] = ()
    filter_tags: Mapping[str, str] = field(default_factory=dict)
    request_ack: bool = False
    relay_factor: int = 0
    timeout: float = 0.0
    """Seconds; 0 means Serf's default (gossip_interval × mult × ceil(log10(N+1)))."""


InternalQueryHandler = Callable[[Query], "bytes | None"]


# -- the core --------------------------------------------------------------------------------


class Serf:
    """Sans-I/O Serf layer (see the module docstring).

    ``local_addr``/``local_port`` are where query answers come back to us (the memberlist
    advertised address); set them with :meth:`set_local_address` once the socket is bound.
    ``internal_handlers`` maps internal query names (without ``_serf_``) to functions returning
    a response payload (or None to only ack); the key manager installs the key handlers.
    """

    def __init__(self, config: SerfConfig, *, rng: random.Random | None = None,
                 gossip_interval: float = 0.2, retransmit_mult: int = 4, now: float = 0.0) -> None:
        self.config = config
        self.rng = rng or random.Random()
        self.vivaldi = VivaldiClient(rng=self.rng)
        """Our network coordinate, moved by every direct probe's RTT (Serf's coordinate client)."""
        self.coordinates: dict[str, Coordinate] = {}
        """The last coordinate each peer sent in an ack (Serf's coordinate cache)."""
        self.gossip_interval = gossip_interval
        self.retransmit_mult = retransmit_mult
        self.clock = LamportClock()
        self.event_clock = LamportClock()
        self.query_clock = LamportClock()
        self.event_min_time = 0
        self.query_min_time = 0
        self.join_ignore_events = False
        """Set by the driver while it joins without replay: push/pull answers then raise
        event_min_time to the peer's event clock so old events are not delivered (§7.4)."""
        self.state = "alive"  # alive | leaving | left | shutdown
        self.tags = config.effective_tags()
        self.local_addr = ""
        self.local_port = 0
        self._members: dict[str, _MemberState] = {}
        self._state_gen = 0
        """Bumped by every method that may change what :meth:`local_state` sends (members'
        status and status LTimes, the member set, the event ring); the clocks are keyed
        apart."""
        self._local_cache: tuple[tuple[int, int, int, int, bytes | None], bytes] | None = None
        """The last :meth:`local_state`: (generation, clocks, application state), bytes."""
        self._rumor_peers: int | None = None
        """Cached count of members carrying the Rumor tag (None: count again)."""
        self._intents: dict[str, _Intent] = {}
        self._event_ring: list[_EventSlot | None] = [None] * config.event_buffer
        self._query_ring: list[_QuerySlot | None] = [None] * config.query_buffer
        self._pending: dict[int, PendingQuery] = {}  # by ltime (Serf keys query responses by LTime)
        n_members: Callable[[], int] = lambda: max(1, len(self._members))
        self.intent_queue = TransmitLimitedQueue(retransmit_mult, n_members)
        self.event_queue = TransmitLimitedQueue(retransmit_mult, n_members)
        self.query_queue = TransmitLimitedQueue(retransmit_mult, n_members)
        self.app_queue = TransmitLimitedQueue(retransmit_mult, self._num_rumor_peers)
        self._events: deque[GossipEvent] = deque()
        self._packets: deque[tuple[bytes, tuple[str, int]]] = deque()
        self._actions: deque[ReconnectRequested] = deque()
        self._recent_events: deque[UserEventReceived] = deque(maxlen=config.recent_events_max)
        self.internal_handlers: dict[str, InternalQueryHandler] = {
            "ping": lambda q: None,
            "conflict": self._answer_conflict,
        }
        self.app_delegate_message: Callable[[bytes], None] | None = None
        self.app_delegate_state: Callable[[bool], bytes] | None = None
        self.app_delegate_merge: Callable[[bytes, bool], None] | None = None
        self.counters: Counter[str] = Counter()
        self._next_reap = now + config.reap_interval
        self._next_reconnect = now + config.reconnect_interval
        self._next_queue_check = now + config.queue_check_interval
        self._warned: set[str] = set()

    # -- small helpers -------------------------------------------------------------------------
    def _drop(self, reason: str, detail: str = "") -> None:
        self.counters[f"serf.dropped.{reason}"] += 1
        if reason not in self._warned:
            self._warned.add(reason)
            log.warning("serf dropped message reason=%s %s", reason, detail)
        else:
            log.debug("serf dropped message reason=%s %s", reason, detail)

    def reset_timers(self, now: float) -> None:
        """Start the reap and reconnect periods from ``now`` (when the driver starts)."""
        self._next_reap = now + self.config.reap_interval
        self._next_reconnect = now + self.config.reconnect_interval
        self._next_queue_check = now + self.config.queue_check_interval

    def set_local_address(self, addr: str, port: int) -> None:
        self.local_addr, self.local_port = addr, port

    def num_members(self) -> int:
        return len(self._members)

    def _num_rumor_peers(self) -> int:
        # asked once per outgoing packet, so counted once per membership change
        n = self._rumor_peers
        if n is None:
            n = self._rumor_peers = max(
                1, sum(1 for m in self._members.values() if RUMOR_TAG in m.tags))
        return n

    def _queue(self, q: TransmitLimitedQueue, raw: bytes, name: str | None = None,
               on_done: Callable[[bool], None] | None = None, rumor_only: bool = False) -> None:
        q.queue(Broadcast(raw, name, rumor_only=rumor_only, on_done=on_done))
        dropped = q.prune(self.config.max_queue_depth)
        if dropped:
            self.counters["serf.broadcasts.pruned"] += dropped

    def _emit(self, ev: GossipEvent) -> None:
        self._events.append(ev)
        if isinstance(ev, UserEventReceived):
            self._recent_events.append(ev)

    # -- outputs -------------------------------------------------------------------------------
    def next_event(self) -> GossipEvent | None:
        return self._events.popleft() if self._events else None

    def packets_to_send(self) -> list[tuple[bytes, tuple[str, int]]]:
        """Direct user-message bodies (no 0x08 byte) and their (ip, port) destinations."""
        out = list(self._packets)
        self._packets.clear()
        return out

    def next_action(self) -> ReconnectRequested | None:
        return self._actions.popleft() if self._actions else None

    def next_deadline(self) -> float:
        deadlines = [self._next_reap, self._next_reconnect, self._next_queue_check]
        deadlines.extend(q.deadline for q in self._pending.values() if not q.closed)
        return min(deadlines)

    def recent_events(self) -> list[UserEventReceived]:
        return list(self._recent_events)

    # -- members ---------------------------------------------------------------------------------
    def members(self) -> list[Member]:
        return [m.snapshot() for m in sorted(self._members.values(), key=lambda m: m.name)]

    def member(self, name: str) -> Member | None:
        m = self._members.get(name)
        return m.snapshot() if m else None

    def local_member(self) -> Member:
        m = self._members.get(self.config.node_name)
        if m is not None:
            return m.snapshot()
        return Member(name=self.config.node_name, addr=self.local_addr, port=self.local_port,
                      tags=dict(self.tags), status=self.state if self.state != "shutdown" else LEFT)

    def members_with_tag(self, tag: str) -> list[Member]:
        """The members that carry ``tag``, by name (a :class:`Member` built for those only)."""
        return [m.snapshot() for m in sorted(self._members.values(), key=lambda m: m.name)
                if tag in m.tags]

    def status_counts(self) -> dict[str, int]:
        """Members by status, without building a :class:`Member` for each (an agent's metrics
        and ``/v1/agent/self`` ask for it on every request; at 5,000 members the snapshots
        cost ~20 ms)."""
        out: dict[str, int] = {}
        for m in self._members.values():
            out[m.status] = out.get(m.status, 0) + 1
        return out

    def alive_count(self) -> int:
        return sum(1 for m in self._members.values() if m.status == ALIVE)

    def is_rumor_peer(self, name: str) -> bool:
        m = self._members.get(name)
        return bool(m and RUMOR_TAG in m.tags)

    def status_ltime(self, name: str) -> int | None:
        m = self._members.get(name)
        return m.status_ltime if m else None

    def node_meta(self, limit: int) -> bytes:
        meta = encode_tags(self.tags)
        if len(meta) > limit:
            raise SerfError(f"encoded tags are {len(meta)} bytes, over the {limit}-byte limit")
        return meta

    def set_tags(self, tags: Mapping[str, str]) -> bytes:
        """Replace our tags (the reserved Rumor tag is kept); returns the new Meta for memberlist."""
        new = dict(tags)
        if self.config.identify_rumor_peers:
            new[RUMOR_TAG] = self.config.effective_tags()[RUMOR_TAG]
        meta = encode_tags(new)
        if len(meta) > 512:
            raise SerfError(f"encoded tags are {len(meta)} bytes, over the 512-byte limit")
        self.tags = new
        return meta

    # memberlist EventDelegate ------------------------------------------------------------------
    def node_joined(self, name: str, addr: str, port: int, meta: bytes, vsn: Sequence[int],
                    now: float) -> None:
        """memberlist NotifyJoin: the node became alive (new, or back from dead/left)."""
        self._state_gen += 1  # members' status/ltimes may change: local_state rebuilds
        tags = decode_tags(meta)
        m = self._members.get(name)
        if m is None:
            m = _MemberState(name, addr, port, tags, tuple(vsn))
            intent = self._intents.pop(name, None)
            if intent is not None:
                m.status_ltime = intent.ltime
                if intent.kind == "leave":
                    m.status = LEAVING
            self._members[name] = m
        else:
            if m.status == FAILED and now - m.leave_time < self.config.flap_timeout:
                self.counters["serf.member.flap"] += 1
            m.status = ALIVE
            m.leave_time = 0.0
            m.prune_when_left = False
            m.addr, m.port, m.tags, m.vsn = addr, port, tags, tuple(vsn)
        self._rumor_peers = None
        self.counters["serf.member.join"] += 1
        self._emit(MemberJoined(m.snapshot()))

    def node_left(self, name: str, now: float) -> None:
        """memberlist NotifyLeave: the node was declared dead, or left (§7.9)."""
        self._state_gen += 1  # members' status/ltimes may change: local_state rebuilds
        m = self._members.get(name)
        if m is None:
            return
        if m.status == LEAVING:
            m.status = LEFT
            m.leave_time = now
            self.counters["serf.member.left"] += 1
            if m.prune_when_left:
                self._erase(m)
                return
            self._emit(MemberLeft(m.snapshot()))
        elif m.status == ALIVE:
            m.status = FAILED
            m.leave_time = now
            self.counters["serf.member.failed"] += 1
            self._emit(MemberFailed(m.snapshot()))

    def node_updated(self, name: str, addr: str, port: int, meta: bytes, vsn: Sequence[int],
                     now: float) -> None:
        """memberlist NotifyUpdate: Meta, address or versions of an alive node changed."""
        m = self._members.get(name)
        if m is None:
            return
        m.addr, m.port, m.tags, m.vsn = addr, port, decode_tags(meta), tuple(vsn)
        self._rumor_peers = None
        self.counters["serf.member.update"] += 1
        self._emit(MemberUpdated(m.snapshot()))

    def _erase(self, m: _MemberState) -> None:
        self._state_gen += 1  # members' status/ltimes may change: local_state rebuilds
        self._members.pop(m.name, None)
        self._rumor_peers = None
        self.counters["serf.member.reap"] += 1
        self._emit(MemberReaped(m.snapshot()))

    # -- intents -------------------------------------------------------------------------------
    def _upsert_intent(self, name: str, kind: str, ltime: int, now: float) -> bool:
        cur = self._intents.get(name)
        if cur is None or ltime > cur.ltime:
            if cur is None and len(self._intents) >= self.config.max_intent_buffer:
                self._drop("intent_buffer_full", f"node={name}")
                return False
            self._intents[name] = _Intent(kind, ltime, now)
            return True
        return False

    def handle_join_intent(self, msg: JoinIntent, now: float) -> bool:
        """Apply a join intent; returns True when it is new (to be re-gossiped)."""
        self._state_gen += 1  # members' status/ltimes may change: local_state rebuilds
        self.clock.witness(msg.ltime)
        m = self._members.get(msg.node)
        if m is None:
            return self._upsert_intent(msg.node, "join", msg.ltime, now)
        if msg.ltime <= m.status_ltime:
            return False
        m.status_ltime = msg.ltime
        if m.status == LEAVING:
            m.status = ALIVE
        return True

    def handle_leave_intent(self, msg: LeaveIntent, now: float) -> bool:
        """Apply a leave intent; returns True when it is new (to be re-gossiped)."""
        self._state_gen += 1  # members' status/ltimes may change: local_state rebuilds
        self.clock.witness(msg.ltime)
        m = self._members.get(msg.node)
        if m is None:
            return self._upsert_intent(msg.node, "leave", msg.ltime, now)
        if msg.ltime <= m.status_ltime:
            return False
        if msg.node == self.config.node_name and self.state == "alive":
            # Someone says we are leaving while we are not: refute with a fresh join intent.
            self.counters["serf.refute_leave"] += 1
            self.broadcast_join_intent(self.clock.time(), now)
            return False
        if m.status == ALIVE:
            m.status = LEAVING
            m.status_ltime = msg.ltime
            if msg.prune:
                m.prune_when_left = True
            return True
        if m.status == FAILED:
            m.status = LEFT
            m.status_ltime = msg.ltime
            m.leave_time = m.leave_time or now
            self._emit(MemberLeft(m.snapshot()))
            if msg.prune:
                self._erase(m)
            return True
        # leaving or left: nothing changes (Serf keeps the statusLTime), except a prune
        if msg.prune:
            if m.status == LEFT:
                self._erase(m)
            else:
                m.prune_when_left = True
        return True

    def broadcast_join_intent(self, ltime: int, now: float) -> None:
        """Serf's broadcastJoin: tell everyone we (re)joined at member-clock ``ltime``."""
        msg = JoinIntent(ltime=ltime, node=self.config.node_name)
        self.clock.witness(ltime)
        self.handle_join_intent(msg, now)
        self._queue(self.intent_queue, codec.encode_serf(msg), f"intent:{msg.node}")

    def start_leave(self, now: float, on_sent: Callable[[bool], None] | None = None) -> bool:
        """Begin a graceful leave: gossip our leave intent. Returns False if nobody can hear it.

        ``on_sent`` runs once the intent was transmitted enough times (or replaced); the driver
        waits for it at most ``broadcast_timeout`` before leaving memberlist.
        """
        self.state = "leaving"
        msg = LeaveIntent(ltime=self.clock.time(), node=self.config.node_name, prune=False)
        self.clock.increment()
        self.handle_leave_intent(msg, now)
        peers = [m for m in self._members.values() if m.status == ALIVE and m.name != self.config.node_name]
        if not peers:
            return False
        raw = codec.encode_serf(msg)
        self._queue(self.intent_queue, raw, f"intent:{msg.node}", on_sent)
        # Besides gossip, tell a bounded number of live members directly: with few live peers
        # and many recently dead ones, the few gossip transmissions may all go to the dead, and
        # the peers would then see us 'failed' instead of 'left'. Serf accepts the intent however
        # it arrives, and applies it once (statusLTime).
        self.rng.shuffle(peers)
        for m in peers[: self.config.leave_notify_max]:
            self._packets.append((raw, (m.addr, m.port)))
        return True

    def finish_leave(self) -> None:
        self.state = "left"

    def force_leave(self, node: str, now: float, prune: bool = False) -> bool:
        """Serf's RemoveFailedNode: gossip a leave intent for a failed (or left) member."""
        m = self._members.get(node)
        if m is None:
            return False
        msg = LeaveIntent(ltime=self.clock.time(), node=node, prune=prune)
        self.clock.increment()
        if self.handle_leave_intent(msg, now):
            self._queue(self.intent_queue, codec.encode_serf(msg), f"intent:{node}")
        return True

    # -- user events -----------------------------------------------------------------------------
    def user_event(self, name: str, payload: bytes, coalesce: bool, now: float) -> UserEventReceived:
        """Fire a user event: size-checked like Serf, delivered locally and gossiped."""
        limit = self.config.user_event_size_limit
        if len(name) + len(payload) > limit:
            raise SerfError(f"user event exceeds the size limit: {len(name) + len(payload)} > {limit} bytes")
        msg = UserEvent(ltime=self.event_clock.time(), name=name, payload=payload or None, cc=coalesce)
        raw = codec.encode_serf(msg)
        if len(raw) > limit:
            raise SerfError(f"encoded user event exceeds the size limit: {len(raw)} > {limit} bytes")
        self.event_clock.increment()
        self.handle_user_event(msg, now)
        self._queue(self.event_queue, raw)
        self.counters["serf.events.sent"] += 1
        return UserEventReceived(name=name, payload=payload, ltime=msg.ltime, coalesce=coalesce,
                                 origin=self.config.node_name)

    def handle_user_event(self, msg: UserEvent, now: float) -> bool:
        """Apply a user event; True when it is new (delivered, and to be re-gossiped)."""
        self._state_gen += 1  # the event ring may change: local_state rebuilds
        self.event_clock.witness(msg.ltime)
        if msg.ltime < self.event_min_time:
            self.counters["serf.events.before_join"] += 1
            return False
        cur = self.event_clock.time()
        size = len(self._event_ring)
        if cur > size and msg.ltime < cur - size:
            self.counters["serf.events.too_old"] += 1
            return False
        idx = msg.ltime % size
        slot = self._event_ring[idx]
        item = (msg.name, msg.payload or b"")
        if slot is not None and slot.ltime == msg.ltime:
            if item in slot.events:
                self.counters["serf.events.duplicate"] += 1
                return False
        else:
            slot = _EventSlot(msg.ltime, [])
            self._event_ring[idx] = slot
        slot.events.append(item)
        self.counters["serf.events.received"] += 1
        self._emit(UserEventReceived(name=msg.name, payload=item[1], ltime=msg.ltime, coalesce=msg.cc))
        return True

    # -- queries ---------------------------------------------------------------------------------
    def default_query_timeout(self) -> float:
        n = max(1, len(self._members))
        return self.gossip_interval * self.config.query_timeout_mult * max(1, math.ceil(math.log10(n + 1)))

    def query(self, name: str, payload: bytes, params: QueryParams, now: float) -> PendingQuery:
        """Send a query (also handled locally, as Serf does); returns its PendingQuery."""
        if not self.local_addr:
            raise SerfError("the local address is not known yet; start the transport first")
        filters: list[QueryFilter] = []
        if params.filter_nodes:
            filters.append(NodeFilter(nodes=tuple(params.filter_nodes)))
        for tag, expr in params.filter_tags.items():
            filters.append(TagFilter(tag=tag, expr=expr))
        timeout = params.timeout or self.default_query_timeout()
        flags = QUERY_FLAG_ACK if params.request_ack else 0
        q = Query(ltime=self.query_clock.time(), id=self.rng.getrandbits(32), addr=self.local_addr,
                  port=self.local_port, source_node=self.config.node_name, name=name,
                  payload=payload or None, filters=tuple(filters), flags=flags,
                  relay_factor=params.relay_factor, timeout=timeout)
        raw = codec.encode_serf(q)
        if len(raw) > self.config.query_size_limit:
            raise SerfError(f"query exceeds the size limit: {len(raw)} > {self.config.query_size_limit} bytes")
        pq = PendingQuery(name=name, ltime=q.ltime, id=q.id, deadline=now + timeout,
                          ack_requested=params.request_ack,
                          max_entries=self.config.max_responses_per_query)
        old = self._pending.pop(q.ltime, None)
        if old is not None:
            old.closed = True
        while len(self._pending) >= self.config.max_pending_queries:
            oldest = min(self._pending)
            self._pending.pop(oldest).closed = True
        self._pending[q.ltime] = pq
        self.handle_query(q, now)
        self._queue(self.query_queue, raw)
        self.counters["serf.queries.sent"] += 1
        return pq

    def _filters_match(self, filters: Iterable[QueryFilter]) -> bool:
        for f in filters:
            if isinstance(f, NodeFilter):
                if self.config.node_name not in f.nodes:
                    return False
            elif isinstance(f, TagFilter):
                value = self.tags.get(f.tag, "")
                try:
                    if re.search(f.expr, value) is None:
                        return False
                except re.error:
                    return False
            else:
                return False  # unknown filter: Serf does not process the query
        return True

    def handle_query(self, q: Query, now: float) -> bool:
        """Apply a query; True when it is new and should be re-gossiped."""
        self.query_clock.witness(q.ltime)
        if q.ltime < self.query_min_time:
            return False
        cur = self.query_clock.time()
        size = len(self._query_ring)
        if cur > size and q.ltime < cur - size:
            self.counters["serf.queries.too_old"] += 1
            return False
        idx = q.ltime % size
        slot = self._query_ring[idx]
        if slot is not None and slot.ltime == q.ltime:
            if q.id in slot.ids:
                self.counters["serf.queries.duplicate"] += 1
                return False
        else:
            slot = _QuerySlot(q.ltime, set())
            self._query_ring[idx] = slot
        slot.ids.add(q.id)
        rebroadcast = not (q.flags & QUERY_FLAG_NO_BROADCAST)
        if not self._filters_match(q.filters):
            self.counters["serf.queries.filtered"] += 1
            return rebroadcast
        self.counters["serf.queries.received"] += 1
        if q.flags & QUERY_FLAG_ACK:
            ack = QueryResponse(ltime=q.ltime, id=q.id, from_node=self.config.node_name,
                                flags=QUERY_FLAG_ACK)
            self._send_response(q, ack, now)
        if q.name.startswith(INTERNAL_QUERY_PREFIX):
            handler = self.internal_handlers.get(q.name[len(INTERNAL_QUERY_PREFIX):])
            if handler is None:
                self.counters["serf.queries.internal_unknown"] += 1
                return rebroadcast
            try:
                answer = handler(q)
            except Exception:  # a handler bug must not break the receive path
                log.exception("internal query handler failed name=%s", q.name)
                return rebroadcast
            if answer is not None:
                self._send_response(q, QueryResponse(ltime=q.ltime, id=q.id,
                                                     from_node=self.config.node_name,
                                                     payload=answer), now)
            return rebroadcast
        self._emit(QueryReceived(name=q.name, payload=q.payload or b"", ltime=q.ltime, id=q.id,
                                 source_node=q.source_node, addr=q.addr, port=q.port,
                                 deadline=now + q.timeout, relay_factor=q.relay_factor))
        return rebroadcast

    def respond(self, ev: QueryReceived, payload: bytes, now: float) -> None:
        """Answer a QueryReceived before its deadline (once; size-limited like Serf)."""
        if now > ev.deadline:
            raise SerfError("response is past the query's deadline")
        resp = QueryResponse(ltime=ev.ltime, id=ev.id, from_node=self.config.node_name,
                             payload=payload)
        q = Query(ltime=ev.ltime, id=ev.id, addr=ev.addr, port=ev.port,
                  source_node=ev.source_node, name=ev.name, relay_factor=ev.relay_factor)
        self._send_response(q, resp, now)

    def _send_response(self, q: Query, resp: QueryResponse, now: float) -> None:
        raw = codec.encode_serf(resp)
        if len(raw) > self.config.query_response_size_limit:
            self.counters["serf.queries.response_too_large"] += 1
            log.warning("query response too large name=%s size=%d", q.name, len(raw))
            return
        dest = (q.addr, q.port)
        if (q.addr, q.port) == (self.local_addr, self.local_port) or q.source_node == self.config.node_name:
            self.handle_query_response(resp, now)
        else:
            self._packets.append((raw, dest))
        if q.relay_factor > 0:
            self._relay(q, raw, dest)

    def _relay(self, q: Query, raw: bytes, dest: tuple[str, int]) -> None:
        cands = [m for m in self._members.values()
                 if m.status == ALIVE and m.name != self.config.node_name
                 and m.name != q.source_node and len(m.vsn) > 1 and m.vsn[1] >= 5]
        self.rng.shuffle(cands)
        for m in cands[: q.relay_factor]:
            relay = Relay(dest_addr=dest[0], dest_port=dest[1], dest_name=q.source_node, inner=raw)
            self._packets.append((codec.encode_serf(relay), (m.addr, m.port)))
            self.counters["serf.queries.relayed_out"] += 1

    def handle_query_response(self, resp: QueryResponse, now: float) -> None:
        pq = self._pending.get(resp.ltime)
        if pq is None or pq.id != resp.id or pq.finished(now):
            self.counters["serf.queries.response_unmatched"] += 1
            return
        if resp.flags & QUERY_FLAG_ACK:
            if not pq.ack_requested or resp.from_node in pq.acks or len(pq.acks) >= pq.max_entries:
                self.counters["serf.queries.duplicate_ack"] += 1
                return
            pq.acks.append(resp.from_node)
        else:
            if resp.from_node in pq.responses or len(pq.responses) >= pq.max_entries:
                self.counters["serf.queries.duplicate_response"] += 1
                return
            pq.responses[resp.from_node] = resp.payload or b""
        if pq.on_progress is not None:
            pq.on_progress(pq)

    def close_query(self, pq: PendingQuery) -> None:
        pq.closed = True
        if self._pending.get(pq.ltime) is pq:
            del self._pending[pq.ltime]

    def _answer_conflict(self, q: Query) -> bytes | None:
        name = (q.payload or b"").decode("utf-8", "replace")
        if name == self.config.node_name:
            return None
        m = self._members.get(name)
        if m is None:
            return None
        v = tuple(m.vsn) + (0,) * (6 - len(m.vsn))
        wm = WireMember(name=m.name, addr=m.addr, port=m.port, tags=dict(m.tags),
                        status=_WIRE_STATUS[m.status], protocol_min=v[0], protocol_max=v[1],
                        protocol_cur=v[2], delegate_min=v[3], delegate_max=v[4], delegate_cur=v[5])
        return codec.encode_serf(ConflictResponse(member=wm))

    # -- receive path ------------------------------------------------------------------------------
    def receive(self, buf: bytes, now: float) -> None:
        """A memberlist user message body (Serf type byte + msgpack). Never raises."""
        if not buf:
            self._drop("empty")
            return
        if buf[0] == 0x80:  # Rumor app message: raw payload after the type byte
            self.counters["serf.app.received"] += 1
            if self.app_delegate_message is not None:
                try:
                    self.app_delegate_message(bytes(buf[1:]))
                except Exception:
                    log.exception("app delegate failed on a message")
            return
        try:
            msg = codec.decode_serf(buf)
        except MalformedPacket as e:
            self._drop(e.reason, f"serf_type={buf[0]}")
            return
        except Exception as e:  # noqa: BLE001 -- receive path never raises; counted
            self._drop("decode_error", repr(e))
            return
        try:
            self._dispatch(msg, buf, now)
        except Exception:
            log.exception("serf failed to handle a message type=%s", type(msg).__name__)
            self.counters["serf.handler_errors"] += 1

    def _dispatch(self, msg: object, raw: bytes, now: float) -> None:
        if isinstance(msg, LeaveIntent):
            if self.handle_leave_intent(msg, now):
                self._queue(self.intent_queue, bytes(raw), f"intent:{msg.node}")
        elif isinstance(msg, JoinIntent):
            if self.handle_join_intent(msg, now):
                self._queue(self.intent_queue, bytes(raw), f"intent:{msg.node}")
        elif isinstance(msg, UserEvent):
            if self.handle_user_event(msg, now):
                self._queue(self.event_queue, bytes(raw))
        elif isinstance(msg, Query):
            if self.handle_query(msg, now):
                self._queue(self.query_queue, bytes(raw))
        elif isinstance(msg, QueryResponse):
            self.handle_query_response(msg, now)
        elif isinstance(msg, Relay):
            # Forward the inner message to its destination as a user message (§7.7).
            self.counters["serf.queries.relayed_in"] += 1
            self._packets.append((msg.inner, (msg.dest_addr, msg.dest_port)))
        elif isinstance(msg, AppMessage):
            if self.app_delegate_message is not None:
                self.app_delegate_message(msg.payload)
        else:
            self._drop("unexpected_type", type(msg).__name__)

    # -- broadcasts (memberlist Delegate.get_broadcasts) ----------------------------------------
    def get_broadcasts(self, overhead: int, limit: int, dest_is_rumor: bool = False,
                       below: int | None = None) -> list[bytes]:
        """Serf's GetBroadcasts: intents first, then queries, then events; then app messages
        when the destination is a Rumor peer. ``below``: only messages sent fewer times."""
        out = self.intent_queue.get_broadcasts(overhead, limit, below=below)
        used = sum(len(b) + overhead for b in out)
        for q in (self.query_queue, self.event_queue):
            more = q.get_broadcasts(overhead, limit - used, below=below)
            used += sum(len(b) + overhead for b in more)
            out.extend(more)
        if dest_is_rumor:
            out.extend(self.app_queue.get_broadcasts(overhead, limit - used, below=below))
        return out

    def broadcast_app(self, key: str, payload: bytes) -> None:
        """Queue an application message for Rumor peers; a newer one with the same key wins."""
        if len(payload) + 1 > self.config.app_message_max:
            raise SerfError(f"app message is {len(payload)} bytes; the limit is {self.config.app_message_max - 1}")
        self._queue(self.app_queue, b"\x80" + payload, f"app:{key}", rumor_only=True)
        self.counters["serf.app.queued"] += 1

    # -- push/pull (memberlist Delegate.local_state / merge_remote_state) ----------------------
    def local_state(self, join: bool) -> bytes:
        app: bytes | None = None
        if self.app_delegate_state is not None:
            try:
                app = self.app_delegate_state(join)
            except Exception:
                log.exception("app delegate failed to give its state")
        key = (self._state_gen, self.clock.time(), self.event_clock.time(),
               self.query_clock.time(), app)
        hit = self._local_cache
        if hit is not None and hit[0] == key:
            return hit[1]  # a join storm's seed answers many push/pulls with one view (issue 13)
        # Serf sends its whole 512-slot ring, empty slots as nil; the receiver skips those and
        # reads the rest by their LTime, not their position, so only the filled slots are sent
        # (a push/pull with no recent events is ~1 KiB shorter and ~1 ms cheaper each way).
        events = tuple(
            UserEvents(ltime=s.ltime, events=tuple(
                UserEventData(name=n, payload=p or None) for n, p in s.events))
            for s in self._event_ring if s is not None
        )
        pp = SerfPushPull(
            ltime=self.clock.time(),
            status_ltimes={m.name: m.status_ltime for m in self._members.values()},
            left_members=tuple(m.name for m in self._members.values() if m.status == LEFT),
            event_ltime=self.event_clock.time(),
            events=events,
            query_ltime=self.query_clock.time(),
            app_state=app,
        )
        out = codec.encode_serf(pp)
        self._local_cache = (key, out)
        return out

    def merge_remote_state(self, buf: bytes, join: bool, now: float) -> None:
        """Merge a peer's Serf push/pull state (§7.4). Never raises."""
        try:
            msg = codec.decode_serf(buf)
        except MalformedPacket as e:
            self._drop(e.reason, "push/pull state")
            return
        if not isinstance(msg, SerfPushPull):
            self._drop("bad_push_pull_type", type(msg).__name__)
            return
        self.merge_push_pull(msg, join, now)

    def merge_push_pull(self, pp: SerfPushPull, join: bool, now: float) -> None:
        if pp.ltime > 0:
            self.clock.witness(pp.ltime - 1)
        if pp.event_ltime > 0:
            self.event_clock.witness(pp.event_ltime - 1)
        if pp.query_ltime > 0:
            self.query_clock.witness(pp.query_ltime - 1)
        left = set(pp.left_members)
        for name in pp.left_members:
            self.handle_leave_intent(LeaveIntent(ltime=pp.status_ltimes.get(name, 0), node=name), now)
        members = self._members
        top = 0
        for name, lt in pp.status_ltimes.items():
            m = members.get(name)
            if m is not None and lt <= m.status_ltime:
                # not news (most of a big pool's times): handle_join_intent would only witness
                top = max(top, lt)
                continue
            if name not in left:
                self.handle_join_intent(JoinIntent(ltime=lt, node=name), now)
        if top:
            self.clock.witness(top)
        if join and self.join_ignore_events and pp.event_ltime > self.event_min_time:
            self.event_min_time = pp.event_ltime
        for slot in pp.events:
            if slot is None:
                continue
            for e in slot.events:
                self.handle_user_event(UserEvent(ltime=slot.ltime, name=e.name, payload=e.payload,
                                                 cc=False), now)
        if pp.app_state is not None and self.app_delegate_merge is not None:
            if len(pp.app_state) > self.config.app_state_max:
                self._drop("app_state_too_large", f"size={len(pp.app_state)}")
            else:
                try:
                    self.app_delegate_merge(pp.app_state, join)
                except Exception:
                    log.exception("app delegate failed to merge a state")

    # -- timers ------------------------------------------------------------------------------------
    def handle_timer(self, now: float) -> None:
        """Reap, reconnect, expire intents and queries whose time has come."""
        if now >= self._next_reap:
            self._next_reap = now + self.config.reap_interval
            self._reap(now)
        if now >= self._next_reconnect:
            self._next_reconnect = now + self.config.reconnect_interval
            self._reconnect()
        if now >= self._next_queue_check:
            self._next_queue_check = now + self.config.queue_check_interval
            self._check_queues()
        for lt, pq in list(self._pending.items()):
            if pq.finished(now):
                pq.closed = True
                del self._pending[lt]
                if pq.on_progress is not None:
                    pq.on_progress(pq)

    def _check_queues(self) -> None:
        """Serf's checkQueueDepth: warn about deep queues (they are pruned when queued)."""
        for name, q in (("intents", self.intent_queue), ("events", self.event_queue),
                        ("queries", self.query_queue), ("app", self.app_queue)):
            depth = len(q)
            self.counters[f"serf.queue.{name}"] = depth
            if depth > self.config.queue_depth_warning:
                log.warning("serf broadcast queue is deep queue=%s depth=%d", name, depth)

    def _reap(self, now: float) -> None:
        for m in list(self._members.values()):
            if m.status == FAILED and now - m.leave_time > self.config.reconnect_timeout:
                log.info("serf reaping failed member name=%s", m.name)
                self._erase(m)
            elif m.status == LEFT and now - m.leave_time > self.config.tombstone_timeout:
                log.info("serf reaping left member name=%s", m.name)
                self._erase(m)
        for name, it in list(self._intents.items()):
            if now - it.at > self.config.recent_intent_timeout:
                del self._intents[name]

    def _reconnect(self) -> None:
        failed = [m for m in self._members.values() if m.status == FAILED]
        if not failed:
            return
        n_alive = len(self._members) - len(failed) - sum(1 for m in self._members.values() if m.status == LEFT)
        prob = len(failed) / max(1, n_alive)
        if self.rng.random() > prob:
            return
        m = self.rng.choice(failed)
        self.counters["serf.reconnect.attempts"] += 1
        self._actions.append(ReconnectRequested(m.name, m.addr, m.port))

    # -- restore from a snapshot --------------------------------------------------------------------
    def restore_clocks(self, clock: int, event_clock: int, query_clock: int) -> None:
        """Continue the clocks of a previous run; events and queries up to them are not replayed."""
        self.clock.witness(clock - 1 if clock > 0 else 0)
        if event_clock > 0:
            self.event_clock.witness(event_clock - 1)
            self.event_min_time = event_clock + 1
        if query_clock > 0:
            self.query_clock.witness(query_clock - 1)
            self.query_min_time = query_clock + 1





class SerfDelegate:
    """Plugs a :class:`Serf` core into a memberlist core (Delegate, EventDelegate, PingDelegate,
    ConflictDelegate and PeerClassifier of :mod:`gossip.delegate`).

    Every callback carries the ``now`` of the memberlist call that caused it, which is handed
    on to Serf: the layer reads no clock. ``on_self_conflict(other_addr, other_port)`` is called
    when another node claims our name (the core then asks its driver to run Serf's
    ``_serf_conflict`` vote, see :func:`conflict_vote`).
    """

    def __init__(self, serf: Serf,
                 on_self_conflict: Callable[[str, int], None] | None = None) -> None:
        self.serf = serf
        self.on_self_conflict = on_self_conflict
        self.conflicts = 0

    # Delegate
    def node_meta(self, limit: int) -> bytes:
        return self.serf.node_meta(limit)

    def notify_user_msg(self, buf: bytes, now: float) -> None:
        self.serf.receive(buf, now)

    def pending_broadcasts(self) -> int:
        """Queued Serf broadcasts (lets memberlist skip an idle gossip round cheaply)."""
        s = self.serf
        return (len(s.intent_queue) + len(s.query_queue) + len(s.event_queue)
                + len(s.app_queue))

    def get_broadcasts(self, overhead: int, limit: int, dest: Any,
                       below: int | None = None) -> list[bytes]:
        rumor = dest is not None and self.serf.is_rumor_peer(dest.name)
        return self.serf.get_broadcasts(overhead, limit, dest_is_rumor=rumor, below=below)

    def fresh_broadcasts(self, overhead: int, limit: int, dest: Any, below: int) -> list[bytes]:
        """Like ``get_broadcasts``, only messages sent fewer than ``below`` times."""
        return self.get_broadcasts(overhead, limit, dest, below)

    def local_state(self, join: bool) -> bytes:
        return self.serf.local_state(join)

    def merge_remote_state(self, buf: bytes, join: bool, now: float) -> None:
        self.serf.merge_remote_state(buf, join, now)

    # EventDelegate
    def notify_join(self, node: Any, now: float) -> None:
        self.serf.node_joined(node.name, node.addr, node.port, node.meta, node.vsn, now)

    def notify_leave(self, node: Any, now: float) -> None:
        self.serf.node_left(node.name, now)
        self.serf.coordinates.pop(node.name, None)   # Serf forgets a gone node's coordinate
        self.serf.vivaldi.forget(node.name)

    def notify_update(self, node: Any, now: float) -> None:
        self.serf.node_updated(node.name, node.addr, node.port, node.meta, node.vsn, now)

    # PingDelegate: Vivaldi coordinates in acks, as Serf's pingDelegate (§7.10): our
    # coordinate goes in every ack we send; the coordinate in the ack of our own direct probe,
    # with its RTT, moves ours and is cached as that peer's.
    def ack_payload(self) -> bytes:
        return codec.encode_coordinate(self.serf.vivaldi.coord)

    def notify_ping_complete(self, node: Any, rtt: float, payload: bytes, now: float) -> None:
        if not payload:
            return   # a peer without coordinates (Serf with DisableCoordinates)
        try:
            other = codec.decode_coordinate(payload)
            self.serf.vivaldi.update(node.name, other, rtt)
        except (MalformedPacket, ValueError) as e:
            self.serf.counters["serf.coordinate.rejected"] += 1
            log.debug("coordinate refused from=%s error=%s", node.name, e)
            return
        self.serf.coordinates[node.name] = other
        self.serf.counters["serf.coordinate.updates"] += 1
        if rtt == 0.0:   # a clock coarser than the network (Serf counts these too)
            self.serf.counters["serf.coordinate.zero-rtt"] += 1

    # ConflictDelegate
    def notify_conflict(self, existing: Any, other: Any, now: float) -> None:
        self.conflicts += 1
        self.serf.counters["serf.name_conflicts"] += 1
        if existing.name != self.serf.config.node_name:
            log.warning("name conflict node=%s known=%s:%s other=%s:%s; use unique node names",
                        existing.name, existing.addr, existing.port, other.addr, other.port)
            return
        log.error("our node name %s is also claimed by %s:%s; names must be unique",
                  existing.name, other.addr, other.port)
        if self.on_self_conflict is not None and self.serf.config.enable_name_conflict_resolution:
            self.on_self_conflict(other.addr, other.port)

    # PeerClassifier
    def is_rumor_peer(self, node: Any) -> bool:
        return self.serf.is_rumor_peer(node.name)


def conflict_vote(responses: Mapping[str, bytes], addr: str, port: int) -> tuple[int, int]:
    """Serf's name-conflict vote: (answers pointing at ``addr:port``, valid answers).

    We keep our name when matching >= answers // 2 + 1; otherwise Serf shuts itself down."""
    matching = total = 0
    for payload in responses.values():
        try:
            msg = codec.decode_serf(payload)
        except MalformedPacket:
            continue
        if not isinstance(msg, ConflictResponse):
            continue
        total += 1
        if msg.member.addr == addr and msg.member.port == port:
            matching += 1
    return matching, total


__all__ = [
    "ALIVE",
    "FAILED",
    "INTERNAL_QUERY_PREFIX",
    "LEAVING",
    "LEFT",
    "LamportClock",
    "PendingQuery",
    "QueryParams",
    "ReconnectRequested",
    "Serf",
    "SerfDelegate",
    "SerfError",
    "conflict_vote",
    "decode_tags",
    "encode_tags",
]

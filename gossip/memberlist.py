"""The memberlist core: SWIM failure detection and gossip with Lifeguard, as a sans-I/O machine.

Theory of operation
-------------------
The core holds no socket and no clock (aioquic style). The driver feeds it what arrives and the
time, then collects what to send::

    core.receive_packet(data, addr, now)          # one UDP datagram
    core.handle_timer(now)                        # when now >= core.next_deadline()
    for data, addr in core.packets_to_send(): ... # UDP datagrams to send
    for req in core.streams_to_open(): ...        # outbound TCP exchanges (push/pull, TCP ping)
    core.stream_result(req.id, answer_bytes_or_None, error_or_None, now)
    answer = core.handle_stream(request_bytes, addr, now)   # one inbound TCP exchange
    for answer_id, data in core.answers_ready(): ...  # answers handle_stream deferred
    while (ev := core.next_event()) is not None: ...

Behaviour follows hashicorp/memberlist 0.2.2 (``state.go``, ``net.go``) as described in
``reference/memberlist-wire.md`` §4-§6:

* Probing (SWIM, Das et al. 2002): every ``probe_interval`` one node, round-robin over a shuffled
  list (self, dead and left skipped; dead nodes older than ``gossip_to_the_dead_time`` reaped when
  the list wraps). Direct ping; after ``probe_timeout`` indirect pings through
  ``indirect_checks`` random alive nodes (Nack requested from PMax >= 4) and, for PMax >= 3, a
  TCP ping; at the end of the (awareness-scaled) interval the node is suspected.
* Lifeguard (Dadgar et al. 2017): the awareness score scales the probe interval and ack
  deadline; suspicion timeouts start at ``max`` and shrink with independent confirmations
  (:mod:`gossip.suspicion`); missed nacks and refutations make us doubt ourselves, not others.
* Dissemination: alive/suspect/dead go into a transmit-limited queue and ride on every packet
  we send (probes, acks, gossip rounds to ``gossip_nodes`` random nodes every
  ``gossip_interval``); the delegate's user messages fill the rest of the 1400-byte budget.
* Anti-entropy: a full-state push/pull over TCP on join and every scaled ``push_pull_interval``.

Push/pulls in slices
--------------------
A push/pull carries every member's state, so its work grows with the cluster: decoding the
states, merging them, encoding ours. It is done in slices of ``push_pull_slice`` states, one
slice per callback (issue 13: no callback over 20 ms at 5,000 members). Each push/pull is a
generator (its cursor) in one FIFO queue, ``_work``: the first slice runs in the entry point
that brought it (a small push/pull is done there and then, as before), the next ones from a
timer due at once (``next_deadline() <= now``: the driver calls ``handle_timer`` again on the
next turn of its loop). Semantics kept:

* push/pulls are merged one after the other, in the order they came, never interleaved;
* a state is applied with the same incarnation rules as a gossiped one, at the slice's ``now``,
  so a newer incarnation learnt between two slices is never overwritten by the older one in the
  push/pull, and the events (and so Serf's) come out in the order of the states;
* the delegate's (Serf's, the application's) state is merged after the last node state, as
  before; then our answer is built from one view: the delegate's ``local_state`` and the list
  of (immutable) ``Node`` records taken at the same moment, encoded in slices afterwards;
* an inbound push/pull whose answer is not ready when ``handle_stream`` returns gets a
  :class:`PendingAnswer`; the driver keeps the connection and writes what ``answers_ready``
  hands it for that id (bytes, or None to just close);
* an outbound push/pull's ``JoinCompleted`` follows its merge's last slice.

Timers live in one heap of ``(when, seq, callback, arg)`` entries; stale entries are skipped
when they fire (a suspicion whose deadline moved, a probe already answered), which keeps every
update O(log n). Nothing from the network raises out of ``receive_packet``/``handle_stream``:
bad input is dropped and counted in :class:`MemberlistCounters` by reason.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from functools import partial
from typing import Any

from . import codec
from .awareness import Awareness
from .broadcast import Broadcast, TransmitLimitedQueue
from .config import META_MAX_SIZE, MemberlistConfig
from .dclass import dataclass
from .delegate import (
    ConflictDelegate,
    Delegate,
    EventDelegate,
    MemberlistEvent,
    NodeConflict,
    NodeJoined,
    NodeLeft,
    NodeRefuted,
    NodeUpdated,
    PingDelegate,
)
from .errors import GossipError, MalformedPacket
from .messages import (
    AckResp,
    Alive,
    Dead,
    ErrResp,
    IndirectPingReq,
    NackResp,
    Ping,
    PushNodeState,
    PushPull,
    Suspect,
    UserMsg,
)
from .recent import RecentMessages
from .security import ENCRYPTION_OVERHEAD, Keyring
from .state import Node, NodeState, NodeStatus
from .suspicion import Suspicion, suspicion_confirmations, suspicion_timeouts

__all__ = [
    "JoinCompleted",
    "Memberlist",
    "MemberlistCounters",
    "PendingAnswer",
    "StreamKind",
    "StreamRequest",
    "push_pull_scale",
]

log = logging.getLogger(__name__)

_COMPOUND_HEADER = codec.COMPOUND_HEADER_OVERHEAD
_COMPOUND_PART = codec.COMPOUND_PART_OVERHEAD
_USER_MSG_OVERHEAD = 1
# LZW needs >= 9 bits per input byte until its dictionary warms up, plus ~12 bytes of wrapper;
# below this size compression never wins, so we do not try (the result would be discarded).
_MIN_COMPRESS_SIZE = 96

Addr = tuple[str, int]


def push_pull_scale(interval: float, n: int) -> float:
    """memberlist ``pushPullScale``: interval x 1 for n <= 32, else x (ceil(log2(n) - 5) + 1)."""
    if n <= 32:
        return interval
    return interval * (math.ceil(math.log2(n) - 5.0) + 1)


class MemberlistCounters:
    """Everything the core counts. ``drops`` is keyed by reason; per-type message/byte counts.

    The metrics exporter reads :meth:`snapshot`."""

    __slots__ = (
        "broadcasts_pruned",
        "bytes_in",
        "bytes_out",
        "bytes_out_by_type",
        "deaths",
        "drops",
        "events_dropped",
        "indirect_relayed",
        "join_resyncs",
        "msgs_in",
        "msgs_out",
        "nacks_sent",
        "packets_in",
        "packets_out",
        "probe_failures",
        "probe_tcp_rescues",
        "probes",
        "push_pull_answers_abandoned",
        "push_pull_failures",
        "push_pull_reused",
        "push_pulls",
        "reaped",
        "refutes",
        "stranger_syncs",
        "streams_in",
        "suspects",
    )

    def __init__(self) -> None:
        self.drops: dict[str, int] = {}
        self.msgs_in: dict[str, int] = {}
        self.msgs_out: dict[str, int] = {}
        self.bytes_out_by_type: dict[str, int] = {}
        """Encoded size of each message we originate, by type (before piggy-backing/wrapping)."""
        self.bytes_in = 0
        self.bytes_out = 0
        self.packets_in = 0
        self.packets_out = 0
        self.probes = 0
        self.probe_failures = 0
        self.probe_tcp_rescues = 0
        self.indirect_relayed = 0
        self.nacks_sent = 0
        self.suspects = 0
        self.deaths = 0
        self.refutes = 0
        self.push_pulls = 0
        self.push_pull_failures = 0
        self.push_pull_reused = 0
        """Push/pull messages sent as cached (nothing in them changed since the last one)."""
        self.push_pull_answers_abandoned = 0
        """Inbound push/pulls whose answer was not built: the initiator's timeout had passed."""
        self.join_resyncs = 0
        self.stranger_syncs = 0
        """Push/pulls with a sender we did not list as a member (``stranger_sync``)."""
        self.streams_in = 0
        self.reaped = 0
        self.events_dropped = 0
        self.broadcasts_pruned = 0

    def snapshot(self) -> dict[str, int]:
        """Flat ``name -> value`` view: ``drops.<reason>``, ``msgs_in.<type>``, scalars."""
        out: dict[str, int] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, dict):
                for k, v in value.items():
                    out[f"{name}.{k}"] = v
            else:
                out[name] = value
        return out


class StreamKind:
    """What an outbound stream is for."""

    PUSH_PULL = "push_pull"
    JOIN = "join"
    PING = "ping"


@dataclass(slots=True)
class StreamRequest:
    """An outbound TCP exchange the driver must perform: connect to ``addr`` before ``deadline``
    (clock time), write ``data``, read the answer (a codec ``StreamReader`` knows where it ends,
    or read to EOF), then call ``Memberlist.stream_result(id, answer, error, now)``."""

    id: int
    addr: Addr
    data: bytes
    deadline: float
    kind: str


@dataclass(frozen=True, slots=True)
class PendingAnswer:
    """What :meth:`Memberlist.handle_stream` returns when the answer takes more slices: the
    driver keeps the stream open and writes the bytes ``answers_ready()`` gives for ``id``."""

    id: int


_BIG_MESSAGE = 65536
"""Bytes: a push/pull message at least this big is compressed in a slice of its own."""
_BIG_USER_STATE = 16384
"""Bytes: a received push/pull whose delegate state is bigger is merged by the delegate in a
slice of its own (at ~20 bytes per member in Serf's state, ~800 members)."""

_Work = Generator[None, None, None]
"""A push/pull being handled: one ``next()`` runs one slice (see the module docstring)."""


@dataclass(frozen=True, slots=True)
class JoinCompleted:
    """Event: a :meth:`Memberlist.join` finished; ``num_joined`` push/pulls succeeded."""

    join_id: int
    num_joined: int
    errors: tuple[str, ...]


@dataclass(slots=True)
class _Probe:
    target: NodeState
    seq: int
    sent: float
    deadline: float
    expected_nacks: int = 0
    nacks: int = 0
    stage: int = 0  # 0 direct, 1 indirect, 2 waiting for TCP result
    tcp_id: int = 0
    tcp_ok: bool = False
    done: bool = False
    timer: list[Any] | None = None
    """The probe's pending timer entry (indirect stage or deadline), cancelled when it ends:
    an answered probe does not wake the node for nothing (issue 18)."""


@dataclass(slots=True)
class _Relay:
    """We are the intermediary of an indirect ping: forward the ack, or send a nack."""

    requester: Addr
    orig_seq: int
    nack: bool
    done: bool = False


@dataclass(slots=True)
class _Stream:
    req: StreamRequest
    join_id: int = 0
    probe: _Probe | None = None
    done: bool = False
    on_done: Callable[[bool], None] | None = None
    """A push/pull's asker, told whether it completed (``push_pull_with``)."""


@dataclass(slots=True)
class _Join:
    pending: int
    ok: int = 0
    errors: list[str] | None = None


class _PeerError(GossipError):
    """Internal: a push/pull answer we refuse (protocol incompatible, remote error)."""


class Memberlist:
    """One member of a memberlist cluster, as a sans-I/O state machine (see module docstring).

    ``now`` is any monotonic clock in seconds (the driver's is ``time.monotonic``); ``rng`` makes
    every random choice (probe order, gossip targets, staggers) reproducible in tests.
    """

    def __init__(
        self,
        config: MemberlistConfig,
        *,
        now: float,
        delegate: Delegate | None = None,
        events: EventDelegate | None = None,
        ping_delegate: PingDelegate | None = None,
        conflict: ConflictDelegate | None = None,
        keyring: Keyring | None = None,
        rng: random.Random | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.name = config.name
        self.delegate = delegate
        self.events = events
        self.ping_delegate = ping_delegate
        self.conflict = conflict
        if keyring is None and config.secret_keys:
            keyring = Keyring(config.secret_keys)
        self.keyring: Keyring | None = keyring
        self.rng = rng if rng is not None else random.Random()
        self.counters = MemberlistCounters()
        self.awareness = Awareness(config.awareness_max_multiplier)
        self.limits = codec.CodecLimits(
            max_packet_size=config.max_packet_size,
            max_stream_size=config.max_stream_size,
            max_stream_decompressed=config.max_decompressed_size,
            max_push_pull_nodes=min(config.max_push_pull_nodes, 65536),
        )
        adv_ip = config.advertise_addr or config.bind_addr
        adv_port = config.advertise_port or config.bind_port
        self.advertise: Addr = (adv_ip, adv_port)

        self._nodes: dict[str, NodeState] = {}
        self._node_list: list[NodeState] = []
        self._by_addr: dict[Addr, NodeState] = {}
        self._state_cache: dict[str, tuple[Node, bytes]] = {}
        """name -> (the Node it was encoded from, its encoded pushNodeState)."""
        self._probe_index = 0
        self._seq_no = 0
        self._incarnation = 0
        self._stream_id = 0
        self._join_id = 0
        self._left = False
        self._leave_done = False

        self.broadcasts = TransmitLimitedQueue(config.retransmit_mult, self._num_nodes)
        self._suspicions: dict[str, Suspicion] = {}
        self._acks: dict[int, _Probe | _Relay] = {}
        self._probe: _Probe | None = None
        self._probe_pending = False
        self._eager_pending = False
        self._last_eager = float("-inf")
        self._eager_tokens = float(config.eager_gossip_burst)
        """Eager rounds that may run now (``eager_gossip_burst``; refilled one per interval)."""
        self._resync_pending = False
        self._strangers: dict[Addr, float] = {}
        """Address of a sender not listed as a member -> when we may push/pull with it
        (``stranger_sync``); oldest first, bounded."""
        self._stranger_next = float("-inf")
        self._stranger_armed: set[Addr] = set()
        """Strangers with a ``_stranger_due`` timer pending."""
        self._stranger_stream = 0
        self._recent = RecentMessages(max(1.0, 10 * config.gossip_interval))
        """Broadcast copies to skip undecoded (a rumour's copies arrive within a few
        rounds of each other)."""
        self._streams: dict[int, _Stream] = {}
        self._joins: dict[int, _Join] = {}
        self._periodic_push_pull: int = 0
        self._work: deque[_Work] = deque()
        self._work_now = now
        """The ``now`` of the slice that runs (the work generators read it)."""
        self._work_armed = False
        self._answers: list[tuple[int, bytes | None]] = []
        self._payload_cache: tuple[bool, list[Node], bytes, bytes] | None = None
        """The last push/pull payload built: (join, members, delegate state, payload)."""
        self._answer_id = 0

        self._outbox: list[tuple[bytes, Addr]] = []
        self._stream_out: list[StreamRequest] = []
        self._events: deque[MemberlistEvent | JoinCompleted] = deque()
        self._timers: list[list[Any]] = []
        self._gossip_entry: list[Any] | None = None
        """The regular gossip round's timer entry (``next_deadline`` may look past it)."""
        self._timer_seq = 0
        self._warned: set[str] = set()
        self._handoff_high: deque[Alive] = deque()
        self._handoff_low: deque[Suspect | Dead | UserMsg] = deque()

        self._enc_overhead = ENCRYPTION_OVERHEAD if self._encrypt_out() else 0

        # Become alive ourselves (memberlist setAlive), then start the tickers with a random
        # stagger so that nodes started together do not probe in lock step.
        self._set_alive(now)
        self._schedule(now + self.rng.random() * config.probe_interval, self._probe_tick, None)
        first_round = now + self.rng.random() * config.gossip_interval
        self._gossip_entry = self._schedule(first_round, self._gossip_tick, first_round)
        if config.push_pull_interval > 0:
            first = self.rng.random() * push_pull_scale(config.push_pull_interval, 1)
            self._schedule(now + first, self._push_pull_tick, None)

    # ------------------------------------------------------------------ public API: I/O seams
    def packets_to_send(self) -> list[tuple[bytes, Addr]]:
        """UDP datagrams to send, in order; the list is handed over (not copied)."""
        out = self._outbox
        if out:
            self._outbox = []
        return out

    def streams_to_open(self) -> list[StreamRequest]:
        """Outbound TCP exchanges to start now."""
        out = self._stream_out
        if out:
            self._stream_out = []
        return out

    def answers_ready(self) -> list[tuple[int, bytes | None]]:
        """Answers to inbound streams that got a :class:`PendingAnswer`: ``(id, bytes to
        write, or None to just close)``; handed over once."""
        out = self._answers
        if out:
            self._answers = []
        return out

    @property
    def working(self) -> bool:
        """True while a push/pull is being handled in slices."""
        return bool(self._work)

    def next_event(self) -> MemberlistEvent | JoinCompleted | None:
        """The oldest undelivered event, or None."""
        if self._events:
            return self._events.popleft()
        return None

    def next_deadline(self) -> float | None:
        """Clock time at which :meth:`handle_timer` is due, or None when nothing is scheduled."""
        timers = self._timers
        while timers and timers[0][2] is None:
            heapq.heappop(timers)
        if not timers:
            return None
        top = timers[0]
        if (top is self._gossip_entry and len(timers) > 1 and self.config.quiet_idle_rounds
                and (len(self._node_list) <= 1 or not self._has_broadcasts())):
            # the regular round would send nothing (config.quiet_idle_rounds): wake for the
            # next other live timer (an idle node has a handful of them). A node alone sends
            # nothing either, queued news or not: a single agent's own records wait in the
            # queue for a first peer, and its rounds used to wake it five times a second
            live = [e[0] for e in timers if e[2] is not None and e is not top]
            if live:
                second: float = min(live)
                return second
        when: float = top[0]
        return when

    def handle_timer(self, now: float) -> None:
        """Run every timer due at ``now`` (not those scheduled meanwhile, even for ``now``:
        the next slice of a push/pull runs in the next call, so each call stays short)."""
        timers = self._timers
        last = self._timer_seq
        while timers and timers[0][0] <= now and timers[0][1] <= last:
            entry = heapq.heappop(timers)
            fn = entry[2]
            if fn is not None:
                fn(entry[3], now)

    # ------------------------------------------------------------------ public API: members
    @property
    def local_node(self) -> Node:
        return self._nodes[self.name].node

    @property
    def incarnation(self) -> int:
        return self._incarnation

    def members(self) -> list[Node]:
        """Every known node that is alive or suspect (memberlist ``Members``)."""
        return [
            s.node
            for s in self._node_list
            if s.node.status in (NodeStatus.ALIVE, NodeStatus.SUSPECT)
        ]

    def all_nodes(self) -> list[Node]:
        """Every node in the table, dead and left included."""
        return [s.node for s in self._node_list]

    def node(self, name: str) -> Node | None:
        s = self._nodes.get(name)
        return s.node if s is not None else None

    def num_members(self) -> int:
        """Alive + suspect nodes, ourselves included (memberlist ``NumMembers``)."""
        return sum(
            1 for s in self._node_list if s.node.status in (NodeStatus.ALIVE, NodeStatus.SUSPECT)
        )

    def _num_nodes(self) -> int:
        return len(self._nodes)

    def health_score(self) -> int:
        return self.awareness.score

    @property
    def has_left(self) -> bool:
        return self._left

    @property
    def leave_broadcast_done(self) -> bool:
        """After :meth:`leave`: our dead message went out enough times (or nobody is alive)."""
        return self._leave_done or not self._any_alive()

    def queue_broadcast(self, message: bytes, name: str | None = None) -> Broadcast:
        """Queue an encoded memberlist message for piggy-backing (safe from delegates)."""
        b = Broadcast(message, name)
        self.broadcasts.queue(b)
        return b

    def send_user_msg(self, addr: Addr, body: bytes) -> None:
        """Send one user message (0x08 + ``body``) straight to ``addr`` by UDP, without
        piggy-backing (memberlist ``SendTo``; Serf's query responses and relays)."""
        self._count_out("user", len(body) + 1)
        self._raw_send(addr, b"\x08" + body, self._by_addr.get(addr))

    def join(self, addrs: Iterable[Addr], now: float) -> int:
        """Push/pull with Join=true to every address; a :class:`JoinCompleted` event follows.

        Returns the join id carried by that event."""
        self._join_id += 1
        jid = self._join_id
        addrs = list(addrs)
        job = _Join(pending=0, errors=[])
        self._joins[jid] = job
        for addr in addrs:
            if self._start_push_pull(addr, True, now, join_id=jid) is not None:
                job.pending += 1
            else:
                assert job.errors is not None
                job.errors.append(f"{addr[0]}:{addr[1]}: too many pending streams")
        if job.pending == 0:
            self._finish_join(jid, now)
        return jid

    def leave(self, now: float, notify: int = 0) -> None:
        """Graceful leave: gossip ``dead{Node: self, From: self}``; poll
        :attr:`leave_broadcast_done` (with a timeout) before shutting the driver down.

        ``notify``: also send the message straight to that many random live members. Gossip
        picks its targets among the recently dead too, so when few members are alive and
        some just died, every transmission may miss a live one; that member would see us
        leave only when its suspicion of us times out (up to 24 s on LAN), or as 'failed'.
        memberlist gossips only; a direct copy is an ordinary dead message to its receiver."""
        if self._left:
            return
        self._left = True
        me = self._nodes[self.name]
        msg = Dead(incarnation=me.incarnation, node=self.name, from_node=self.name)
        self._dead_node(msg, now)
        if notify <= 0:
            return
        live = [s for s in self._node_list
                if s.name != self.name and s.node.status < NodeStatus.DEAD]
        self.rng.shuffle(live)
        raw = codec.encode_message(msg)
        for s in live[:notify]:
            # alone, not piggy-backed: a piggy-back would carry the queued copy of this very
            # message too, and spend the transmissions meant for the members not told here
            self._count_out("leave", len(raw))
            self._raw_send(s.address, raw, s)

    def update_node(self, now: float) -> None:
        """Re-read our Meta from the delegate and gossip a new alive (incarnation + 1)."""
        meta = self._local_meta()
        me = self._nodes[self.name]
        a = Alive(
            incarnation=self._next_incarnation(),
            node=self.name,
            addr=me.node.addr,
            port=me.node.port,
            meta=meta,
            vsn=self.config.vsn,
        )
        self._alive_node(a, now, bootstrap=True)

    # ------------------------------------------------------------------ timers
    def _schedule(self, when: float, fn: Callable[[Any, float], None], arg: Any) -> list[Any]:
        self._timer_seq += 1
        entry = [when, self._timer_seq, fn, arg]
        heapq.heappush(self._timers, entry)
        return entry

    # ------------------------------------------------------------------ counting and logging
    def count_drop(self, reason: str, addr: Any, detail: str = "") -> None:
        """Count (and log once at WARNING) something dropped; for the driver's own drops."""
        self._drop(reason, addr, detail)

    def _drop(self, reason: str, addr: Any, detail: str = "") -> None:
        d = self.counters.drops
        d[reason] = d.get(reason, 0) + 1
        if reason not in self._warned:
            self._warned.add(reason)
            log.warning("dropped reason=%s from=%s node=%s %s", reason, addr, self.name, detail)
        else:
            log.debug("dropped reason=%s from=%s node=%s %s", reason, addr, self.name, detail)

    def _warn(self, key: str, msg: str, *args: object) -> None:
        """WARNING the first time for ``key``, DEBUG after (a peer that repeats a problem)."""
        if key not in self._warned:
            self._warned.add(key)
            log.warning(msg, *args)
        else:
            log.debug(msg, *args)

    def _emit(self, ev: MemberlistEvent | JoinCompleted) -> None:
        if len(self._events) >= self.config.event_queue_depth:
            self._events.popleft()
            self.counters.events_dropped += 1
        self._events.append(ev)

    # ------------------------------------------------------------------ sending
    def _encrypt_out(self) -> bool:
        return bool(self.keyring) and self.config.gossip_verify_outgoing

    def _count_out(self, kind: str, size: int = 0) -> None:
        c = self.counters
        m = c.msgs_out
        m[kind] = m.get(kind, 0) + 1
        if size:
            b = c.bytes_out_by_type
            b[kind] = b.get(kind, 0) + size

    def _get_broadcasts(self, overhead: int, limit: int, dest: NodeState | None,
                        below: int | None = None) -> list[bytes]:
        """memberlist getBroadcasts: our own queue first, then the delegate's user messages.
        With ``below``, only messages sent fewer than ``below`` times (an eager round).

        Unlike memberlist, our own queue takes at most half of the room while the delegate has
        messages waiting, and the rest of the room afterwards. A joiner re-broadcasts the alive
        message of every member its join's push-pull taught it (memberlist does the same): at
        100 members that is ~1,200 sends, which filled every packet for ~5 s, so the joiner's
        own news (its Serf intents, its catalog record) waited behind them (issue 13)."""
        d = self.delegate
        share = limit
        if len(self.broadcasts) and self._delegate_pending():
            share = limit // 2
        out = self.broadcasts.get_broadcasts(overhead, share, below=below)
        if d is not None:
            used = 0
            for m in out:
                used += len(m) + overhead
            avail = limit - used
            if avail > overhead + _USER_MSG_OVERHEAD:
                try:
                    node = dest.node if dest else None
                    if below is None:
                        user = d.get_broadcasts(overhead + _USER_MSG_OVERHEAD, avail, node)
                    else:
                        fresh = getattr(d, "fresh_broadcasts", None)
                        user = ([] if fresh is None else
                                fresh(overhead + _USER_MSG_OVERHEAD, avail, node, below))
                except Exception:  # a delegate bug must not stop the protocol
                    log.exception("delegate get_broadcasts failed node=%s", self.name)
                    user = []
                for body in user:
                    out.append(b"\x08" + body)
                    used += len(body) + 1 + overhead
            if share < limit and limit - used > overhead:
                out.extend(self.broadcasts.get_broadcasts(overhead, limit - used, below=below))
        return out

    def _send_msg(self, addr: Addr, msg: bytes, kind: str, dest: NodeState | None = None) -> None:
        """memberlist sendMsg: piggy-back broadcasts into the UDP budget, then send."""
        self._count_out(kind, len(msg))
        if dest is None:
            dest = self._by_addr.get(addr)
        avail = self.config.udp_buffer_size - len(msg) - _COMPOUND_HEADER - self._enc_overhead
        extra = self._get_broadcasts(_COMPOUND_PART, avail, dest)
        if extra:
            self._count_out("piggyback", sum(len(e) for e in extra))
            extra.insert(0, msg)
            msg = codec.make_compound(extra)
        self._raw_send(addr, msg, dest)

    def _raw_send(self, addr: Addr, payload: bytes, dest: NodeState | None) -> None:
        """memberlist rawSendMsgPacket: compress if shorter, CRC for PMax >= 5, encrypt."""
        cfg = self.config
        try:
            data = codec.wrap_packet(
                payload,
                crc=dest is not None and dest.pmax >= 5,
                compress=cfg.enable_compression and len(payload) >= _MIN_COMPRESS_SIZE,
                keyring=self.keyring if self._encrypt_out() else None,
            )
        except GossipError as exc:  # encode limits; local fault, never fatal
            log.error("cannot send packet to=%s: %s", addr, exc)
            return
        self.counters.packets_out += 1
        self.counters.bytes_out += len(data)
        self._outbox.append((data, addr))

    def _encode_and_broadcast(self, name: str, msg: bytes) -> Broadcast:
        b = Broadcast(msg, name)
        self.broadcasts.queue(b)
        if len(self.broadcasts) > self.config.max_broadcast_queue:
            self.counters.broadcasts_pruned += self.broadcasts.prune(
                self.config.max_broadcast_queue
            )
        self.request_gossip()
        return b

    # ------------------------------------------------------------------ receiving (UDP)
    def receive_packet(self, data: bytes, addr: Addr, now: float) -> None:
        """Handle one UDP datagram from ``addr``. Never raises because of its content."""
        c = self.counters
        c.packets_in += 1
        c.bytes_in += len(data)
        try:
            decoded = codec.decode_packet(
                data,
                self.keyring,
                limits=self.limits,
                verify_incoming=self.config.gossip_verify_incoming,
                known=partial(self._recent.known, now=now),
            )
        except MalformedPacket as exc:
            self._drop(exc.reason, addr, exc.detail)
            return
        except Exception as exc:  # noqa: BLE001 - codec bug: never raise out of receive
            self._drop("decode_error", addr, repr(exc))
            return
        # With a keyring and gossip_verify_incoming, a plaintext packet fails decryption above
        # and is counted as decrypt_failed (memberlist cannot tell the two apart either).
        for err in decoded.errors:
            self._drop(err.reason, addr, err.detail)
        if decoded.duplicates:
            m = c.msgs_in
            m["duplicate"] = m.get("duplicate", 0) + decoded.duplicates
        try:
            for msg in decoded.messages:
                self._dispatch(msg, addr, now)
            self._drain_handoff(now)
            if decoded.fresh:
                self._recent.remember(decoded.fresh, now)
            if addr not in self._by_addr and self.config.stranger_sync > 0:
                self._heard_stranger(addr, now)
        except Exception as exc:  # a bug of ours or a delegate's: contain it, count it
            log.exception("error handling packet from=%s node=%s", addr, self.name)
            self._drop("handler_error", addr, repr(exc))
            self._handoff_high.clear()
            self._handoff_low.clear()

    def _heard_stranger(self, addr: Addr, now: float) -> None:
        """A well-formed packet came from ``addr``, which no member of ours has: the sender
        knows us, so we may have missed the news of its join. If it is still a stranger
        ``stranger_sync`` seconds after we first heard it, push/pull with it (a timer: once
        a pool has gone quiet, a member may talk to us only when it probes us, every N
        probe intervals)."""
        strangers = self._strangers
        due = strangers.get(addr)
        if due is None:
            if len(strangers) >= 256:
                del strangers[next(iter(strangers))]
            due = strangers[addr] = now + self.config.stranger_sync
        armed = self._stranger_armed
        if addr not in armed and len(armed) < 256:   # bounded, as the table is
            armed.add(addr)
            self._schedule(max(due, now), self._stranger_due, addr)

    def _stranger_due(self, addr: Addr, now: float) -> None:
        self._stranger_armed.discard(addr)
        due = self._strangers.get(addr)
        if due is None or addr in self._by_addr or self._left:
            self._strangers.pop(addr, None)
            return
        if now < due:
            return      # tried lately: armed again when it next talks to us
        wait = self.config.stranger_sync
        if self._stranger_stream in self._streams or now < self._stranger_next:
            self._stranger_armed.add(addr)   # one at a time, one per wait: try again then
            self._schedule(max(self._stranger_next, now + wait), self._stranger_due, addr)
            return
        st = self._start_push_pull(addr, False, now)
        if st is None:
            return
        self.counters.stranger_syncs += 1
        self._stranger_stream = st.req.id
        self._stranger_next = now + wait
        self._strangers[addr] = now + 6 * wait
        log.info("push/pull with %s:%s: it sends to us but is not a member we know",
                 addr[0], addr[1])

    def _count_in(self, kind: str) -> None:
        m = self.counters.msgs_in
        m[kind] = m.get(kind, 0) + 1

    def _dispatch(self, msg: object, addr: Addr, now: float) -> None:
        t = type(msg)
        if t is Ping:
            self._count_in("ping")
            self._handle_ping(msg, addr, now)  # type: ignore[arg-type]
        elif t is AckResp:
            self._count_in("ack")
            self._handle_ack(msg, now)  # type: ignore[arg-type]
        elif t is IndirectPingReq:
            self._count_in("indirect_ping")
            self._handle_indirect_ping(msg, addr, now)  # type: ignore[arg-type]
        elif t is NackResp:
            self._count_in("nack")
            self._handle_nack(msg)  # type: ignore[arg-type]
        elif t is Alive:
            self._count_in("alive")
            self._handoff(self._handoff_high, msg, addr)
        elif t is Suspect:
            self._count_in("suspect")
            self._handoff(self._handoff_low, msg, addr)
        elif t is Dead:
            self._count_in("dead")
            self._handoff(self._handoff_low, msg, addr)
        elif t is UserMsg:
            self._count_in("user")
            self._handoff(self._handoff_low, msg, addr)
        else:
            self._drop("unexpected_type", addr, t.__name__)

    def _handoff(self, queue: deque[Any], msg: Any, addr: Addr) -> None:
        # memberlist hands gossip to a separate goroutine through two bounded queues (alive
        # first). We drain them at the end of every receive_packet, so the bound applies to one
        # datagram's worth of messages.
        if len(self._handoff_high) + len(self._handoff_low) >= self.config.handoff_queue_depth:
            self._drop("handoff_queue_full", addr)
            return
        queue.append(msg)

    def _drain_handoff(self, now: float) -> None:
        high, low = self._handoff_high, self._handoff_low
        while high or low:
            if high:
                self._alive_node(high.popleft(), now)
                continue
            msg = low.popleft()
            t = type(msg)
            if t is Suspect:
                self._suspect_node(msg, now)  # type: ignore[arg-type]
            elif t is Dead:
                self._dead_node(msg, now)  # type: ignore[arg-type]
            else:
                self._user_msg(msg.payload, now)  # type: ignore[union-attr]

    def _user_msg(self, payload: bytes, now: float) -> None:
        d = self.delegate
        if d is not None and payload:
            try:
                d.notify_user_msg(payload, now)
            except Exception:
                log.exception("delegate notify_user_msg failed node=%s", self.name)

    def _handle_ping(self, p: Ping, addr: Addr, now: float) -> None:
        if p.node and p.node != self.name:
            self._drop("ping_wrong_node", addr, f"node={p.node}")
            return
        payload: bytes | None = None
        if self.ping_delegate is not None:
            try:
                payload = self.ping_delegate.ack_payload() or None
            except Exception:
                log.exception("ping delegate ack_payload failed")
        if p.source_addr and p.source_port:
            dest: Addr = (p.source_addr, p.source_port)
        else:
            dest = addr
        self._send_msg(dest, codec.encode_message(AckResp(p.seq_no, payload)), "ack")

    def _handle_indirect_ping(self, ind: IndirectPingReq, addr: Addr, now: float) -> None:
        port = ind.port or self.advertise[1]
        if not ind.target:
            self._drop("bad_indirect_target", addr)
            return
        seq = self._next_seq()
        if ind.source_addr and ind.source_port:
            requester: Addr = (ind.source_addr, ind.source_port)
        else:
            requester = addr
        relay = _Relay(requester=requester, orig_seq=ind.seq_no, nack=ind.nack)
        self._acks[seq] = relay
        ping = Ping(
            seq_no=seq,
            node=ind.node,
            source_addr=self.advertise[0],
            source_port=self.advertise[1],
            source_node=self.name,
        )
        self.counters.indirect_relayed += 1
        self._send_msg((ind.target, port), codec.encode_message(ping), "ping")
        self._schedule(now + self.config.probe_timeout, self._relay_timeout, (seq, relay))

    def _relay_timeout(self, arg: tuple[int, _Relay], now: float) -> None:
        seq, relay = arg
        if relay.done:
            return
        relay.done = True
        if self._acks.get(seq) is relay:
            del self._acks[seq]
        if relay.nack:
            self.counters.nacks_sent += 1
            self._send_msg(relay.requester, codec.encode_message(NackResp(relay.orig_seq)), "nack")

    def _handle_ack(self, ack: AckResp, now: float) -> None:
        h = self._acks.get(ack.seq_no)
        if h is None:
            self.counters.drops["ack_unknown_seq"] = (
                self.counters.drops.get("ack_unknown_seq", 0) + 1
            )
            return
        if isinstance(h, _Relay):
            del self._acks[ack.seq_no]
            if not h.done:
                h.done = True
                self._send_msg(h.requester, codec.encode_message(AckResp(h.orig_seq, None)), "ack")
            return
        probe = h
        if probe.done:
            return
        if probe.stage == 0 and self.ping_delegate is not None:
            try:
                self.ping_delegate.notify_ping_complete(
                    probe.target.node, now - probe.sent, ack.payload or b"", now
                )
            except Exception:
                log.exception("ping delegate notify_ping_complete failed")
        self._probe_finished(probe, now, success=True)

    def _handle_nack(self, nack: NackResp) -> None:
        h = self._acks.get(nack.seq_no)
        if isinstance(h, _Probe) and not h.done:
            h.nacks += 1

    # ------------------------------------------------------------------ probing
    def _probe_tick(self, _: Any, now: float) -> None:
        self._schedule(now + self.config.probe_interval, self._probe_tick, None)
        if self._probe is not None:
            # Go's ticker keeps one pending tick while a probe runs (the channel holds one).
            self._probe_pending = True
            return
        self._probe_round(now)

    def _probe_round(self, now: float) -> None:
        """memberlist probe(): pick the next node round-robin and probe it."""
        checked = 0
        while True:
            nodes = self._node_list
            if checked >= len(nodes):
                return
            if self._probe_index >= len(nodes):
                self._reset_nodes(now)
                self._probe_index = 0
                checked += 1
                continue
            s = nodes[self._probe_index]
            self._probe_index += 1
            if s.name == self.name or s.node.status >= NodeStatus.DEAD:
                checked += 1
                continue
            self._probe_node(s, now)
            return

    def _reset_nodes(self, now: float) -> None:
        """At the wrap: forget dead nodes older than gossip_to_the_dead_time, reshuffle."""
        limit = self.config.gossip_to_the_dead_time
        keep: list[NodeState] = []
        for s in self._node_list:
            if s.node.status == NodeStatus.DEAD and now - s.state_change > limit:
                del self._nodes[s.name]
                if self._by_addr.get(s.address) is s:
                    del self._by_addr[s.address]
                self.counters.reaped += 1
            else:
                keep.append(s)
        self.rng.shuffle(keep)
        self._node_list = keep

    def _probe_node(self, s: NodeState, now: float) -> None:
        cfg = self.config
        interval = self.awareness.scale_timeout(cfg.probe_interval)
        seq = self._next_seq()
        probe = _Probe(target=s, seq=seq, sent=now, deadline=now + interval)
        self._probe = probe
        self._acks[seq] = probe
        self.counters.probes += 1
        ping = codec.encode_message(
            Ping(
                seq_no=seq,
                node=s.name,
                source_addr=self.advertise[0],
                source_port=self.advertise[1],
                source_node=self.name,
            )
        )
        if s.node.status == NodeStatus.ALIVE:
            self._send_msg(s.address, ping, "ping", s)
        else:
            # A suspect target learns of the suspicion straight away and can refute it.
            self._count_out("ping")
            self._count_out("suspect")
            sus = codec.encode_message(
                Suspect(incarnation=s.incarnation, node=s.name, from_node=self.name)
            )
            self._raw_send(s.address, codec.make_compound([ping, sus]), s)
        probe.timer = self._schedule(now + cfg.probe_timeout, self._probe_indirect, probe)

    def _probe_indirect(self, probe: _Probe, now: float) -> None:
        if probe.done:
            return
        probe.stage = 1
        cfg = self.config
        target = probe.target
        me = self.name
        peers = self._k_random_nodes(
            cfg.indirect_checks,
            lambda n: n.name == me or n is target or n.node.status != NodeStatus.ALIVE,
        )
        for peer in peers:
            nack = peer.pmax >= 4
            if nack:
                probe.expected_nacks += 1
            ind = IndirectPingReq(
                seq_no=probe.seq,
                target=target.node.addr,
                port=target.node.port,
                node=target.name,
                nack=nack,
                source_addr=self.advertise[0],
                source_port=self.advertise[1],
                source_node=me,
            )
            self._send_msg(peer.address, codec.encode_message(ind), "indirect_ping", peer)
        if not cfg.disable_tcp_pings and target.pmax >= 3:
            ping = Ping(
                seq_no=probe.seq,
                node=target.name,
                source_addr=self.advertise[0],
                source_port=self.advertise[1],
                source_node=me,
            )
            st = self._open_stream(target.address, ping, probe.deadline, StreamKind.PING)
            if st is not None:
                st.probe = probe
                probe.tcp_id = st.req.id
        probe.timer = self._schedule(probe.deadline, self._probe_deadline, probe)

    def _probe_deadline(self, probe: _Probe, now: float) -> None:
        if probe.done:
            return
        st = self._streams.get(probe.tcp_id) if probe.tcp_id else None
        if st is not None and not st.done and probe.stage == 1:
            # The TCP ping shares this deadline; give its result a moment to come back.
            probe.stage = 2
            probe.timer = self._schedule(now + min(0.25, self.config.probe_timeout),
                                         self._probe_deadline, probe)
            return
        self._probe_failed(probe, now)

    def _probe_failed(self, probe: _Probe, now: float) -> None:
        target = probe.target
        if probe.tcp_ok:
            self._warn(
                "tcp_rescue",
                "was able to connect to node=%s over TCP but other probes failed, "
                "network may be misconfigured",
                target.name,
            )
            self.counters.probe_tcp_rescues += 1
            self._probe_finished(probe, now, success=True)
            return
        if probe.expected_nacks > 0:
            delta = max(0, probe.expected_nacks - probe.nacks)
        else:
            delta = 1
        self.counters.probe_failures += 1
        self._probe_finished(probe, now, success=False, delta=delta)
        log.info("suspect node=%s has failed, no acks received", target.name)
        if self._nodes.get(target.name) is target:
            self._suspect_node(
                Suspect(incarnation=target.incarnation, node=target.name, from_node=self.name),
                now,
            )

    def _probe_finished(
        self, probe: _Probe, now: float, *, success: bool, delta: int = 0
    ) -> None:
        probe.done = True
        if probe.timer is not None:
            probe.timer[2] = None   # cancelled: next_deadline drops it
            probe.timer = None
        if self._acks.get(probe.seq) is probe:
            del self._acks[probe.seq]
        self.awareness.apply_delta(-1 if success else delta)
        if self._probe is probe:
            self._probe = None
            if self._probe_pending:
                self._probe_pending = False
                self._probe_round(now)

    def _k_random_nodes(
        self, k: int, exclude: Callable[[NodeState], bool]
    ) -> list[NodeState]:
        """memberlist kRandomNodes: up to k distinct nodes, 3n random tries at most."""
        nodes = self._node_list
        n = len(nodes)
        out: list[NodeState] = []
        if k <= 0 or n == 0:
            return out
        rand = self.rng.random
        i = 0
        while i < 3 * n and len(out) < k:
            i += 1
            s = nodes[int(rand() * n)]
            if exclude(s) or s in out:
                continue
            out.append(s)
        return out

    def _next_seq(self) -> int:
        self._seq_no = (self._seq_no + 1) & 0xFFFFFFFF
        return self._seq_no

    def _next_incarnation(self) -> int:
        self._incarnation += 1
        return self._incarnation

    # ------------------------------------------------------------------ gossip
    def request_gossip(self) -> None:
        """Something new was queued for broadcast: gossip it now rather than at the next
        regular round (``eager_gossip``; at most one extra round per ``eager_gossip_gap``, a
        quarter interval by default, and beyond ``eager_gossip_burst`` of them one per
        interval).
        Safe from delegates: the round runs from the timer, never inside the caller."""
        if self.config.eager_gossip and not self._eager_pending and self._has_broadcasts():
            self._eager_pending = True
            self._schedule(float("-inf"), self._eager_round, None)

    def _delegate_pending(self) -> int | None:
        """How many messages the delegate has queued: 0 without a delegate, None when it
        cannot say (no ``pending_broadcasts``)."""
        d = self.delegate
        if d is None:
            return 0
        pending = getattr(d, "pending_broadcasts", None)
        return None if pending is None else pending()

    def _has_broadcasts(self) -> bool:
        """Anything queued, here or in the delegate (one that cannot say is asked at every
        round, as memberlist does)."""
        if len(self.broadcasts):
            return True
        pending = self._delegate_pending()
        return pending is None or pending > 0

    def _eager_round(self, _: Any, now: float) -> None:
        cfg = self.config
        interval = cfg.gossip_interval
        when = self._last_eager + (cfg.eager_gossip_gap or interval / 4)
        burst = cfg.eager_gossip_burst
        tokens = self._eager_tokens
        if burst > 0:
            if self._last_eager > float("-inf"):
                tokens = min(float(burst), tokens + (now - self._last_eager) / interval)
            if tokens < 1.0:
                when = max(when, now + (1.0 - tokens) * interval)
        if when > now:
            self._schedule(when, self._eager_round, None)
            return
        self._eager_tokens = tokens - 1.0 if burst > 0 else tokens
        self._eager_pending = False
        self._last_eager = now
        # only the news: what has not yet gone to a full fan-out; retransmissions wait for the
        # regular rounds, so a burst of news is not slowed by re-sending what peers have
        self._gossip_round(now, below=cfg.gossip_nodes)

    def _gossip_tick(self, when: float, now: float) -> None:
        interval = self.config.gossip_interval
        nxt = now + interval
        if now - when >= interval:
            # a round skipped while idle (quiet_idle_rounds) runs late: keep the rounds' phase
            nxt = when + interval * (math.floor((now - when) / interval) + 1)
        self._gossip_entry = self._schedule(nxt, self._gossip_tick, nxt)
        self._gossip_round(now)

    def _gossip_round(self, now: float, below: int | None = None) -> None:
        cfg = self.config
        me = self.name
        dead_time = cfg.gossip_to_the_dead_time

        def exclude(s: NodeState) -> bool:
            node = s.node
            if node.name == me:
                return True
            st = node.status
            if st == NodeStatus.ALIVE or st == NodeStatus.SUSPECT:
                return False
            if st == NodeStatus.DEAD:
                return now - s.state_change > dead_time
            return True

        if not self._has_broadcasts():
            return  # nothing anywhere: skip picking targets (the idle fast path)
        targets = self._k_random_nodes(cfg.gossip_nodes, exclude)
        avail = cfg.udp_buffer_size - _COMPOUND_HEADER - self._enc_overhead
        for s in targets:
            msgs = self._get_broadcasts(_COMPOUND_PART, avail, s, below)
            if not msgs:
                # memberlist ends the round here: its queue is the same for every target. The
                # delegate's is not (Rumor's records go to Rumor peers only), so a round that
                # drew a plain Serf agent first goes on to the peers after it.
                if self._has_broadcasts():
                    continue
                return
            self._count_out("gossip", sum(len(e) for e in msgs))
            if len(msgs) == 1:
                self._raw_send(s.address, msgs[0], s)
            else:
                self._raw_send(s.address, codec.make_compound(msgs), s)

    # ------------------------------------------------------------------ state transitions
    def _local_meta(self) -> bytes:
        meta = b""
        if self.delegate is not None:
            meta = self.delegate.node_meta(META_MAX_SIZE)
            if len(meta) > META_MAX_SIZE:
                raise ValueError(f"node meta is {len(meta)} bytes; at most {META_MAX_SIZE}")
        return meta

    def _set_alive(self, now: float) -> None:
        a = Alive(
            incarnation=self._next_incarnation(),
            node=self.name,
            addr=self.advertise[0],
            port=self.advertise[1],
            meta=self._local_meta(),
            vsn=self.config.vsn,
        )
        self._alive_node(a, now, bootstrap=True)

    def _notify(self, kind: str, node: Node, now: float) -> None:
        ev = self.events
        if ev is not None:
            try:
                if kind == "join":
                    ev.notify_join(node, now)
                elif kind == "leave":
                    ev.notify_leave(node, now)
                else:
                    ev.notify_update(node, now)
            except Exception:
                log.exception("event delegate %s failed node=%s", kind, node.name)
        if kind == "join":
            self._emit(NodeJoined(node))
        elif kind == "leave":
            self._emit(NodeLeft(node))
        else:
            self._emit(NodeUpdated(node))

    def _alive_node(self, a: Alive, now: float, *, bootstrap: bool = False) -> None:
        """memberlist aliveNode (§6.7)."""
        name = a.node
        if self._left and name == self.name:
            return
        vsn = a.vsn
        if vsn and len(vsn) != 6:
            # memberlist 0.2.2 indexes Vsn[5] unchecked; anything but 0 or 6 bytes is unusable.
            self._drop("bad_vsn", name, f"len={len(vsn)}")
            return
        if len(vsn) >= 3 and (vsn[0] == 0 or vsn[1] == 0 or vsn[0] > vsn[1]):
            self._drop("bad_vsn", name, f"vsn={vsn}")
            return
        if not name:
            self._drop("alive_no_name", a.addr)
            return
        if not a.port or not a.addr:
            self._drop("alive_no_addr", name)
            return
        s = self._nodes.get(name)
        updates_addr = False
        if s is None:
            if len(self._nodes) >= self.config.max_nodes:
                self._drop("too_many_nodes", name)
                return
            node = Node(name, a.addr, a.port, a.meta, (), 0, NodeStatus.DEAD)
            s = NodeState(node, now)
            self._nodes[name] = s
            # Insert at a random offset so that new nodes are probed soon on average.
            lst = self._node_list
            lst.append(s)
            off = self.rng.randrange(len(lst))
            lst[off], lst[-1] = lst[-1], lst[off]
            self._by_addr[s.address] = s
            self._strangers.pop(s.address, None)
        elif s.node.addr != a.addr or s.node.port != a.port:
            reclaim = self.config.dead_node_reclaim_time
            can_reclaim = reclaim > 0 and now - s.state_change > reclaim
            if s.node.status == NodeStatus.LEFT or (
                s.node.status == NodeStatus.DEAD and can_reclaim
            ):
                log.info("updating address of left or failed node=%s to %s:%s",
                         name, a.addr, a.port)
                updates_addr = True
            else:
                other = Node(name, a.addr, a.port, a.meta, tuple(a.vsn), a.incarnation,
                             NodeStatus.ALIVE)
                self._drop("conflicting_address", (a.addr, a.port),
                           f"node={name} mine={s.node.addr}:{s.node.port}")
                if self.conflict is not None:
                    try:
                        self.conflict.notify_conflict(s.node, other, now)
                    except Exception:
                        log.exception("conflict delegate failed")
                self._emit(NodeConflict(s.node, other))
                return
        is_local = name == self.name
        if a.incarnation <= s.incarnation and not is_local and not updates_addr:
            return
        if a.incarnation < s.incarnation and is_local:
            return
        self._suspicions.pop(name, None)
        old = s.node
        if not bootstrap and is_local:
            if (
                a.incarnation == s.incarnation
                and a.meta == old.meta
                and tuple(a.vsn) == old.vsn
            ):
                return
            self._refute(s, a.incarnation, now)
            self._warn("refute", "refuting an alive message about us (node=%s)", name)
        else:
            self._encode_and_broadcast(name, codec.encode_message(a))
            new_vsn = tuple(a.vsn) if a.vsn else old.vsn
            status = NodeStatus.ALIVE
            node = Node(name, a.addr, a.port, a.meta, new_vsn, a.incarnation, status)
            if old.addr != a.addr or old.port != a.port:
                if self._by_addr.get(s.address) is s:
                    del self._by_addr[s.address]
                s.set(node)
                self._by_addr[s.address] = s
                self._strangers.pop(s.address, None)
            else:
                s.set(node)
            if old.status != NodeStatus.ALIVE:
                s.state_change = now
        if old.status in (NodeStatus.DEAD, NodeStatus.LEFT):
            self._notify("join", s.node, now)
        else:
            if old.status == NodeStatus.SUSPECT and not is_local:
                self._emit(NodeRefuted(s.node))
            if old.meta != s.node.meta:
                self._notify("update", s.node, now)

    def _refute(self, s: NodeState, accused: int, now: float) -> None:
        inc = self._next_incarnation()
        if accused >= inc:
            inc = accused + 1
            self._incarnation = inc
        old = s.node
        s.set(Node(old.name, old.addr, old.port, old.meta, old.vsn, inc, old.status))
        self.awareness.apply_delta(1)
        self.counters.refutes += 1
        a = Alive(incarnation=inc, node=old.name, addr=old.addr, port=old.port, meta=old.meta,
                  vsn=self.config.vsn)
        self._encode_and_broadcast(old.name, codec.encode_message(a))

    def _suspect_node(self, msg: Suspect, now: float) -> None:
        """memberlist suspectNode (§6.7, §6.3)."""
        s = self._nodes.get(msg.node)
        if s is None or msg.incarnation < s.incarnation:
            return
        susp = self._suspicions.get(msg.node)
        if susp is not None:
            if susp.confirm(msg.from_node):
                self._encode_and_broadcast(msg.node, codec.encode_message(msg))
                self._schedule(susp.deadline, self._suspicion_timeout, (msg.node, susp))
            return
        if s.node.status != NodeStatus.ALIVE:
            return
        if s.name == self.name:
            self._refute(s, msg.incarnation, now)
            self._warn("refute", "refuting a suspect message from=%s", msg.from_node)
            return
        self._encode_and_broadcast(msg.node, codec.encode_message(msg))
        old = s.node
        s.set(Node(old.name, old.addr, old.port, old.meta, old.vsn, msg.incarnation,
                   NodeStatus.SUSPECT))
        s.state_change = now
        self.counters.suspects += 1
        cfg = self.config
        n = self._num_nodes()  # memberlist's estNumNodes, as for the retransmit limit
        k = suspicion_confirmations(cfg.suspicion_mult, n)
        min_t, max_t = suspicion_timeouts(
            cfg.suspicion_mult, cfg.suspicion_max_timeout_mult, n, cfg.probe_interval
        )
        susp = Suspicion(msg.from_node, msg.incarnation, k, min_t, max_t, now)
        self._suspicions[msg.node] = susp
        self._schedule(susp.deadline, self._suspicion_timeout, (msg.node, susp))

    def _suspicion_timeout(self, arg: tuple[str, Suspicion], now: float) -> None:
        name, susp = arg
        if self._suspicions.get(name) is not susp or now < susp.deadline - 1e-9:
            return  # stale entry: refuted, or the deadline moved
        s = self._nodes.get(name)
        if s is None or s.node.status != NodeStatus.SUSPECT or s.state_change != susp.start:
            return
        log.info("marking node=%s as failed, suspect timeout reached (%d peer confirmations)",
                 name, susp.confirmations)
        self._dead_node(Dead(incarnation=s.incarnation, node=name, from_node=self.name), now)

    def _dead_node(self, d: Dead, now: float) -> None:
        """memberlist deadNode (§6.7); From == Node means the node left."""
        s = self._nodes.get(d.node)
        if s is None or d.incarnation < s.incarnation:
            return
        self._suspicions.pop(d.node, None)
        if s.node.status >= NodeStatus.DEAD:
            return
        if s.name == self.name:
            if not self._left:
                self._refute(s, d.incarnation, now)
                self._warn("refute", "refuting a dead message from=%s", d.from_node)
                return
            b = self._encode_and_broadcast(d.node, codec.encode_message(d))
            b.on_done = self._leave_sent
        else:
            self._encode_and_broadcast(d.node, codec.encode_message(d))
        old = s.node
        status = NodeStatus.LEFT if d.node == d.from_node else NodeStatus.DEAD
        s.set(Node(old.name, old.addr, old.port, old.meta, old.vsn, d.incarnation, status))
        s.state_change = now
        self.counters.deaths += 1
        self._notify("leave", s.node, now)

    def _leave_sent(self, sent: bool) -> None:
        self._leave_done = True

    def _any_alive(self) -> bool:
        me = self.name
        for s in self._node_list:
            if s.name != me and s.node.status < NodeStatus.DEAD:
                return True
        return False

    # ------------------------------------------------------------------ push/pull
    # -- work in slices (see "Push/pulls in slices" in the module docstring)
    def _add_work(self, work: _Work, now: float) -> None:
        """Queue ``work``; if nothing else is queued its first slice runs now."""
        self._work.append(work)
        if len(self._work) == 1:
            self._work_step(None, now)

    def _work_step(self, _: Any, now: float) -> None:
        """Run one slice of the oldest push/pull; re-arm for the next one (due at once)."""
        self._work_armed = False
        if not self._work:
            return
        self._work_now = now
        try:
            next(self._work[0])
        except StopIteration:
            self._work.popleft()
        except Exception as exc:  # contain bugs: drop this push/pull, keep the others going
            log.exception("error in a push/pull slice node=%s", self.name)
            self._drop("handler_error", "push/pull", repr(exc))
            self._work.popleft()
        if self._work and not self._work_armed:
            self._work_armed = True
            self._schedule(now, self._work_step, None)

    @staticmethod
    def _run_now(work: Generator[None, None, Any]) -> Any:
        """Run ``work`` to its end in this callback (the unsliced path: tests, small helpers)."""
        while True:
            try:
                next(work)
            except StopIteration as stop:
                return stop.value

    def _slice_budget(self) -> int:
        return 8 * self.config.push_pull_slice

    def _decode_states(self, states: Sequence[PushNodeState]
                       ) -> Generator[None, None, Sequence[PushNodeState]]:
        """The remote states, decoded ``push_pull_slice`` per slice when they came encoded
        (``codec.LazyStates``); raises ``MalformedPacket`` on a bad one."""
        if not isinstance(states, codec.LazyStates):
            return states
        k = self.config.push_pull_slice
        n = len(states)
        out: list[PushNodeState] = []
        for i in range(0, n, k):
            if i:
                yield
            out.extend(states.decode(i, i + k))
        return out

    def _encoded_states(self) -> list[bytes]:
        """Every member's pushNodeState, encoded, in this call (see :meth:`_encode_states`)."""
        out: list[bytes] = self._run_now(self._encode_states([s.node for s in self._node_list]))
        return out

    def _encode_states(self, nodes: list[Node]) -> Generator[None, None, list[bytes]]:
        """The pushNodeStates of ``nodes`` (a snapshot of immutable records: a consistent view
        whatever changes between slices), encoded in slices. Each is cached with the ``Node``
        it was made from, so a push/pull re-encodes only the members that changed since the
        last one (at 5,000 members encoding them all is ~25-50 ms)."""
        cache = self._state_cache
        out: list[bytes] = []
        budget = self._slice_budget()
        cost = 0
        for node in nodes:
            hit = cache.get(node.name)
            if hit is None or hit[0] is not node:
                hit = (node, codec.encode_node_state(PushNodeState(
                    name=node.name, addr=node.addr, port=node.port, meta=node.meta,
                    incarnation=node.incarnation, state=int(node.status), vsn=node.vsn)))
                cache[node.name] = hit
                cost += 8
            else:
                cost += 2
            out.append(hit[1])
            if cost >= budget:
                cost = 0
                yield
        if len(cache) > len(self._nodes) + 64:
            # members forgotten since: drop their entries (now and then, not every time)
            self._state_cache = {n: e for n, e in cache.items() if n in self._nodes}
        return out

    def _push_pull_message(self, join: bool) -> bytes:
        """The encoded push/pull stream message (before compression and encryption)."""
        out: bytes = self._run_now(self._build_push_pull(join))
        return out

    def _build_push_pull(self, join: bool) -> Generator[None, None, bytes]:
        """Our push/pull message, from the delegate's state and the member list as they are
        now (one view), the members encoded in slices."""
        user, nodes = yield from self._push_pull_view(join)
        states = yield from self._encode_states(nodes)
        return codec.push_pull_bytes(join, states, user)

    def _push_pull_view(self, join: bool) -> Generator[None, None, tuple[bytes, list[Node]]]:
        """The delegate's state and a snapshot of the member list (immutable records)."""
        big = len(self._node_list) > self.config.push_pull_slice
        if big:
            yield  # the delegate's state (Serf's status times of every member, the
            # application's) gets a slice of its own, after whatever ran before
        user = b""
        if self.delegate is not None:
            try:
                user = self.delegate.local_state(join) or b""
            except Exception:
                log.exception("delegate local_state failed node=%s", self.name)
        nodes = [s.node for s in self._node_list]
        if big:
            yield
        return bytes(user), nodes

    def _push_pull_payload(self, join: bool) -> Generator[None, None, bytes]:
        """Our push/pull message, compressed when configured: everything but the encryption
        (a fresh nonce per stream). Reused while nothing in it changed: the same ``join``
        flag, the same delegate state and the same member records in the same order (a
        ``Node`` is immutable and replaced on every change, so identity is the test). Under
        a join storm the seed answers many push/pulls in a row with the same view; encoding
        and compressing it once saves most of each answer."""
        user, nodes = yield from self._push_pull_view(join)
        hit = self._payload_cache
        if (hit is not None and hit[0] == join and hit[2] == user and len(hit[1]) == len(nodes)
                and all(x is y for x, y in zip(hit[1], nodes, strict=True))):
            self.counters.push_pull_reused += 1
            return hit[3]
        states = yield from self._encode_states(nodes)
        out = codec.push_pull_bytes(join, states, user)
        if self.config.enable_compression:
            if len(out) > _BIG_MESSAGE:
                yield  # compressing thousands of states: a slice of its own
            out = codec.compress_message(out)
        self._payload_cache = (join, nodes, user, out)
        return out

    def _seal_stream(self, payload: bytes) -> bytes:
        """``payload`` from :meth:`_push_pull_payload` as written on the stream (encrypted
        when we encrypt)."""
        return codec.encode_stream(
            payload, keyring=self.keyring if self._encrypt_out() else None)

    def _encode_stream(self, msg: Any) -> bytes:
        return codec.encode_stream(
            msg,
            compress=self.config.enable_compression,
            keyring=self.keyring if self._encrypt_out() else None,
        )

    def _open_stream(self, addr: Addr, msg: Any, deadline: float, kind: str) -> _Stream | None:
        st = self._reserve_stream(addr, deadline, kind)
        if st is not None:
            self._send_stream(st, self._encode_stream(msg), deadline)
        return st

    def _reserve_stream(self, addr: Addr, deadline: float, kind: str) -> _Stream | None:
        """A stream id and slot, before its request is ready (a push/pull built in slices)."""
        if len(self._streams) >= self.config.max_pending_streams:
            self._drop("too_many_streams", addr, kind)
            return None
        self._stream_id += 1
        st = _Stream(StreamRequest(self._stream_id, addr, b"", deadline, kind))
        self._streams[st.req.id] = st
        return st

    def _send_stream(self, st: _Stream, data: bytes, deadline: float) -> None:
        st.req.data = data
        st.req.deadline = deadline
        self._stream_out.append(st.req)
        # Safety net: if the driver never reports back, fail the stream after its deadline.
        self._schedule(deadline + 1.0, self._stream_expired, st)

    def _start_push_pull(
        self, addr: Addr, join: bool, now: float, join_id: int = 0
    ) -> _Stream | None:
        kind = StreamKind.JOIN if join else StreamKind.PUSH_PULL
        st = self._reserve_stream(addr, now + self.config.tcp_timeout, kind)
        if st is not None:
            st.join_id = join_id
            self.counters.push_pulls += 1
            self._add_work(self._start_work(st, join), now)
        return st

    def _start_work(self, st: _Stream, join: bool) -> _Work:
        try:
            wire = self._seal_stream((yield from self._push_pull_payload(join)))
        except Exception as exc:
            log.exception("error building a push/pull node=%s", self.name)
            self.stream_result(st.req.id, None, f"cannot build the push/pull: {exc!r}",
                               self._work_now)
            return
        if self._streams.get(st.req.id) is st:
            self._send_stream(st, wire, self._work_now + self.config.tcp_timeout)

    def push_pull_with(self, addr: Addr, now: float,
                       on_done: Callable[[bool], None] | None = None) -> bool:
        """Start one push/pull with ``addr`` now, besides the periodic ones (the layer above
        asks for it when a member comes back, to reconcile at once). False if refused;
        otherwise ``on_done`` is called once, with whether the exchange completed (its answer
        merged) or failed."""
        st = self._start_push_pull(addr, False, now)
        if st is None:
            return False
        st.on_done = on_done
        return True

    def _push_pull_tick(self, _: Any, now: float) -> None:
        cfg = self.config
        self._schedule(
            now + push_pull_scale(cfg.push_pull_interval, len(self._nodes)),
            self._push_pull_tick,
            None,
        )
        if self._periodic_push_pull in self._streams:
            return  # memberlist runs them one at a time
        peer = self._random_alive_peer()
        if peer is None:
            return
        st = self._start_push_pull(peer.address, False, now)
        if st is not None:
            self._periodic_push_pull = st.req.id

    def _random_alive_peer(self) -> NodeState | None:
        me = self.name
        peers = self._k_random_nodes(
            1, lambda s: s.name == me or s.node.status != NodeStatus.ALIVE
        )
        return peers[0] if peers else None

    def _stream_expired(self, st: _Stream, now: float) -> None:
        if not st.done:
            self.stream_result(st.req.id, None, "timed out (no result from driver)", now)

    def stream_result(
        self, stream_id: int, response: bytes | object | None, error: str | None, now: float
    ) -> None:
        """Report an outbound stream's answer or its failure (``error``).

        ``response`` is every byte read, or the message a codec ``StreamReader`` already
        decoded from them."""
        st = self._streams.pop(stream_id, None)
        if st is None or st.done:
            return
        st.done = True
        req = st.req
        msg: object = None
        if error is None and not isinstance(response, (bytes, bytearray, memoryview, type(None))):
            msg = response
        elif error is None:
            if not response:
                error = "connection closed without an answer"
            else:
                try:
                    msg = codec.decode_stream(
                        bytes(response),  # type: ignore[call-overload]
                        self.keyring,
                        limits=self.limits,
                        verify_incoming=self.config.gossip_verify_incoming,
                        lazy=True,
                    )
                except MalformedPacket as exc:
                    self._drop("stream_" + exc.reason, req.addr, exc.detail)
                    error = f"bad answer: {exc}"
                except Exception as exc:  # noqa: BLE001 - contain codec bugs
                    self._drop("stream_decode_error", req.addr, repr(exc))
                    error = f"bad answer: {exc!r}"
        try:
            if req.kind == StreamKind.PING:
                self._ping_stream_done(st, msg, error, now)
            else:
                self._push_pull_done(st, msg, error, now)
        except Exception as exc:
            log.exception("error handling stream answer from=%s", req.addr)
            self._drop("handler_error", req.addr, repr(exc))

    def _ping_stream_done(self, st: _Stream, msg: object, error: str | None, now: float) -> None:
        probe = st.probe
        if probe is None or probe.done:
            return
        if error is None and isinstance(msg, AckResp) and msg.seq_no == probe.seq:
            probe.tcp_ok = True
        elif error is None:
            self._drop("tcp_ping_bad_answer", st.req.addr, type(msg).__name__)
        else:
            log.debug("fallback TCP ping to=%s failed: %s", st.req.addr, error)
        if probe.stage == 2 or now >= probe.deadline:
            self._probe_failed(probe, now)

    def _push_pull_done(self, st: _Stream, msg: object, error: str | None, now: float) -> None:
        if error is None:
            if isinstance(msg, ErrResp):
                error = f"remote error: {msg.error}"
            elif not isinstance(msg, PushPull):
                error = f"unexpected answer {type(msg).__name__}"
            else:
                self._add_work(self._answer_merge_work(st, msg), now)
                return
        self._push_pull_finished(st, error, now)

    def _answer_merge_work(self, st: _Stream, pp: PushPull) -> _Work:
        """Merge the answer to our push/pull in slices, then finish it (join bookkeeping)."""
        error: str | None = None
        try:
            yield from self._merge_work(pp, st.req.kind == StreamKind.JOIN)
        except MalformedPacket as exc:
            self._drop("stream_" + exc.reason, st.req.addr, exc.detail)
            error = f"bad answer: {exc}"
        except _PeerError as exc:
            error = str(exc)
        except Exception as exc:  # a bug of ours: the join must still complete
            log.exception("error merging a push/pull answer from=%s", st.req.addr)
            self._drop("handler_error", st.req.addr, repr(exc))
            error = f"merge failed: {exc!r}"
        self._push_pull_finished(st, error, self._work_now)

    def _push_pull_finished(self, st: _Stream, error: str | None, now: float) -> None:
        if error is not None:
            self.counters.push_pull_failures += 1
            self._warn("push_pull_failed", "push/pull with %s:%s failed: %s",
                       st.req.addr[0], st.req.addr[1], error)
        if st.on_done is not None:
            try:
                st.on_done(error is None)
            except Exception:  # the asker's bug must not break the stream bookkeeping
                log.exception("push/pull completion callback failed node=%s", self.name)
        if st.join_id:
            job = self._joins.get(st.join_id)
            if job is not None:
                job.pending -= 1
                if error is None:
                    job.ok += 1
                else:
                    assert job.errors is not None
                    job.errors.append(f"{st.req.addr[0]}:{st.req.addr[1]}: {error}")
                if job.pending <= 0:
                    self._finish_join(st.join_id, now)

    def _finish_join(self, jid: int, now: float) -> None:
        job = self._joins.pop(jid)
        self._emit(JoinCompleted(jid, job.ok, tuple(job.errors or ())))
        if job.ok and self.config.join_resync and not self._resync_pending:
            self._resync_pending = True
            self._schedule(now + 10 * self.config.gossip_interval,
                           self._join_resync, None)

    def _join_resync(self, _: Any, now: float) -> None:
        """One push/pull with a random alive member, some rounds after a join
        (``join_resync``): fetches what the join burst's gossip did not bring us."""
        self._resync_pending = False
        peer = self._random_alive_peer()
        if peer is not None:
            self.counters.join_resyncs += 1
            self._start_push_pull(peer.address, False, now)

    def _verify_protocol(self, remote: Sequence[PushNodeState]) -> None:
        """memberlist verifyProtocol (§6.9); raises _PeerError on an incompatible cluster.

        Over the distinct (versions, alive) pairs: a pool of thousands has a handful, and the
        bounds and checks only depend on which pairs occur."""
        maxpmin = maxdmin = 0
        minpmax = mindmax = 255
        pairs = list(self._vsn_sources(remote))
        for v, alive in pairs:
            if not alive or not v:
                continue
            maxpmin = max(maxpmin, v[0])
            minpmax = min(minpmax, v[1])
            maxdmin = max(maxdmin, v[3])
            mindmax = min(mindmax, v[4])
        for v, _alive in pairs:
            pcur = v[2] if v else 0
            dcur = v[5] if v else 0
            if pcur < maxpmin or pcur > minpmax:
                raise _PeerError(f"protocol version ({pcur}) is incompatible: "
                                 f"[{maxpmin}, {minpmax}]")
            if dcur < maxdmin or dcur > mindmax:
                raise _PeerError(f"delegate protocol version ({dcur}) is incompatible: "
                                 f"[{maxdmin}, {mindmax}]")

    def _vsn_sources(
        self, remote: Sequence[PushNodeState]
    ) -> Iterable[tuple[tuple[int, ...], bool]]:
        alive = NodeStatus.ALIVE
        pairs = {(tuple(r.vsn), int(r.state) == alive) for r in remote}
        pairs.update((s.node.vsn, s.node.status == alive) for s in self._node_list)
        for v, is_alive in pairs:
            yield (v if len(v) == 6 else ()), is_alive

    def _merge_remote_state(self, pp: PushPull, join: bool, now: float) -> None:
        """Merge a whole push/pull in this call (raises _PeerError, MalformedPacket)."""
        self._work_now = now
        self._run_now(self._merge_work(pp, join))

    def _merge_work(self, pp: PushPull, join: bool) -> _Work:
        """Decode, check and merge the remote states in slices, then the delegate's state;
        raises _PeerError (incompatible versions: nothing merged) or MalformedPacket (a bad
        state: nothing merged). Each slice uses its own ``now`` (``_work_now``)."""
        remote = yield from self._decode_states(pp.states)
        self._verify_protocol(remote)
        me = self.name
        nodes = self._nodes
        budget = self._slice_budget()
        cost = 0
        for r in remote:
            if cost >= budget:
                cost = 0
                yield
            now = self._work_now
            cost += 8
            st = int(r.state)
            if st == NodeStatus.ALIVE:
                # nothing new (the common case in a quiet pool): _alive_node would return
                # after building its message; skip it here (not for us: we may refute)
                # (same address and versions: those cases count drops or report conflicts)
                known = nodes.get(r.name)
                if known is not None and r.name != me:
                    kn = known.node
                    if (r.incarnation <= kn.incarnation and r.port == kn.port
                            and r.addr == kn.addr and tuple(r.vsn) == kn.vsn):
                        cost -= 7
                        continue
                self._alive_node(
                    Alive(incarnation=r.incarnation, node=r.name, addr=r.addr, port=r.port,
                          meta=r.meta, vsn=tuple(r.vsn)),
                    now,
                )
            elif st == NodeStatus.LEFT:
                self._dead_node(Dead(incarnation=r.incarnation, node=r.name, from_node=r.name),
                                now)
            elif st in (NodeStatus.DEAD, NodeStatus.SUSPECT):
                # A remote "dead" is not proof: suspect it and let our own timer decide.
                self._suspect_node(Suspect(incarnation=r.incarnation, node=r.name, from_node=me),
                                   now)
            else:
                self._drop("bad_node_state", r.name, f"state={st}")
        if len(remote) > self.config.push_pull_slice or len(pp.user_state or b"") > _BIG_USER_STATE:
            # the delegate's merge (Serf's, the application's): a slice of its own, also after
            # a few member states when the delegate's state is big (Serf's status time of
            # every member of a 5,000-node pool, the catalog's records)
            yield
        if pp.user_state and self.delegate is not None:
            try:
                self.delegate.merge_remote_state(pp.user_state, join, self._work_now)
            except Exception:
                log.exception("delegate merge_remote_state failed node=%s", self.name)

    # ------------------------------------------------------------------ inbound streams
    def handle_stream(self, request: bytes | object, addr: Addr, now: float
                      ) -> bytes | PendingAnswer | None:
        """Answer one inbound TCP exchange.

        ``request`` is everything read (bytes), or a message the driver's ``StreamReader``
        already decoded (``lazy`` is best for push/pulls). Returns the bytes to write back
        (then close), None to just close, or a :class:`PendingAnswer` when a push/pull takes
        more slices (its answer comes out of :meth:`answers_ready`). Never raises because of
        the content."""
        self.counters.streams_in += 1
        msg: object
        if isinstance(request, (bytes, bytearray, memoryview)):
            self.counters.bytes_in += len(request)
            try:
                msg = codec.decode_stream(
                    bytes(request),
                    self.keyring,
                    limits=self.limits,
                    verify_incoming=self.config.gossip_verify_incoming,
                    lazy=True,
                )
            except MalformedPacket as exc:
                return self.stream_error(exc, addr)
            except Exception as exc:  # noqa: BLE001 - contain codec bugs
                self._drop("stream_decode_error", addr, repr(exc))
                return None
        else:
            msg = request
        try:
            return self._handle_stream_msg(msg, addr, now)
        except Exception as exc:
            log.exception("error handling stream from=%s", addr)
            self._drop("handler_error", addr, repr(exc))
            return None

    def _push_pull_answer_work(self, pp: PushPull, addr: Addr, aid: int) -> _Work:
        """An inbound push/pull: merge first, then answer. memberlist answers first, but the
        order is not on the wire, and merging first lets the delegate answer a digest with
        only what the initiator lacks (the registry's anti-entropy does this)."""
        data: bytes | None
        try:
            yield from self._merge_work(pp, pp.join)
        except MalformedPacket as exc:
            self._answers.append((aid, self.stream_error(exc, addr)))
            return
        except _PeerError as exc:
            # Only the merging side complains; the other side sees a normal answer (§5.2).
            self._drop("push_pull_incompatible", addr, str(exc))
        except Exception as exc:  # a bug of ours: log it, still answer
            log.exception("error merging a push/pull from=%s", addr)
            self._drop("handler_error", addr, repr(exc))
        try:
            data = self._seal_stream((yield from self._push_pull_payload(pp.join)))
        except Exception as exc:
            log.exception("error answering a push/pull from=%s", addr)
            self._drop("handler_error", addr, repr(exc))
            data = None
        self._answers.append((aid, data))

    def _unless_expired(self, work: _Work, aid: int, addr: Addr, deadline: float) -> _Work:
        """``work`` (answering inbound push/pull ``aid``), abandoned at the first slice that
        starts at or after ``deadline``: by then the driver has closed the stream (its
        ``tcp_timeout``) and the initiator has given up, so the answer would go nowhere.
        Under a join storm this keeps the queue from filling with answers nobody waits for
        (issue 13). A merge cut short leaves what it merged (each state stands alone)."""
        while True:
            if self._work_now >= deadline:
                work.close()
                self.counters.push_pull_answers_abandoned += 1
                self._warn("push_pull_abandoned",
                           "push/pull from %s:%s not answered: its stream timed out in the "
                           "queue", addr[0], addr[1])
                self._answers.append((aid, None))
                return
            try:
                next(work)
            except StopIteration:
                return
            yield

    def stream_error(self, exc: MalformedPacket, addr: Addr) -> bytes | None:
        """Count a bad inbound stream and build memberlist's errResp answer for it."""
        self._drop("stream_" + exc.reason, addr, exc.detail)
        text = exc.detail or exc.reason
        try:
            return self._encode_stream(ErrResp(text))
        except GossipError:
            return None

    def _handle_stream_msg(self, msg: object, addr: Addr, now: float
                           ) -> bytes | PendingAnswer | None:
        if isinstance(msg, PushPull):
            self._count_in("push_pull")
            self._answer_id += 1
            aid = self._answer_id
            work = self._push_pull_answer_work(msg, addr, aid)
            self._add_work(self._unless_expired(work, aid, addr, now + self.config.tcp_timeout),
                           now)
            for i, (done_id, data) in enumerate(self._answers):
                if done_id == aid:  # done in the first slice (a small push/pull)
                    del self._answers[i]
                    return data
            return PendingAnswer(aid)
        if isinstance(msg, Ping):
            self._count_in("tcp_ping")
            if msg.node and msg.node != self.name:
                self._drop("ping_wrong_node", addr, f"node={msg.node} (tcp)")
                return None
            self._count_out("ack")
            return self._encode_stream(AckResp(msg.seq_no, None))
        if isinstance(msg, UserMsg):
            self._count_in("user")
            self._user_msg(msg.payload, now)
            return None
        self._drop("stream_unexpected_type", addr, type(msg).__name__)
        return None

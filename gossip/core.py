"""One gossip core: memberlist + Serf + the application channel, as one sans-I/O machine.

Theory of operation
-------------------
:class:`GossipCore` holds a :class:`~gossip.memberlist.Memberlist` and a :class:`~gossip.serf.Serf`
joined by a :class:`~gossip.serf.SerfDelegate`. It has no socket and no clock: every entry point
takes ``now``, and memberlist hands that same ``now`` to every delegate callback, so Serf never
asks anyone for the time. The driver (the asyncio :class:`~gossip.transport.MemberlistTransport`,
or the simulator in :mod:`gossip.sim`) sees one machine with memberlist's I/O seams::

    core.receive_packet(data, addr, now)            # one UDP datagram
    answer = core.handle_stream(request, addr, now) # one inbound TCP exchange (or PendingAnswer)
    for answer_id, data in core.answers_ready(): ... # deferred answers, when ready
    core.stream_result(stream_id, answer, error, now)
    core.handle_timer(now)                          # when now >= core.next_deadline()
    for data, addr in core.packets_to_send(): ...   # UDP datagrams
    for req in core.streams_to_open(): ...          # outbound TCP exchanges
    while (ev := core.next_event()) is not None: ...

``next_deadline()`` is the earliest of memberlist's timers (probe, gossip, push/pull, suspicion,
eager rounds) and Serf's (reap, reconnect, queue check, query deadlines): one ``call_at`` in
the driver serves both, and nothing polls.

Serf never calls memberlist while memberlist is calling it. What Serf produces inside a
callback (direct user messages: query answers, relays, leave notices; reconnect requests; its
events) waits in its own queues, and :meth:`GossipCore._settle` moves it on at the end of every
entry point: messages to ``Memberlist.send_user_msg``, reconnects to ``Memberlist.join``, events
to the core's event queue. So the driver needs no re-entrancy guard between the two layers.

Events out of :meth:`next_event` are the Serf layer's :mod:`gossip.events` (``MemberJoined``,
``UserEventReceived``, ``QueryReceived``...), memberlist's :class:`JoinCompleted` (the driver
resolves join calls with it) and :class:`NameConflictDetected` (the driver runs the vote; it
needs to wait for a query's answers, which is the driver's business).

The application channel is the registry's: ``set_app_delegate`` plugs its three callbacks
(``local_app_state``, ``merge_app_state``, ``notify_app_message``) into Serf's push/pull state
and Rumor-only broadcasts; ``broadcast_app`` queues a message for Rumor peers.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Protocol

from .codec import CodecLimits
from .config import MemberlistConfig
from .dclass import dataclass
from .delegate import NodeRefuted
from .errors import GossipError, MalformedPacket
from .events import GossipEvent, Member, MemberRefuted, QueryReceived, UserEventReceived
from .memberlist import JoinCompleted, Memberlist, PendingAnswer, StreamRequest
from .security import Keyring
from .serf import PendingQuery, QueryParams, ReconnectRequested, Serf, SerfDelegate
from .serf_config import SerfConfig

__all__ = ["AppDelegate", "CoreEvent", "GossipCore", "NameConflictDetected"]

log = logging.getLogger(__name__)

Addr = tuple[str, int]


class AppDelegate(Protocol):
    """What the registry plugs into the application channel."""

    def local_app_state(self, join: bool) -> bytes: ...

    def merge_app_state(self, buf: bytes, join: bool) -> None: ...

    def notify_app_message(self, buf: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class NameConflictDetected:
    """Another node (at ``addr:port``) claims our name; the driver should run Serf's vote."""

    addr: str
    port: int


CoreEvent = GossipEvent | JoinCompleted | NameConflictDetected


class GossipCore:
    """memberlist + Serf + application channel of one node (see the module docstring).

    ``memberlist_config`` must carry the bound address and port (the driver binds first);
    ``rng`` makes every random choice of both layers reproducible.
    """

    def __init__(self, memberlist_config: MemberlistConfig, serf_config: SerfConfig, *,
                 now: float, keyring: Keyring | None = None,
                 rng: random.Random | None = None, serf: Serf | None = None) -> None:
        if memberlist_config.name != serf_config.node_name:
            raise GossipError("memberlist and Serf configs name different nodes")
        self.rng = rng if rng is not None else random.Random()
        self.serf = serf if serf is not None else Serf(
            serf_config, rng=self.rng, gossip_interval=memberlist_config.gossip_interval,
            retransmit_mult=memberlist_config.retransmit_mult, now=now)
        self.serf.reset_timers(now)
        self._events: deque[CoreEvent] = deque()
        self._bridge = SerfDelegate(self.serf, self._self_conflict)
        self.memberlist = Memberlist(
            memberlist_config, now=now, delegate=self._bridge, events=self._bridge,
            ping_delegate=self._bridge, conflict=self._bridge, keyring=keyring,
            rng=random.Random(self.rng.random()))
        self.serf.set_local_address(*self.memberlist.advertise)
        self._user_joins: set[int] = set()
        """Joins asked for by the application: a success broadcasts our join intent."""
        self._quiet_joins: set[int] = set()
        """Joins without replay: while one runs, push/pulls raise Serf's event_min_time."""
        self._conflict_reported = False
        self._depth = 0
        """How many memberlist calls are running (nested: a command from a callback)."""

    # -- what the driver needs (memberlist's seams) --------------------------------------------
    @property
    def config(self) -> MemberlistConfig:
        return self.memberlist.config

    @property
    def advertise(self) -> Addr:
        return self.memberlist.advertise

    @property
    def keyring(self) -> Keyring | None:
        return self.memberlist.keyring

    @property
    def limits(self) -> CodecLimits:
        return self.memberlist.limits

    @property
    def leave_broadcast_done(self) -> bool:
        return self.memberlist.leave_broadcast_done

    @contextmanager
    def _inside(self) -> Iterator[None]:
        """Around every call into memberlist (whose callbacks may reach the application)."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1

    @property
    def busy(self) -> bool:
        """True while memberlist is running (so a command now comes from inside a callback:
        the entry point that is running settles it, and the driver flushes after it)."""
        return self._depth > 0

    def receive_packet(self, data: bytes, addr: Addr, now: float) -> None:
        with self._inside():
            self.memberlist.receive_packet(data, addr, now)
        self._settle(now)

    def handle_stream(self, request: bytes | object, addr: Addr, now: float
                      ) -> bytes | PendingAnswer | None:
        """An inbound stream; a big push/pull is merged in slices (then a
        :class:`PendingAnswer`: the answer comes out of :meth:`answers_ready`)."""
        with self._inside():
            answer = self.memberlist.handle_stream(request, addr, now)
        self._settle(now)
        return answer

    def stream_error(self, exc: MalformedPacket, addr: Addr) -> bytes | None:
        return self.memberlist.stream_error(exc, addr)

    def stream_result(self, stream_id: int, response: bytes | object | None,
                      error: str | None, now: float) -> None:
        with self._inside():
            self.memberlist.stream_result(stream_id, response, error, now)
        self._settle(now)

    def handle_timer(self, now: float) -> None:
        ml = self.memberlist
        with self._inside():
            due = ml.next_deadline()
            if due is not None and due <= now:
                ml.handle_timer(now)
            if self.serf.next_deadline() <= now:
                self.serf.handle_timer(now)
        self._settle(now)

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`handle_timer` has work: memberlist's or Serf's."""
        ml = self.memberlist.next_deadline()
        serf = self.serf.next_deadline()
        return serf if ml is None else min(ml, serf)

    def packets_to_send(self) -> list[tuple[bytes, Addr]]:
        return self.memberlist.packets_to_send()

    def streams_to_open(self) -> list[StreamRequest]:
        return self.memberlist.streams_to_open()

    def answers_ready(self) -> list[tuple[int, bytes | None]]:
        return self.memberlist.answers_ready()

    def next_event(self) -> CoreEvent | None:
        return self._events.popleft() if self._events else None

    def count_drop(self, reason: str, addr: object, detail: str = "") -> None:
        self.memberlist.count_drop(reason, addr, detail)

    # -- moving Serf's output on ---------------------------------------------------------------
    def _self_conflict(self, addr: str, port: int) -> None:
        if not self._conflict_reported:
            self._conflict_reported = True
            self._events.append(NameConflictDetected(addr, port))

    def conflict_resolved(self) -> None:
        """The driver finished a name-conflict vote; a later conflict is reported again."""
        self._conflict_reported = False

    def _settle(self, now: float) -> None:
        """After an entry point: Serf's direct messages, reconnects and events move on, and
        memberlist's join results are handled, until nothing is left to move.

        Not while memberlist runs: a command that the application issues from inside one of
        its callbacks (the registry re-broadcasts news it learns in ``notify_app_message``)
        only queues its work, and the running entry point settles it when memberlist returns;
        so memberlist is never re-entered from its own callbacks."""
        if self._depth:
            return
        ml, serf = self.memberlist, self.serf
        moved = True
        while moved:
            moved = False
            for body, addr in serf.packets_to_send():
                moved = True
                if not ml.has_left:
                    ml.send_user_msg(addr, body)
            while (act := serf.next_action()) is not None:
                moved = True
                if isinstance(act, ReconnectRequested) and not ml.has_left:
                    log.info("attempting reconnect to node=%s addr=%s:%s", act.name, act.addr,
                             act.port)
                    ml.join([(act.addr, act.port)], now)
            while (ev := serf.next_event()) is not None:
                self._events.append(ev)
            while (mev := ml.next_event()) is not None:
                # NodeJoined/NodeLeft/...: Serf heard them through the delegate, in order
                if isinstance(mev, JoinCompleted):
                    moved = True
                    self._join_completed(mev, now)
                elif isinstance(mev, NodeRefuted):
                    # Serf has no event for it (the member never stopped being alive)
                    m = serf.member(mev.node.name)
                    if m is not None and m.status == "alive":
                        self._events.append(MemberRefuted(m))

    def _join_completed(self, ev: JoinCompleted, now: float) -> None:
        self._quiet_joins.discard(ev.join_id)
        self.serf.join_ignore_events = bool(self._quiet_joins)
        if ev.join_id not in self._user_joins:
            return  # a reconnect attempt of Serf's: nobody waits for it
        self._user_joins.discard(ev.join_id)
        if ev.num_joined > 0:
            # Serf's Join: tell everyone we (re)joined, at our member clock
            self.serf.broadcast_join_intent(self.serf.clock.time(), now)
            self.memberlist.request_gossip()
        self._events.append(ev)

    def _command_done(self, now: float) -> None:
        """After a local command: gossip what it queued at once (an eager round), and settle."""
        self.memberlist.request_gossip()
        self._settle(now)

    # -- commands ------------------------------------------------------------------------------
    def join(self, addrs: Iterable[Addr], now: float, *, replay: bool = False) -> int:
        """Push/pull with every address; a :class:`JoinCompleted` with the returned id follows.
        On success our join intent is gossiped. Without ``replay`` user events older than the
        join are not delivered (§7.4)."""
        with self._inside():
            jid = self.memberlist.join(addrs, now)
        self._user_joins.add(jid)
        if not replay:
            self._quiet_joins.add(jid)
            self.serf.join_ignore_events = True
        self._settle(now)
        return jid

    def push_pull_with(self, addr: Addr, now: float,
                       on_done: Callable[[bool], None] | None = None) -> bool:
        """One push/pull with ``addr`` now, besides the periodic ones (the registry asks for it
        when a member comes back, to reconcile at once). False if refused; else ``on_done``
        hears whether it completed (called from inside the core: it must not call back in)."""
        with self._inside():
            started = self.memberlist.push_pull_with(addr, now, on_done)
        self._settle(now)
        return started

    def start_leave(self, now: float, on_sent: Callable[[bool], None] | None = None) -> bool:
        """Gossip our Serf leave intent (see :meth:`Serf.start_leave`)."""
        sent = self.serf.start_leave(now, on_sent)
        self._command_done(now)
        return sent

    def leave(self, now: float) -> None:
        """memberlist's graceful leave (dead about ourselves); poll :attr:`leave_broadcast_done`."""
        with self._inside():
            self.memberlist.leave(now, self.serf.config.leave_notify_max)
        self._settle(now)

    def finish_leave(self) -> None:
        self.serf.finish_leave()

    def set_tags(self, tags: Mapping[str, str], now: float) -> None:
        """Replace our tags (the reserved ``rumor`` tag stays) and gossip them."""
        self.serf.set_tags(tags)
        with self._inside():
            self.memberlist.update_node(now)
        self._command_done(now)

    def force_leave(self, node: str, now: float, *, prune: bool = False) -> bool:
        ok = self.serf.force_leave(node, now, prune=prune)
        self._command_done(now)
        return ok

    def user_event(self, name: str, payload: bytes, coalesce: bool,
                   now: float) -> UserEventReceived:
        ev = self.serf.user_event(name, payload, coalesce, now)
        self._command_done(now)
        return ev

    def query(self, name: str, payload: bytes, params: QueryParams, now: float) -> PendingQuery:
        pq = self.serf.query(name, payload, params, now)
        self._command_done(now)
        return pq

    def close_query(self, pq: PendingQuery) -> None:
        self.serf.close_query(pq)

    def respond(self, ev: QueryReceived, payload: bytes, now: float) -> None:
        self.serf.respond(ev, payload, now)
        self._command_done(now)

    def broadcast_app(self, key: str, payload: bytes) -> None:
        """Queue an app message for Rumor peers (newest per key wins; ValueError if too big).

        Timeless (it only queues: an eager gossip round sends it from the timer), so the
        application may call it from inside its own callbacks, which carry no ``now``."""
        self.serf.broadcast_app(key, payload)
        self.memberlist.request_gossip()

    def set_app_delegate(self, d: AppDelegate | None) -> None:
        s = self.serf
        s.app_delegate_message = d.notify_app_message if d else None
        s.app_delegate_state = d.local_app_state if d else None
        s.app_delegate_merge = d.merge_app_state if d else None

    # -- reads ---------------------------------------------------------------------------------
    def members(self) -> list[Member]:
        return self.serf.members()

    def member(self, name: str) -> Member | None:
        return self.serf.member(name)

    def local_member(self) -> Member:
        return self.serf.local_member()

    def is_rumor_peer(self, name: str) -> bool:
        return self.serf.is_rumor_peer(name)

    def counters(self) -> dict[str, int]:
        """memberlist.* and serf.* counters, flat."""
        ml = self.memberlist
        out = {f"memberlist.{k}": v for k, v in ml.counters.snapshot().items()}
        out["memberlist.health_score"] = ml.health_score()
        out["memberlist.num_members"] = ml.num_members()
        out.update(self.serf.counters)
        return out

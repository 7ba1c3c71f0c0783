"""The asyncio ``Gossip`` service: one gossip core on real sockets, plus keyring, snapshot and
event handlers.

This is the one object the agent and the registry use. The protocol is one sans-I/O core,
:class:`~gossip.core.GossipCore` (memberlist + Serf + the application channel), driven by
:class:`~gossip.transport.MemberlistTransport` with one clock and one ``call_at`` timer. This
module adds what needs I/O or waiting: resolving join addresses, waiting for query answers and
for a leave to go out, the snapshot file, event handler scripts and keyring saves.

API (the agent and the registry use exactly this)::

    g = Gossip(memberlist_config, serf_config, keyring=None, app=None, clock=None, rng=None,
               keyring_path=None)    # clock: the one clock of the core and its driver
                                     # (default loop.time); rng: every random choice
    await g.start()                  # binds UDP+TCP; rejoins the snapshot's members if any
    g.bound_port                     # the gossip port actually bound
    n = await g.join(["10.0.0.5", "10.0.0.6:7946"], replay=False)   # members joined (0: none)
    await g.join(addrs, raise_if_none=True)                 # JoinError instead of returning 0
    await g.leave(timeout)           # Serf leave intent, then memberlist leave: others see 'left'
    await g.shutdown()               # stop everything (no leave: others will see 'failed')
    g.members() -> list[Member]      # Member(name, addr, port, tags, status, protocol_*/delegate_*)
    g.coordinate() -> Coordinate     # our Vivaldi coordinate (Serf's, fed by every direct probe)
    g.coordinates() -> {name: Coordinate}   # the last one each peer acked with, ours included
    g.local_member() -> Member       # status: 'alive' | 'leaving' | 'left' | 'failed'
    await g.set_tags({"role": "web"})
    ev = await g.user_event(name, payload, coalesce=True)   # -> UserEventReceived (with LTime)
    res = await g.query(name, payload, filter_nodes=(), filter_tags={}, request_ack=False,
                        relay_factor=0, timeout=0.0)         # -> QueryResult(acks, responses)
    g.respond(query_received_event, payload)                 # answer a QueryReceived
    ok = await g.force_leave(node, prune=False)
    r = await g.install_key(b64) / use_key(b64) / remove_key(b64) / list_keys()  # KeyResponse
    g.add_listener(callback)         # called with every gossip.events event (sync, never blocks)
    g.remove_listener(callback)
    g.is_rumor_peer(name) -> bool    # the member carries the reserved ``rumor`` tag
    g.recent_events()                # user events, oldest first (for /v1/event/list)
    g.events_index; await g.wait_events(index, timeout)     # blocking reads of that list
    g.set_app_delegate(d)            # d.local_app_state(join) -> bytes,
                                     # d.merge_app_state(buf, join), d.notify_app_message(buf)
    g.broadcast_app(key, payload)    # newest per key wins; Rumor peers only
    g.counters                       # flat dict: memberlist.*, serf.*, handlers.*, snapshot.*

Rumor peers are recognised by the reserved gossip tag ``rumor`` (value: Rumor's version) that
every Rumor agent puts in its Meta; plain Serf agents lack it and never receive app messages
(they would log an unknown-message warning). The tag is visible in ``serf members``.

Application state rides inside Serf's push/pull state under the extra key ``RumorApp`` that Go
Serf ignores. Event handler scripts (Serf's ``-event-handler``) and the snapshot are run here,
off the event loop (subprocesses, and disk writes in a worker thread).

Errors: ``user_event``/``broadcast_app``/``query`` raise ``SerfError`` (a ``ValueError``) when a
message is over its size limit. Key operations never raise for remote failures: the
``KeyResponse`` says how many nodes answered and failed (``.ok``, ``.error_text()``), as Serf's
KeyManager does.

Shutdown order: leave (if asked) -> stop background tasks (one TaskGroup) -> stop the timer
and close sockets -> stop handlers -> flush the snapshot. If another node claims our name and wins Serf's ``_serf_conflict`` vote, the service
shuts itself down (as Serf does) and logs an error.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any, Self

from .config import MemberlistConfig
from .core import AppDelegate, GossipCore, NameConflictDetected
from .dclass import dataclass
from .errors import GossipError
from .events import (
    GossipEvent,
    Member,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberReaped,
    QueryReceived,
    UserEventReceived,
)
from .handlers import EventHandlers
from .keymanager import (
    KeyResponse,
    install_key_handlers,
    request_payload,
    save_keyring_file,
    summarize,
)
from .memberlist import JoinCompleted
from .memory import release_free_memory
from .security import Keyring
from .serf import INTERNAL_QUERY_PREFIX, PendingQuery, QueryParams, Serf, conflict_vote
from .serf_config import SerfConfig
from .serf_messages import Coordinate
from .snapshot import Snapshot
from .tasks import TaskOwner
from .transport import DEFAULT_CLOCK, MemberlistTransport, resolve_addr

log = logging.getLogger(__name__)

DEFAULT_PORT = 7946


class JoinError(GossipError):
    """No address could be joined (only raised when asked to)."""


@dataclass(frozen=True)
class QueryResult:
    """What came back for a query: acks (node names) and responses (node -> payload)."""

    name: str
    acks: tuple[str, ...] = ()
    responses: Mapping[str, bytes] = field(default_factory=dict)


# -- the service --------------------------------------------------------------------------------


class Gossip:
    """The gossip service (see the module docstring for the whole API)."""

    def __init__(self, memberlist_config: MemberlistConfig, serf_config: SerfConfig, *,
                 keyring: Keyring | None = None, app: AppDelegate | None = None,
                 clock: Callable[[], float] | None = None, rng: random.Random | None = None,
                 keyring_path: str | Path | None = None) -> None:
        memberlist_config.validate()
        serf_config.validate()
        if memberlist_config.name != serf_config.node_name:
            raise GossipError("memberlist and Serf configs name different nodes")
        self.memberlist_config = memberlist_config
        self.serf_config = serf_config
        self.keyring = keyring
        self.keyring_path = Path(keyring_path) if keyring_path else None
        self._clock = clock
        self.rng = rng or random.Random()
        self.serf = Serf(serf_config, rng=self.rng, gossip_interval=memberlist_config.gossip_interval,
                         retransmit_mult=memberlist_config.retransmit_mult, now=0.0)
        install_key_handlers(self.serf, lambda: self.keyring, self._keyring_changed)
        self._listeners: list[Callable[[GossipEvent], None]] = []
        if app is not None:
            self.set_app_delegate(app)
        self.core: GossipCore | None = None
        self.transport: MemberlistTransport | None = None
        self._tasks = TaskOwner("gossip")
        self._shutdown_task: asyncio.Task[None] | None = None
        """A shutdown the service started itself (a lost name-conflict vote)."""
        self.snapshot: Snapshot | None = None
        self._snapshot_wake = asyncio.Event()
        self._snapshot_seen = (-1, -1, -1)
        """The clocks the snapshot writer last recorded (see ``_snapshot_poke``)."""
        self.handlers: EventHandlers | None = None
        self._started = False
        self._stopped = False
        self.events_index = 1
        """Rises by one for every user event delivered (for blocking /v1/event/list reads)."""
        self._events_changed: asyncio.Event | None = None
        self._resolving_conflict = False
        self.bound_port = 0

    # -- lifecycle ------------------------------------------------------------------------------
    def _now(self) -> float:
        return (self._clock or DEFAULT_CLOCK)()

    async def start(self, *, release_memory: bool = True) -> None:
        """Bind, start the memberlist core and Serf; rejoin the snapshot's members if any.

        ``release_memory``: then hand start-up garbage back to the OS (a full collection,
        :func:`gossip.memory.release_free_memory`); an embedder that starts more after gossip
        (the agent) passes False and does it once, when everything is up."""
        if self._started:
            return
        self._started = True
        await self._tasks.open()
        if self._clock is None:
            self._clock = DEFAULT_CLOCK
        previous: list[tuple[str, str]] = []
        if self.serf_config.snapshot_path:
            self.snapshot = Snapshot(self.serf_config.snapshot_path,
                                     min_compact_size=self.serf_config.snapshot_min_compact_size,
                                     rejoin_after_leave=self.serf_config.rejoin_after_leave)
            st = await asyncio.to_thread(self.snapshot.load)
            self.serf.restore_clocks(st.clock, st.event_clock, st.query_clock)
            previous = self.snapshot.previous_members(self.serf_config.node_name)
        self.handlers = EventHandlers(
            self.serf_config.event_handlers, self_name=self.serf_config.node_name,
            tags=lambda: dict(self.serf.tags), timeout=self.serf_config.handler_timeout,
            max_queue=self.serf_config.max_handler_queue,
            response_limit=self.serf_config.query_response_size_limit - 64,
            respond=self.respond,
            coalesce_period=self.serf_config.coalesce_period,
            quiescent_period=self.serf_config.quiescent_period,
            user_coalesce_period=self.serf_config.user_coalesce_period,
            user_quiescent_period=self.serf_config.user_quiescent_period, clock=self._clock)
        self.transport = MemberlistTransport(
            self.memberlist_config, core_factory=self._make_core, clock=self._clock)
        self.transport.add_listener(self._on_core_event)
        if self.snapshot is not None:
            self.transport.after_flush = self._snapshot_poke
        try:
            await self.transport.start()  # raises TransportError (an OSError) if it cannot bind
        except BaseException:
            await self._tasks.close()  # nothing of ours outlives a failed start
            raise
        self.handlers.start()
        assert self.core is not None
        self.memberlist_config = self.core.config
        self.bound_port = self.transport.port
        adv_addr, adv_port = self.core.advertise
        if self.snapshot is not None:
            self._spawn(self._snapshot_loop(), "snapshot")
        log.info("gossip started node=%s addr=%s:%s encrypted=%s", self.serf_config.node_name,
                 adv_addr, adv_port, bool(self.keyring))
        if previous:
            self._spawn(self._rejoin(previous), "rejoin")
        if release_memory:
            release_free_memory()

    def _make_core(self, config: MemberlistConfig, now: float) -> GossipCore:
        """The transport's core factory: our Serf layer on a memberlist bound to its port."""
        self.core = GossipCore(config, self.serf_config, now=now, keyring=self.keyring,
                               rng=self.rng, serf=self.serf)
        return self.core

    def _on_core_event(self, ev: object) -> None:
        """Every event of the core, in order (the transport delivers them)."""
        if isinstance(ev, NameConflictDetected):
            if not self._resolving_conflict and not self._stopped:
                self._resolving_conflict = True
                self._spawn(self._resolve_conflict(), "name-conflict")
        elif isinstance(ev, GossipEvent):  # JoinCompleted: the transport resolved the join
            self._deliver(ev)

    async def _resolve_conflict(self) -> None:
        """Serf's resolveNodeConflict: ask everyone who has our name; leave if we lose."""
        try:
            me = self.serf.local_member()
            res = await self.query(INTERNAL_QUERY_PREFIX + "conflict", me.name.encode())
            matching, total = conflict_vote(res.responses, self.serf.local_addr,
                                            self.serf.local_port)
            if matching >= total // 2 + 1:
                log.info("name conflict vote won node=%s votes=%d/%d", me.name, matching, total)
                return
            log.error("name conflict vote lost node=%s votes=%d/%d; shutting gossip down",
                      me.name, matching, total)
            self.serf.counters["serf.name_conflict_lost"] += 1
            # not a child of our task group: shutting down cancels the group's children
            self._shutdown_task = asyncio.get_running_loop().create_task(
                self.shutdown(), name="gossip-conflict-shutdown")
        finally:
            self._resolving_conflict = False
            if self.core is not None:
                self.core.conflict_resolved()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.spawn(coro, name)

    async def _rejoin(self, previous: list[tuple[str, str]]) -> None:
        """Serf's snapshot rejoin: try the members we knew, one at a time, until one answers."""
        order = list(previous)
        self.rng.shuffle(order)
        for name, hp in order:
            if self._stopped:
                return
            try:
                n = await self.join([hp], replay=False)
            except Exception as e:  # noqa: BLE001 -- try the next member
                log.debug("rejoin via %s failed: %s", name, e)
                n = 0
            if n:
                log.info("rejoined the cluster from the snapshot via node=%s addr=%s", name, hp)
                return
        log.warning("could not rejoin any member from the snapshot tried=%d", len(order))

    async def leave(self, timeout: float | None = None) -> None:
        """Graceful leave: Serf leave intent, memberlist dead-about-self, propagation delay."""
        core = self.core
        if core is None or self.serf.state != "alive":
            return
        budget = timeout if timeout is not None else (
            self.serf_config.broadcast_timeout * 2 + self.serf_config.leave_propagate_delay)
        deadline = self._now() + budget
        sent = asyncio.Event()
        started = core.start_leave(self._now(), on_sent=lambda ok: sent.set())
        self._flush()
        if started:
            wait = min(self.serf_config.broadcast_timeout, max(0.0, deadline - self._now()))
            try:
                async with asyncio.timeout(wait):
                    await sent.wait()
            except TimeoutError:
                log.warning("leave intent not fully broadcast before the timeout")
        assert self.transport is not None
        wait = min(self.serf_config.broadcast_timeout, max(0.05, deadline - self._now()))
        await self.transport.leave(wait)
        delay = min(self.serf_config.leave_propagate_delay, max(0.0, deadline - self._now()))
        if delay > 0:
            await asyncio.sleep(delay)
        core.finish_leave()
        if self.snapshot is not None:
            self.snapshot.leave()
            await asyncio.to_thread(self.snapshot.flush)
        log.info("left the cluster node=%s", self.serf_config.node_name)

    async def shutdown(self) -> None:
        """Stop timers, close sockets, stop handlers, flush the snapshot (no leave)."""
        if self._stopped:
            return
        self._stopped = True
        self.serf.state = "shutdown" if self.serf.state != "left" else "left"
        await self._tasks.close()
        if self.transport is not None:
            await self.transport.close()
        if self.handlers is not None:
            await self.handlers.stop()
        if self.snapshot is not None:
            self.snapshot.clocks(self.serf.clock.time(), self.serf.event_clock.time(),
                                 self.serf.query_clock.time())
            await asyncio.to_thread(self.snapshot.flush)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    # -- driving the core ----------------------------------------------------------------------
    def _flush(self) -> None:
        """After a command changed the core: send, deliver events, re-arm the one timer. Not
        for a command issued from inside the core (an app delegate callback): the transport
        flushes when the core's entry point returns."""
        if self.transport is not None and not self._stopped and not (
                self.core is not None and self.core.busy):
            self.transport.flush()

    def _deliver(self, ev: GossipEvent) -> None:
        if isinstance(ev, UserEventReceived):
            self.events_index += 1
            if self._events_changed is not None:
                self._events_changed.set()
                self._events_changed = None
        snap = self.snapshot
        if snap is not None:
            if isinstance(ev, MemberJoined):
                snap.alive(ev.member.name, ev.member.addr, ev.member.port)
            elif isinstance(ev, (MemberFailed, MemberLeft, MemberReaped)):
                snap.not_alive(ev.member.name)
        if isinstance(ev, (MemberJoined, MemberLeft, MemberFailed, MemberReaped)):
            log.info("serf: %s: %s %s", type(ev).__name__, ev.member.name, ev.member.addr)
        if self.handlers is not None:
            self.handlers.dispatch(ev)
        for cb in list(self._listeners):
            try:
                cb(ev)
            except Exception:
                log.exception("gossip listener failed event=%s", type(ev).__name__)

    def _snapshot_clocks(self) -> tuple[int, int, int]:
        serf = self.serf
        return serf.clock.time(), serf.event_clock.time(), serf.query_clock.time()

    def _snapshot_poke(self) -> None:
        """After every entry point of the core (the transport's ``after_flush``): wake the
        snapshot writer if a clock moved or a record is pending. Nothing else moves them, so
        an idle agent's writer sleeps instead of ticking twice a second (issue 18)."""
        snap = self.snapshot
        wake = self._snapshot_wake
        if snap is None or wake.is_set():
            return
        if self._snapshot_clocks() != self._snapshot_seen or snap.has_pending():
            wake.set()

    async def _snapshot_loop(self) -> None:
        """Write what changed, at most once per ``snapshot_flush_interval`` and within one
        interval of the change (as Serf's snapshotter, which ticks every 500 ms)."""
        snap = self.snapshot
        assert snap is not None
        wake = self._snapshot_wake
        while True:
            if self._snapshot_clocks() == self._snapshot_seen and not snap.has_pending():
                wake.clear()
                await wake.wait()
            await asyncio.sleep(self.serf_config.snapshot_flush_interval)
            self._snapshot_seen = clocks = self._snapshot_clocks()
            snap.clocks(*clocks)
            if snap.has_pending():
                await asyncio.to_thread(snap.flush)

    # -- membership ----------------------------------------------------------------------------
    async def join(self, addrs: Sequence[str], replay: bool = False, *,
                   raise_if_none: bool = False) -> int:
        """Push/pull with each address (host[:port], default port 7946); returns how many
        answered. Without ``replay`` user events older than the join are not delivered."""
        core = self.core
        if core is None:
            raise GossipError("start() the gossip service before joining")
        targets: list[tuple[str, int]] = []
        errors: list[str] = []
        for a in addrs:
            try:
                resolved = await resolve_addr(a, DEFAULT_PORT)
            except (ValueError, OSError) as e:
                errors.append(f"{a}: {e}")
                continue
            if resolved:
                targets.append(resolved[0])
        if not targets:
            if raise_if_none:
                raise JoinError("; ".join(errors) or "no address to join")
            return 0
        assert self.transport is not None
        # the core gossips our join intent once a push/pull succeeded
        jid = core.join(targets, self._now(), replay=replay)
        result: JoinCompleted | None
        try:
            async with asyncio.timeout(self.memberlist_config.tcp_timeout * 2 + 1.0):
                result = await self.transport.join_result(jid)
        except TimeoutError:
            result = None
        n = result.num_joined if result is not None else 0
        if result is not None and result.errors:
            errors.extend(result.errors)
        if n == 0 and raise_if_none:
            raise JoinError("; ".join(errors) or "no agent answered")
        if n == 0:
            log.warning("join failed: %s", "; ".join(errors) or "no agent answered")
        return n

    def members(self) -> list[Member]:
        return self.serf.members()

    def members_with_tag(self, tag: str) -> list[Member]:
        """The members that carry ``tag`` (without building a Member for every other one)."""
        return self.serf.members_with_tag(tag)

    def status_counts(self) -> dict[str, int]:
        """Members by status (``alive``, ``failed``...), without building the member list."""
        return self.serf.status_counts()

    def member(self, name: str) -> Member | None:
        """One member by its exact name, without building the whole list."""
        return self.serf.member(name)

    def local_member(self) -> Member:
        return self.serf.local_member()

    def coordinate(self) -> Coordinate:
        """This node's Vivaldi network coordinate (Serf's), moved by every direct probe."""
        return self.serf.vivaldi.coord

    def coordinates(self) -> dict[str, Coordinate]:
        """Every known node's last coordinate (from the acks of our probes), ours included."""
        out = dict(self.serf.coordinates)
        out[self.serf.config.node_name] = self.serf.vivaldi.coord
        return out

    async def set_tags(self, tags: Mapping[str, str]) -> None:
        """Replace our tags (the reserved ``rumor`` tag stays) and gossip them."""
        if self.core is None:
            self.serf.set_tags(tags)
            return
        self.core.set_tags(tags, self._now())
        self._flush()

    async def force_leave(self, node: str, prune: bool = False) -> bool:
        if self.core is None:
            return self.serf.force_leave(node, self._now(), prune=prune)
        ok = self.core.force_leave(node, self._now(), prune=prune)
        self._flush()
        return ok

    # -- events and queries --------------------------------------------------------------------
    async def user_event(self, name: str, payload: bytes, coalesce: bool = True) -> UserEventReceived:
        """Fire a Serf user event (raises ValueError when over the size limit)."""
        if self.core is None:
            return self.serf.user_event(name, payload, coalesce, self._now())
        ev = self.core.user_event(name, payload, coalesce, self._now())
        self._flush()
        return ev

    async def query(self, name: str, payload: bytes = b"", *, filter_nodes: Sequence[str] = (),
                    filter_tags: Mapping[str, str] | None = None, request_ack: bool = False,
                    relay_factor: int = 0, timeout: float = 0.0,
                    expect: int | None = None) -> QueryResult:
        """Send a Serf query and collect answers until its timeout (or ``expect`` responses)."""
        pq = self._start_query(name, payload, QueryParams(
            filter_nodes=tuple(filter_nodes), filter_tags=dict(filter_tags or {}),
            request_ack=request_ack, relay_factor=relay_factor, timeout=timeout))
        await self._wait_query(pq, expect)
        return QueryResult(name=name, acks=tuple(pq.acks), responses=dict(pq.responses))

    def _start_query(self, name: str, payload: bytes, params: QueryParams) -> PendingQuery:
        if self.core is None:
            raise GossipError("start() the gossip service before querying")
        pq = self.core.query(name, payload, params, self._now())
        self._flush()
        return pq

    async def _wait_query(self, pq: PendingQuery, expect: int | None) -> None:
        progress = asyncio.Event()
        pq.on_progress = lambda _pq: progress.set()
        try:
            while not pq.finished(self._now()):
                if expect is not None and len(pq.responses) >= expect:
                    break
                remaining = pq.deadline - self._now()
                if remaining <= 0:
                    break
                progress.clear()
                try:
                    async with asyncio.timeout(remaining):
                        await progress.wait()
                except TimeoutError:
                    break
        finally:
            pq.on_progress = None
            self.serf.close_query(pq)

    def respond(self, ev: QueryReceived, payload: bytes) -> None:
        """Answer a QueryReceived (once, before its deadline)."""
        if self.core is None:
            self.serf.respond(ev, payload, self._now())
            return
        self.core.respond(ev, payload, self._now())
        self._flush()

    def add_listener(self, callback: Callable[[GossipEvent], None]) -> None:
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[GossipEvent], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def recent_events(self) -> list[UserEventReceived]:
        return self.serf.recent_events()

    async def wait_events(self, index: int, timeout: float) -> int:
        """Return once ``events_index`` is above ``index`` (a new user event), or after
        ``timeout`` seconds; returns the current ``events_index``."""
        deadline = self._now() + timeout
        while self.events_index <= index:
            remaining = deadline - self._now()
            if remaining <= 0:
                break
            if self._events_changed is None:
                self._events_changed = asyncio.Event()
            changed = self._events_changed
            try:
                async with asyncio.timeout(remaining):
                    await changed.wait()
            except TimeoutError:
                break
        return self.events_index

    # -- keyring -------------------------------------------------------------------------------
    async def _key_op(self, op: str, key_b64: str | None) -> KeyResponse:
        if self.core is None:
            raise GossipError("start() the gossip service first")
        payload = request_payload(key_b64)
        expected = self.core.memberlist.num_members()
        pq = self._start_query(INTERNAL_QUERY_PREFIX + op, payload, QueryParams())
        await self._wait_query(pq, expected)
        return summarize(op, pq.responses, expected)

    async def install_key(self, key_b64: str) -> KeyResponse:
        return await self._key_op("install-key", key_b64)

    async def use_key(self, key_b64: str) -> KeyResponse:
        return await self._key_op("use-key", key_b64)

    async def remove_key(self, key_b64: str) -> KeyResponse:
        return await self._key_op("remove-key", key_b64)

    async def list_keys(self) -> KeyResponse:
        return await self._key_op("list-keys", None)

    def _keyring_changed(self, ring: Keyring) -> None:
        """A key query changed our keyring: save it (in a worker thread) if we have a file."""
        path = self.keyring_path
        if path is None:
            return
        snapshot = Keyring(ring.keys)

        async def save() -> None:
            try:
                await asyncio.to_thread(save_keyring_file, path, snapshot)
            except OSError as e:
                log.error("cannot save the keyring path=%s error=%s", path, e)

        self._spawn(save(), "save-keyring")

    # -- application channel -------------------------------------------------------------------
    def set_app_delegate(self, d: AppDelegate | None) -> None:
        s = self.serf
        s.app_delegate_message = d.notify_app_message if d else None
        s.app_delegate_state = d.local_app_state if d else None
        s.app_delegate_merge = d.merge_app_state if d else None

    def broadcast_app(self, key: str, payload: bytes) -> None:
        """Queue an app message for Rumor peers (newest per key wins; raises ValueError if big).
        It leaves in an eager gossip round, which the core's timer runs from the loop (never
        inside the caller)."""
        if self.core is None:
            self.serf.broadcast_app(key, payload)
            return
        self.core.broadcast_app(key, payload)
        self._flush()

    def is_rumor_peer(self, name: str) -> bool:
        return self.serf.is_rumor_peer(name)

    def push_pull(self, name: str, on_done: Callable[[bool], None] | None = None) -> bool:
        """Start a push/pull with the alive member ``name`` now (the registry reconciles its
        catalog with a member that came back). False if it is not alive or was refused; else
        ``on_done`` hears whether it completed (from inside gossip: schedule, do not call in)."""
        m = self.member(name)
        core = self.core
        if m is None or m.status != "alive" or core is None or self._stopped:
            return False
        started = core.push_pull_with((m.addr, m.port), self._now(), on_done)
        self._flush()
        return started

    # -- metrics -------------------------------------------------------------------------------
    @property
    def counters(self) -> dict[str, int]:
        out: dict[str, int] = (self.core.counters() if self.core is not None
                               else dict(self.serf.counters))
        if self.handlers is not None:
            out.update(self.handlers.counters)
        if self.snapshot is not None:
            out["snapshot.write_errors"] = self.snapshot.write_errors
        statuses = self.status_counts()
        for s in ("alive", "leaving", "left", "failed"):
            out[f"serf.members.{s}"] = statuses.get(s, 0)
        return out

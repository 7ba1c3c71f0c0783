"""The asyncio ``Gossip`` service: memberlist core + transport + Serf + app channel + keyring.

This is the one object the agent and the registry use. Everything else in ``gossip/`` is either
a sans-I/O core (``memberlist.Memberlist``, ``serf.Serf``) or a helper it composes.

API (the agent and the registry use exactly this)::

    g = Gossip(memberlist_config, serf_config, keyring=None, app=None, clock=None, rng=None,
               keyring_path=None)    # clock: the Serf layer's time source (default loop.time,
                                     # which the transport also uses); rng: every random choice
    await g.start()                  # binds UDP+TCP; rejoins the snapshot's members if any
    g.bound_port                     # the gossip port actually bound
    n = await g.join(["10.0.0.5", "10.0.0.6:7946"], replay=False)   # members joined (0: none)
    await g.join(addrs, raise_if_none=True)                 # JoinError instead of returning 0
    await g.leave(timeout)           # Serf leave intent, then memberlist leave: others see 'left'
    await g.shutdown()               # stop everything (no leave: others will see 'failed')
    g.members() -> list[Member]      # Member(name, addr, port, tags, status, protocol_*/delegate_*)
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

Shutdown order: leave (if asked) -> stop timers -> close sockets -> stop handlers -> flush the
snapshot. If another node claims our name and wins Serf's ``_serf_conflict`` vote, the service
shuts itself down (as Serf does) and logs an error.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self

from .config import MemberlistConfig
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
from .memberlist import JoinCompleted, Memberlist
from .memory import release_free_memory
from .security import Keyring
from .serf import (
    INTERNAL_QUERY_PREFIX,
    PendingQuery,
    QueryParams,
    ReconnectRequested,
    Serf,
    SerfDelegate,
    conflict_vote,
)
from .serf_config import SerfConfig
from .snapshot import Snapshot
from .tasks import TaskOwner
from .transport import MemberlistTransport, resolve_addr

log = logging.getLogger(__name__)

DEFAULT_PORT = 7946


class AppDelegate(Protocol):
    """What the registry plugs into the application channel."""

    def local_app_state(self, join: bool) -> bytes: ...

    def merge_app_state(self, buf: bytes, join: bool) -> None: ...

    def notify_app_message(self, buf: bytes) -> None: ...


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
        self._app: AppDelegate | None = None
        if app is not None:
            self.set_app_delegate(app)
        self.memberlist: Memberlist | None = None
        self.transport: MemberlistTransport | None = None
        self._pump_scheduled = False
        self._kick_scheduled = False
        self._tasks = TaskOwner("gossip")
        self._shutdown_task: asyncio.Task[None] | None = None
        """A shutdown the service started itself (a lost name-conflict vote)."""
        self._pumping = False
        self.snapshot: Snapshot | None = None
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
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time()

    async def start(self) -> None:
        """Bind, start the memberlist core and Serf; rejoin the snapshot's members if any."""
        if self._started:
            return
        self._started = True
        loop = asyncio.get_running_loop()
        await self._tasks.open()
        if self._clock is None:
            self._clock = loop.time
        now = self._now()
        self.serf.reset_timers(now)
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
            user_quiescent_period=self.serf_config.user_quiescent_period)
        d = SerfDelegate(self.serf, self._now, self._schedule_pump, self._self_conflict)
        self.transport = MemberlistTransport(
            self.memberlist_config, delegate=d, events=d, ping_delegate=d, conflict=d,
            keyring=self.keyring, rng=random.Random(self.rng.random()))
        await self.transport.start()  # raises TransportError (an OSError) if it cannot bind
        self.handlers.start()
        self.memberlist = self.transport.core
        self.memberlist_config = self.memberlist.config
        self.bound_port = self.transport.port
        adv_addr, adv_port = self.transport.address
        self.serf.set_local_address(adv_addr, adv_port)
        self._pump()
        self._spawn(self._serf_timer(), "serf-timer")
        if self.snapshot is not None:
            self._spawn(self._snapshot_loop(), "snapshot")
        log.info("gossip started node=%s addr=%s:%s encrypted=%s", self.serf_config.node_name,
                 adv_addr, adv_port, bool(self.keyring))
        if previous:
            self._spawn(self._rejoin(previous), "rejoin")
        release_free_memory()

    def _self_conflict(self, other_addr: str, other_port: int) -> None:
        if not self._resolving_conflict and not self._stopped:
            self._resolving_conflict = True
            self._spawn(self._resolve_conflict(), "name-conflict")

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
        if self.memberlist is None or self.serf.state != "alive":
            return
        budget = timeout if timeout is not None else (
            self.serf_config.broadcast_timeout * 2 + self.serf_config.leave_propagate_delay)
        deadline = self._now() + budget
        sent = asyncio.Event()
        if self.serf.start_leave(self._now(), on_sent=lambda ok: sent.set()):
            self._kick()
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
        self.serf.finish_leave()
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

    # -- pumping Serf output -------------------------------------------------------------------
    def _kick(self) -> None:
        """After changing a core from outside the driver: drain Serf, send, re-arm timers.
        Whatever was queued for broadcast goes out in an eager gossip round (``eager_gossip``)."""
        if self.memberlist is not None:
            self.memberlist.request_gossip()
        self._pump()
        if self.transport is not None:
            self.transport.flush()

    def _schedule_pump(self) -> None:
        # Called from inside memberlist callbacks (never re-enter the core there).
        if not self._pump_scheduled and not self._stopped:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        """Drain the Serf core: direct packets (query answers, relays, leave notices), events
        and reconnect requests; then let the transport send and re-arm its timer."""
        self._pump_scheduled = False
        if self._pumping:
            return
        self._pumping = True
        try:
            core = self.memberlist
            work = False
            for body, addr in self.serf.packets_to_send():
                if core is not None and not self._stopped:
                    core.send_user_msg(addr, body)
                    work = True
            while (ev := self.serf.next_event()) is not None:
                self._deliver(ev)
            while (act := self.serf.next_action()) is not None:
                if isinstance(act, ReconnectRequested) and core is not None and not self._stopped:
                    log.info("attempting reconnect to node=%s addr=%s:%s", act.name, act.addr,
                             act.port)
                    core.join([(act.addr, act.port)], self._now())
                    work = True
        finally:
            self._pumping = False
        if work and self.transport is not None and not self._stopped:
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

    async def _serf_timer(self) -> None:
        while True:
            now = self._now()
            wait = min(0.5, max(0.01, self.serf.next_deadline() - now))
            await asyncio.sleep(wait)
            self.serf.handle_timer(self._now())
            self._kick()

    async def _snapshot_loop(self) -> None:
        snap = self.snapshot
        assert snap is not None
        while True:
            await asyncio.sleep(self.serf_config.snapshot_flush_interval)
            snap.clocks(self.serf.clock.time(), self.serf.event_clock.time(),
                        self.serf.query_clock.time())
            if snap.has_pending():
                await asyncio.to_thread(snap.flush)

    # -- membership ----------------------------------------------------------------------------
    async def join(self, addrs: Sequence[str], replay: bool = False, *,
                   raise_if_none: bool = False) -> int:
        """Push/pull with each address (host[:port], default port 7946); returns how many
        answered. Without ``replay`` user events older than the join are not delivered."""
        if self.memberlist is None:
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
        self.serf.join_ignore_events = not replay
        result: JoinCompleted | None
        try:
            async with asyncio.timeout(self.memberlist_config.tcp_timeout * 2 + 1.0):
                result = await self.transport.join(targets)
        except TimeoutError:
            result = None
        finally:
            self.serf.join_ignore_events = False
        n = result.num_joined if result is not None else 0
        if result is not None and result.errors:
            errors.extend(result.errors)
        if n > 0:
            self.serf.broadcast_join_intent(self.serf.clock.time(), self._now())
            self._kick()
        elif raise_if_none:
            raise JoinError("; ".join(errors) or "no agent answered")
        else:
            log.warning("join failed: %s", "; ".join(errors) or "no agent answered")
        return n

    def members(self) -> list[Member]:
        return self.serf.members()

    def member(self, name: str) -> Member | None:
        """One member by its exact name, without building the whole list."""
        return self.serf.member(name)

    def local_member(self) -> Member:
        return self.serf.local_member()

    async def set_tags(self, tags: Mapping[str, str]) -> None:
        """Replace our tags (the reserved ``rumor`` tag stays) and gossip them."""
        self.serf.set_tags(tags)
        if self.memberlist is not None:
            self.memberlist.update_node(self._now())
            self._kick()

    async def force_leave(self, node: str, prune: bool = False) -> bool:
        ok = self.serf.force_leave(node, self._now(), prune=prune)
        self._kick()
        return ok

    # -- events and queries --------------------------------------------------------------------
    async def user_event(self, name: str, payload: bytes, coalesce: bool = True) -> UserEventReceived:
        """Fire a Serf user event (raises ValueError when over the size limit)."""
        ev = self.serf.user_event(name, payload, coalesce, self._now())
        self._kick()
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
        pq = self.serf.query(name, payload, params, self._now())
        self._kick()
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
        self.serf.respond(ev, payload, self._now())
        self._kick()

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
        if self.memberlist is None:
            raise GossipError("start() the gossip service first")
        payload = request_payload(key_b64)
        expected = self.memberlist.num_members()
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
        self._app = d
        self.serf.app_delegate_message = d.notify_app_message if d else None
        self.serf.app_delegate_state = d.local_app_state if d else None
        self.serf.app_delegate_merge = d.merge_app_state if d else None

    def broadcast_app(self, key: str, payload: bytes) -> None:
        """Queue an app message for Rumor peers (newest per key wins; raises ValueError if big).
        It leaves in an eager gossip round, from the loop (never inside the caller)."""
        self.serf.broadcast_app(key, payload)
        if self.memberlist is not None and not self._stopped and not self._kick_scheduled:
            self._kick_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_kick)

    def _scheduled_kick(self) -> None:
        self._kick_scheduled = False
        if not self._stopped:
            self._kick()

    def is_rumor_peer(self, name: str) -> bool:
        return self.serf.is_rumor_peer(name)

    # -- metrics -------------------------------------------------------------------------------
    @property
    def counters(self) -> dict[str, int]:
        out: dict[str, int] = {}
        if self.memberlist is not None:
            for k, v in self.memberlist.counters.snapshot().items():
                out[f"memberlist.{k}"] = v
            out["memberlist.health_score"] = self.memberlist.health_score()
            out["memberlist.num_members"] = self.memberlist.num_members()
        out.update(self.serf.counters)
        if self.handlers is not None:
            out.update(self.handlers.counters)
        if self.snapshot is not None:
            out["snapshot.write_errors"] = self.snapshot.write_errors
        statuses: dict[str, int] = {}
        for m in self.serf.members():
            statuses[m.status] = statuses.get(m.status, 0) + 1
        for s in ("alive", "leaving", "left", "failed"):
            out[f"serf.members.{s}"] = statuses.get(s, 0)
        return out

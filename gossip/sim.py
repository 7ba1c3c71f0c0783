"""In-process simulator: many gossip nodes on a fake network with a virtual clock.

A node is either a bare memberlist core (:meth:`Simulator.add_node`) or a whole node
(:meth:`Simulator.add_gossip_node`): the :class:`~gossip.core.GossipCore` the agent runs
(memberlist + Serf + an application channel), the same object the asyncio driver drives, with
the same single ``next_deadline``. :class:`ReplicatedMap` is an application channel shaped like
the registry's (full state in push/pull, changes as Rumor-only broadcasts, newest version wins).

Nothing here sleeps or touches a socket. A single event heap orders packet deliveries, stream
exchanges and every core's timers; the virtual clock jumps from event to event, so a simulated
minute of a 20-node cluster runs in well under a second and 1,000 nodes fit in one process.

The network is a routing hook (in the spirit of trio's ``FakeNet.route_packet`` and memberlist's
``MockTransport``): ``route(src, dst, kind, now)`` returns the one-way delay in seconds, or
``None`` to drop. Tests install hooks for loss, delay, reordering and partitions
(``tests/unit/gossip/fakenet.py``); :mod:`bench.gossip_sim` uses it to measure dissemination.
"""

from __future__ import annotations

import heapq
import json
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import field
from typing import Any

from .config import MemberlistConfig
from .core import GossipCore
from .dclass import dataclass
from .delegate import NullDelegate
from .events import Member
from .memberlist import JoinCompleted, Memberlist, PendingAnswer, StreamRequest
from .messages import Alive
from .serf_config import SerfConfig
from .state import Node

__all__ = ["ManualClock", "ReplicatedMap", "Route", "SimGossip", "SimNode", "SimTimer",
           "Simulator", "default_route"]

Addr = tuple[str, int]
Route = Callable[[Addr, Addr, str, float], "float | None"]
"""``route(src, dst, kind, now) -> delay seconds | None (drop)``; kind is "udp" or "tcp"."""


class ManualClock:
    """A clock that only moves when told (the simulator advances it)."""

    __slots__ = ("now",)

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    def advance(self, dt: float) -> None:
        self.now += dt


def default_route(rng: random.Random, base: float = 0.0005, jitter: float = 0.0005) -> Route:
    """Every packet arrives after ``base + U(0, jitter)`` seconds."""

    def route(src: Addr, dst: Addr, kind: str, now: float) -> float | None:
        return base + rng.random() * jitter

    return route


class _Recorder(NullDelegate):
    """Default delegate of a simulated node: records user messages, can inject broadcasts."""

    def __init__(self, sim: Simulator, name: str) -> None:
        self.sim = sim
        self.name = name
        self.user_msgs: list[bytes] = []
        self.outgoing: list[bytes] = []
        self.meta = b""

    def node_meta(self, limit: int) -> bytes:
        return self.meta

    def notify_user_msg(self, buf: bytes, now: float) -> None:
        self.user_msgs.append(buf)
        hook = self.sim.on_user_msg
        if hook is not None:
            hook(self.name, buf)

    def pending_broadcasts(self) -> int:
        return len(self.outgoing)

    def get_broadcasts(self, overhead: int, limit: int, dest: Node | None) -> list[bytes]:
        if not self.outgoing:
            return []
        out: list[bytes] = []
        used = 0
        keep: list[bytes] = []
        for m in self.outgoing:
            if used + overhead + len(m) <= limit:
                out.append(m)
                used += overhead + len(m)
            else:
                keep.append(m)
        self.outgoing = keep
        return out


class ReplicatedMap:
    """A toy application channel shaped like the registry's: ``key -> (version, value)``, the
    whole map in every push/pull, each change as a Rumor-only broadcast; the higher version
    wins, so every node ends with the same map whatever order the news arrives in."""

    def __init__(self, *, rebroadcast: bool = False) -> None:
        self.entries: dict[str, tuple[int, str]] = {}
        self.merges = 0
        self.rebroadcast = rebroadcast
        """Re-broadcast news from inside ``notify_app_message``, as the registry does."""
        self.core: GossipCore | None = None

    def attach(self, core: GossipCore) -> None:
        self.core = core

    def put(self, key: str, value: str) -> None:
        version = self.entries.get(key, (0, ""))[0] + 1
        self.entries[key] = (version, value)
        self._send(key, version, value)

    def _send(self, key: str, version: int, value: str) -> None:
        if self.core is not None:
            self.core.broadcast_app(key, json.dumps([key, version, value]).encode())

    def _merge(self, key: str, version: int, value: str) -> bool:
        if version > self.entries.get(key, (0, ""))[0]:
            self.entries[key] = (version, value)
            return True
        return False

    # AppDelegate
    def local_app_state(self, join: bool) -> bytes:
        return json.dumps(self.entries, sort_keys=True).encode()

    def merge_app_state(self, buf: bytes, join: bool) -> None:
        self.merges += 1
        for key, (version, value) in json.loads(buf).items():
            self._merge(key, version, value)

    def notify_app_message(self, buf: bytes) -> None:
        key, version, value = json.loads(buf)
        if self._merge(key, version, value) and self.rebroadcast:
            self._send(key, version, value)  # from inside the core's receive path


class SimGossip:
    """What the registry uses of the :class:`~gossip.service.Gossip` service (members, member
    lookups, listeners, the application channel), on a whole simulated node: the registry's
    own replication runs over real gossip cores on the virtual clock."""

    def __init__(self, sim: Simulator, node: SimNode) -> None:
        self._sim = sim
        self._node = node

    @property
    def _core(self) -> GossipCore:
        return self._node.gossip

    def members(self) -> list[Member]:
        return self._core.members()

    def member(self, name: str) -> Member | None:
        return self._core.member(name)

    def local_member(self) -> Member:
        return self._core.local_member()

    def is_rumor_peer(self, name: str) -> bool:
        return self._core.is_rumor_peer(name)

    def add_listener(self, callback: Callable[[Any], None]) -> None:
        self._node.listeners.append(callback)

    def remove_listener(self, callback: Callable[[Any], None]) -> None:
        if callback in self._node.listeners:
            self._node.listeners.remove(callback)

    def set_app_delegate(self, d: Any) -> None:
        self._core.set_app_delegate(d)

    def broadcast_app(self, key: str, payload: bytes) -> None:
        self._core.broadcast_app(key, payload)
        if not self._core.busy:  # from a callback: the running entry point's flush follows
            self._sim._flush(self._node)

    def push_pull(self, name: str, on_done: Callable[[bool], None] | None = None) -> bool:
        """As ``Gossip.push_pull``: a push/pull with the alive member ``name`` now."""
        m = self.member(name)
        if m is None or m.status != "alive" or not self._node.running:
            return False
        started = self._core.push_pull_with((m.addr, m.port), self._sim.now, on_done)
        if not self._core.busy:
            self._sim._flush(self._node)
        return started


class SimTimer:
    """A cancellable timer of :meth:`Simulator.call_later`."""

    __slots__ = ("cancelled", "fn")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.cancelled = False

    def fire(self) -> None:
        if not self.cancelled:
            self.fn()

    def cancel(self) -> None:
        self.cancelled = True


@dataclass(slots=True, eq=False)
class SimNode:
    """One simulated member: its core, address and whether it is running."""

    name: str
    addr: Addr
    core: Memberlist | GossipCore
    delegate: Any
    running: bool = True
    paused: bool = False
    events: list[Any] = field(default_factory=list)
    timer_at: float | None = None
    listeners: list[Callable[[Any], None]] = field(default_factory=list)
    delivering: bool = False

    @property
    def memberlist(self) -> Memberlist:
        """The node's memberlist layer (the core itself for a bare memberlist node)."""
        core = self.core
        return core if isinstance(core, Memberlist) else core.memberlist

    @property
    def gossip(self) -> GossipCore:
        """The whole-node core (only for nodes made by ``add_gossip_node``)."""
        if not isinstance(self.core, GossipCore):
            raise TypeError(f"{self.name} is a bare memberlist node")
        return self.core


class Simulator:
    """Drives :class:`Memberlist` cores on a fake network (see module docstring)."""

    def __init__(
        self,
        *,
        seed: int = 1,
        route: Route | None = None,
        start: float = 1000.0,
        record_events: bool = True,
    ) -> None:
        self.rng = random.Random(seed)
        self.clock = ManualClock(start)
        self.route: Route = route if route is not None else default_route(self.rng)
        self.nodes: dict[str, SimNode] = {}
        self.by_addr: dict[Addr, SimNode] = {}
        self.record_events = record_events
        self._heap: list[tuple[float, int, int, Any]] = []
        self._seq = 0
        self._next_port = 7946
        self.packets_sent = 0
        self.packets_dropped = 0
        self.bytes_sent = 0
        self.on_user_msg: Callable[[str, bytes], None] | None = None
        self.on_event: Callable[[str, Any, float], None] | None = None
        self._pending_answers: dict[tuple[str, int], tuple[SimNode, StreamRequest]] = {}
        """(answering node, answer id) -> (initiator, its request): push/pulls being
        answered in slices."""
        self.callback_budget = 0.020
        """CPU seconds one core callback may take (issue 13's 20 ms): each entry point the
        simulator calls (a timer, a packet, an inbound or finished stream), with the flush and
        the event delivery to listeners after it, is timed with ``time.thread_time`` (CPU time
        of this thread: waiting for a loaded machine's cores does not count)."""
        self.callbacks = 0
        self.callbacks_over_budget = 0
        self.max_callback_seconds = 0.0
        self.slowest_callback = ""
        """What the longest callback was (``kind node``), for the message of a failing test."""
        self.over_budget: dict[str, float] = {}
        """Node name -> its longest callback over the budget (seconds)."""

    @property
    def now(self) -> float:
        return self.clock.now

    # -- building the cluster ------------------------------------------------------------------
    def add_node(
        self,
        name: str,
        config: MemberlistConfig | None = None,
        *,
        delegate: Any = None,
        ip: str = "10.0.0.1",
        **overrides: Any,
    ) -> SimNode:
        """Create a core named ``name`` on a fresh fake address (not joined to anyone)."""
        port = self._next_port
        self._next_port += 1
        if config is None:
            config = MemberlistConfig.lan(name=name)
        config = config.replace(name=name, bind_addr=ip, bind_port=port, advertise_addr="",
                                advertise_port=0, **overrides)
        if delegate is None:
            delegate = _Recorder(self, name)
        core = Memberlist(
            config,
            now=self.now,
            delegate=delegate,
            events=delegate if hasattr(delegate, "notify_join") else None,
            ping_delegate=delegate if hasattr(delegate, "ack_payload") else None,
            conflict=delegate if hasattr(delegate, "notify_conflict") else None,
            rng=random.Random(self.rng.random()),
        )
        node = SimNode(name, (ip, port), core, delegate)
        self.nodes[name] = node
        self.by_addr[node.addr] = node
        self._flush(node)
        return node

    def add_gossip_node(
        self,
        name: str,
        serf_config: SerfConfig | None = None,
        config: MemberlistConfig | None = None,
        *,
        app: Any = None,
        ip: str = "10.0.0.1",
        **overrides: Any,
    ) -> SimNode:
        """A whole node: memberlist + Serf (+ ``app``, an AppDelegate) in one GossipCore."""
        port = self._next_port
        self._next_port += 1
        if config is None:
            config = MemberlistConfig.local(name=name)
        config = config.replace(name=name, bind_addr=ip, bind_port=port, advertise_addr="",
                                advertise_port=0, **overrides)
        if serf_config is None:
            serf_config = SerfConfig.local(name)
        core = GossipCore(config, serf_config, now=self.now,
                          rng=random.Random(self.rng.random()))
        if app is not None:
            core.set_app_delegate(app)
            attach = getattr(app, "attach", None)
            if attach is not None:
                attach(core)
        node = SimNode(name, (ip, port), core, app)
        self.nodes[name] = node
        self.by_addr[node.addr] = node
        self._flush(node)
        return node

    def facade(self, name: str) -> SimGossip:
        """The registry-facing API of the whole node ``name`` (see :class:`SimGossip`)."""
        return SimGossip(self, self.nodes[name])

    def command(self, name: str, fn: Callable[[GossipCore, float], Any]) -> Any:
        """Run ``fn(core, now)`` on a whole node (a user event, a query, a tag change...), then
        send what it produced, as the service does after each call."""
        node = self.nodes[name]
        result = fn(node.gossip, self.now)
        self._flush(node)
        return result

    def at(self, when: float, fn: Callable[[], Any]) -> None:
        """Call ``fn()`` at virtual time ``when`` (a scripted step: a leave, a crash...)."""
        self._push(when, 4, fn)

    def call_later(self, wait: float, fn: Callable[[], Any]) -> SimTimer:
        """``loop.call_later`` on the virtual clock (for application timers: the registry's
        heal push-pulls); the handle's ``cancel()`` stops it."""
        timer = SimTimer(fn)
        self.at(self.now + wait, timer.fire)
        return timer

    def seed_membership(self, names: Iterable[str] | None = None,
                        among: Iterable[str] | None = None) -> None:
        """Make every running node in ``names`` know every node in ``among`` (default: the
        same nodes) as alive, without network traffic.

        For large simulations (the bench): joining 1,000 nodes by push/pull is slow to simulate
        and not what we measure. The alives are fed through the core's own alive handling and
        the resulting broadcast queues are then emptied."""
        chosen = [self.nodes[n] for n in (names if names is not None else list(self.nodes))]
        known = chosen if among is None else [self.nodes[n] for n in among]
        alives = [
            Alive(incarnation=n.memberlist.incarnation, node=n.name, addr=n.addr[0],
                  port=n.addr[1], meta=n.memberlist.local_node.meta, vsn=n.memberlist.config.vsn)
            for n in known
        ]
        for n in chosen:
            self.feed_alives(n.name, alives)

    def feed_alives(self, name: str, alives: Iterable[Alive]) -> None:
        """Node ``name`` takes ``alives`` (others than itself) through its core's own alive
        handling, at once and without traffic; the broadcast queues and events that leaves
        are dropped (:meth:`seed_membership`; the bench gives each node a view of its own)."""
        n = self.nodes[name]
        core = n.memberlist
        now = self.now
        for a in alives:
            if a.node != n.name:
                core._alive_node(a, now)
        core.broadcasts.reset()
        while core.next_event() is not None:
            pass
        if isinstance(n.core, GossipCore):
            while n.core.next_event() is not None:
                pass
        self._flush(n)

    # -- control -----------------------------------------------------------------------------
    def join(self, name: str, others: Iterable[str]) -> int:
        node = self.nodes[name]
        jid = node.core.join([self.nodes[o].addr for o in others], self.now)
        self._flush(node)
        return jid

    def stop(self, name: str) -> None:
        """Crash a node: it stops answering and sending (like kill -9)."""
        n = self.nodes[name]
        n.running = False

    def pause(self, name: str) -> None:
        """Freeze a node (SIGSTOP): packets to it are lost, its timers do not run."""
        self.nodes[name].paused = True

    def resume(self, name: str) -> None:
        n = self.nodes[name]
        n.paused = False
        self._flush(n)

    def leave(self, name: str) -> None:
        """memberlist's graceful leave (a dead message about ourselves)."""
        n = self.nodes[name]
        n.core.leave(self.now)
        self._flush(n)

    def leave_gracefully(self, name: str, *, intent_time: float = 1.0,
                         propagate: float = 1.0) -> None:
        """A whole node's leave as the service does it: Serf's leave intent, ``intent_time``
        later memberlist's leave, ``propagate`` after that the process stops."""
        self.command(name, lambda core, now: core.start_leave(now))
        t = self.now + intent_time
        self.at(t, lambda: self.leave(name))
        self.at(t + propagate, lambda: self._finish_leave(name))

    def _finish_leave(self, name: str) -> None:
        self.nodes[name].gossip.finish_leave()
        self.stop(name)

    def broadcast_user(self, name: str, body: bytes) -> None:
        """Have ``name``'s delegate offer ``body`` once (the memberlist layer disseminates it
        only through piggy-backing; for flood-style spread use :meth:`queue_user_broadcast`)."""
        self.nodes[name].delegate.outgoing.append(body)

    def queue_user_broadcast(self, name: str, body: bytes, key: str) -> None:
        """Queue a user message (0x08 + body) in ``name``'s memberlist broadcast queue."""
        n = self.nodes[name]
        n.memberlist.queue_broadcast(b"\x08" + body, key)

    # -- the event loop ----------------------------------------------------------------------
    def _push(self, when: float, kind: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, kind, payload))

    def _flush(self, node: SimNode) -> None:
        """Collect what ``node``'s core wants to send and re-arm its timer."""
        core = node.core
        now = self.now
        if not node.running:
            core.packets_to_send()
            core.streams_to_open()
            core.answers_ready()
            return
        for data, dst in core.packets_to_send():
            self.packets_sent += 1
            self.bytes_sent += len(data)
            delay = self.route(node.addr, dst, "udp", now)
            if delay is None:
                self.packets_dropped += 1
                continue
            self._push(now + delay, 0, (dst, data, node.addr))
        for req in core.streams_to_open():
            delay = self.route(node.addr, req.addr, "tcp", now)
            if delay is None or self.route(req.addr, node.addr, "tcp", now) is None:
                # Connection attempt times out at the stream's deadline.
                self._push(max(now, req.deadline), 2, (node, req.id, None, "i/o timeout"))
                continue
            self._push(now + delay, 1, (node, req))
        for aid, answer in core.answers_ready():
            pending = self._pending_answers.pop((node.name, aid), None)
            if pending is not None:
                self._answer(pending[0], pending[1], answer, now)
        if not node.delivering:
            # in order: a listener whose command flushes again does not deliver later events
            # from inside itself (as the asyncio transport)
            node.delivering = True
            try:
                while (ev := core.next_event()) is not None:
                    if self.record_events:
                        node.events.append((now, ev))
                    if self.on_event is not None:
                        self.on_event(node.name, ev, now)
                    for listener in list(node.listeners):
                        listener(ev)
            finally:
                node.delivering = False
        deadline = core.next_deadline()
        if deadline is not None:
            # a deadline already past (an eager gossip round asks for "at once") fires now,
            # as the asyncio driver's call_at does; the clock never runs backwards
            deadline = max(deadline, self.now)
        if deadline is not None and deadline != node.timer_at:
            node.timer_at = deadline
            self._push(deadline, 3, node)

    def _answer(self, node: SimNode, req: StreamRequest, answer: bytes | None,
                now: float) -> None:
        """Send an inbound stream's answer back to its initiator ``node``."""
        back = self.route(req.addr, node.addr, "tcp", now)
        if back is None or now + back > req.deadline:
            self._push(max(now, req.deadline), 2, (node, req.id, None, "i/o timeout"))
        else:
            self._push(now + back, 2, (node, req.id, answer or b"", None))

    def run_until(
        self, t: float, stop: Callable[[], bool] | None = None, *, check_every: float = 0.0
    ) -> bool:
        """Run events up to virtual time ``t``; return True early when ``stop()`` holds.

        ``stop`` is evaluated after every event, or at most once per ``check_every`` simulated
        seconds (for expensive conditions on large clusters)."""
        heap = self._heap
        clock = self.clock
        next_check = clock.now
        while heap and heap[0][0] <= t:
            when, _, kind, payload = heapq.heappop(heap)
            clock.now = max(clock.now, when)
            now = clock.now
            t0 = time.thread_time()
            if kind == 3:  # timer
                node = payload
                if node.timer_at != when:
                    continue
                node.timer_at = None
                if not node.running:
                    continue
                if node.paused:
                    # Timers wait until resume(); re-check later.
                    node.timer_at = when + 0.1
                    self._push(when + 0.1, 3, node)
                    continue
                node.core.handle_timer(now)
                self._flush(node)
            elif kind == 0:  # packet delivery
                dst, data, src = payload
                target = self.by_addr.get(dst)
                if target is None or not target.running or target.paused:
                    self.packets_dropped += 1
                    continue
                target.core.receive_packet(data, src, now)
                self._flush(target)
            elif kind == 1:  # stream arrives at the listener
                node, req = payload
                target = self.by_addr.get(req.addr)
                if target is None or not target.running:
                    self._push(now, 2, (node, req.id, None, "connection refused"))
                    continue
                if target.paused:
                    self._push(max(now, req.deadline), 2, (node, req.id, None, "i/o timeout"))
                    continue
                answer = target.core.handle_stream(req.data, node.addr, now)
                if isinstance(answer, PendingAnswer):
                    # answered in slices: the answer leaves from a later flush of target
                    self._pending_answers[(target.name, answer.id)] = (node, req)
                else:
                    self._answer(node, req, answer, now)
                self._flush(target)
            elif kind == 2:  # stream result back at the initiator
                node, sid, answer, error = payload
                if not node.running:
                    continue
                node.core.stream_result(sid, answer, error, now)
                self._flush(node)
            elif kind == 4:  # a scripted step
                payload()
            if kind != 4:
                self._account(time.thread_time() - t0, kind, payload)
            if stop is not None and clock.now >= next_check:
                if stop():
                    return True
                next_check = clock.now + check_every
        clock.now = max(clock.now, t)
        return stop() if stop is not None else False

    def _account(self, cost: float, kind: int, payload: Any) -> None:
        self.callbacks += 1
        if cost <= self.callback_budget and cost <= self.max_callback_seconds:
            return
        if kind == 3:
            node = payload
        elif kind == 0:
            node = self.by_addr.get(payload[0])
        elif kind == 1:
            node = self.by_addr.get(payload[1].addr)
        else:
            node = payload[0]
        name = getattr(node, "name", str(node))
        if cost > self.callback_budget:
            self.callbacks_over_budget += 1
            self.over_budget[name] = max(self.over_budget.get(name, 0.0), cost)
        if cost > self.max_callback_seconds:
            self.max_callback_seconds = cost
            what = ("timer", "packet", "stream", "stream result")[(3, 0, 1, 2).index(kind)]
            self.slowest_callback = f"{what} {name}"

    def run_for(
        self, dt: float, stop: Callable[[], bool] | None = None, *, check_every: float = 0.0
    ) -> bool:
        return self.run_until(self.now + dt, stop, check_every=check_every)

    # -- observations --------------------------------------------------------------------------
    def view(self, name: str) -> dict[str, str]:
        """``name``'s view: member name -> status name (lower case)."""
        return {n.name: n.status.name.lower() for n in self.nodes[name].memberlist.all_nodes()}

    def converged(self, names: Iterable[str] | None = None, expect: dict[str, str] | None = None
                  ) -> bool:
        """Every running node in ``names`` sees exactly ``expect`` (default: all running alive)."""
        chosen = [self.nodes[n] for n in (names if names is not None else self.nodes)]
        running = [n for n in chosen if n.running]
        if expect is None:
            expect = {n.name: "alive" for n in running}
        for n in running:
            view = {m.name: m.status.name.lower() for m in n.memberlist.all_nodes()}
            for k, v in expect.items():
                if view.get(k) != v:
                    return False
        return True

    def joins_completed(self, name: str) -> list[JoinCompleted]:
        return [ev for _, ev in self.nodes[name].events if isinstance(ev, JoinCompleted)]


@dataclass(slots=True)
class DisseminationResult:
    """What :func:`measure_dissemination` observed (times in simulated seconds)."""

    n: int
    dissemination_time: float
    """From one node's meta update until every node holds the new incarnation."""
    idle_packets_per_node_s: float
    """Packets sent per node per second while nothing changes (probes and acks)."""
    busy_packets_per_node_s: float
    """Packets sent per node per second during the dissemination window."""
    bytes_per_node_s: float
    """Bytes sent per node per second, idle window."""
    detection_time: float | None
    """From stopping a node until every other node has it dead (None if not measured)."""
    wall_seconds: float
    """Real time the simulation took."""


def measure_dissemination(
    n: int,
    *,
    seed: int = 1,
    idle_window: float = 10.0,
    detect: bool = False,
    config: MemberlistConfig | None = None,
) -> DisseminationResult:
    """Build an ``n``-node LAN cluster (membership pre-seeded), measure idle traffic, the time a
    meta update takes to reach everyone, and optionally failure detection of a stopped node."""
    import time as _time

    wall = _time.perf_counter()
    sim = Simulator(seed=seed, record_events=False)
    # Compression off and push/pull off: neither changes UDP dissemination, and simulating a
    # 1000-state push/pull per node would dominate the run time.
    base = config or MemberlistConfig.lan(name="x", enable_compression=False,
                                          push_pull_interval=0.0)
    names = [f"n{i}" for i in range(n)]
    for name in names:
        sim.add_node(name, base)
    sim.seed_membership()
    sim.run_for(2.0)  # let tickers get going

    def sent() -> tuple[int, int]:
        p = b = 0
        for node in sim.nodes.values():
            p += node.memberlist.counters.packets_out
            b += node.memberlist.counters.bytes_out
        return p, b

    p0, b0 = sent()
    sim.run_for(idle_window)
    p1, b1 = sent()
    idle_rate = (p1 - p0) / n / idle_window
    byte_rate = (b1 - b0) / n / idle_window

    origin = sim.nodes[names[0]]
    origin.delegate.meta = b"\xff\x81\xa1v\xa12"
    t0 = sim.now
    origin.memberlist.update_node(t0)
    sim._flush(origin)
    target_inc = origin.memberlist.incarnation
    cores = [node.memberlist for node in sim.nodes.values()]
    remaining = {id(c) for c in cores if c is not origin.memberlist}

    def everyone_has_it() -> bool:
        if remaining:
            for c in cores:
                if id(c) in remaining:
                    nd = c.node(names[0])
                    if nd is not None and nd.incarnation >= target_inc:
                        remaining.discard(id(c))
        return not remaining

    ok = sim.run_for(120.0, everyone_has_it, check_every=0.005)
    diss = sim.now - t0 if ok else float("inf")
    p2, _ = sent()
    busy_rate = (p2 - p1) / n / max(diss, 1e-9)

    detection: float | None = None
    if detect:
        victim = names[-1]
        sim.stop(victim)
        t1 = sim.now
        others = [sim.nodes[x].memberlist for x in names[:-1]]
        pending = {id(c) for c in others}

        def all_dead() -> bool:
            for c in others:
                if id(c) in pending:
                    nd = c.node(victim)
                    if nd is None or nd.status >= 2:
                        pending.discard(id(c))
            return not pending

        detection = (sim.now - t1 if sim.run_for(300.0, all_dead, check_every=0.05)
                     else None)
    return DisseminationResult(n, diss, idle_rate, busy_rate, byte_rate, detection,
                               _time.perf_counter() - wall)

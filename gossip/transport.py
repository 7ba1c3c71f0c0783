"""The asyncio driver of a gossip core: one UDP and one TCP socket on the same port.

It owns no protocol logic. It hands every datagram and TCP exchange to a sans-I/O core (a bare
:class:`~gossip.memberlist.Memberlist`, or the whole node, :class:`~gossip.core.GossipCore`,
made by ``core_factory``), sends what the core queued, performs the outbound streams it asks
for (push/pull, TCP fallback pings) with their deadlines, and re-arms a single ``loop.call_at``
timer from ``core.next_deadline()`` after every interaction (aioquic's
``QuicConnectionProtocol`` is the model). Every ``now`` it passes comes from one clock
(``clock``, default :func:`time.monotonic`, see :data:`DEFAULT_CLOCK`). Nothing here blocks the
loop.

Usage::

    t = MemberlistTransport(MemberlistConfig.lan(name="a", bind_addr="127.0.0.1", bind_port=0))
    await t.start()
    await t.join([("127.0.0.1", 7946)])
    ...
    await t.leave()
    await t.close()

Code that changes the core from outside the driver (``core.update_node``,
``core.queue_broadcast``, a GossipCore command) must call :meth:`MemberlistTransport.flush`
afterwards so that new packets go out, events are delivered and the timer follows. Events are
delivered in order: a listener that calls ``flush`` again (through a command) does not deliver
the later events from inside itself; the outer delivery loop does.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol, Self

from . import codec
from .codec import CodecLimits
from .config import MemberlistConfig
from .delegate import ConflictDelegate, Delegate, EventDelegate, PingDelegate
from .errors import GossipError, MalformedPacket
from .memberlist import JoinCompleted, Memberlist, PendingAnswer, StreamRequest
from .messages import PushPull
from .security import Keyring
from .tasks import TaskOwner

__all__ = ["DEFAULT_CLOCK", "DrivenCore", "MemberlistTransport", "TransportError"]

log = logging.getLogger(__name__)

DEFAULT_CLOCK: Callable[[], float] = time.monotonic
"""The clock of the core and its driver unless one is given: the loop's own clock, read at
full resolution. uvloop's ``loop.time()`` counts whole milliseconds and is read once per loop
iteration, so a probe answered within a millisecond (loopback, most LANs) measured an RTT of
0 and the network coordinates learnt nothing from it; ``time.monotonic`` is the same
CLOCK_MONOTONIC to the nanosecond. Timers are still armed with ``loop.call_at`` (see
``_arm_timer``, which converts)."""

_LOOP_TICK = 0.001
"""uvloop's timer resolution (a timer fires when the loop's millisecond clock reaches it)."""
_SAME_CLOCK = 0.05
"""A loop clock behind ours by less than this is the same clock read coarser (see _arm_timer)."""

Addr = tuple[str, int]
Listener = Callable[[Any], None]
"""Called with every event the core gives (memberlist's, or GossipCore's)."""

_READ_CHUNK = 65536
_BIND_ATTEMPTS = 20
_ACCEPT_BATCH = 128
"""Connections taken from the listen queue per wake-up (the queue holds 128)."""
_ACCEPT_BACKOFF = 1.0
"""Seconds to stop accepting after running out of file descriptors or memory."""
_ACCEPT_EXHAUSTED = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))


class DrivenCore(Protocol):
    """What the driver needs of a core: memberlist's I/O seams (Memberlist and GossipCore)."""

    @property
    def advertise(self) -> Addr: ...

    @property
    def keyring(self) -> Keyring | None: ...

    @property
    def limits(self) -> CodecLimits: ...

    @property
    def leave_broadcast_done(self) -> bool: ...

    def receive_packet(self, data: bytes, addr: Addr, now: float) -> None: ...

    def handle_stream(self, request: bytes | object, addr: Addr, now: float
                      ) -> bytes | PendingAnswer | None: ...

    def answers_ready(self) -> list[tuple[int, bytes | None]]: ...

    def stream_error(self, exc: MalformedPacket, addr: Addr) -> bytes | None: ...

    def stream_result(self, stream_id: int, response: bytes | object | None, error: str | None,
                      now: float) -> None: ...

    def handle_timer(self, now: float) -> None: ...

    def next_deadline(self) -> float | None: ...

    def packets_to_send(self) -> list[tuple[bytes, Addr]]: ...

    def streams_to_open(self) -> list[StreamRequest]: ...

    def next_event(self) -> object | None: ...

    def count_drop(self, reason: str, addr: Any, detail: str = "") -> None: ...

    def join(self, addrs: Iterable[Addr], now: float) -> int: ...

    def leave(self, now: float) -> None: ...


CoreFactory = Callable[[MemberlistConfig, float], DrivenCore]
"""``factory(config_with_bound_port, now) -> core``."""


class TransportError(GossipError, OSError):
    """The driver could not bind or was used after close (local fault)."""


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, owner: MemberlistTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.owner._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends: the probe logic copes with the silence.
        log.debug("udp error: %s", exc)


class MemberlistTransport:
    """Runs one :class:`Memberlist` on real sockets (see the module docstring)."""

    def __init__(
        self,
        config: MemberlistConfig,
        *,
        delegate: Delegate | None = None,
        events: EventDelegate | None = None,
        ping_delegate: PingDelegate | None = None,
        conflict: ConflictDelegate | None = None,
        keyring: Keyring | None = None,
        rng: random.Random | None = None,
        core_factory: CoreFactory | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        config.validate()
        self._core_factory = core_factory
        self._clock = clock
        self.config = config
        self._delegates: dict[str, Any] = {
            "delegate": delegate,
            "events": events,
            "ping_delegate": ping_delegate,
            "conflict": conflict,
        }
        self._keyring = keyring
        self._rng = rng
        self._core: DrivenCore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._listener: socket.socket | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._tasks = TaskOwner("memberlist")
        """Owns every stream exchange (outbound push/pulls and pings, inbound connections)."""
        self._listeners: list[Listener] = []
        self.after_flush: Callable[[], None] | None = None
        """Called at the end of every :meth:`flush` (after every entry point of the core):
        where the owner notices that the core's state moved without a timer of its own."""
        self._joins: dict[int, asyncio.Future[JoinCompleted]] = {}
        self._answers: dict[int, asyncio.Future[bytes | None]] = {}
        """Inbound push/pulls waiting for their answer (``PendingAnswer`` ids)."""
        self._leave_event: asyncio.Event | None = None
        self._active_streams = 0
        self._closed = False
        self._delivering = False
        self.port = 0
        self.wakeups = 0
        """Times the one timer fired (each runs the core's due work; nothing else polls)."""

    # -- properties -----------------------------------------------------------------------------
    @property
    def core(self) -> DrivenCore:
        if self._core is None:
            raise TransportError("transport not started")
        return self._core

    @property
    def address(self) -> Addr:
        """(ip, port) we advertise."""
        return self.core.advertise

    def add_listener(self, fn: Listener) -> None:
        """Call ``fn(event)`` for every core event (NodeJoined, NodeLeft, ..., JoinCompleted)."""
        self._listeners.append(fn)

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind UDP and TCP on the same port (port 0: find a number free for both)."""
        loop = asyncio.get_running_loop()
        cfg = self.config
        if not cfg.advertise_addr and ipaddr_unspecified(cfg.bind_addr):
            raise TransportError(
                "gossip.advertise_addr: needed when bind_addr is unspecified (0.0.0.0/::)"
            )
        family = socket.AF_INET6 if ":" in cfg.bind_addr else socket.AF_INET
        udp_sock, tcp_sock = self._bind_pair(family, cfg.bind_addr, cfg.bind_port)
        port = udp_sock.getsockname()[1]
        self.port = port
        self._loop = loop
        await self._tasks.open()
        transport, _ = await loop.create_datagram_endpoint(lambda: _UDP(self), sock=udp_sock)
        self._udp = transport  # a DatagramTransport (uvloop's class does not inherit from it)
        self._listener = tcp_sock
        loop.add_reader(tcp_sock.fileno(), self._accept_ready)
        advertise = cfg.advertise_addr or cfg.bind_addr
        core_cfg = cfg.replace(
            bind_port=port, advertise_addr=advertise, advertise_port=cfg.advertise_port or port
        )
        if self._clock is None:
            self._clock = DEFAULT_CLOCK
        if self._core_factory is not None:
            self._core = self._core_factory(core_cfg, self._clock())
        else:
            self._core = Memberlist(
                core_cfg,
                now=self._clock(),
                keyring=self._keyring,
                rng=self._rng,
                **self._delegates,
            )
        log.info("memberlist listening node=%s addr=%s:%s", cfg.name, cfg.bind_addr, port)
        self.flush()

    def _bind_pair(self, family: int, host: str, port: int) -> tuple[socket.socket, socket.socket]:
        last: OSError | None = None
        for _ in range(_BIND_ATTEMPTS if port == 0 else 1):
            udp = socket.socket(family, socket.SOCK_DGRAM)
            try:
                udp.setblocking(False)
                try:
                    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2 * 1024 * 1024)
                except OSError:
                    pass
                udp.bind((host, port))
                real = udp.getsockname()[1]
                tcp = socket.socket(family, socket.SOCK_STREAM)
                try:
                    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    tcp.setblocking(False)
                    tcp.bind((host, real))
                    tcp.listen(128)
                except OSError:
                    tcp.close()
                    raise
                return udp, tcp
            except OSError as exc:
                udp.close()
                last = exc
                if exc.errno != errno.EADDRINUSE:
                    break
        raise TransportError(f"gossip: cannot bind {host}:{port} for UDP and TCP: {last}")

    async def close(self) -> None:
        """Stop timers and sockets; cancel streams in flight. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._udp is not None:
            self._udp.close()
        self._stop_listening()
        await self._tasks.close()
        for fut in self._joins.values():
            if not fut.done():
                fut.cancel()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- operations -----------------------------------------------------------------------------
    async def join(self, addrs: Iterable[Addr | str]) -> JoinCompleted:
        """Push/pull (Join=true) with every address; returns when all have answered or failed.

        Addresses are ``(ip, port)`` tuples or ``"host[:port]"`` strings (default port 7946,
        names resolved without blocking the loop; IPv6 as ``[::1]:7946``)."""
        self._loop_or_raise()
        resolved: list[Addr] = []
        errors: list[str] = []
        for spec in addrs:
            if isinstance(spec, tuple):
                resolved.append(spec)
                continue
            try:
                resolved.extend(await resolve_addr(spec))
            except (OSError, ValueError) as exc:
                errors.append(f"{spec}: {exc}")
        jid = self.core.join(resolved, self.now())
        result = await self.join_result(jid)
        if errors:
            result = JoinCompleted(result.join_id, result.num_joined, tuple(errors) + result.errors)
        return result

    async def join_result(self, jid: int) -> JoinCompleted:
        """Wait for the :class:`JoinCompleted` of a join the core started (id ``jid``)."""
        fut: asyncio.Future[JoinCompleted] = self._loop_or_raise().create_future()
        self._joins[jid] = fut
        self.flush()
        try:
            return await fut
        finally:
            self._joins.pop(jid, None)

    @property
    def timer_deadline(self) -> float | None:
        """When the one timer fires (the core's ``next_deadline()`` as of the last flush)."""
        return self._timer_at

    def now(self) -> float:
        """The driver's clock (every ``now`` given to the core comes from it)."""
        if self._clock is None:
            raise TransportError("transport not started")
        return self._clock()

    def send_user_msg(self, addr: Addr, body: bytes) -> None:
        """Send a user message (0x08 + body) to ``addr`` by UDP now (Serf query answers)."""
        core = self.core
        if not isinstance(core, Memberlist):
            raise TransportError("send_user_msg needs a bare memberlist core")
        core.send_user_msg(addr, body)
        self.flush()

    async def leave(self, timeout: float | None = None) -> bool:
        """Gossip our graceful leave and wait until it went out (or ``timeout``, default
        ``config.leave_timeout``). Returns False on timeout."""
        self._loop_or_raise()
        core = self.core
        self._leave_event = asyncio.Event()
        core.leave(self.now())
        self.flush()
        if core.leave_broadcast_done:
            return True
        try:
            await asyncio.wait_for(
                self._leave_event.wait(), timeout if timeout is not None else
                self.config.leave_timeout
            )
            return True
        except TimeoutError:
            log.warning("timeout waiting for leave broadcast node=%s", self.config.name)
            return False

    def _loop_or_raise(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._closed:
            raise TransportError("transport not running")
        return self._loop

    # -- the pump ---------------------------------------------------------------------------------
    def flush(self) -> None:
        """Send what the core queued, start requested streams, deliver events, re-arm the timer."""
        core = self._core
        loop = self._loop
        if core is None or loop is None or self._closed:
            return
        udp = self._udp
        for data, addr in core.packets_to_send():
            if udp is None:
                break
            try:
                udp.sendto(data, addr)
            except (OSError, ValueError) as exc:
                core.count_drop("send_error", addr, str(exc))
        for req in core.streams_to_open():
            self._tasks.spawn(self._outbound(req), req.kind)
        for aid, answer in core.answers_ready():
            fut = self._answers.pop(aid, None)
            if fut is not None and not fut.done():
                fut.set_result(answer)
        if not self._delivering:
            self._delivering = True
            try:
                self._deliver_events(core)
            finally:
                self._delivering = False
        if self._leave_event is not None and core.leave_broadcast_done:
            self._leave_event.set()
        self._arm_timer(loop, core)
        if self.after_flush is not None:
            self.after_flush()

    def _deliver_events(self, core: DrivenCore) -> None:
        while (ev := core.next_event()) is not None:
            if isinstance(ev, JoinCompleted):
                fut = self._joins.get(ev.join_id)
                if fut is not None and not fut.done():
                    fut.set_result(ev)
            for fn in self._listeners:
                try:
                    fn(ev)
                except Exception:
                    log.exception("gossip listener failed event=%s", type(ev).__name__)

    def _arm_timer(self, loop: asyncio.AbstractEventLoop, core: DrivenCore) -> None:
        """One ``call_at`` for the core's next deadline (the clock's time, as loop time)."""
        deadline = core.next_deadline()
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._timer_at = deadline
            if deadline is not None:
                clock = self._clock
                offset = 0.0 if clock is None or clock == loop.time else loop.time() - clock()
                if -_SAME_CLOCK < offset <= 0.0:
                    # The loop's clock is this clock read coarser: uvloop reads CLOCK_MONOTONIC
                    # in whole milliseconds, once per iteration, never ahead of it. One
                    # millisecond more and the timer never fires before the deadline, so the
                    # core runs at the real time (a probe's send time, hence its RTT, exact).
                    offset = _LOOP_TICK
                self._timer = loop.call_at(deadline + offset, self._on_timer)

    def _on_timer(self) -> None:
        due = self._timer_at
        self.wakeups += 1
        self._timer = None
        self._timer_at = None
        if self._closed or self._core is None or self._loop is None:
            return
        now = self.now()
        # With a clock of another base (tests) the timer may still fire up to a loop tick
        # early; running the core "at" the deadline then avoids re-arming the same timer again
        # and again until the clock catches up (that spin was most of the idle CPU).
        if due is not None and now < due <= now + 0.002:
            now = due
        self._core.handle_timer(now)
        self.flush()

    def _on_datagram(self, data: bytes, addr: Any) -> None:
        core = self._core
        if core is None or self._loop is None or self._closed:
            return
        core.receive_packet(data, (addr[0], addr[1]), self.now())
        self.flush()

    # -- streams ----------------------------------------------------------------------------------
    def _reader(self) -> codec.StreamReader:
        core = self.core
        return codec.StreamReader(
            core.keyring, limits=core.limits, verify_incoming=self.config.gossip_verify_incoming,
            lazy=True,  # a push/pull's states are decoded by the core, in slices
        )

    async def _outbound(self, req: StreamRequest) -> None:
        self._loop_or_raise()
        core = self.core
        answer: object = None
        error: str | None = None
        writer: asyncio.StreamWriter | None = None
        buf = bytearray()
        try:
            timeout = max(0.0, req.deadline - self.now())
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(req.addr[0], req.addr[1])
                writer.write(req.data)
                await writer.drain()
                sr = self._reader()
                while True:
                    chunk = await reader.read(_READ_CHUNK)
                    if not chunk:
                        break
                    buf += chunk
                    if len(buf) > self.config.max_stream_size:
                        raise MalformedPacket("too_large", "answer exceeds max_stream_size")
                    msg = sr.feed(chunk)
                    if msg is not None:
                        answer = msg
                        break
            if answer is None:
                answer = bytes(buf)  # let the core decode (and count) what came
        except MalformedPacket:
            answer = bytes(buf)  # the core decodes again and counts the reason
        except TimeoutError:
            error = "i/o timeout"
        except OSError as exc:
            error = exc.strerror or str(exc)
        except asyncio.CancelledError:
            raise
        finally:
            if writer is not None:
                writer.close()
        if self._closed:
            return
        if _big(answer):
            await asyncio.sleep(0)  # decoding the answer and merging it: two callbacks
            if self._closed:
                return
        core.stream_result(req.id, answer, error, self.now())
        self.flush()

    def _stop_listening(self) -> None:
        sock = self._listener
        if sock is None:
            return
        self._listener = None
        if self._loop is not None:
            self._loop.remove_reader(sock.fileno())
        sock.close()

    def _accept_ready(self) -> None:
        """Take every connection waiting in the listen queue now, not one per loop iteration
        (uvloop's servers accept one per wake-up; a seed that 49 nodes join at once then
        answered them between rounds of gossip traffic, one at a time)."""
        sock = self._listener
        if sock is None or self._closed:
            return
        for _ in range(_ACCEPT_BATCH):
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno not in _ACCEPT_EXHAUSTED or self._loop is None:
                    log.debug("gossip: accept failed: %s", exc)  # ECONNABORTED...: next one
                    continue
                # the listen socket stays readable: pause instead of spinning on it
                self.core.count_drop("accept_error", ("", 0),
                                     f"{exc}; not accepting for {_ACCEPT_BACKOFF:.0f} s")
                self._loop.remove_reader(sock.fileno())
                self._loop.call_later(_ACCEPT_BACKOFF, self._resume_accepting, sock)
                return
            conn.setblocking(False)
            if self._tasks.spawn(self._serve_accepted(conn), "inbound") is None:
                conn.close()

    def _resume_accepting(self, sock: socket.socket) -> None:
        if self._listener is sock and self._loop is not None and not self._closed:
            self._loop.add_reader(sock.fileno(), self._accept_ready)

    async def _serve_accepted(self, conn: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=conn, limit=_READ_CHUNK)
        except OSError as exc:
            conn.close()
            log.debug("gossip: accepted connection unusable: %s", exc)
            return
        await self._on_connection(reader, writer)

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        core = self._core
        loop = self._loop
        peer = writer.get_extra_info("peername")
        addr: Addr = (peer[0], peer[1]) if peer else ("", 0)
        if core is None or loop is None or self._closed:
            writer.close()
            return
        if self._active_streams >= self.config.max_pending_streams:
            core.count_drop("too_many_streams", addr, "inbound")
            writer.close()
            return
        self._active_streams += 1
        try:
            answer: bytes | None = None
            try:
                async with asyncio.timeout(self.config.tcp_timeout):
                    sr = self._reader()
                    msg = None
                    while msg is None:
                        chunk = await reader.read(_READ_CHUNK)
                        if not chunk:
                            msg = sr.feed_eof()
                            break
                        msg = sr.feed(chunk)
                    if _big(msg):
                        # a turn of the loop between reading a big push/pull (inflating it and
                        # finding its states: ~3 ms at 5,000 members) and its first slice
                        await asyncio.sleep(0)
                        if self._closed:
                            return
                    got = core.handle_stream(msg, addr, self.now())
                    if isinstance(got, PendingAnswer):
                        # a big push/pull, merged in slices from the timer: wait for its
                        # answer (within this stream's timeout)
                        fut = loop.create_future()
                        self._answers[got.id] = fut
                        self.flush()
                        try:
                            answer = await fut
                        finally:
                            self._answers.pop(got.id, None)
                    else:
                        answer = got
                    if answer:
                        writer.write(answer)
                        await writer.drain()
            except MalformedPacket as exc:
                answer = core.stream_error(exc, addr)
                if answer:
                    writer.write(answer)
            except TimeoutError:
                core.count_drop("stream_timeout", addr)
            except OSError as exc:
                core.count_drop("stream_io_error", addr, str(exc))
        finally:
            self._active_streams -= 1
            try:
                writer.close()
            except (OSError, RuntimeError) as exc:  # already closed / loop shutting down
                log.debug("closing inbound stream from=%s: %s", addr, exc)
            self.flush()


_BIG_PUSH_PULL = 256
"""Members: a push/pull at least this long is read and merged in separate turns of the loop
(the core decodes and merges its states in slices of their own)."""


def _big(msg: object) -> bool:
    return isinstance(msg, PushPull) and len(msg.states) >= _BIG_PUSH_PULL


def ipaddr_unspecified(addr: str) -> bool:
    return addr in ("0.0.0.0", "::", "")


async def resolve_addr(spec: str, default_port: int = 7946) -> list[Addr]:
    """``"host[:port]"`` / ``"[v6]:port"`` -> [(ip, port)...], resolved on the loop's resolver."""
    host, port = spec.strip(), default_port
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise ValueError(f"bad address {spec!r}")
        rest = host[end + 1 :]
        host = host[1:end]
        if rest.startswith(":"):
            port = int(rest[1:])
    elif host.count(":") == 1:
        host, p = host.split(":")
        port = int(p)
    if not 0 < port < 65536:
        raise ValueError(f"bad port in {spec!r}")
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    out: list[Addr] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        addr = (str(sockaddr[0]), int(sockaddr[1]))
        if addr not in out:
            out.append(addr)
    return out

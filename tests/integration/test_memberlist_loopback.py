"""Memberlist cores over real loopback sockets via the asyncio driver (gossip/transport.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from gossip import codec
from gossip.config import MemberlistConfig
from gossip.delegate import NodeLeft, NullDelegate
from gossip.memberlist import PendingAnswer
from gossip.messages import AckResp, Alive, Ping, PushPull
from gossip.security import Keyring
from gossip.state import NodeStatus
from gossip.transport import MemberlistTransport


def fast(name: str, **kw: object) -> MemberlistConfig:
    opts: dict[str, object] = {
        "bind_addr": "127.0.0.1", "bind_port": 0, "probe_interval": 0.2, "probe_timeout": 0.1,
        "gossip_interval": 0.05, "push_pull_interval": 2.0, "tcp_timeout": 1.0}
    opts.update(kw)
    return MemberlistConfig.local(name=name, **opts)


async def wait_for(cond: Callable[[], bool], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def statuses(t: MemberlistTransport) -> dict[str, NodeStatus]:
    return {n.name: n.status for n in t.core.all_nodes()}


async def test_cluster_converges_and_detects_stopped_node() -> None:
    nodes = [MemberlistTransport(fast(f"n{i}")) for i in range(4)]
    for t in nodes:
        await t.start()
    try:
        assert len({t.port for t in nodes}) == 4
        for t in nodes[1:]:
            jc = await t.join([nodes[0].address])
            assert jc.num_joined == 1, jc.errors
        await wait_for(lambda: all(len(t.core.members()) == 4 for t in nodes), 10.0)
        left: list[str] = []
        nodes[0].add_listener(lambda ev: left.append(ev.node.name)
                              if isinstance(ev, NodeLeft) else None)
        await nodes[3].close()  # crash: no leave message
        await wait_for(lambda: all(statuses(t).get("n3") == NodeStatus.DEAD
                                   for t in nodes[:3]), 15.0)
        await wait_for(lambda: "n3" in left, 5.0)
        assert left.count("n3") == 1
        # With a 0.1 s probe timeout a loaded machine can make a live node miss its acks long
        # enough to be declared dead too; it must refute, so what is asserted is the end
        # state: the three live nodes see each other alive again.
        live = ("n0", "n1", "n2")
        await wait_for(lambda: all(statuses(t).get(n) == NodeStatus.ALIVE
                                   for t in nodes[:3] for n in live), 15.0)
        # graceful leave is seen as LEFT
        assert await nodes[2].leave(2.0)
        await nodes[2].close()
        await wait_for(lambda: all(statuses(t).get("n2") == NodeStatus.LEFT
                                   for t in nodes[:2]), 10.0)
    finally:
        for t in nodes:
            await t.close()


async def test_encrypted_cluster_and_raw_clients() -> None:
    key = bytes(range(32))
    a = MemberlistTransport(fast("a", secret_keys=(key,)))
    b = MemberlistTransport(fast("b", secret_keys=(key,)))
    c = MemberlistTransport(fast("c"))  # no key: must not get in
    for t in (a, b, c):
        await t.start()
    try:
        assert (await b.join([a.address])).num_joined == 1
        jc = await c.join([a.address])
        assert jc.num_joined == 0
        await wait_for(lambda: len(a.core.members()) == 2 and len(b.core.members()) == 2, 5.0)
        assert a.core.node("c") is None

        ring = Keyring([key])
        # raw TCP ping to a (encrypted), as serf's fallback ping would do
        reader, writer = await asyncio.open_connection(*a.address)
        writer.write(codec.encode_stream(Ping(77, "a"), compress=True, keyring=ring))
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 2.0)
        writer.close()
        ack = codec.decode_stream(data, ring)
        assert isinstance(ack, AckResp) and ack.seq_no == 77

        # raw UDP ping from an ephemeral socket: the ack comes back to the source address
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        sock.sendto(codec.encode_packet([Ping(5, "a")], keyring=ring), a.address)
        pkt = await asyncio.wait_for(loop.sock_recv(sock, 65536), 2.0)
        sock.close()
        dec = codec.decode_packet(pkt, ring)
        assert any(isinstance(m, AckResp) and m.seq_no == 5 for m in dec.messages)
    finally:
        for t in (a, b, c):
            await t.close()


async def test_plain_push_pull_and_garbage_streams() -> None:
    a = MemberlistTransport(fast("a"))
    await a.start()
    try:
        # garbage on TCP and UDP never breaks the node
        for junk in (b"\xff" * 100, b"\x06\x83", b"\x0a\x00\x00\x00\x10abc"):
            r, w = await asyncio.open_connection(*a.address)
            w.write(junk)
            await w.drain()
            w.write_eof()
            await asyncio.wait_for(r.read(), 3.0)
            w.close()
        # a real push/pull answered with our state
        r, w = await asyncio.open_connection(*a.address)
        w.write(codec.encode_stream(PushPull(join=True)))
        await w.drain()
        data = await asyncio.wait_for(r.read(), 3.0)
        w.close()
        pp = codec.decode_stream(data)
        assert isinstance(pp, PushPull)
        assert [s.name for s in pp.states] == ["a"]
        assert tuple(pp.states[0].vsn) == (1, 5, 2, 2, 5, 4)
        assert sum(a.core.counters.drops.values()) >= 2
    finally:
        await a.close()


@pytest.mark.parametrize("count", [3])
async def test_port_zero_binds_same_port_for_udp_and_tcp(count: int) -> None:
    """With bind_port 0 each node answers both a TCP connect and a UDP ping on the one port
    it reports, and the UDP ack comes from that port (Serf and memberlist peers assume so)."""
    loop = asyncio.get_running_loop()
    ts = [MemberlistTransport(fast(f"p{i}")) for i in range(count)]
    try:
        for i, t in enumerate(ts):
            await t.start()
            assert t.port != 0 and t.address == ("127.0.0.1", t.port)
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(1.0)
            s.connect(t.address)
            s.close()
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                u.bind(("127.0.0.1", 0))
                u.setblocking(False)
                u.sendto(codec.encode_packet([Ping(100 + i, f"p{i}")]), t.address)
                async with asyncio.timeout(5):
                    pkt, src = await loop.sock_recvfrom(u, 65536)
            finally:
                u.close()
            assert src == t.address
            acks = [m for m in codec.decode_packet(pkt).messages if isinstance(m, AckResp)]
            assert [a.seq_no for a in acks] == [100 + i]
    finally:
        for t in ts:
            await t.close()


# -- against the real Debian serf agent (memberlist 0.2.2) -------------------------------------

SERF = shutil.which("serf")


def _serf_members(rpc: str) -> dict[str, tuple[str, dict[str, str]]]:
    out = subprocess.run(["serf", "members", "-rpc-addr", rpc, "-format", "json"],
                         capture_output=True, text=True, timeout=5, check=True)
    return {m["name"]: (m["status"], m.get("tags") or {})
            for m in json.loads(out.stdout)["members"]}


class _Tags(NullDelegate):
    def node_meta(self, limit: int) -> bytes:
        return b"\xff\x81\xa4role\xa2py"  # Serf's tag blob: 0xff + msgpack({"role": "py"})


@pytest.mark.serf
@pytest.mark.skipif(SERF is None, reason="needs the Debian serf binary")
@pytest.mark.parametrize("encrypted", [False, True])
async def test_against_real_serf(tmp_path: Path, encrypted: bool) -> None:
    from tests.harness.agents import free_port

    gport, rport = free_port(), free_port()
    key = bytes(range(1, 33))
    argv = ["serf", "agent", "-node", "s1", "-bind", f"127.0.0.1:{gport}",
            "-rpc-addr", f"127.0.0.1:{rport}", "-log-level", "debug"]
    if encrypted:
        argv += ["-encrypt", base64.b64encode(key).decode()]
    log_path = tmp_path / "serf.log"
    proc = subprocess.Popen(  # noqa: ASYNC220 - spawning does not block; we never wait on it
        argv, stdout=log_path.open("w"), stderr=subprocess.STDOUT)
    rpc = f"127.0.0.1:{rport}"
    d = _Tags()
    t = MemberlistTransport(
        MemberlistConfig.lan(name="py1", bind_addr="127.0.0.1", bind_port=0,
                             secret_keys=(key,) if encrypted else ()),
        delegate=d, events=d)
    try:
        await t.start()

        async def joined() -> None:
            loop = asyncio.get_running_loop()
            end = loop.time() + 10
            while True:
                jc = await t.join([("127.0.0.1", gport)])
                if jc.num_joined == 1:
                    return
                assert loop.time() < end, jc.errors
                await asyncio.sleep(0.2)  # the agent is still starting

        async def serf_sees(status: str, timeout: float) -> dict[str, str]:
            # `serf members` runs in a thread so that the loop (our node) keeps running.
            loop = asyncio.get_running_loop()
            end = loop.time() + timeout
            while True:
                members = await asyncio.to_thread(_serf_members, rpc)
                if members.get("py1", ("", {}))[0] == status:
                    return members["py1"][1]
                assert loop.time() < end, f"serf never saw py1 {status}: {members}"
                await asyncio.sleep(0.1)

        await joined()
        assert await serf_sees("alive", 10.0) == {"role": "py"}
        s1 = t.core.node("s1")
        assert s1 is not None and s1.status == NodeStatus.ALIVE
        assert s1.vsn == (1, 5, 2, 2, 5, 5)

        # SIGSTOP the agent: we suspect it, then declare it dead (n = 2: min timeout 4 s).
        proc.send_signal(signal.SIGSTOP)
        await wait_for(lambda: t.core.node("s1").status == NodeStatus.DEAD, 15.0)  # type: ignore
        proc.send_signal(signal.SIGCONT)
        # It refutes (incarnation + 1) through gossip to the dead / our probes.
        await wait_for(lambda: t.core.node("s1").status == NodeStatus.ALIVE, 15.0)  # type: ignore
        assert t.core.node("s1").incarnation >= 2  # type: ignore[union-attr]
        assert t.core.counters.drops.get("decrypt_failed", 0) == 0

        # Crash ourselves: the agent must declare us failed on its own.
        await t.close()
        await serf_sees("failed", 20.0)
        text = log_path.read_text()
        assert "[ERR] memberlist: Failed push/pull merge" not in text
        assert "Got invalid checksum" not in text
    finally:
        await t.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.wait(5)


async def test_resolve_addr_forms() -> None:
    from gossip.transport import resolve_addr

    assert await resolve_addr("127.0.0.1:1234") == [("127.0.0.1", 1234)]
    assert await resolve_addr("127.0.0.1") == [("127.0.0.1", 7946)]
    assert await resolve_addr("[::1]:99") == [("::1", 99)]
    with pytest.raises(ValueError):
        await resolve_addr("127.0.0.1:0")


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback")
async def test_ipv6_pair() -> None:
    a = MemberlistTransport(fast("a6", bind_addr="::1"))
    b = MemberlistTransport(fast("b6", bind_addr="::1"))
    await a.start()
    await b.start()
    try:
        assert (await b.join([f"[::1]:{a.port}"])).num_joined == 1
        await wait_for(lambda: len(a.core.members()) == 2 and len(b.core.members()) == 2, 5.0)
        assert a.core.node("b6").addr == "::1"  # type: ignore[union-attr]
    finally:
        await a.close()
        await b.close()


def _loop_factories() -> list[object]:
    out: list[object] = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        import uvloop
    except ImportError:
        out.append(pytest.param(None, id="uvloop", marks=pytest.mark.skip("uvloop missing")))
    else:
        out.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
    return out


@pytest.mark.parametrize("loop_factory", _loop_factories())
def test_waiting_connections_are_served_together(loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
    """Joins that queue up while the node is busy are all answered within a few loop
    iterations, not one per iteration (uvloop's own servers accept one connection per
    wake-up, which left a seed that many nodes join at once answering them one by one
    between rounds of gossip traffic)."""
    clients = 30

    async def main() -> int:
        loop = asyncio.get_running_loop()
        a = MemberlistTransport(fast("a"))
        await a.start()
        socks: list[socket.socket] = []
        try:
            request = codec.encode_stream(PushPull(join=True))
            for _ in range(clients):
                s = socket.create_connection(a.address)
                s.sendall(request)
                socks.append(s)
            # every client waits in the listen queue, its request sent; count loop iterations
            # from here until the node has handled them all
            ticks = 0
            done: asyncio.Future[int] = loop.create_future()

            def tick() -> None:
                nonlocal ticks
                ticks += 1
                if a.core.counters.streams_in >= clients:
                    done.set_result(ticks)
                elif ticks < 10_000:
                    loop.call_soon(tick)
                else:
                    done.set_result(ticks)

            loop.call_soon(tick)
            n = await asyncio.wait_for(done, 10.0)
            assert a.core.counters.streams_in == clients
            for s in socks:  # and each got its answer
                s.setblocking(False)
                data = b""
                while chunk := await asyncio.wait_for(loop.sock_recv(s, 65536), 3.0):
                    data += chunk
                assert isinstance(codec.decode_stream(data), PushPull)
            return n
        finally:
            for s in socks:
                s.close()
            await a.close()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        iterations = runner.run(main())
    assert iterations <= 6, f"{clients} waiting joins took {iterations} loop iterations"


async def test_out_of_file_descriptors_pauses_accepting() -> None:
    """With no descriptor left, a pending connection cannot be accepted: the node counts it,
    stops accepting for a second instead of spinning on the readable listen socket, and
    serves the connection once descriptors are back."""
    import os
    import resource
    import time

    loop = asyncio.get_running_loop()
    a = MemberlistTransport(fast("a"))
    await a.start()
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        lowest_free = os.dup(0)  # every descriptor below it is taken
        os.close(lowest_free)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
        try:
            client.connect(a.address)  # needs no new descriptor here
            client.sendall(codec.encode_stream(PushPull(join=True)))
            cpu0 = time.process_time()
            await asyncio.sleep(0.4)
            spent = time.process_time() - cpu0
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert a.core.counters.drops.get("accept_error", 0) >= 1
        assert a.core.counters.streams_in == 0
        assert spent < 0.2, f"{spent:.2f} CPU-s in 0.4 s: spinning on the listen socket"
        client.setblocking(False)
        data = b""
        while chunk := await asyncio.wait_for(loop.sock_recv(client, 65536), 5.0):
            data += chunk
        assert isinstance(codec.decode_stream(data), PushPull)
        assert a.core.counters.streams_in == 1
    finally:
        client.close()
        await a.close()


async def test_gossip_service_runs_one_timer_and_no_poll() -> None:
    """The service drives its one core (memberlist + Serf) with one ``call_at``, armed at the
    core's next protocol deadline: with long protocol periods an idle agent wakes up a handful
    of times in three seconds (Serf's timer used to be polled every 0.5 s on top)."""
    from gossip.serf_config import SerfConfig
    from gossip.service import Gossip

    ml = MemberlistConfig.lan(name="solo", bind_addr="127.0.0.1", bind_port=0,
                              probe_interval=40.0, gossip_interval=20.0,
                              push_pull_interval=60.0)
    serf = SerfConfig(node_name="solo", reap_interval=15.0, reconnect_interval=30.0,
                      queue_check_interval=30.0)
    g = Gossip(ml, serf, rng=random.Random(3))
    await g.start()
    try:
        t, core = g.transport, g.core
        assert t is not None and core is not None
        loop = asyncio.get_running_loop()
        await wait_for(lambda: (t.timer_deadline or 0.0) > loop.time(), 2.0)  # start-up round
        start = t.wakeups
        await asyncio.sleep(3.0)  # measuring idleness itself: nothing to wait for
        assert t.timer_deadline == core.next_deadline()
        ml_due = core.memberlist.next_deadline()
        assert ml_due is not None
        assert t.timer_deadline == min(ml_due, core.serf.next_deadline())
        # seeded staggers: at most the probe/gossip/push-pull ticks that fall in the window
        assert t.wakeups - start <= 3, t.wakeups - start
        assert not [task for task in asyncio.all_tasks() if "timer" in task.get_name()]
    finally:
        await g.shutdown()


async def test_failed_gossip_start_leaves_no_task_behind() -> None:
    from gossip.serf_config import SerfConfig
    from gossip.service import Gossip
    from gossip.transport import TransportError

    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    try:
        port = taken.getsockname()[1]
        g = Gossip(MemberlistConfig.lan(name="late", bind_addr="127.0.0.1", bind_port=port),
                   SerfConfig(node_name="late"))
        with pytest.raises(TransportError):
            await g.start()
        await asyncio.sleep(0)
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("gossip")]
        await g.shutdown()
    finally:
        taken.close()


async def test_a_push_pull_answered_in_slices_over_real_sockets() -> None:
    """The answer of a push/pull handled in several slices (``PendingAnswer``) is written on
    the same connection once its last slice ran; the joiner gets every member."""
    seed = MemberlistTransport(fast("seed", push_pull_slice=2))
    joiner = MemberlistTransport(fast("joiner", push_pull_slice=2))
    await seed.start()
    await joiner.start()
    try:
        core = seed.core
        now = seed.now()
        for i in range(30):  # members that exist only in the seed's table (never probed yet)
            core._alive_node(Alive(incarnation=1, node=f"far{i}", addr="127.0.0.1",
                                   port=1 + i, meta=b"", vsn=core.config.vsn), now)
        seed.flush()
        returned: list[object] = []
        handle = core.handle_stream

        def spy(request: object, addr: tuple[str, int], now: float) -> object:
            returned.append(out := handle(request, addr, now))
            return out

        core.handle_stream = spy  # type: ignore[assignment,method-assign]
        jc = await joiner.join([seed.address])
        assert jc.num_joined == 1, jc.errors
        assert [type(r) for r in returned] == [PendingAnswer]  # it did take several slices
        names = {n.name for n in joiner.core.all_nodes()}
        assert names >= {"seed", "joiner", *(f"far{i}" for i in range(30))}
        # no work left stuck: the slices drain (the joiner's resync push/pull, 10 gossip
        # intervals after the join, may be under way here on a loaded machine)
        await wait_for(lambda: not seed.core.working and not joiner.core.working, 5.0)
    finally:
        await joiner.close()
        await seed.close()

"""Many simulated Rumor nodes in one process, for joining a real agent to a big pool.

    python -m bench.swarm --nodes 1000 --instances 20 --join HOST:PORT

Each node has its own loopback address (``127.A.B.C``, one port shared by all, picked free at
start) with a UDP socket and a TCP listener, and speaks the real memberlist/Serf wire through
``gossip.codec`` (messages, packets, streams, Serf push/pull, tags) and the registry's
replication encoding (``registry.replication``: records, digests, ``MSG_FULL`` answers built
from per-node deflated pieces). Node ``i`` is ``swarm-<i>`` and owns ``--instances`` service
instances, each with one passing check, named ``svc-0`` .. ``svc-99``.

At start the nodes join ``--join`` in batches (``--join-batch`` nodes per push/pull): each
batch's first node sends a join push/pull carrying the batch's member states, a digest of the
whole pool and the batch's records, as a converged member of the pool would. Then every node:

* answers pings (UDP and the TCP fallback) with acks, and indirect pings for other swarm
  nodes with an ack on their behalf;
* refutes a suspicion or death of any swarm node with a higher incarnation (an ``alive``
  sent back to whoever gossiped it);
* answers push/pulls with the whole pool's member states and, for the registry, a digest
  answer: the records the peer's digest shows it lacks.

What it simplifies (so that 1,000-5,000 nodes fit in one Python process on two cores):

* The nodes do not run a memberlist/Serf core each (each would keep its own table of every
  member: 5,000 x 5,000 entries): they share one view of the pool, which is always converged,
  and they never probe or gossip to each other or to the real agents. Only the real agents
  run failure detection; the swarm just answers it.
* Gossip from the real agents (alive/suspect/dead of real agents, Serf intents, user events,
  queries, registry deltas) is read and dropped; the swarm keeps no copy of the real agents'
  records (a push/pull answer never carries them). Indirect pings aimed at a real agent are
  dropped (only swarm targets are answered).
* Records never change after start (versions are fixed); no encryption, no labels, no
  compression on what the swarm sends (it reads compressed input).

Prints ``swarm ready N`` once all N nodes are listening and the join push/pulls are done;
stop it with SIGTERM (or SIGINT).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import msgpack

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gossip import RUMOR_TAG, RUMOR_VERSION, MalformedPacket, codec
from gossip.messages import (
    AckResp,
    Alive,
    Dead,
    IndirectPingReq,
    Ping,
    PushNodeState,
    PushPull,
    Suspect,
)
from gossip.serf_messages import SerfPushPull
from registry.catalog import CheckRecord, NodeInfo, ServiceRecord
from registry.replication import (
    MSG_DIGEST,
    MSG_FULL,
    _deflate_piece,
    _zlib_of_pieces,
    enc_check,
    enc_info,
    enc_service,
)

log = logging.getLogger("swarm")

SERVICES = 100
ALIVE = 0


class Pool:
    """The shared, converged view of every swarm node: members, records, encoded pieces."""

    def __init__(self, n: int, instances: int, net: int, port: int) -> None:
        self.names = [f"swarm-{i:05d}" for i in range(n)]
        self.addrs = [f"127.{net}.{i // 250}.{i % 250 + 1}" for i in range(n)]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.port = port
        self.incarnation = [1] * n
        self.meta = codec.encode_tags({"role": "swarm", RUMOR_TAG: RUMOR_VERSION})
        self.version = int(time.time() * 1e6)
        self.pieces: list[tuple[bytes, int, int]] = []
        self.records: list[bytes] = []
        for i in range(n):
            raw = msgpack.packb(self._record(i, instances))
            self.records.append(raw)
            self.pieces.append(_deflate_piece(raw))
        self.digest_entries = [[name, self.version, 0] for name in self.names]
        self._states: tuple[PushNodeState, ...] | None = None
        self._serf_ltimes = dict.fromkeys(self.names, 1)

    def _record(self, i: int, instances: int) -> list[Any]:
        name, v = self.names[i], self.version
        info = NodeInfo(name=name, node_id=f"5a4e0000-0000-0000-0000-{i:012d}",
                        address=self.addrs[i], meta={"swarm": "1"},
                        tagged_addresses={"lan": self.addrs[i], "lan_ipv4": self.addrs[i]})
        svcs, chks = [], []
        for j in range(instances):
            svc = f"svc-{(i * instances + j) % SERVICES}"
            sid = f"{svc}-{j}"
            svcs.append([v, enc_service(ServiceRecord(id=sid, service=svc, port=20000 + j,
                                                      tags=("swarm",)))])
            chks.append([v, enc_check(CheckRecord(
                check_id=f"service:{sid}", name=f"Service '{svc}' check", status="passing",
                output="ok", service_id=sid, service_name=svc, type="ttl"))])
        return [name, v, [v, enc_info(info)], svcs, chks, []]

    def state(self, i: int) -> PushNodeState:
        return PushNodeState(name=self.names[i], addr=self.addrs[i], port=self.port,
                             meta=self.meta, incarnation=self.incarnation[i], state=ALIVE)

    def states(self) -> tuple[PushNodeState, ...]:
        if self._states is None:
            self._states = tuple(self.state(i) for i in range(len(self.names)))
        return self._states

    def refute(self, i: int, incarnation: int) -> Alive:
        if incarnation >= self.incarnation[i]:
            self.incarnation[i] = incarnation + 1
            self._states = None
        return Alive(incarnation=self.incarnation[i], node=self.names[i], addr=self.addrs[i],
                     port=self.port, meta=self.meta)

    def app_state(self, records: range) -> bytes:
        """``[MSG_DIGEST, the pool's digest, records]`` as a converged member sends it."""
        packer = msgpack.Packer()
        head = (packer.pack_array_header(3) + packer.pack(MSG_DIGEST)
                + packer.pack(self.digest_entries) + packer.pack_array_header(len(records)))
        return b"\x01" + _zlib_of_pieces([_deflate_piece(head),
                                          *(self.pieces[i] for i in records)])

    def answer(self, digest: dict[str, tuple[int, int]]) -> bytes:
        """``MSG_FULL`` of the swarm records the peer's digest shows it lacks."""
        want = [i for i, name in enumerate(self.names)
                if (d := digest.get(name)) is None or d[1] < self.version]
        packer = msgpack.Packer()
        head = packer.pack_array_header(2) + packer.pack(MSG_FULL) + \
            packer.pack_array_header(len(want))
        if not want:
            return b"\x00" + head
        return b"\x01" + _zlib_of_pieces([_deflate_piece(head), *(self.pieces[i] for i in want)])

    def serf_state(self, app: bytes | None, nodes: range | None = None) -> bytes:
        """Serf's push/pull state: status times of ``nodes`` (None: every swarm node)."""
        ltimes = self._serf_ltimes if nodes is None else {self.names[i]: 1 for i in nodes}
        return codec.encode_serf(SerfPushPull(ltime=2, status_ltimes=ltimes,
                                              event_ltime=1, query_ltime=1, app_state=app))


def parse_digest(app: bytes | None) -> dict[str, tuple[int, int]] | None:
    """The digest in a peer's registry state, or None (absent or unreadable)."""
    if not app:
        return None
    try:
        import zlib

        raw = zlib.decompress(app[1:]) if app[0] == 1 else app[1:]
        msg = msgpack.unpackb(raw, strict_map_key=True)
        if isinstance(msg, list) and len(msg) == 3 and msg[0] == MSG_DIGEST:
            return {d[0]: (d[1], d[1] + d[2]) for d in msg[1]}
    except Exception:  # noqa: BLE001 - a peer's bad state is just not answered
        return None
    return None


class NodeUDP(asyncio.DatagramProtocol):
    def __init__(self, swarm: Swarm, i: int) -> None:
        self.swarm = swarm
        self.i = i
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.swarm.packets_in += 1
        try:
            decoded = codec.decode_packet(data)
        except MalformedPacket:
            self.swarm.dropped += 1
            return
        out: list[Any] = []
        pool = self.swarm.pool
        for m in decoded.messages:
            if isinstance(m, Ping):
                if not m.node or m.node == pool.names[self.i]:
                    dest = (m.source_addr, m.source_port) if m.source_addr else addr
                    self.send([AckResp(m.seq_no, b"")], dest)
            elif isinstance(m, IndirectPingReq):
                t = pool.index.get(m.node)
                if t is not None:  # a swarm node: it is up, ack on its behalf
                    dest = (m.source_addr, m.source_port) if m.source_addr else addr
                    self.send([AckResp(m.seq_no, b"")], dest)
            elif isinstance(m, (Suspect, Dead)):
                t = pool.index.get(m.node)
                if t is not None and not (isinstance(m, Dead) and m.from_node == m.node):
                    self.swarm.refutes += 1
                    out.append(pool.refute(t, m.incarnation))
        if out:
            self.send(out, addr)

    def send(self, msgs: list[Any], dest: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(codec.encode_packet(msgs), dest)


class Swarm:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.servers: list[asyncio.AbstractServer] = []
        self.udps: list[asyncio.DatagramTransport] = []
        self.packets_in = 0
        self.streams_in = 0
        self.refutes = 0
        self.dropped = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for i, addr in enumerate(self.pool.addrs):
            transport, _ = await loop.create_datagram_endpoint(
                lambda i=i: NodeUDP(self, i), local_addr=(addr, self.pool.port))
            self.udps.append(transport)  # type: ignore[arg-type]
            server = await asyncio.start_server(
                lambda r, w, i=i: self.serve_stream(i, r, w), addr, self.pool.port,
                backlog=64)
            self.servers.append(server)

    async def serve_stream(self, i: int, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
        self.streams_in += 1
        try:
            async with asyncio.timeout(10):
                sr = codec.StreamReader()
                msg = None
                while msg is None:
                    chunk = await reader.read(65536)
                    if not chunk:
                        msg = sr.feed_eof()
                        break
                    msg = sr.feed(chunk)
                if isinstance(msg, Ping):
                    writer.write(codec.encode_stream(AckResp(msg.seq_no, b"")))
                elif isinstance(msg, PushPull):
                    writer.write(codec.encode_stream(self.push_pull_answer(msg)))
                await writer.drain()
        except (MalformedPacket, OSError, TimeoutError) as e:
            log.debug("stream to %s: %s", self.pool.names[i], e)
            self.dropped += 1
        finally:
            writer.close()

    def push_pull_answer(self, msg: PushPull) -> PushPull:
        app: bytes | None = None
        try:
            serf = codec.decode_serf(msg.user_state) if msg.user_state else None
        except MalformedPacket:
            serf = None
        digest = parse_digest(serf.app_state if isinstance(serf, SerfPushPull) else None)
        if digest is not None:
            app = self.pool.answer(digest)
        return PushPull(join=msg.join, states=self.pool.states(),
                        user_state=self.pool.serf_state(app))

    async def join(self, target: tuple[str, int], batch: int) -> int:
        """Join push/pulls, one per batch of nodes; returns how many succeeded."""
        ok = 0
        n = len(self.pool.names)
        for first in range(0, n, batch):
            nodes = range(first, min(n, first + batch))
            msg = PushPull(join=True, states=tuple(self.pool.state(i) for i in nodes),
                           user_state=self.pool.serf_state(self.pool.app_state(nodes), nodes))
            data = codec.encode_stream(msg)
            for attempt in range(5):
                try:
                    ok += await self._exchange(self.pool.addrs[first], target, data)
                    break
                except (OSError, TimeoutError, MalformedPacket) as e:
                    log.warning("join push/pull from %s failed (attempt %d): %s",
                                self.pool.names[first], attempt + 1, e)
                    await asyncio.sleep(0.5)
        return ok

    async def _exchange(self, local: str, target: tuple[str, int], data: bytes) -> int:
        async with asyncio.timeout(30):
            reader, writer = await asyncio.open_connection(target[0], target[1],
                                                           local_addr=(local, 0))
            try:
                writer.write(data)
                await writer.drain()
                sr = codec.StreamReader()
                while True:
                    chunk = await reader.read(65536)
                    if not chunk:
                        sr.feed_eof()
                        return 0
                    if sr.feed(chunk) is not None:
                        return 1
            finally:
                writer.close()

    def close(self) -> None:
        for s in self.servers:
            s.close()
        for t in self.udps:
            t.close()


def pick_net_and_port(n: int) -> tuple[int, int]:
    """A second octet and a port free on the first and last swarm address."""
    rng = random.Random()
    for _ in range(200):
        net = rng.randrange(100, 250)
        port = rng.randrange(20000, 32000)
        last = n - 1
        ok = True
        for addr in (f"127.{net}.0.1", f"127.{net}.{last // 250}.{last % 250 + 1}"):
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t, \
                        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    t.bind((addr, port))
                    u.bind((addr, port))
            except OSError:
                ok = False
                break
        if ok:
            return net, port
    raise RuntimeError("no free loopback network/port for the swarm")


def parse_hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"--join: {s!r} is not HOST:PORT")
    return host, int(port)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--instances", type=int, default=20, help="service instances per node")
    ap.add_argument("--join", required=True, help="HOST:PORT of a real agent's gossip port")
    ap.add_argument("--join-batch", type=int, default=100,
                    help="nodes whose states and records go in one join push/pull")
    args = ap.parse_args()
    if not 1 <= args.nodes <= 62500:
        raise SystemExit("--nodes: use 1-62500")
    target = parse_hostport(args.join)
    net, port = pick_net_and_port(args.nodes)
    pool = Pool(args.nodes, args.instances, net, port)
    swarm = Swarm(pool)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await swarm.start()
        joined = await swarm.join(target, max(1, args.join_batch))
        if joined == 0:
            print(f"swarm could not join {args.join}", file=sys.stderr, flush=True)
            raise SystemExit(1)
        print(f"swarm ready {args.nodes}", flush=True)
        await stop.wait()
    finally:
        swarm.close()
        print(f"swarm stopped packets_in={swarm.packets_in} streams_in={swarm.streams_in} "
              f"refutes={swarm.refutes} dropped={swarm.dropped}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(main())

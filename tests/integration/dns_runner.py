"""Helpers for the DNS integration tests and benches: a populated view, dig, dnsmasq, a recursor.

Run as a program it starts a DNSServer on 127.0.0.1 with a demo catalog and prints its port
(``python -m tests.integration.dns_runner [--port N] [--recursor ip:port]``).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Self

from dnsserver import DNSConfig, DNSServer, MemoryView
from tests.harness.agents import free_port

DIG = shutil.which("dig") or "/usr/bin/dig"
DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"


def demo_view(big: int = 40) -> MemoryView:
    """web (3 instances, one with its own address, one warning), db, a node with meta,
    an IPv6 node, and ``big`` instances of service ``big``."""
    v = MemoryView("dc1")
    v.add_node("n1", "10.0.0.1", meta={"rack": "r1"})
    v.add_node("n2", "10.0.0.2")
    v.add_node("n3", "10.0.0.3")
    v.add_node("v6", "fd00::6")
    v.register("n1", "web", port=8080, tags=["v1"], weight_passing=10)
    v.register("n2", "web", port=8081, tags=["v2"], address="10.1.1.2", weight_passing=10,
               weight_warning=2, status="warning")
    v.register("n3", "web", port=8082, tags=["v1"], weight_passing=10)
    v.register("n1", "db", port=5432)
    v.register("v6", "api6", port=443)
    for i in range(big):
        v.add_node(f"big{i:02d}", f"10.2.0.{i + 1}")
        v.register(f"big{i:02d}", "big", port=9000 + i)
    return v


async def dig(port: int, *args: str, timeout: float = 10.0) -> str:
    """Run the real dig against 127.0.0.1:port without blocking the loop; its stdout."""
    proc = await asyncio.create_subprocess_exec(
        DIG, "@127.0.0.1", "-p", str(port), "+time=2", "+tries=2", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return out.decode()


@contextmanager
def dnsmasq(*args: str, port: int | None = None) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Run Debian's dnsmasq in the foreground on 127.0.0.1; killed by PID on exit."""
    port = port or free_port()
    cmd = [DNSMASQ, "-k", "-C", "/dev/null", "--no-resolv", "--no-hosts", "-p", str(port),
           "--listen-address=127.0.0.1", "--bind-interfaces", "--pid-file=", "--user=root",
           "--log-facility=-", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_udp(port, proc)
        yield proc, port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def _wait_udp(port: int, proc: subprocess.Popen[bytes], deadline: float = 10.0) -> None:
    """Wait until something answers DNS on 127.0.0.1:port (a root NS query)."""
    q = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x01"
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise RuntimeError(f"dnsmasq exited rc={proc.returncode}: {out}")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.2)
        try:
            s.sendto(q, ("127.0.0.1", port))
            s.recvfrom(512)
            return
        except OSError:
            pass
        finally:
            s.close()
    raise RuntimeError(f"nothing answers on port {port}")


class StaticRecursor:
    """A small upstream DNS server (dnslib's threaded server) answering fixed records:
    ``<anything>.x.test`` A 1.2.3.4 (``big.x.test``: 60 A records), everything else NXDOMAIN
    with an SOA. The UDP side truncates answers over 512 bytes (TC), as dnslib does."""

    def __init__(self, address: str = "1.2.3.4") -> None:
        from dnslib import QTYPE, RR, A
        from dnslib.server import BaseResolver, DNSHandler, DNSLogger
        from dnslib.server import DNSServer as LibServer

        addr = address

        class _Res(BaseResolver):  # type: ignore[misc]
            def resolve(self, request: Any, handler: Any) -> Any:
                reply = request.reply()
                qname = request.q.qname
                name = str(qname).lower()
                if name == "big.x.test." and request.q.qtype == QTYPE.A:
                    for i in range(60):    # 60 records: more than 512 bytes
                        reply.add_answer(RR(qname, QTYPE.A, ttl=42, rdata=A(f"10.9.0.{i + 1}")))
                elif name.endswith("x.test.") and request.q.qtype in (QTYPE.A, QTYPE.ANY):
                    reply.add_answer(RR(qname, QTYPE.A, ttl=42, rdata=A(addr)))
                elif not str(qname).lower().endswith("x.test."):
                    reply.header.rcode = 3
                    reply.add_auth(*RR.fromZone("test. 60 IN SOA ns.test. h.test. 1 2 3 4 5"))
                return reply

        class _Handler(DNSHandler):  # type: ignore[misc]
            udplen = 512                   # truncate (TC) UDP answers over 512 bytes

        self.queries = 0
        quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data")
        for attempt in range(20):     # UDP gets a free port; TCP needs the same one free too
            self.udp = LibServer(_Res(), address="127.0.0.1", port=0, handler=_Handler,
                                 logger=quiet)
            self.port = self.udp.server.server_address[1]
            try:
                self.tcp = LibServer(_Res(), address="127.0.0.1", port=self.port, tcp=True,
                                     logger=quiet)
                break
            except OSError:
                self.udp.server.server_close()
                if attempt == 19:
                    raise

    def __enter__(self) -> Self:
        self.udp.start_thread()
        self.tcp.start_thread()
        return self

    def __exit__(self, *exc: object) -> None:
        for s in (self.udp, self.tcp):
            s.server.shutdown()
            s.server.server_close()


async def _main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--recursor", action="append", default=[])
    p.add_argument("--uvloop", action="store_true")
    a = p.parse_args()
    if a.uvloop:
        assert "uvloop" in type(asyncio.get_running_loop()).__module__
    server = DNSServer(DNSConfig(port=a.port, recursors=tuple(a.recursor)), demo_view())
    await server.start()
    print(server.udp_port, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


if __name__ == "__main__":
    import sys
    if "--uvloop" in sys.argv:
        import uvloop
        uvloop.run(_main())
    else:
        asyncio.run(_main())

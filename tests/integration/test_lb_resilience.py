"""Backends as real processes: kill -9 one under load (no failed request, no new connection
to it afterwards), and 100 MB bodies both ways through a proxy process whose RSS stays flat."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from lb import LBConfig, LoadBalancer, MemInstance, MemoryView
from lb.testing import start_http_backend, wait_for

ROOT = str(Path(__file__).resolve().parents[2])


async def spawn(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.stdout is not None
    async with asyncio.timeout(20):
        line = (await proc.stdout.readline()).decode().strip()
    return proc, line


def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()


@pytest.fixture
async def backend_procs() -> AsyncIterator[list[tuple[asyncio.subprocess.Process, int]]]:
    procs = []
    try:
        for i in range(3):
            p, line = await spawn("-m", "lb.testing", "http-backend", f"p{i}")
            assert line.startswith("PORT "), line
            procs.append((p, int(line.split()[1])))
        yield procs
    finally:
        for p, _ in procs:
            stop(p)
            await p.wait()


async def test_kill_9_backend_under_load(backend_procs) -> None:  # type: ignore[no-untyped-def]
    view = MemoryView()
    view.set_instances("web", [MemInstance("web", port, node=f"p{i}", service_id=f"p{i}")
                               for i, (_, port) in enumerate(backend_procs)])
    lb = LoadBalancer(LBConfig(sweep_interval=0.05, eject_backoff=30.0), view)
    await lb.start()
    try:
        info = await lb.add_listener({"Name": "web", "Bind": "127.0.0.1:0", "Mode": "http",
                                      "Service": "web"})
        url = f"http://{info['Address']}/"
        results: Counter[str] = Counter()
        failures: list[str] = []
        loop = asyncio.get_running_loop()
        end = loop.time() + 3.0

        async def worker(s: aiohttp.ClientSession) -> None:
            while loop.time() < end:
                try:
                    async with s.get(url) as r:
                        body = await r.text()
                        if r.status != 200:
                            failures.append(f"{r.status} {body[:100]}")
                        else:
                            results[body] += 1
                except aiohttp.ClientError as e:
                    failures.append(repr(e))

        def backend(sid: str) -> dict[str, object]:
            return next(b for b in lb.listeners()[0]["Backends"] if b["ServiceID"] == sid)

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=8)) as s:
            workers = [asyncio.create_task(worker(s)) for _ in range(8)]
            await asyncio.sleep(1.0)
            victim, _ = backend_procs[1]
            os.kill(victim.pid, signal.SIGKILL)
            await victim.wait()
            killed_at = dict(results)
            await wait_for(lambda: backend("p1")["Ejections"] == 1, timeout=3.0)
            conns_after_ejection = backend("p1")["Connections"]
            requests_after_ejection = backend("p1")["Requests"]
            await asyncio.gather(*workers)
        assert failures == []
        assert sum(results.values()) > 100
        assert results["p1"] == killed_at.get("p1", 0)      # nothing served by the dead one
        assert results["p0"] > killed_at["p0"] and results["p2"] > killed_at["p2"]
        assert backend("p1")["Connections"] == conns_after_ejection   # no new connection
        assert backend("p1")["Requests"] == requests_after_ejection
    finally:
        await lb.stop(1.0)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def test_100mb_bodies_stream_through_with_flat_rss(tmp_path: Path) -> None:
    from lb.testing import start_echo_backend
    backend = await start_http_backend("big")
    echo = await start_echo_backend("echo", "echo")
    cfg = {"lb": {"sweep_interval": 0.1},
           "listeners": [{"Name": "h", "Bind": "127.0.0.1:0", "Mode": "http", "Service": "big"},
                         {"Name": "t", "Bind": "127.0.0.1:0", "Mode": "tcp",
                          "Service": "echo"}],
           "services": {"big": [{"Port": backend.port}], "echo": [{"Port": echo.port}]}}
    (tmp_path / "lb.json").write_text(json.dumps(cfg))
    proxy, line = await spawn("-m", "lb", str(tmp_path / "lb.json"))
    try:
        assert line.startswith("READY "), line
        addr = json.loads(line[6:])["h"]
        base = rss_kib(proxy.pid)
        peak = base
        sampling = True

        async def sample() -> None:
            nonlocal peak
            while sampling:
                peak = max(peak, rss_kib(proxy.pid))
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        size = 100 * 1024 * 1024
        block = os.urandom(1 << 20)
        want = hashlib.sha256()
        for _ in range(100):
            want.update(block)

        async def upload() -> AsyncIterator[bytes]:
            for _ in range(100):
                yield block

        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout) as s:
            # upload, chunked (no Content-Length)
            async with s.post(f"http://{addr}/echo", data=upload()) as r:
                got = await r.json()
            assert got["len"] == size and got["sha256"] == want.hexdigest()
            # upload with Content-Length
            async with s.post(f"http://{addr}/echo", data=upload(),
                              headers={"Content-Length": str(size)}) as r:
                got = await r.json()
            assert got["len"] == size and got["chunked"] == ""
            # download, both framings
            for cl in ("1", ""):
                n = 0
                async with s.get(f"http://{addr}/big?n={size}&cl={cl}") as r:
                    assert r.status == 200
                    async for chunk in r.content.iter_any():
                        n += len(chunk)
                assert n == size
        # and 100 MiB through TCP mode (splice pump), echoed back while still sending
        thost, tport = json.loads(line[6:])["t"].rsplit(":", 1)
        r, w = await asyncio.open_connection(thost, int(tport))

        async def send_all() -> None:
            for _ in range(100):
                w.write(block)
                await w.drain()
            w.write_eof()

        sender = asyncio.create_task(send_all())
        got = hashlib.sha256()
        n = 0
        async with asyncio.timeout(120):
            while chunk := await r.read(1 << 20):
                got.update(chunk)
                n += len(chunk)
        await sender
        w.close()
        assert n == size and got.hexdigest() == want.hexdigest()
        sampling = False
        await sampler
        growth_mib = (peak - base) / 1024
        print(f"proxy rss base={base} KiB peak={peak} KiB")
        assert growth_mib < 32, f"proxy RSS grew {growth_mib:.1f} MiB moving 600 MiB"
    finally:
        stop(proxy)
        await proxy.wait()
        await backend.close()
        await echo.close()


async def test_churning_view_under_load_loses_nothing_and_leaks_nothing() -> None:
    """Instances come and go every 50 ms while 16 clients hammer both an HTTP and a TCP
    listener: every GET succeeds and, afterwards, every counter of open work is back to 0."""
    bs = [await start_http_backend(f"c{i}") for i in range(4)]
    view = MemoryView()

    def insts(idx: list[int]) -> list[MemInstance]:
        return [MemInstance("web", bs[i].port, node=f"c{i}", service_id=f"c{i}") for i in idx]

    view.set_instances("web", insts([0, 1, 2, 3]))
    lb = LoadBalancer(LBConfig(sweep_interval=0.05, drain_timeout=5.0), view)
    await lb.start()
    try:
        h = await lb.add_listener({"Name": "h", "Bind": "127.0.0.1:0", "Mode": "http",
                                   "Service": "web"})
        t = await lb.add_listener({"Name": "t", "Bind": "127.0.0.1:0", "Mode": "tcp",
                                   "Service": "web", "Strategy": "least_conn"})
        loop = asyncio.get_running_loop()
        end = loop.time() + 2.5
        failures: list[str] = []
        done = Counter[str]()

        async def churn() -> None:
            subsets = [[0, 1], [1, 2, 3], [3], [0, 2], [0, 1, 2, 3], [2]]
            i = 0
            while loop.time() < end:
                view.set_instances("web", insts(subsets[i % len(subsets)]))
                i += 1
                await asyncio.sleep(0.05)
            view.set_instances("web", insts([0, 1, 2, 3]))

        async def client(addr: str) -> None:
            # a fresh session now and then, so TCP-mode connections come and go too
            while loop.time() < end:
                async with aiohttp.ClientSession() as s:
                    for _ in range(20):
                        try:
                            async with s.get(f"http://{addr}/") as r:
                                body = await r.text()
                                if r.status != 200:
                                    failures.append(f"{addr} {r.status} {body[:80]}")
                                done[addr] += 1
                        except aiohttp.ClientError as e:
                            failures.append(f"{addr} {e!r}")

        await asyncio.gather(churn(), *(client(h["Address"]) for _ in range(8)),
                             *(client(t["Address"]) for _ in range(8)))
        assert failures == []
        assert done[h["Address"]] > 50 and done[t["Address"]] > 50

        def settled() -> bool:
            infos = lb.listeners()
            return all(i["Counters"]["Active"] == 0 for i in infos) and all(
                b["Active"] == 0 for i in infos for b in i["Backends"])

        await wait_for(settled, timeout=8)
        for info in lb.listeners():
            assert not any(b["Draining"] for b in info["Backends"]), info["Backends"]
            assert all(b["Active"] >= 0 for b in info["Backends"])
    finally:
        await lb.stop(1.0)
        for b in bs:
            await b.close()


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_out_of_descriptors_neither_spins_nor_dies(tmp_path: Path) -> None:
    """A connection flood past the proxy's file-descriptor limit: it keeps its CPU quiet
    (accepting pauses instead of spinning on EMFILE) and serves again once clients leave."""
    import resource
    import socket

    from lb.testing import start_echo_backend
    echo = await start_echo_backend("e", "reply-on-eof")
    hole = socket.socket()                      # accept queue full: connects hang
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    fillers = []
    for _ in range(4):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(hole.getsockname())
        fillers.append(f)
    cfg = {"lb": {"sweep_interval": 0.1, "connect_timeout": 1.0},
           "listeners": [{"Name": "t", "Bind": "127.0.0.1:0", "Mode": "tcp", "Service": "e"},
                         {"Name": "flood", "Bind": "127.0.0.1:0", "Mode": "tcp",
                          "Service": "hole"}],
           "services": {"e": [{"Port": echo.port}],
                        "hole": [{"Port": hole.getsockname()[1]}]}}
    (tmp_path / "lb.json").write_text(json.dumps(cfg))

    def limit_fds() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    proxy = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lb", str(tmp_path / "lb.json"), stdout=asyncio.subprocess.PIPE,
        cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, preexec_fn=limit_fds)
    clients: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        assert proxy.stdout is not None
        line = (await asyncio.wait_for(proxy.stdout.readline(), 20)).decode()
        addrs = json.loads(line[6:])
        host, port = addrs["t"].rsplit(":", 1)
        fhost, fport = addrs["flood"].rsplit(":", 1)
        for _ in range(60):     # each holds 2 descriptors while its connect hangs: > 64
            clients.append(await asyncio.open_connection(fhost, int(fport)))
        await asyncio.sleep(0.3)
        c0 = cpu_s(proxy.pid)
        await asyncio.sleep(1.0)
        assert cpu_s(proxy.pid) - c0 < 0.5      # not spinning on a readable listen socket
        for _r, w in clients:
            w.close()
        clients.clear()

        async def works() -> bool:
            try:
                r, w = await asyncio.open_connection(host, int(port))
                w.write(b"abc")
                w.write_eof()
                async with asyncio.timeout(2):
                    ok = await r.read() == b"e got 3 bytes"
                w.close()
                return ok
            except (OSError, TimeoutError):
                return False

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not await works():
            assert loop.time() < deadline, "proxy did not recover"
            await asyncio.sleep(0.1)
        assert proxy.returncode is None
    finally:
        for _r, w in clients:
            w.close()
        stop(proxy)
        await proxy.wait()
        await echo.close()
        hole.close()
        for f in fillers:
            f.close()

"""Rumor gossip nodes and real Debian ``serf agent``s in one cluster on loopback.

Each Rumor node is a separate process (tests/harness/gossip_node.py) so that ``kill -9`` is
real; serf's view is read with ``serf members -format json`` over its RPC port. Both sides use
Serf's default ``lan`` timing profile: with ``local`` (retransmit multiplier 2) a query or
intent is sent only twice per node and can miss a member of a small cluster, in serf-only
clusters as well, which would make ``serf keys`` flaky for reasons that are not ours.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.agents import free_port, wait_for
from tests.harness.gossip_node import GossipNodeProcess

pytestmark = [
    pytest.mark.serf,
    pytest.mark.skipif(shutil.which("serf") is None, reason="the serf binary is not installed"),
]


class SerfAgent:
    """A real ``serf agent`` on loopback ports picked at run time."""

    def __init__(self, name: str, workdir: Path, *, tags: dict[str, str] | None = None,
                 encrypt: str = "", join: str = "", handlers: tuple[str, ...] = (),
                 profile: str = "lan") -> None:
        self.name = name
        self.port = free_port()
        self.rpc = free_port()
        self.log = workdir / f"{name}.log"
        argv = ["serf", "agent", "-node", name, "-bind", f"127.0.0.1:{self.port}",
                "-rpc-addr", f"127.0.0.1:{self.rpc}", "-profile", profile]
        for k, v in (tags or {}).items():
            argv += ["-tag", f"{k}={v}"]
        if encrypt:
            argv += ["-encrypt", encrypt]
        if join:
            argv += ["-join", join]
        for h in handlers:
            argv += ["-event-handler", h]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._rpc_up, 10, what=f"serf {name} RPC")

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _rpc_up(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.rpc)) == 0

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = ["serf", args[0], "-rpc-addr", f"127.0.0.1:{self.rpc}", *args[1:]]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed: {r.stdout} {r.stderr}")
        return r

    def members(self) -> dict[str, dict[str, Any]]:
        out = json.loads(self.cli("members", "-format", "json").stdout)
        return {m["name"]: m for m in out["members"]}

    def statuses(self) -> dict[str, str]:
        return {n: m["status"] for n, m in self.members().items()}

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()


class Procs:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.items: list[Any] = []

    def serf(self, name: str, **kw: Any) -> SerfAgent:
        a = SerfAgent(name, self.workdir, **kw)
        self.items.append(a)
        return a

    def rumor(self, name: str, **kw: Any) -> GossipNodeProcess:
        kw.setdefault("log_path", self.workdir / f"{name}.log")
        kw.setdefault("profile", "lan")
        r = GossipNodeProcess(name, **kw).start()
        self.items.append(r)
        return r

    def close(self) -> None:
        for p in reversed(self.items):
            try:
                p.kill()
            except (OSError, subprocess.SubprocessError) as e:
                print(f"cleanup of {p.name} failed: {e}")


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.close()


def _all(view: dict[str, str], names: list[str], status: str) -> bool:
    return all(view.get(n) == status for n in names)


def wait_view(view: Any, ok: Any, timeout: float, who: str, what: str,
              log: Path | None = None) -> None:
    """Wait until ``ok(view())``; the error shows ``who``'s last view and the end of ``log``."""
    last: list[Any] = [None]

    def check() -> bool:
        last[0] = view()
        return bool(ok(last[0]))

    try:
        wait_for(check, timeout, what=f"{who} to see {what}")
    except AssertionError as e:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log else ""
        raise AssertionError(f"{e}; last view of {who}: {last[0]}\n{tail}".rstrip()) from None


def wait_status(view: Any, node: str, status: str, timeout: float, who: str) -> None:
    """Wait until ``view()`` shows ``node`` with ``status``."""
    wait_view(view, lambda v: v.get(node) == status, timeout, who, f"{node} {status}")


def wait_all(view: Any, names: list[str], status: str, timeout: float, who: str,
             log: Path | None = None) -> None:
    """Wait until ``view()`` shows every one of ``names`` with ``status``."""
    wait_view(view, lambda v: _all(v, names, status), timeout, who, f"all {status}", log)


def test_mixed_cluster_members_events_failures_and_leave(procs: Procs, tmp_path: Path) -> None:
    t0 = time.monotonic()
    seen = tmp_path / "serf-handler.out"
    script = tmp_path / "handler.sh"
    script.write_text(f'#!/bin/sh\necho "$SERF_EVENT $SERF_USER_EVENT $(cat)" >> {seen}\n')
    script.chmod(0o755)
    rumor_seen = tmp_path / "rumor-handler.out"
    rscript = tmp_path / "rhandler.sh"
    rscript.write_text(f'#!/bin/sh\necho "$SERF_EVENT $SERF_USER_EVENT $SERF_SELF_NAME $(cat)" >> {rumor_seen}\n')
    rscript.chmod(0o755)

    s1 = procs.serf("s1", tags={"role": "serf", "n": "1"}, handlers=(f"user:from-rumor={script}",))
    s2 = procs.serf("s2", tags={"role": "serf", "n": "2"}, join=s1.addr)
    r1 = procs.rumor("r1", tags={"role": "rumor", "n": "1"}, join=[s1.addr],
                     event_handlers=[f"user:deploy={rscript}", "query:uptime=echo up-$SERF_SELF_NAME"])
    r2 = procs.rumor("r2", tags={"role": "rumor", "n": "2"}, join=[s2.addr])
    r3 = procs.rumor("r3", tags={"role": "rumor", "n": "3"}, join=[r1.addr])
    names = ["s1", "s2", "r1", "r2", "r3"]
    rumors = [r1, r2, r3]

    # 1. everybody lists everybody alive, with their tags
    for r in rumors:
        wait_all(r.members, names, "alive", 20, r.name)
    # a Serf agent that missed every gossiped copy of a join learns it at its next push/pull
    # (LAN: every 30 s), as in a Serf-only cluster. The CI of 50aef78 once had s2 short of a
    # member 20 s on (whom, and why, was not printed), the Rumor nodes and s1 complete at 1 s.
    for s in (s1, s2):
        wait_all(s.statuses, names, "alive", 35, s.name, log=s.log)
    for s in (s1, s2):
        view = s.members()
        for n in names:
            assert view[n]["tags"]["n"] == n[1]
            assert view[n]["tags"]["role"] == ("serf" if n[0] == "s" else "rumor")
    for r in rumors:
        view = {m["name"]: m for m in r.call("members")}
        for n in names:
            assert view[n]["tags"]["n"] == n[1], (r.name, view[n])
        assert "rumor" in view["r1"]["tags"] and "rumor" not in view["s1"]["tags"]
    print(f"converged after {time.monotonic() - t0:.1f}s")

    # 2. a serf event reaches every Rumor node (and Rumor's handler script)
    s2.cli("event", "deploy", "v1.2")
    for r in rumors:
        wait_for(lambda r=r: ["deploy", "v1.2"] in r.call("events"), 10, what=f"{r.name} got deploy")
    wait_for(lambda: rumor_seen.exists() and "user deploy r1 v1.2" in rumor_seen.read_text(), 10,
             what="Rumor event handler ran")

    # 3. a Rumor user event reaches serf's event handler script
    r2.call("event", name="from-rumor", payload="hello-serf")
    wait_for(lambda: seen.exists() and "user from-rumor hello-serf" in seen.read_text(), 15,
             what="serf handler saw the Rumor event")

    # 3b. `serf query` gets an ack from every node and the answer of Rumor's query handler
    out = s1.cli("query", "-format", "json", "uptime").stdout
    q = json.loads(out)
    assert set(q["Acks"]) == set(names), q
    assert q["Responses"].get("r1", "").strip() == "up-r1", q

    # 4. kill -9 of a serf agent is seen as failed by Rumor; kill -9 of a Rumor node by serf
    t1 = time.monotonic()
    s2.kill()
    r3.kill()
    for r in (r1, r2):
        wait_for(lambda r=r: r.members().get("s2") == "failed", 30, what=f"{r.name} sees s2 failed")
    wait_for(lambda: s1.statuses().get("r3") == "failed", 30, what="s1 sees r3 failed")
    wait_for(lambda: r1.members().get("r3") == "failed", 30, what="r1 sees r3 failed")
    print(f"kill -9 detected after {time.monotonic() - t1:.1f}s")

    # 5. graceful leave of a Rumor node shows 'left' on serf and Rumor (a serf agent's leave is
    # checked in the next test, while enough members are alive to re-gossip its intent)
    r2.call("leave", timeout=5.0)
    wait_status(s1.statuses, "r2", "left", 15, "s1")
    wait_status(r1.members, "r2", "left", 15, "r1")
    print(f"whole scenario took {time.monotonic() - t0:.1f}s")


def test_encrypted_cluster_and_key_rotation(procs: Procs) -> None:
    k1, k2, k3 = (base64.b64encode(os.urandom(32)).decode() for _ in range(3))
    s1 = procs.serf("s1", encrypt=k1, tags={"x": "1"})
    s2 = procs.serf("s2", encrypt=k1, join=s1.addr)
    r1 = procs.rumor("r1", encrypt=k1, join=[s1.addr])
    r2 = procs.rumor("r2", encrypt=k1, join=[s2.addr])
    names = ["s1", "s2", "r1", "r2"]
    for r in (r1, r2):
        wait_for(lambda r=r: _all(r.members(), names, "alive"), 20, what=f"{r.name} sees all")
    wait_all(s1.statuses, names, "alive", 35, "s1", log=s1.log)  # a missed join: push/pull, 30 s

    # a plaintext node cannot get in, and the encrypted nodes count what they refused
    plain = procs.rumor("plain")
    assert plain.call("join", addrs=[r1.addr]) == 0
    wait_for(lambda: any(k.startswith("memberlist.drops.") and ("encrypt" in k) and v > 0
                         for k, v in r1.call("counters").items()), 10,
             what="r1 counted unencrypted input")
    assert "plain" not in r1.members()

    # rotation driven by serf keys: the Rumor nodes answer the internal key queries
    out = s1.cli("keys", "-install", k2)
    assert "Successfully" in out.stdout or "success" in out.stdout.lower(), out.stdout
    assert set(r1.call("keyring")) == {k1, k2}
    s1.cli("keys", "-use", k2)
    assert r2.call("keyring")[0] == k2
    s1.cli("keys", "-remove", k1)
    assert r1.call("keyring") == [k2] and r2.call("keyring") == [k2]

    # rotation driven by Rumor's keyring API: the serf agents follow
    res = r1.call("install-key", key=k3)
    assert res["ok"] and res["num_resp"] == 4, res
    assert r1.call("use-key", key=k3)["ok"]
    assert r1.call("remove-key", key=k2)["ok"]
    listing = s2.cli("keys", "-list").stdout
    assert k3 in listing and k2 not in listing and k1 not in listing, listing
    res = r2.call("list-keys")
    assert res["ok"] and res["keys"] == {k3: 4} and res["primary_keys"] == {k3: 4}, res

    # removing the primary key is refused everywhere and reported as a failure
    bad = r2.call("remove-key", key=k3)
    assert not bad["ok"] and bad["num_err"] == 4

    # the cluster still works on the new key: an event goes through, nobody failed
    s1.cli("event", "after-rotation", "ok")
    wait_for(lambda: ["after-rotation", "ok"] in r2.call("events"), 10, what="event after rotation")
    time.sleep(1.0)
    assert _all(r1.members(), names, "alive") and _all(s2.statuses(), names, "alive")

    # a serf agent's graceful leave shows 'left' on the Rumor nodes: by its leave intent, or,
    # should every copy of it be lost (seen once in CI and once in a loaded local run: r2 saw
    # s2 'failed', with nothing dropped), by Serf's push/pull, which carries left members
    # (every 15 s on the local profile; Serf does the same)
    s2.cli("leave")
    for r in (r1, r2):
        try:
            wait_status(r.members, "s2", "left", 35, r.name)
        except AssertionError as e:
            # seen once in CI (r2: failed, not left); say what the node dropped or skipped
            c = {k: v for k, v in r.call("counters").items()
                 if v and ("drops" in k or "duplicate" in k or "intent" in k or "leave" in k)}
            raise AssertionError(f"{e}; {r.name} counters: {c}") from None


def test_snapshot_restart_rejoins_without_join(procs: Procs, tmp_path: Path) -> None:
    s1 = procs.serf("s1")
    r2 = procs.rumor("r2", join=[s1.addr])
    data = tmp_path / "r1-data"
    port = free_port()
    r1 = procs.rumor("r1", port=port, data_dir=str(data), join=[s1.addr])
    names = ["s1", "r1", "r2"]
    wait_for(lambda: _all(r1.members(), names, "alive"), 20, what="r1 sees all")
    wait_for(lambda: (data / "serf" / "local.snapshot").exists()
             and "alive: s1" in (data / "serf" / "local.snapshot").read_text(), 10,
             what="snapshot written")
    r1.kill()
    wait_status(s1.statuses, "r1", "failed", 30, "s1")
    # start again: same data dir and port, no -join
    r1b = procs.rumor("r1", port=port, data_dir=str(data))
    wait_for(lambda: _all(r1b.members(), names, "alive"), 20, what="restarted r1 sees the cluster")
    wait_for(lambda: s1.statuses().get("r1") == "alive", 30, what="s1 sees r1 back")
    wait_for(lambda: r2.members().get("r1") == "alive", 30, what="r2 sees r1 back")


def test_agent_http_api_and_cli_with_serf(procs: Procs, tmp_path: Path) -> None:
    """The gossip endpoints and CLI of real ``rumor agent`` processes in an encrypted cluster
    with serf: members, join, events, force-leave, leave and keyring rotation."""
    import base64 as b64
    import sys

    from tests.harness.agents import AgentProcess

    key1, key2 = (b64.b64encode(os.urandom(32)).decode() for _ in range(2))
    s1 = procs.serf("s1", tags={"role": "serf"}, encrypt=key1)
    a1 = AgentProcess("a1", tmp_path, extra_args=["-tag", "role=api", "-dns-port", "-1",
                                                  "-encrypt", key1])
    a2 = AgentProcess("a2", tmp_path, join=[s1.addr], extra_args=["-dns-port", "-1",
                                                                  "-encrypt", key1])
    procs.items += [a1, a2]
    a1.start()
    a2.start()
    a1.http("PUT", f"/v1/agent/join/{s1.addr}")
    names = ["s1", "a1", "a2"]
    wait_for(lambda: _all(a1.members(), names, "alive"), 20, what="a1 sees all")
    wait_all(s1.statuses, names, "alive", 35, "s1", log=s1.log)  # a missed join: push/pull, 30 s
    wait_for(lambda: _all(a2.members(), names, "alive"), 20, what="a2 sees all")
    members = {m["Name"]: m for m in a1.http("GET", "/v1/agent/members")}
    assert members["a1"]["Tags"]["role"] == "api" and members["s1"]["Tags"] == {"role": "serf"}
    assert members["s1"]["Status"] == 1 and members["s1"]["DelegateMax"] == 5
    assert members["a2"]["Port"] == a2.gossip_port and members["a2"]["Addr"] == "127.0.0.1"

    cli = [sys.executable, "-m", "registry.cli"]
    out = subprocess.run(cli + ["members", "-json", "-http-addr", a2.http_addr],
                         capture_output=True, text=True, timeout=20, check=True).stdout
    listed = {m["Name"]: m for m in json.loads(out)}
    assert set(listed) == set(names) and listed["a1"]["Status"] == "alive"
    assert listed["a1"]["Tags"]["role"] == "api"
    table = subprocess.run(cli + ["members", "-status", "failed", "-http-addr", a2.http_addr],
                           capture_output=True, text=True, timeout=20, check=True).stdout
    assert "a1" not in table and "Status" in table
    detailed = subprocess.run(cli + ["members", "-detailed", "-http-addr", a2.http_addr],
                              capture_output=True, text=True, timeout=20, check=True).stdout
    assert "2/5/5" in detailed and "1/5/2" in detailed, detailed  # delegate and memberlist vsn

    # events: serf -> Rumor's /v1/event/list, and Rumor's fire -> every agent's list (same ID)
    s1.cli("event", "deploy", "v7")
    wait_for(lambda: any(e["Name"] == "deploy" for e in a2.http("GET", "/v1/event/list?name=deploy")),
             10, what="serf event listed by a2")
    ev = a2.http("GET", "/v1/event/list?name=deploy")[-1]
    assert b64.b64decode(ev["Payload"]) == b"v7"
    fired = a1.http("PUT", "/v1/event/fire/rollout", raw=b"all")
    wait_for(lambda: any(e["ID"] == fired["ID"] for e in a2.http("GET", "/v1/event/list")), 10,
             what="fired event listed by a2 with the same ID")
    # a blocking read of the event list returns as soon as a new event arrives
    import threading
    import urllib.request

    with urllib.request.urlopen(f"http://{a2.http_addr}/v1/event/list", timeout=5) as resp:
        index = int(resp.headers["X-Consul-Index"])
    got: list[tuple[float, list[dict[str, Any]]]] = []

    def blocking_read() -> None:
        t = time.monotonic()
        url = f"http://{a2.http_addr}/v1/event/list?index={index}&wait=20s"
        with urllib.request.urlopen(url, timeout=30) as resp:
            got.append((time.monotonic() - t, json.loads(resp.read())))

    reader = threading.Thread(target=blocking_read)
    reader.start()
    time.sleep(0.5)
    subprocess.run(cli + ["event", "-http-addr", a1.http_addr, "cli-event", "p"], check=True,
                   capture_output=True, timeout=20)
    reader.join(25)
    assert got and got[0][0] < 10 and got[0][1][-1]["Name"] == "cli-event", got
    out = subprocess.run(cli + ["event", "-coalesce=false", "-http-addr", a1.http_addr, "nc"],
                         check=True, capture_output=True, text=True, timeout=20).stdout
    assert "Coalescing enabled: false" in out
    wait_for(lambda: any(e["Name"] == "cli-event" for e in a2.http("GET", "/v1/event/list")), 10,
             what="CLI event listed by a2")

    # key rotation with `rumor keyring` (HTTP /v1/operator/keyring): serf follows
    def rumor_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cli + list(args) + ["-http-addr", a1.http_addr], capture_output=True,
                              text=True, timeout=30, check=False)

    for args in (("-install", key2), ("-use", key2), ("-remove", key1)):
        r = rumor_cli("keyring", *args)
        assert r.returncode == 0 and "Success" in r.stdout, (args, r.stdout, r.stderr)
    listing = rumor_cli("keyring", "-list")
    assert listing.returncode == 0 and f"{key2}  [3/3]  [primary]" in listing.stdout, listing.stdout
    assert key1 not in s1.cli("keys", "-list").stdout
    refused = rumor_cli("keyring", "-remove", key2)  # the primary key cannot be removed
    assert refused.returncode == 1 and "primary" in refused.stderr, refused.stderr
    assert _all(a1.members(), names, "alive")

    # kill -9 a2: failed; force-leave: left, on Rumor and on serf
    a2.kill()
    wait_status(a1.members, "a2", "failed", 30, "a1")
    a1.http("PUT", "/v1/agent/force-leave/a2")
    wait_status(a1.members, "a2", "left", 10, "a1")
    wait_status(s1.statuses, "a2", "left", 10, "s1")

    # graceful leave over HTTP: serf shows left
    a1.http("PUT", "/v1/agent/leave", timeout=15)
    wait_status(s1.statuses, "a1", "left", 15, "s1")


class _App:
    """A minimal application delegate: a state blob and the messages it got."""

    def __init__(self, state: bytes) -> None:
        self.state = state
        self.merged: list[tuple[bytes, bool]] = []
        self.messages: list[bytes] = []

    def local_app_state(self, join: bool) -> bytes:
        return self.state

    def merge_app_state(self, buf: bytes, join: bool) -> None:
        self.merged.append((buf, join))

    def notify_app_message(self, buf: bytes) -> None:
        self.messages.append(buf)


async def test_app_channel_reaches_rumor_peers_only(procs: Procs) -> None:
    """broadcast_app and the push/pull app state reach Rumor nodes; a serf agent in the same
    cluster never receives an app message (it would log an unknown message type)."""
    import asyncio

    from gossip import Gossip, MemberlistConfig, SerfConfig

    s1 = procs.serf("s1")
    apps = [_App(b"state-of-g0"), _App(b"state-of-g1")]
    gs = [Gossip(MemberlistConfig.lan(name=f"g{i}", bind_addr="127.0.0.1", bind_port=0,
                                      delegate_protocol_version=5),
                 SerfConfig(node_name=f"g{i}"), app=apps[i]) for i in range(2)]
    try:
        for g in gs:
            await g.start()
        assert await gs[0].join([s1.addr]) == 1
        assert await gs[1].join([f"127.0.0.1:{gs[0].bound_port}"]) == 1
        # the join's push/pull carried g0's app state to g1 (and g1's to g0)
        assert (b"state-of-g0", True) in apps[1].merged
        assert any(buf == b"state-of-g1" for buf, _ in apps[0].merged)

        async def until(cond: Any, timeout: float, what: str) -> None:
            async with asyncio.timeout(timeout):
                while not cond():
                    await asyncio.sleep(0.05)

        await until(lambda: all(len(g.members()) == 3 for g in gs), 10, "3 members")
        assert gs[0].is_rumor_peer("g1") and not gs[0].is_rumor_peer("s1")
        for i in range(5):
            gs[0].broadcast_app("catalog/g0", f"v{i}".encode())  # newest per key wins
        gs[0].broadcast_app("catalog/other", b"x")
        await until(lambda: b"v4" in apps[1].messages and b"x" in apps[1].messages, 10,
                    "app messages at g1")
        assert b"v0" not in apps[1].messages
        await asyncio.sleep(1.0)  # let gossip rounds to s1 happen
        assert "unknown type" not in s1.log.read_text()
        assert all(m["status"] == "alive" for m in s1.members().values())
    finally:
        for g in gs:
            await g.shutdown()


async def test_keyring_file_follows_rotation(procs: Procs, tmp_path: Path) -> None:
    """Keys rotated by ``serf keys`` are saved in the Rumor node's keyring file."""
    import asyncio

    from gossip import Gossip, Keyring, MemberlistConfig, SerfConfig, load_keyring_file

    k1, k2 = os.urandom(32), os.urandom(32)
    b1, b2 = base64.b64encode(k1).decode(), base64.b64encode(k2).decode()
    s1 = procs.serf("s1", encrypt=b1)
    path = tmp_path / "serf" / "local.keyring"
    g = Gossip(MemberlistConfig.lan(name="g", bind_addr="127.0.0.1", bind_port=0),
               SerfConfig(node_name="g"), keyring=Keyring([k1]), keyring_path=path)
    await g.start()
    try:
        assert await g.join([s1.addr]) == 1
        for args in (("-install", b2), ("-use", b2), ("-remove", b1)):
            await asyncio.to_thread(s1.cli, "keys", *args)
        async with asyncio.timeout(10):
            while True:
                saved = load_keyring_file(path) if path.exists() else None
                if saved is not None and saved.keys == (k2,):
                    break
                await asyncio.sleep(0.05)
        assert g.keyring is not None and g.keyring.keys == (k2,)
    finally:
        await g.shutdown()


def test_name_conflict_newcomer_loses_the_vote(procs: Procs) -> None:
    """A second node started under a taken name loses Serf's _serf_conflict vote and stops."""
    s1 = procs.serf("s1")
    procs.serf("s2", join=s1.addr)
    first = procs.rumor("dup", join=[s1.addr])
    wait_for(lambda: _all(first.members(), ["s1", "s2", "dup"], "alive"), 20, what="cluster")
    newcomer = procs.rumor("dup", join=[s1.addr])
    wait_for(lambda: newcomer.call("counters").get("serf.name_conflict_lost", 0) >= 1, 20,
             what="the newcomer to lose the name-conflict vote")
    view = s1.members()
    assert view["dup"]["status"] == "alive" and view["dup"]["port"] == first.port
    assert first.call("counters").get("serf.name_conflict_lost", 0) == 0

"""The KV store through real ``rumor agent`` processes and the real py-consul client.

Covers: a put on one agent readable on the others within gossip dissemination time; a blocking
read woken by a write on another agent; Consul's shapes for recurse, keys and separator; delete
and recursive delete replicate; concurrent writes to one key converge; the keyspace survives a
kill -9; ``?cas`` and sessions answer the documented refusal; a partition with writes on both
sides, then a heal, leaves every agent with the same keyspace (netns).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import consul
import pytest

from tests.harness import netns
from tests.harness.agents import AgentProcess, Cluster, wait_for

FAST = ["-profile", "local"]


@pytest.fixture
def three(cluster: Cluster) -> list[AgentProcess]:
    agents = cluster.start_loopback(3, extra_args=FAST)
    wait_for(lambda: all(len(a.members()) == 3 for a in agents), 20, what="3 members")
    return agents


def client(a: AgentProcess) -> consul.Consul:
    return consul.Consul(host="127.0.0.1", port=a.http_port)


def value(a: AgentProcess, key: str) -> bytes | None:
    _, e = client(a).kv.get(key)
    return None if e is None else (e["Value"] or b"")


def raw(a: AgentProcess, method: str, path: str, data: bytes | None = None,
        timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"http://{a.http_addr}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_put_spreads_blocking_read_woken_by_remote_write(three: list[AgentProcess]) -> None:
    a, b, c = three
    assert client(a).kv.put("app/config", "v1", flags=42) is True
    t0 = time.monotonic()
    wait_for(lambda: value(b, "app/config") == b"v1" and value(c, "app/config") == b"v1", 5,
             0.02, what="the put on every agent")
    spread = time.monotonic() - t0
    assert spread < 5
    index, e = client(c).kv.get("app/config")
    assert e["Flags"] == 42 and e["LockIndex"] == 0 and e["Key"] == "app/config"
    assert e["CreateIndex"] >= 1 and e["ModifyIndex"] >= e["CreateIndex"]
    assert int(index) >= e["ModifyIndex"]

    # a blocking read on c, woken by a write on a
    got: dict[str, Any] = {}

    def block() -> None:
        t = time.monotonic()
        got["index"], got["entry"] = client(c).kv.get("app/config", index=index, wait="30s")
        got["took"] = time.monotonic() - t

    th = threading.Thread(target=block)
    th.start()
    time.sleep(0.5)
    assert "entry" not in got  # still blocked
    client(a).kv.put("app/config", "v2")
    th.join(20)
    assert got["entry"]["Value"] == b"v2" and got["took"] < 15
    assert int(got["index"]) > int(index)

    # a blocking read on a prefix is woken by a new key under it
    idx, _ = client(b).kv.get("app/", recurse=True)
    th = threading.Thread(target=lambda: got.update(
        prefix=client(b).kv.get("app/", recurse=True, index=idx, wait="30s")))
    th.start()
    time.sleep(0.3)
    client(c).kv.put("app/new", "n")
    th.join(20)
    assert sorted(e["Key"] for e in got["prefix"][1]) == ["app/config", "app/new"]

    # an index from another agent (or from before a restart) above ours answers at once
    t = time.monotonic()
    status, h, _ = raw(b, "GET", "/v1/kv/app/config?index=999999&wait=20s")
    assert status == 200 and time.monotonic() - t < 5 and int(h["X-Consul-Index"]) < 999999


def test_recurse_keys_separator_raw_and_deletes(three: list[AgentProcess]) -> None:
    a, b, c = three
    ca = client(a)
    for k in ["web/a", "web/b/c", "web/b/d", "webx", "db/x"]:
        ca.kv.put(k, k.upper())
    ca.kv.put("empty", "")
    # on b too: b deletes the tree below, and a delete covers the keys its agent has (a key
    # still on its way to b when b deletes the tree would outlive the delete)
    want = {k: k.upper().encode() for k in ["web/a", "web/b/c", "web/b/d", "webx", "db/x"]}
    want["empty"] = b""
    wait_for(lambda: all(value(x, k) == v for x in (b, c) for k, v in want.items()), 5,
             what="keys on b and c")
    cc = client(c)
    _, keys = cc.kv.get("web/", keys=True)
    assert keys == ["web/a", "web/b/c", "web/b/d"]
    _, keys = cc.kv.get("web/", keys=True, separator="/")
    assert keys == ["web/a", "web/b/"]
    _, keys = cc.kv.get("", keys=True, separator="/")
    assert keys == ["db/", "empty", "web/", "webx"]
    _, tree = cc.kv.get("web", recurse=True)
    assert [(e["Key"], e["Value"]) for e in tree] == [
        ("web/a", b"WEB/A"), ("web/b/c", b"WEB/B/C"), ("web/b/d", b"WEB/B/D"), ("webx", b"WEBX")]
    assert set(tree[0]) == {"LockIndex", "Key", "Flags", "Value", "CreateIndex", "ModifyIndex"}
    # the raw JSON: Value is base64, and null for an empty value (Consul's shape)
    status, h, body = raw(c, "GET", "/v1/kv/empty")
    assert status == 200 and json.loads(body)[0]["Value"] is None
    status, h, body = raw(c, "GET", "/v1/kv/web/a")
    assert base64.b64decode(json.loads(body)[0]["Value"]) == b"WEB/A"
    assert h["X-Consul-Effective-Consistency"] == "stale" and int(h["X-Consul-Index"]) >= 1
    status, h, body = raw(c, "GET", "/v1/kv/web/a?raw")
    assert (status, body) == (200, b"WEB/A")
    status, h, body = raw(c, "GET", "/v1/kv/missing")
    assert status == 404 and body == b"key not found: 'missing'\n" and int(h["X-Consul-Index"]) >= 1
    assert cc.kv.get("missing") == (h["X-Consul-Index"], None)
    status, _, body = raw(c, "GET", "/v1/kv/nothing/?recurse")
    assert status == 404

    # delete one key, then a whole tree; both replicate
    client(b).kv.delete("webx")
    client(b).kv.delete("web/", recurse=True)
    wait_for(lambda: all(client(x).kv.get("web", recurse=True)[1] is None for x in (a, c)), 5,
             what="the deletes on a and c")
    assert value(a, "db/x") == b"DB/X"
    _, keys = client(c).kv.get("", keys=True)
    assert keys == ["db/x", "empty"]

    # the UI shows the same keyspace, a folder at a time
    status, _, page = raw(c, "GET", "/ui/kv/")
    assert status == 200 and b'href="/ui/kv/db/"' in page and b'href="/ui/kv/empty"' in page
    status, _, page = raw(c, "GET", "/ui/kv/db/x")
    assert status == 200 and b"<pre>DB/X</pre>" in page
    assert raw(c, "GET", "/ui/kv/web/")[0] == 404


def test_concurrent_writes_converge(three: list[AgentProcess]) -> None:
    barrier = threading.Barrier(3)

    def writer(a: AgentProcess) -> None:
        cl = client(a)
        barrier.wait()
        for i in range(20):
            cl.kv.put("contended", f"{a.name}-{i}")

    threads = [threading.Thread(target=writer, args=(a,)) for a in three]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    def same() -> bool:
        vals = {value(a, "contended") for a in three}
        return len(vals) == 1
    wait_for(same, 40, 0.2, what="one value on every agent")
    final = value(three[0], "contended")
    assert final is not None and final.endswith(b"-19")  # each agent's last write is its newest


def test_size_limit_cas_sessions_and_bad_requests(three: list[AgentProcess]) -> None:
    a = three[0]
    status, _, body = raw(a, "PUT", "/v1/kv/k?cas=0", b"v")
    assert status == 400 and b"?cas needs consensus" in body and b"docs/comparison.md" in body
    assert raw(a, "GET", "/v1/kv/k")[0] == 404  # nothing written
    for q in ("acquire=abc", "release=abc"):
        status, _, body = raw(a, "PUT", f"/v1/kv/k?{q}", b"v")
        assert status == 400 and b"needs consensus" in body
    status, _, body = raw(a, "DELETE", "/v1/kv/k?cas=3")
    assert status == 400
    status, _, body = raw(a, "PUT", "/v1/session/create", b"{}")
    assert status == 400 and b"Sessions (/v1/session) needs consensus" in body
    status, _, body = raw(a, "PUT", "/v1/txn", b"[]")
    assert status == 400
    with pytest.raises(consul.ConsulException):
        client(a).kv.put("k", "v", cas=0)
    status, _, body = raw(a, "PUT", "/v1/kv/big", b"x" * (512 * 1024 + 1))
    assert status == 413 and b"too large" in body
    status, _, body = raw(a, "PUT", "/v1/kv/k?flags=-1", b"v")
    assert status == 400 and b"Invalid flags" in body
    status, _, body = raw(a, "PUT", "/v1/kv/k?ns=team-a", b"v")
    assert status == 400 and b"not supported" in body
    status, _, body = raw(a, "PUT", "/v1/kv/", b"v")
    assert status == 400 and b"Missing key name" in body
    # a value at the limit is stored, and reaches the others by anti-entropy
    assert raw(a, "PUT", "/v1/kv/big", b"y" * (512 * 1024))[0] == 200
    wait_for(lambda: value(three[2], "big") == b"y" * (512 * 1024), 60, 0.5,
             what="the 512 KiB value on another agent")


def test_keyspace_survives_kill_9(cluster: Cluster) -> None:
    a = cluster.add("solo", extra_args=FAST)
    a.start()
    cl = client(a)
    for i in range(20):
        cl.kv.put(f"cfg/{i}", str(i), flags=i)
    cl.kv.delete("cfg/3")
    idx, before = cl.kv.get("cfg/", recurse=True)
    a.kill()
    a.start()
    idx2, after = client(a).kv.get("cfg/", recurse=True)
    assert after == before and int(idx2) >= int(idx)
    client(a).kv.put("cfg/new", "x")
    assert client(a).kv.get("cfg/new")[1]["ModifyIndex"] > max(e["ModifyIndex"] for e in before)


def keyspace_digest(a: AgentProcess) -> str:
    body = a.http("GET", "/v1/kv/?recurse")
    items = [] if not isinstance(body, list) else [(e["Key"], e["Value"], e["Flags"])
                                                   for e in body]
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def put(a: AgentProcess, key: str, val: str) -> None:
    a.http("PUT", f"/v1/kv/{key}", raw=val.encode())


@pytest.mark.netns
@pytest.mark.skipif(netns.available() is not None, reason=str(netns.available()))
def test_partition_with_writes_on_both_sides_then_heal(cluster: Cluster, tmp_path: Path) -> None:
    # In a partition, a delta's few retransmissions may all go to unreachable peers (gossip
    # picks peers at random); anti-entropy then carries it: a short push-pull interval keeps
    # the test within its deadlines.
    conf = tmp_path / "gossip.json"
    conf.write_text(json.dumps({"gossip": {"profile": "local", "push_pull_interval": "3s"}}))
    with netns.Lab(4) as lab:
        agents = cluster.start_in_hosts(lab.hosts, extra_args=["-config-file", str(conf)])
        wait_for(lambda: all(len(x.members()) == 4 for x in agents), 20, what="4 members")
        put(agents[0], "shared/a", "before")
        put(agents[0], "shared/gone", "x")
        wait_for(lambda: len({keyspace_digest(x) for x in agents}) == 1
                 and agents[3].http("GET", "/v1/kv/shared/?keys") == ["shared/a", "shared/gone"],
                 10, what="the keys everywhere")
        left, right = lab.hosts[:2], lab.hosts[2:]
        for h in left:
            lab.partition(h, right)
        put(agents[0], "shared/a", "left-side")
        put(agents[1], "left/only", "1")
        time.sleep(0.05)
        put(agents[2], "shared/a", "right-side")  # the newer write: it wins after the heal
        put(agents[3], "right/only", "1")
        agents[3].http("DELETE", "/v1/kv/shared/gone")
        wait_for(lambda: agents[0].http("GET", "/v1/kv/left/only") is not None, 20,
                 what="left write on its side")
        wait_for(lambda: agents[2].http("GET", "/v1/kv/right/only") is not None, 20,
                 what="right write on its side")
        wait_for(lambda: base64.b64decode(
            agents[1].http("GET", "/v1/kv/shared/a")[0]["Value"]) == b"left-side", 20,
            what="the left side's write on its side")
        with pytest.raises(urllib.error.URLError):  # not across the partition
            agents[0].http("GET", "/v1/kv/right/only")
        lab.heal()
        wait_for(lambda: len({keyspace_digest(x) for x in agents}) == 1, 90, 0.5,
                 what="identical keyspaces after heal")
        keys = agents[0].http("GET", "/v1/kv/?keys")
        assert keys == ["left/only", "right/only", "shared/a"]
        assert base64.b64decode(agents[1].http("GET", "/v1/kv/shared/a")[0]["Value"]) == b"right-side"


def test_acl_key_rules(cluster: Cluster, tmp_path: Path) -> None:
    """key / key_prefix rules: reads and writes checked per key, listings filtered, a recursive
    delete refused whole when one key under it is not writable."""
    rules = ('key_prefix "app/" { policy = "read" }\n'
             'key_prefix "app/team/" { policy = "write" }\n'
             'key "app/secret" { policy = "deny" }\n')
    conf = tmp_path / "acl.json"
    conf.write_text(json.dumps({"acl": {
        "enabled": True, "default_policy": "deny",
        "tokens": {"initial_management": "root"},
        "policies": [{"name": "app", "rules": rules},
                     {"name": "ping", "rules": 'agent_prefix "" { policy = "read" }'}],
        # the anonymous token may read the agent (the harness's readiness probe), no keys
        "token_list": [{"secret_id": "tok-app", "policies": ["app"]},
                       {"accessor_id": "00000000-0000-0000-0000-000000000002",
                        "policies": ["ping"]}]}}))
    a = cluster.add("aclkv", extra_args=FAST + ["-config-file", str(conf)]).start()
    root = consul.Consul(host="127.0.0.1", port=a.http_port, token="root")
    for k in ("app/cfg", "app/secret", "app/team/x", "other/y"):
        assert root.kv.put(k, k) is True
    assert raw(a, "GET", "/v1/kv/app/cfg")[0] == 403  # anonymous: no key rules
    app = consul.Consul(host="127.0.0.1", port=a.http_port, token="tok-app")
    assert app.kv.get("app/cfg")[1]["Value"] == b"app/cfg"
    with pytest.raises(consul.ACLPermissionDenied):
        app.kv.get("app/secret")
    with pytest.raises(consul.ACLPermissionDenied):
        app.kv.put("app/cfg", "x")
    assert app.kv.put("app/team/new", "1") is True
    _, tree = app.kv.get("", recurse=True)
    assert [e["Key"] for e in tree] == ["app/cfg", "app/team/new", "app/team/x"]
    status, h, _ = raw(a, "GET", "/v1/kv/?recurse&token=tok-app")
    assert h.get("X-Consul-Results-Filtered-By-ACLs") == "true"
    _, keys = app.kv.get("app/", keys=True, separator="/")
    assert keys == ["app/cfg", "app/team/"]
    with pytest.raises(consul.ACLPermissionDenied):
        app.kv.delete("app/", recurse=True)    # app/cfg and app/secret are not writable
    assert root.kv.get("app/cfg")[1] is not None
    # the UI shows the same keys as the API to this token
    status, _, page = raw(a, "GET", "/ui/kv/app/?token=tok-app")
    assert status == 200 and b'href="/ui/kv/app/cfg"' in page and b"app/secret" not in page
    assert app.kv.delete("app/team/", recurse=True) is True
    assert root.kv.get("app/team/", recurse=True)[1] is None

"""A Rumor gossip node in its own process, driven by JSON lines on stdin (for interop tests).

Run: ``python -m tests.harness.gossip_node -name r1 -bind 127.0.0.1 -port 0 [-tag k=v]...
[-encrypt KEY] [-data-dir DIR] [-profile local] [-join ADDR]... [-event-handler SPEC]...``

It prints ``{"ready": true, "port": N}`` once bound, then answers one JSON line per command::

    {"op": "members"}                      -> [{"name", "addr", "port", "status", "tags"}...]
    {"op": "join", "addrs": [...]}         -> number joined
    {"op": "leave"}                        -> null (graceful leave, then the process exits)
    {"op": "event", "name", "payload"}     -> ltime
    {"op": "events"}                       -> [[name, payload]...]
    {"op": "tags", "tags": {...}}          -> null
    {"op": "install-key"|"use-key"|"remove-key", "key": b64} / {"op": "list-keys"}
                                           -> {"ok", "num_nodes", "num_resp", "num_err", "keys", ...}
    {"op": "counters"}                     -> {...}

The :class:`GossipNodeProcess` class below starts one (optionally inside a netns host) and
talks to it; tests kill it with SIGKILL by its own PID.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("-name", required=True)
    p.add_argument("-bind", default="127.0.0.1")
    p.add_argument("-port", type=int, default=0)
    p.add_argument("-tag", action="append", default=[])
    p.add_argument("-encrypt", default="")
    p.add_argument("-data-dir", default="")
    p.add_argument("-profile", default="local")
    p.add_argument("-join", action="append", default=[])
    p.add_argument("-event-handler", action="append", default=[])
    p.add_argument("-log-level", default="INFO")
    return p.parse_args(list(argv))


async def _main(ns: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    from gossip import Gossip, Keyring, MemberlistConfig, SerfConfig

    logging.basicConfig(level=ns.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    tags = dict(t.split("=", 1) for t in ns.tag)
    factory = {"lan": MemberlistConfig.lan, "wan": MemberlistConfig.wan,
               "local": MemberlistConfig.local}[ns.profile]
    ml = factory(name=ns.name, bind_addr=ns.bind, bind_port=ns.port, delegate_protocol_version=5)
    snapshot = str(Path(ns.data_dir) / "serf" / "local.snapshot") if ns.data_dir else ""
    serf = SerfConfig.local(ns.name, tags=tags, snapshot_path=snapshot,
                            event_handlers=tuple(ns.event_handler))
    keyring = Keyring([base64.b64decode(ns.encrypt)]) if ns.encrypt else None
    g = Gossip(ml, serf, keyring=keyring)
    await g.start()
    if ns.join:
        await g.join(ns.join)
    out = sys.stdout

    def reply(obj: Any) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    reply({"ready": True, "port": g.bound_port})
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def reader() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, "")

    threading.Thread(target=reader, daemon=True).start()
    while True:
        line = await lines.get()
        if not line:
            break
        try:
            cmd = json.loads(line)
            op = cmd["op"]
            result: Any = None
            if op == "members":
                result = [{"name": m.name, "addr": m.addr, "port": m.port, "status": m.status,
                           "tags": dict(m.tags)} for m in g.members()]
            elif op == "join":
                result = await g.join(cmd["addrs"])
            elif op == "leave":
                await g.leave(cmd.get("timeout", 5.0))
                await g.shutdown()
                reply({"ok": True, "result": None})
                return
            elif op == "event":
                ev = await g.user_event(cmd["name"], cmd.get("payload", "").encode())
                result = ev.ltime
            elif op == "events":
                result = [[e.name, e.payload.decode("utf-8", "replace")] for e in g.recent_events()]
            elif op == "tags":
                await g.set_tags(cmd["tags"])
            elif op in ("install-key", "use-key", "remove-key", "list-keys"):
                fn = {"install-key": g.install_key, "use-key": g.use_key,
                      "remove-key": g.remove_key}.get(op)
                r = await (fn(cmd["key"]) if fn else g.list_keys())
                result = {"ok": r.ok, "num_nodes": r.num_nodes, "num_resp": r.num_resp,
                          "num_err": r.num_err, "keys": dict(r.keys),
                          "primary_keys": dict(r.primary_keys), "messages": dict(r.messages)}
            elif op == "keyring":
                result = [base64.b64encode(k).decode() for k in (g.keyring.keys if g.keyring else ())]
            elif op == "counters":
                result = g.counters
            else:
                raise ValueError(f"unknown op {op}")
            reply({"ok": True, "result": result})
        except Exception as e:  # noqa: BLE001 -- reported to the test, keep serving
            reply({"ok": False, "error": f"{type(e).__name__}: {e}"})
    await g.shutdown()


class GossipNodeProcess:
    """Start and drive a gossip_node process (see the module docstring)."""

    def __init__(self, name: str, *, bind: str = "127.0.0.1", port: int = 0,
                 tags: dict[str, str] | None = None, encrypt: str = "", data_dir: str = "",
                 join: Sequence[str] = (), event_handlers: Sequence[str] = (),
                 profile: str = "local", netns: str | None = None, log_path: Path | None = None) -> None:
        self.name = name
        self.bind = bind
        self.argv = [sys.executable, "-m", "tests.harness.gossip_node", "-name", name, "-bind", bind,
                     "-port", str(port), "-profile", profile]
        for k, v in (tags or {}).items():
            self.argv += ["-tag", f"{k}={v}"]
        if encrypt:
            self.argv += ["-encrypt", encrypt]
        if data_dir:
            self.argv += ["-data-dir", data_dir]
        for j in join:
            self.argv += ["-join", j]
        for h in event_handlers:
            self.argv += ["-event-handler", h]
        if netns:
            self.argv = ["ip", "netns", "exec", netns] + self.argv
        self.log_path = log_path
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self._lock = threading.Lock()

    def start(self, timeout: float = 15.0) -> GossipNodeProcess:
        if self.log_path:
            with open(self.log_path, "a") as log:
                self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, stderr=log, text=True,
                                             cwd=str(ROOT), bufsize=1)
        else:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True, cwd=str(ROOT),
                                         bufsize=1)
        line = self._readline(timeout)
        data = json.loads(line)
        self.port = int(data["port"])
        return self

    @property
    def addr(self) -> str:
        return f"{self.bind}:{self.port}"

    def _readline(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        result: list[str] = []
        t = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()),  # type: ignore[union-attr]
                             daemon=True)
        t.start()
        t.join(timeout)
        if not result or not result[0]:
            raise AssertionError(f"gossip node {self.name} did not answer within {timeout}s")
        return result[0]

    def call(self, op: str, timeout: float = 20.0, **args: Any) -> Any:
        with self._lock:
            assert self.proc is not None and self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
            self.proc.stdin.flush()
            resp = json.loads(self._readline(timeout))
        if not resp.get("ok"):
            raise AssertionError(f"{self.name} {op}: {resp.get('error')}")
        return resp["result"]

    def members(self) -> dict[str, str]:
        return {m["name"]: m["status"] for m in self.call("members")}

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(5)
            except (subprocess.TimeoutExpired, OSError, BrokenPipeError):
                self.kill()


if __name__ == "__main__":
    try:
        asyncio.run(_main(_parse(sys.argv[1:])))
    except KeyboardInterrupt:
        pass
    time.sleep(0)

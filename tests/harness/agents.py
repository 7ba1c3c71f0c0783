"""Real ``rumor agent`` processes for tests: on loopback ports, or inside a netns host.

An :class:`AgentProcess` is a subprocess with its own data dir and log file. It is started with
free ports picked at run time, waits until its HTTP API answers, and can be stopped (SIGTERM),
killed (SIGKILL) and restarted on the same data dir. Only processes started here are signalled,
always by their own PID.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .netns import Host

PYTHON = sys.executable


_HANDED_OUT: set[int] = set()
def _port_range(low: int = 10000, high: int = 32000) -> tuple[int, int]:
    """Ports come from below the kernel's ephemeral range (32768+), so the outgoing connections
    of the agents under test can never take a port between the moment it is picked and the
    moment its agent binds it. Under pytest-xdist each worker (a process of its own, with its
    own record of what it handed out) gets a slice of its own: two workers could otherwise pick
    the same free port before either agent had bound it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or count <= 1:
        return low, high
    index = int(worker[2:]) % count
    width = (high - low) // count
    return low + index * width, low + (index + 1) * width


_PORT_LOW, _PORT_HIGH = _port_range()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both TCP and UDP on ``host`` (gossip needs both on the same number),
    never handed out twice in one test run."""
    for _ in range(500):
        port = random.randrange(_PORT_LOW, _PORT_HIGH)
        if port in _HANDED_OUT:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t, \
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                t.bind((host, port))
                u.bind((host, port))
        except OSError:
            continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free port")


def wait_for(cond: Callable[[], Any], timeout: float, interval: float = 0.1,
             what: str = "condition") -> Any:
    """Poll ``cond`` until it returns a truthy value; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = cond()
            if value:
                return value
        except Exception as e:  # the condition may fail while the system settles
            last_exc = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)


class AgentProcess:
    def __init__(self, name: str, workdir: Path, *, host: Host | None = None,
                 extra_args: Sequence[str] = (), join: Sequence[str] = (),
                 gossip_port: int | None = None, http_port: int | None = None,
                 dns_port: int | None = None, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.host = host
        self.ip = host.ip if host else "127.0.0.1"
        self.data_dir = workdir / f"{name}-data"
        self.log_path = workdir / f"{name}.log"
        # Inside a namespace every port is free; on loopback pick them now.
        self.gossip_port = gossip_port or (7946 if host else free_port())
        self.http_port = http_port or (8500 if host else free_port())
        self.dns_port = dns_port or (8600 if host else free_port())
        self.extra_args = list(extra_args)
        self.join = list(join)
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def gossip_addr(self) -> str:
        return f"{self.ip}:{self.gossip_port}"

    @property
    def http_addr(self) -> str:
        return f"{self.ip}:{self.http_port}"

    def argv(self) -> list[str]:
        argv = [
            PYTHON, "-m", "registry.cli", "agent",
            "-node", self.name, "-data-dir", str(self.data_dir),
            "-bind", self.ip, "-client", self.ip,
            "-serf-lan-port", str(self.gossip_port), "-http-port", str(self.http_port),
            "-dns-port", str(self.dns_port), "-log-level", "debug",
        ]
        for j in self.join:
            argv += ["-join", j]
        return argv + self.extra_args

    def start(self, wait: bool = True, timeout: float = 20) -> AgentProcess:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = open(self.log_path, "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        argv = self.argv()
        if self.host:
            argv = self.host.cmd(*argv)
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     cwd=str(Path(__file__).resolve().parents[2]))
        log.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"agent {self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            self.http("GET", "/v1/agent/self", timeout=1)
            return True

        wait_for(ready, timeout, what=f"agent {self.name} to answer HTTP")

    def http(self, method: str, path: str, body: Any = None, timeout: float = 5,
             raw: bytes | None = None) -> Any:
        """Call the agent's HTTP API; returns decoded JSON (or text). Raises HTTPError."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        url = f"http://{self.http_addr}{path}"
        if self.host:
            return self._http_in_ns(method, url, data, timeout)
        req = urllib.request.Request(url, data=data, method=method)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            payload = resp.read()
        try:
            return json.loads(payload) if payload else None
        except ValueError:
            return payload.decode()

    def _http_in_ns(self, method: str, url: str, data: bytes | None, timeout: float) -> Any:
        assert self.host is not None
        argv = ["curl", "-sS", "--fail-with-body", "-X", method, "--max-time", str(timeout), url]
        if data is not None:
            argv += ["--data-binary", "@-"]
        p = subprocess.run(self.host.cmd(*argv), input=data, capture_output=True,
                           timeout=timeout + 5)
        if p.returncode != 0:
            raise urllib.error.URLError(f"curl exit {p.returncode}: {p.stdout!r} {p.stderr!r}")
        try:
            return json.loads(p.stdout) if p.stdout else None
        except ValueError:
            return p.stdout.decode()

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def members(self) -> dict[str, str]:
        """name -> status as this agent sees them (via /v1/agent/members)."""
        out = {}
        for m in self.http("GET", "/v1/agent/members"):
            out[m["Name"]] = {1: "alive", 2: "leaving", 3: "left", 4: "failed"}.get(
                m["Status"], str(m["Status"]))
        return out


class Cluster:
    """Several agents; the first is the seed the others join. Stops everything on close."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.agents: list[AgentProcess] = []

    def add(self, name: str, **kw: Any) -> AgentProcess:
        a = AgentProcess(name, self.workdir, **kw)
        self.agents.append(a)
        return a

    def start_loopback(self, n: int, *, prefix: str = "node", join: bool = True,
                       extra_args: Sequence[str] = ()) -> list[AgentProcess]:
        started = []
        for i in range(n):
            seed = [self.agents[0].gossip_addr] if join and self.agents else []
            a = self.add(f"{prefix}{i}", join=seed, extra_args=extra_args)
            a.start(wait=False)
            started.append(a)
            if i == 0:
                a.wait_ready()
        for a in started:
            a.wait_ready()
        return started

    def start_in_hosts(self, hosts: Sequence[Host], *, prefix: str = "node", join: bool = True,
                       extra_args: Sequence[str] = ()) -> list[AgentProcess]:
        started = []
        for i, h in enumerate(hosts):
            seed = [f"{hosts[0].ip}:7946"] if join and i > 0 else []
            a = self.add(f"{prefix}{i}", host=h, join=seed, extra_args=extra_args)
            a.start(wait=(i == 0))
            started.append(a)
        for a in started:
            a.wait_ready()
        return started

    def close(self) -> None:
        # Signal every agent first, then wait: their graceful leaves overlap instead of
        # adding up.
        for a in self.agents:
            a.signal(signal.SIGTERM)
        for a in self.agents:
            try:
                a.stop(timeout=6)
            except Exception:
                a.kill()

"""LB listeners through a real agent process: re-applying a listener keeps it (and its counters),
and what the listener's and the backends' byte counters count, measured at both ends."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.agents import AgentProcess, wait_for

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class CountingBackend:
    """An HTTP/1.1 backend on loopback that answers every GET with ``RESPONSE`` and counts the
    bytes it receives and sends."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self.sent = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                with self.lock:
                    self.received += len(data)
                buf += data
                while b"\r\n\r\n" in buf:   # GETs only: a head is a whole request
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    conn.sendall(RESPONSE)
                    with self.lock:
                        self.sent += len(RESPONSE)

    def close(self) -> None:
        self.sock.close()


def get(addr: str, path: str = "/") -> bytes:
    """One GET over a fresh connection; returns every byte the client received."""
    host, port = addr.rsplit(":", 1)
    req = f"GET {path} HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(req)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    a = AgentProcess("lbc", tmp_path, extra_args=["-profile", "local"]).start()
    try:
        yield a
    finally:
        a.stop()


@pytest.fixture
def backend() -> Iterator[CountingBackend]:
    b = CountingBackend()
    try:
        yield b
    finally:
        b.close()


def listener(agent: AgentProcess, name: str = "web") -> dict[str, Any]:
    info: dict[str, Any] = agent.http("GET", f"/v1/lb/listener/{name}")
    return info


def test_the_same_put_keeps_the_listener_and_its_counters(agent: AgentProcess,
                                                         backend: CountingBackend) -> None:
    agent.http("PUT", "/v1/agent/service/register",
               {"Name": "web", "ID": "web1", "Address": "127.0.0.1", "Port": backend.port})
    spec = {"Name": "web", "Bind": "127.0.0.1:0", "Mode": "http", "Service": "web"}
    addr = agent.http("PUT", "/v1/lb/listener", spec)["Address"]
    wait_for(lambda: len(listener(agent)["Backends"]) == 1, 10, what="the backend in the pool")
    for _ in range(3):
        assert get(addr).endswith(b"\r\n\r\nok")
    before = listener(agent)["Counters"]
    assert before["Requests"] == 3 and before["BytesIn"] > 0

    again = agent.http("PUT", "/v1/lb/listener", dict(spec))        # the same spec
    assert again["Address"] == addr
    assert again["Counters"] == before
    assert listener(agent)["Counters"]["Requests"] == 3
    assert get(addr).endswith(b"ok")                                   # still the same socket
    assert listener(agent)["Counters"]["Requests"] == 4

    changed = agent.http("PUT", "/v1/lb/listener", {**spec, "Strategy": "least_conn"})
    assert changed["Strategy"] == "least_conn"                         # a change is applied
    assert listener(agent)["Strategy"] == "least_conn"


def test_listener_bytes_are_the_client_side_and_backend_bytes_the_backend_side(
        agent: AgentProcess, backend: CountingBackend) -> None:
    """docs/http-api.md: in HTTP mode the two disagree by the request heads the LB rewrites
    (X-Forwarded-*), and by the answers the LB makes itself (503 with no backend)."""
    addr = agent.http("PUT", "/v1/lb/listener", {"Name": "web", "Bind": "127.0.0.1:0",
                                                  "Mode": "http", "Service": "web"})["Address"]
    client_sent = client_got = 0
    # no instance yet: the LB answers 503 itself; only the listener counts it
    reply = get(addr)
    assert reply.startswith(b"HTTP/1.1 503")
    client_got += len(reply)
    client_sent += len(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")

    agent.http("PUT", "/v1/agent/service/register",
               {"Name": "web", "ID": "web1", "Address": "127.0.0.1", "Port": backend.port})
    wait_for(lambda: len(listener(agent)["Backends"]) == 1, 10, what="the backend in the pool")
    for path in ("/", "/a", "/bb"):
        reply = get(addr, path)
        assert reply.endswith(b"\r\n\r\nok")
        client_got += len(reply)
        client_sent += len(f"GET {path} HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")

    def settled() -> bool:
        info = listener(agent)
        return bool(info["Counters"]["BytesOut"] == client_got and info["Backends"]
                    and info["Backends"][0]["BytesOut"] == backend.sent)
    wait_for(settled, 10, what="the counters to catch up")
    info = listener(agent)
    lst, be = info["Counters"], info["Backends"][0]
    # the listener counts what its clients sent and got...
    assert lst["BytesIn"] == client_sent and lst["BytesOut"] == client_got
    # ...each backend what it got and sent
    assert be["BytesIn"] == backend.received and be["BytesOut"] == backend.sent
    # and they differ: the backend got rewritten (longer) heads, the clients also got a 503
    assert be["BytesIn"] > lst["BytesIn"] - len(
        b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
    assert lst["BytesOut"] > be["BytesOut"]

"""The wire codec against a real Debian ``serf`` agent on loopback (no memberlist core involved).

We write bytes with ``gossip.codec`` and check that serf 0.9.4 accepts them: a compressed (and an
encrypted) TCP push/pull join carrying Rumor's extra ``RumorApp`` key, a UDP gossip packet that
is compound + LZW + CRC + AES-GCM, a user event, a ping answered with an ack, and a Rumor app
message (serf type 0x80) that serf must shrug off.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gossip import codec
from gossip.messages import AckResp, Alive, Ping, PushNodeState, PushPull
from gossip.security import Keyring
from gossip.serf_messages import AppMessage, JoinIntent, SerfPushPull, UserEvent

pytestmark = [
    pytest.mark.serf,
    pytest.mark.skipif(shutil.which("serf") is None, reason="needs the Debian serf binary"),
]

VSN = (1, 5, 2, 2, 5, 4)


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    # serf takes a fixed port on its command line; ask the kernel for a free one first.
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Agent:
    port: int
    rpc: int
    keyring: Keyring | None
    log: Path
    proc: subprocess.Popen[bytes]

    def members(self) -> dict[str, dict[str, object]]:
        out = subprocess.run(
            ["serf", "members", "-format=json", f"-rpc-addr=127.0.0.1:{self.rpc}"],
            capture_output=True,
            timeout=10,
            check=True,
        )
        return {m["name"]: m for m in json.loads(out.stdout)["members"]}

    def wait_for(self, cond: str, check: object, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():  # type: ignore[operator]
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {cond}; log:\n{self.log.read_text()[-2000:]}")


def _start(tmp_path: Path, key: bytes | None) -> Iterator[Agent]:
    port, rpc = _free_port(), _free_port()
    log = tmp_path / f"serf-{port}.log"
    args = ["serf", "agent", "-node", "go1", "-bind", f"127.0.0.1:{port}"]
    args += ["-rpc-addr", f"127.0.0.1:{rpc}", "-tag", "role=go", "-log-level", "debug"]
    if key is not None:
        args += ["-encrypt", base64.b64encode(key).decode()]
    with log.open("wb") as fh:
        proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT)
    agent = Agent(port, rpc, Keyring([key]) if key else None, log, proc)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", rpc), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(f"serf did not start:\n{log.read_text()}") from None
                time.sleep(0.05)
        yield agent
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(params=["plain", "encrypted"])
def agent(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Agent]:
    key = os.urandom(32) if request.param == "encrypted" else None
    yield from _start(tmp_path, key)


def _push_pull(agent: Agent, my_port: int) -> PushPull:
    serf_state = SerfPushPull(
        ltime=1,
        status_ltimes={"py1": 0},
        event_ltime=1,
        query_ltime=1,
        events=(None,) * 512,
        app_state=b"\x00\x01rumor-catalog" * 50,
    )
    me = PushNodeState("py1", "127.0.0.1", my_port, codec.encode_tags({"role": "py"}), 1, 0, VSN)
    wire = codec.encode_stream(
        PushPull(True, (me,), codec.encode_serf(serf_state)), compress=True, keyring=agent.keyring
    )
    with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as conn:
        conn.sendall(wire)
        reader = codec.StreamReader(agent.keyring)
        while True:
            data = conn.recv(65536)
            if not data:
                msg = reader.feed_eof()
                break
            got = reader.feed(data)
            if got is not None:
                msg = got
                break
    assert reader.compressed  # serf compresses every stream it sends
    assert reader.encrypted == (agent.keyring is not None)
    assert isinstance(msg, PushPull)
    return msg


def test_push_pull_join_with_app_state_is_accepted(agent: Agent) -> None:
    my_port = _free_port()
    answer = _push_pull(agent, my_port)
    assert [s.name for s in answer.states] == ["go1"]
    assert codec.decode_tags(answer.states[0].meta) == {"role": "go"}
    state = codec.decode_serf(answer.user_state)
    assert isinstance(state, SerfPushPull)
    assert "go1" in state.status_ltimes and state.app_state is None
    agent.wait_for("py1 alive", lambda: agent.members().get("py1", {}).get("status") == "alive")
    assert agent.members()["py1"]["tags"] == {"role": "py"}
    assert "Failed to decode" not in agent.log.read_text()


def test_udp_layers_ping_and_app_message(agent: Agent) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        my_port = udp.getsockname()[1]
        _push_pull(agent, my_port)
        parts = [
            codec.encode_message(
                Alive(1, f"py{i}", "127.0.0.1", 20000 + i, codec.encode_tags({"i": str(i)}), VSN)
            )
            for i in range(2, 8)
        ]
        parts.append(codec.encode_serf_user_msg(JoinIntent(2, "py2")))
        parts.append(codec.encode_serf_user_msg(UserEvent(1, "hello-from-py", b"p", cc=False)))
        parts.append(codec.encode_serf_user_msg(AppMessage(b"only for rumor peers")))
        packet = codec.encode_packet(parts, crc=True, compress=True, keyring=agent.keyring)
        udp.sendto(packet, ("127.0.0.1", agent.port))
        agent.wait_for(
            "py2..py7 alive", lambda: {f"py{i}" for i in range(2, 8)} <= set(agent.members())
        )
        agent.wait_for("user event", lambda: "hello-from-py" in agent.log.read_text())

        ping = codec.encode_packet(
            [Ping(77, "go1", "127.0.0.1", my_port, "py1")], keyring=agent.keyring
        )
        udp.sendto(ping, ("127.0.0.1", agent.port))
        udp.settimeout(0.5)
        deadline = time.monotonic() + 5
        ack: AckResp | None = None
        while ack is None and time.monotonic() < deadline:
            try:
                data, _ = udp.recvfrom(65536)
            except TimeoutError:
                continue
            decoded = codec.decode_packet(data, agent.keyring)
            for m in decoded.messages:
                if isinstance(m, AckResp) and m.seq_no == 77:
                    ack = m
        assert ack is not None and ack.payload
        assert codec.decode_coordinate(ack.payload).error > 0
    # serf is still serving after the unknown (0x80) Serf message.
    assert agent.proc.poll() is None
    assert "go1" in agent.members()

"""The agent as an operator meets it: start, answer, refuse bad input, stop cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.harness.agents import AgentProcess, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]


def rumor(*args: str, env: dict[str, str] | None = None, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "registry.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def raw_http(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, str, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


@pytest.fixture
def agent(tmp_path: Path):
    a = AgentProcess("solo", tmp_path)
    a.start()
    yield a
    a.stop()


def test_agent_self_and_status(agent: AgentProcess) -> None:
    me = agent.http("GET", "/v1/agent/self")
    assert me["Config"]["NodeName"] == "solo"
    assert me["Config"]["Datacenter"] == "dc1"
    assert me["Config"]["Version"]
    assert me["Member"]["Name"] == "solo"
    leader = agent.http("GET", "/v1/status/leader")
    assert leader == f"127.0.0.1:{agent.gossip_port}"
    node_id = me["Config"]["NodeID"]
    assert (agent.data_dir / "node-id").read_text().strip() == node_id


def test_unknown_route_and_method_are_plain_text(agent: AgentProcess) -> None:
    status, ctype, text = raw_http(agent.http_port, "GET", "/v1/no/such/thing")
    assert (status, text) == (404, "404 page not found\n") and ctype.startswith("text/plain")
    status, ctype, text = raw_http(agent.http_port, "DELETE", "/v1/agent/self")
    assert status == 405 and "method DELETE not allowed" in text and ctype.startswith("text/plain")


def test_oversized_body_is_413(agent: AgentProcess) -> None:
    big = b"x" * (5 * 1024 * 1024)
    status, _, text = raw_http(agent.http_port, "PUT", "/v1/agent/service/register", big)
    assert status == 413, text
    assert "too large" in text


def test_garbage_on_the_http_port_does_not_hurt(agent: AgentProcess) -> None:
    for junk in (b"\x00\xff" * 100 + b"\r\n\r\n", b"GET " + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
                 b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 5000 + b"\r\n"):
        with socket.create_connection(("127.0.0.1", agent.http_port), timeout=5) as s:
            s.sendall(junk)
            s.settimeout(5)
            try:
                s.recv(4096)
            except (TimeoutError, ConnectionResetError):
                pass
    assert agent.http("GET", "/v1/agent/self")["Config"]["NodeName"] == "solo"


def test_sigterm_exits_zero_within_five_seconds(tmp_path: Path) -> None:
    a = AgentProcess("term", tmp_path).start()
    t0 = time.monotonic()
    rc = a.stop(timeout=5)
    assert rc == 0, a.log_tail()
    assert time.monotonic() - t0 < 5
    assert "shutting down" in a.log_path.read_text()


def test_sigint_exits_zero(tmp_path: Path) -> None:
    a = AgentProcess("int", tmp_path).start()
    a.signal(signal.SIGINT)
    assert a.proc is not None and a.proc.wait(timeout=5) == 0


def test_dev_mode_uses_and_removes_a_temp_data_dir(tmp_path: Path) -> None:
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "registry.cli", "agent", "-dev",
                          "-http-port", str(port), "-dns-port", str(free_port()),
                          "-serf-lan-port", str(free_port())],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def self_info():
            return json.loads(raw_http(port, "GET", "/v1/agent/self")[2])
        me = wait_for(self_info, 20, what="dev agent")
        data_dir = Path(me["DebugConfig"]["DataDir"])
        assert data_dir.is_dir() and me["DebugConfig"]["BindAddr"] == "127.0.0.1"
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=5) == 0
    assert not data_dir.exists()


@pytest.mark.parametrize("args, needle", [
    (["-http-port", "99999", "-dev"], "ports.http: 99999 is not a port"),
    (["-node", "n"], "data_dir: not set"),
    (["-dev", "-bogus-flag"], "unrecognized arguments: -bogus-flag"),
    (["-dev", "-encrypt", "short"], "encrypt:"),
])
def test_bad_config_exits_one_with_a_message(args: list[str], needle: str) -> None:
    p = rumor("agent", *args)
    assert p.returncode == 1, p.stderr
    assert needle in p.stderr


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = rumor("agent", "-dev", "-http-port", str(port), "-dns-port", str(free_port()),
                  "-serf-lan-port", str(free_port()))
    assert p.returncode == 1
    assert f"-http-port {port}: 127.0.0.1:{port} (HTTP API, TCP) is already in use" in p.stderr
    assert "Traceback" not in p.stderr + p.stdout


def _never_started(p: subprocess.CompletedProcess[str]) -> None:
    """Nothing was bound or announced before the agent gave up, and no traceback."""
    out = p.stdout + p.stderr
    assert "Traceback" not in out, out
    for started in ("memberlist listening", "MemberJoined", "gossip started", "dns server listening",
                    "agent started"):
        assert started not in out, out


def test_second_agent_on_the_same_ports_names_every_conflict_and_the_first_agent(
        agent: AgentProcess) -> None:
    p = rumor("agent", "-dev", "-http-port", str(agent.http_port), "-dns-port",
              str(agent.dns_port), "-serf-lan-port", str(agent.gossip_port))
    assert p.returncode == 1, p.stderr
    err = p.stderr
    # every conflict at once, each with the flag that moves it
    assert f"-serf-lan-port {agent.gossip_port}: 127.0.0.1:{agent.gossip_port} (gossip, UDP and TCP)" \
        " is already in use" in err, err
    assert f"-http-port {agent.http_port}: 127.0.0.1:{agent.http_port} (HTTP API, TCP)" in err, err
    assert f"-dns-port {agent.dns_port}: 127.0.0.1:{agent.dns_port} (DNS, UDP and TCP)" in err, err
    # and who holds them: the first agent answered on its HTTP port
    assert agent.proc is not None
    assert f"A Rumor agent is already running on these ports (node solo, pid {agent.proc.pid}, " \
        f"HTTP API at 127.0.0.1:{agent.http_port})" in err, err
    assert "-serf-lan-port 0 -http-port 0 -dns-port 0" in err
    _never_started(p)
    assert agent.members() == {"solo": "alive"}  # nothing joined or disturbed the first agent


def test_dns_port_conflict_alone_is_reported_before_gossip_starts(tmp_path: Path) -> None:
    # only the DNS port is taken (UDP, as another DNS server would hold it)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        p = rumor("agent", "-dev", "-http-port", str(free_port()), "-dns-port", str(port),
                  "-serf-lan-port", str(free_port()))
    assert p.returncode == 1
    assert p.stderr.startswith("==> cannot start: 1 listen address is not usable"), p.stderr
    assert f"-dns-port {port}: 127.0.0.1:{port} (DNS, UDP) is already in use" in p.stderr
    assert "Stop what holds those ports, or run this one on other ports: -dns-port 0" in p.stderr
    _never_started(p)


def test_two_settings_on_one_port_and_a_taken_lb_listener(tmp_path: Path) -> None:
    shared = free_port()
    cfg = tmp_path / "lb.json"
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        lb_port = held.getsockname()[1]
        cfg.write_text(json.dumps({"lb": {"listeners": [
            {"Name": "web", "Bind": f"127.0.0.1:{lb_port}", "Service": "web"}]}}))
        p = rumor("agent", "-dev", "-config-file", str(cfg), "-http-port", str(shared),
                  "-dns-port", str(shared), "-serf-lan-port", str(free_port()))
    assert p.returncode == 1
    assert "cannot start: 2 listen addresses are not usable" in p.stderr, p.stderr
    assert f"-dns-port {shared}: 127.0.0.1:{shared} (DNS, TCP) is the port HTTP API uses too " \
        "(-http-port); give each its own port" in p.stderr, p.stderr
    assert f"lb.listeners[0].bind {lb_port}: 127.0.0.1:{lb_port} (LB listener web, TCP) is " \
        "already in use" in p.stderr, p.stderr
    _never_started(p)


def test_bind_to_an_address_the_host_lacks_says_so() -> None:
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never assigned to a real host
    p = rumor("agent", "-dev", "-bind", "192.0.2.77", "-http-port", str(free_port()),
              "-dns-port", str(free_port()), "-serf-lan-port", str(free_port()))
    assert p.returncode == 1
    assert "-bind 192.0.2.77: 192.0.2.77 is not an address of this host" in p.stderr, p.stderr
    assert "port" not in p.stderr.split("192.0.2.77 is not an address of this host")[1]
    _never_started(p)


def test_client_commands_report_an_unreachable_agent() -> None:
    port = free_port()
    p = rumor("info", "-http-addr", f"127.0.0.1:{port}")
    assert p.returncode == 1 and "cannot reach the agent" in p.stderr
    p = rumor("info", env={"RUMOR_HTTP_ADDR": f"127.0.0.1:{port}"})
    assert p.returncode == 1 and f"127.0.0.1:{port}" in p.stderr


def test_info_and_version(agent: AgentProcess) -> None:
    p = rumor("info", "-http-addr", agent.http_addr)
    assert p.returncode == 0 and "node = solo" in p.stdout
    p = rumor("info", "-json", "-http-addr", agent.http_addr)
    assert json.loads(p.stdout)["Config"]["NodeName"] == "solo"
    p = rumor("version")
    assert p.returncode == 0 and p.stdout.startswith("Rumor v")


def test_log_json(tmp_path: Path) -> None:
    a = AgentProcess("js", tmp_path, extra_args=["-log-json"]).start()
    a.stop()
    lines = [json.loads(x) for x in a.log_path.read_text().splitlines() if x.startswith("{")]
    assert any("agent started" in x["@message"] for x in lines)
    assert all({"@timestamp", "@level", "@module", "@message"} <= x.keys() for x in lines)


def test_join_to_a_malformed_address_is_a_400(agent: AgentProcess) -> None:
    for bad in ("a%00b", "%ff", "host:99999", "x:y", "-bad-"):
        status, _, text = raw_http(agent.http_port, "PUT", f"/v1/agent/join/{bad}")
        assert status == 400 and "Bad address" in text, (bad, status, text)
    # well formed but nobody answers: Consul's 500 with the reason
    port = free_port()
    status, _, text = raw_http(agent.http_port, "PUT", f"/v1/agent/join/127.0.0.1:{port}")
    assert status == 500 and "Failed to join" in text


@pytest.mark.parametrize("args, wanted", [
    (["agent", "-dev", "-htp-port", "8501"], "unrecognized arguments: -htp-port 8501; did you "
                                             "mean -http-port?"),
    (["agent", "-dev", "-http", "8501"], "unrecognized arguments: -http 8501; did you mean "
                                         "-http-port?"),        # no prefix matching
    (["members", "-htp-addr", "127.0.0.1:1"], "did you mean -http-addr?"),
    (["agent", "-nod", "x", "-dta-dir", "y"], "did you mean -node for -nod, -data-dir for "
                                              "-dta-dir?"),
    (["catalog", "srvices"], "invalid choice: 'srvices'; did you mean 'services'?"),
])
def test_an_unknown_flag_is_named_with_the_closest_real_one(args: list[str], wanted: str) -> None:
    p = rumor(*args)
    assert p.returncode == 1
    assert wanted in p.stderr, p.stderr
    assert f"usage: rumor {args[0]}" in p.stderr       # the subcommand's own usage
    assert "-h/--help" not in p.stderr and "Traceback" not in p.stderr


class _OneShotServer:
    """A TCP server on loopback that answers every connection with fixed bytes and closes."""

    def __init__(self, reply: bytes) -> None:
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                with __import__("contextlib").suppress(OSError):
                    conn.recv(65536)
                    conn.sendall(self.reply)

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("reply, wanted", [
    (b"SSH-2.0-OpenSSH_9.2\r\n", "answered, but not in HTTP (BadStatusLine)"),
    (b"", "closed the connection without an answer"),
    (b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<html>hi</html>", "not JSON (text/html)"),
    (b"HTTP/1.0 404 Not Found\r\nContent-Type: text/html\r\n\r\n<html>no</html>",
     "answered 404 with an HTML page"),
])
def test_http_addr_at_something_else_is_a_clear_error(reply: bytes, wanted: str) -> None:
    server = _OneShotServer(reply)
    try:
        p = rumor("info", "-http-addr", f"127.0.0.1:{server.port}")
    finally:
        server.close()
    assert p.returncode == 1
    assert wanted in p.stderr and "-http-addr" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("command", [["info"], ["members"], ["watch", "services"]])
def test_a_closed_pipe_ends_a_command_quietly(agent: AgentProcess, command: list[str]) -> None:
    # as `rumor info | head -0`: the reader is gone before the first write
    p = subprocess.Popen([sys.executable, "-m", "registry.cli", *command, "-http-addr",
                          agent.http_addr], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()
    assert p.wait(timeout=20) == 1
    assert p.stderr.read() == b""


def test_head_of_members_and_info(agent: AgentProcess) -> None:
    for command in ("info", "members"):
        p = subprocess.run(["bash", "-o", "pipefail", "-c",
                            f"{sys.executable} -m registry.cli {command} -http-addr "
                            f"{agent.http_addr} | head -1"],
                           cwd=ROOT, capture_output=True, text=True, timeout=20)
        assert p.stderr == "" and len(p.stdout.splitlines()) == 1, p


def test_leave_makes_peers_see_left_and_the_agent_exit(tmp_path: Path) -> None:
    """docs/http-api.md: PUT /v1/agent/leave leaves, then shuts the agent down (Consul's
    semantics); `rumor leave` is that call."""
    from tests.harness.agents import Cluster

    c = Cluster(tmp_path)
    try:
        a0, a1 = c.start_loopback(2, extra_args=["-profile", "local"])
        wait_for(lambda: a0.members().get(a1.name) == "alive", 20, what="a1 alive on a0")
        p = rumor("leave", "-http-addr", a1.http_addr)
        assert p.returncode == 0, p.stderr
        assert a1.proc is not None and a1.proc.wait(timeout=10) == 0
        wait_for(lambda: a0.members()[a1.name] == "left", 10, what="a1 left on a0")
    finally:
        c.close()


def test_dev_banner_gives_the_ui_and_next_steps_that_work_as_printed(tmp_path: Path) -> None:
    http, dns, gossip = free_port(), free_port(), free_port()
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "")}
    p = subprocess.Popen([sys.executable, "-m", "registry.cli", "agent", "-dev", "-http-port",
                          str(http), "-dns-port", str(dns), "-serf-lan-port", str(gossip)],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True)
    try:
        assert p.stdout is not None
        lines = []
        while not (lines and lines[-1].startswith("==> Then")):
            line = p.stdout.readline()
            assert line, f"the agent ended before its banner: {lines}"
            lines.append(line.rstrip("\n"))
        text = "\n".join(lines)
        assert f"Web UI: http://127.0.0.1:{http}/ui/" in text
        assert f"DNS: 127.0.0.1:{dns} (UDP and TCP)" in text
        status, ctype, page = raw_http(http, "GET", "/ui/")
        assert status == 200 and ctype.startswith("text/html") and "<main" in page
        # the next steps, run as printed
        steps = [ln.strip() for ln in lines[lines.index(
            "==> Next, in another shell: publish a service, then find it") + 1:-1]]
        assert [s.split()[0] for s in steps] == ["curl", "dig", "rumor"], steps
        out = [subprocess.run(["bash", "-c", s], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=20) for s in steps]
        assert all(o.returncode == 0 for o in out), out
        assert "8080" in out[1].stdout            # dig: the SRV record of the new service
        assert out[2].stdout.split() == ["web"]   # rumor catalog services
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == 0


def test_ui_folds_an_http_checks_html_body_as_text(agent: AgentProcess) -> None:
    """The README's walk-through: an HTTP check on `python3 -m http.server` has a directory
    listing (HTML) as its output; the UI shows it as text, folded under the status line."""
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = (b"<!DOCTYPE html><html><body><marquee>listing</marquee>"
                    + b"<li>entry</li>" * 200 + b"</body></html>")
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        agent.http("PUT", "/v1/agent/service/register", {
            "Name": "web", "ID": "web1", "Port": port,
            "Check": {"HTTP": f"http://127.0.0.1:{port}/", "Interval": "1s"}})
        wait_for(lambda: "Output: <" in agent.http("GET", "/v1/agent/checks")["service:web1"]
                 ["Output"], 20, what="the HTTP check to report the page")
        status, ctype, page = raw_http(agent.http_port, "GET", "/ui/services/web")
    finally:
        server.shutdown()
        server.server_close()
    assert status == 200 and ctype.startswith("text/html")
    assert "<marquee>" not in page and "&lt;marquee&gt;listing&lt;/marquee&gt;" in page
    assert '<details class="output" data-key="out:solo/service:web1"><summary>' \
        f"HTTP GET http://127.0.0.1:{port}/: 200 OK" in page
    assert "characters of HTML, shown as text)" in page


def test_a_mistyped_command_is_named_with_the_closest_real_one() -> None:
    p = rumor("membrs")
    assert p.returncode == 1
    assert "invalid choice: 'membrs'; did you mean 'members'?" in p.stderr, p.stderr

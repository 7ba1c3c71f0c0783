"""Pre-flight: try every address the agent will listen on before it starts anything.

The agent binds gossip (UDP and TCP), the HTTP(S) API (TCP), DNS (UDP and TCP) and the LB listeners
of its configuration. Bound one by one as the subsystems start, a taken port shows up one per try,
after gossip has already started and announced itself. So :func:`check_listen_addresses` first
binds a throw-away socket for each of them, with the options the real bind uses (``SO_REUSEADDR``
on TCP, as aiohttp, DNS, gossip and the LB set it), keeps them all open until every one is tried
(so two settings that name the same port also collide), closes them, and raises one
:class:`ListenError` that lists every problem with the flag that changes it. When the HTTP port
is taken, :func:`other_agent` asks whatever answers there whether it is a Rumor agent, so the
message can say "a Rumor agent (pid N) is already running" rather than leave the operator to
guess; without an answer, gossip and HTTP both taken still make "probably another agent".

A port can still be taken between this check and the real bind; the subsystems' own errors
cover that race (see ``Agent._start``).
"""

from __future__ import annotations

import errno
import json
import socket
from collections.abc import Iterable, Sequence

from gossip.dclass import dataclass
from lb import ListenerSpec

from .config import AgentConfig
from .errors import ConfigError

UDP = "udp"
TCP = "tcp"


class ListenError(ConfigError):
    """Some listen addresses cannot be bound; the message lists each with the setting to change."""


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """One socket the agent will bind."""

    what: str          # "gossip", "HTTP API", "DNS", "LB listener web"
    port_setting: str  # the flag (or config key) that moves it: "-http-port"
    addr_setting: str  # the flag (or config key) that sets its address: "-client"
    host: str
    port: int          # 0: any free port
    protos: tuple[str, ...]
    v6only: bool = False  # the LB binds IPv6 only; the others take the system's dual-stack default

    @property
    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Problem:
    """A listen address that could not be bound, and why."""

    address: ListenAddress
    protos: tuple[str, ...]
    errno: int
    reason: str
    clashes_with: ListenAddress | None = None  # another setting of this config took it first


def listen_addresses(cfg: AgentConfig, lb_listeners: Sequence[ListenerSpec] = ()
                     ) -> list[ListenAddress]:
    """Every address the agent will listen on with this configuration, in start-up order."""
    out = [ListenAddress("gossip", "-serf-lan-port", "-bind", cfg.bind_addr, cfg.serf_lan_port,
                         (UDP, TCP))]
    if cfg.wan_member:
        out.append(ListenAddress("WAN gossip", "-serf-wan-port", "-bind", cfg.bind_addr,
                                 cfg.wan_port, (UDP, TCP)))
    if cfg.http_port >= 0:
        out.append(ListenAddress("HTTP API", "-http-port", "-client", cfg.client_addr,
                                 cfg.http_port, (TCP,)))
    if cfg.https_port >= 0:
        out.append(ListenAddress("HTTPS API", "-https-port", "-client", cfg.client_addr,
                                 cfg.https_port, (TCP,)))
    if cfg.enable_dns and cfg.dns_port >= 0:
        out.append(ListenAddress("DNS", "-dns-port", "-client", cfg.client_addr, cfg.dns_port,
                                 (UDP, TCP)))
    if cfg.enable_lb:
        for i, spec in enumerate(lb_listeners):
            host, port = spec.address
            setting = f"lb.listeners[{i}].bind"
            out.append(ListenAddress(f"LB listener {spec.name}", setting, setting,
                                     host or "0.0.0.0", port, (TCP,), v6only=True))
    return out


def _bind(host: str, port: int, proto: str, v6only: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM if proto == UDP else socket.SOCK_STREAM)
    try:
        if proto == TCP:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and v6only:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        if proto == TCP:
            sock.listen(1)  # a listening socket is what makes a later TCP bind collide
    except OSError:
        sock.close()
        raise
    return sock


def _overlaps(a: ListenAddress, b: ListenAddress, proto: str) -> bool:
    if proto not in b.protos or a.port != b.port or a.port == 0:
        return False
    wild = ("0.0.0.0", "::")
    return a.host == b.host or a.host in wild or b.host in wild


def find_problems(addresses: Iterable[ListenAddress]) -> list[Problem]:
    """Bind every address (all held open together), then close them; return what failed."""
    held: list[socket.socket] = []
    done: list[ListenAddress] = []
    problems: list[Problem] = []
    try:
        for addr in addresses:
            failed: dict[tuple[int, str], list[str]] = {}
            clash: ListenAddress | None = None
            for proto in addr.protos:
                try:
                    held.append(_bind(addr.host, addr.port, proto, addr.v6only))
                except OSError as e:
                    code = e.errno or 0
                    failed.setdefault((code, e.strerror or str(e)), []).append(proto)
                    if code == errno.EADDRINUSE and clash is None:
                        clash = next((d for d in done if _overlaps(addr, d, proto)), None)
            for (code, reason), protos in failed.items():
                problems.append(Problem(addr, tuple(protos), code, reason, clash))
            done.append(addr)
    finally:
        for s in held:
            s.close()
    return problems


def _protos(protos: Sequence[str]) -> str:
    return " and ".join(p.upper() for p in protos)


def describe(p: Problem) -> str:
    """One line: the setting to change, the address, and what is wrong with it."""
    a = p.address
    where = f"{a.hostport} ({a.what}, {_protos(p.protos)})"
    if p.errno == errno.EADDRNOTAVAIL:
        return (f"{a.addr_setting} {a.host}: {a.host} is not an address of this host, so "
                f"{a.what} cannot listen on it; use one of the host's addresses "
                "(`ip -brief addr`), 127.0.0.1, or 0.0.0.0 for all")
    if p.errno == errno.EADDRINUSE and p.clashes_with is not None:
        other = p.clashes_with
        return (f"{a.port_setting} {a.port}: {where} is the port {other.what} uses too "
                f"({other.port_setting}); give each its own port")
    if p.errno == errno.EADDRINUSE:
        return f"{a.port_setting} {a.port}: {where} is already in use"
    if p.errno == errno.EACCES:
        return (f"{a.port_setting} {a.port}: {where}: permission denied; ports below 1024 need "
                "root or CAP_NET_BIND_SERVICE")
    return f"{a.port_setting} {a.port}: {where}: {p.reason}"


@dataclass(frozen=True, slots=True)
class RunningAgent:
    """What answered ``/v1/agent/self`` on a taken HTTP port."""

    product: str   # "Rumor" or "Consul-compatible"
    node: str
    pid: str       # "" when the agent does not say (Consul)
    http_addr: str


def report(problems: Sequence[Problem], agent: RunningAgent | None) -> str:
    """The whole message: every problem, then what probably happened and what to do."""
    n = len(problems)
    head = f"{n} listen addresses are" if n > 1 else "1 listen address is"
    lines = [f"cannot start: {head} not usable"]
    lines += [f"  {describe(p)}" for p in problems]
    in_use = [p for p in problems if p.errno == errno.EADDRINUSE and p.clashes_with is None]
    flags = sorted({p.address.port_setting for p in in_use if p.address.port_setting[0] == "-"},
                   key=lambda f: _FLAG_ORDER.get(f, 9))
    elsewhere = ("or run this one on other ports: " + " ".join(f"{f} 0" for f in flags)
                 + " (0 picks a free port)") if flags else "or change the addresses named above"
    if agent is not None:
        who = f"node {agent.node}" + (f", pid {agent.pid}" if agent.pid else "")
        lines.append(f"A {agent.product} agent is already running on these ports ({who}, "
                     f"HTTP API at {agent.http_addr}).")
        lines.append(f"Stop it (Ctrl-C in its terminal, or `rumor leave -http-addr "
                     f"{agent.http_addr}`), {elsewhere}")
    elif {"-serf-lan-port", "-http-port"} <= set(flags):
        lines.append("Another agent is probably already running on these ports.")
        lines.append(f"Stop it, {elsewhere}")
    elif in_use:
        lines.append(f"Stop what holds those ports, {elsewhere}")
    return "\n".join(lines)


_FLAG_ORDER = {"-serf-lan-port": 0, "-http-port": 1, "-https-port": 2, "-dns-port": 3}


def _fetch_self(host: str, port: int, timeout: float) -> dict[str, object] | None:
    """GET /v1/agent/self over a plain socket; the decoded JSON, or None if it is not an agent."""
    request = (f"GET /v1/agent/self HTTP/1.0\r\nHost: {host}:{port}\r\n"
               "Accept: application/json\r\n\r\n").encode()
    chunks: list[bytes] = []
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(request)
            while sum(map(len, chunks)) < 1 << 20:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
    except OSError:
        return None
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n", 1)[0]:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def other_agent(host: str, port: int, timeout: float = 1.0) -> RunningAgent | None:
    """Who answers ``/v1/agent/self`` at host:port, if it is an agent at all.

    Blocking (a short HTTP/1.0 exchange); the agent runs the whole check in a thread.
    """
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    data = _fetch_self(host, port, timeout)
    if data is None or not isinstance(data.get("Config"), dict):
        return None
    cfg = data["Config"]
    assert isinstance(cfg, dict)
    stats = data.get("Stats")
    agent_stats = stats.get("agent") if isinstance(stats, dict) else None
    pid = str(agent_stats.get("pid", "")) if isinstance(agent_stats, dict) else ""
    member = data.get("Member")
    tags = member.get("Tags") if isinstance(member, dict) else None
    product = "Rumor" if isinstance(tags, dict) and "rumor" in tags else "Consul-compatible"
    hp = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return RunningAgent(product, str(cfg.get("NodeName", "?")), pid, hp)


def check_listen_addresses(cfg: AgentConfig, lb_listeners: Sequence[ListenerSpec] = ()) -> None:
    """Raise :class:`ListenError` listing every listen address that cannot be bound.

    Blocking (binds and closes sockets, may ask the HTTP port who holds it): run it before the
    event loop starts, or in a thread.
    """
    problems = find_problems(listen_addresses(cfg, lb_listeners))
    if not problems:
        return
    agent = None
    http = next((p for p in problems if p.address.what == "HTTP API"
                 and p.errno == errno.EADDRINUSE and p.clashes_with is None), None)
    if http is not None:
        agent = other_agent(http.address.host, http.address.port)
    raise ListenError(report(problems, agent))

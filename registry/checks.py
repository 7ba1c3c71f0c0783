"""Health check runners, one asyncio task per check that never blocks the loop.

A probing runner (HTTP, TCP, UDP, script, Docker, gRPC, H2PING) runs every ``Interval``, turns
its raw result into a status through :class:`StatusFilter` (Consul's ``SuccessBeforePassing``,
``FailuresBeforeWarning`` and ``FailuresBeforeCritical`` counters, a pure object tested on its
own) and reports ``(check_id, status, output)`` to a callback. Runs of one check never overlap:
the next starts ``Interval`` after the previous one started, or at once if it took longer.
Results, as Consul gives them:

* HTTP: 2xx passing, 429 warning, anything else (or no answer within the timeout) critical.
  Redirects are followed unless ``DisableRedirects`` (then a 3xx is critical).
  Output is Consul's ``HTTP GET <url>: 200 OK Output: <body>``.
* TCP: a connection within the timeout is passing, otherwise critical.
* UDP: a datagram is sent; a reply, or silence until the timeout, is passing (UDP has no
  handshake, so silence is what a healthy server that does not answer looks like, as in
  Consul); an ICMP refusal or any other socket error is critical.
* script and Docker (``check_exec.py``): exit 0 passing, 1 warning, anything else critical.
* gRPC and H2PING (``check_h2.py``).
* TTL: critical when no ``pass``/``warn``/``fail``/``update`` came within the TTL.
* alias: the worst of the aliased service's and its node's checks in the local copy of the
  catalog, re-read whenever that node's record changes (no interval).

Every output is cut at the check's ``OutputMaxSize`` (4 KiB by default).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from .catalog import CRITICAL, PASSING, WARNING
from .definitions import OUTPUT_MAX, CheckDef, DefinitionError

if TYPE_CHECKING:
    from .catalog import Catalog

log = logging.getLogger(__name__)

Report = Callable[[str, str, str], None]
"""``report(check_id, status, output)``."""


class StatusFilter:
    """Consul's flap damping (``agent/checks/check.go``, ``StatusHandler``).

    Passing and warning results count as successes, critical ones as failures; each resets the
    other counter. A success shows once ``success_before_passing`` came in a row; a failure
    shows as critical once ``failures_before_critical`` came in a row, and as warning once
    ``failures_before_warning`` did (Consul defaults it to ``failures_before_critical``).
    Until then the check keeps its shown status. 0 everywhere: every result shows at once.
    """

    def __init__(self, success_before_passing: int, failures_before_critical: int,
                 initial: str, failures_before_warning: int | None = None) -> None:
        self.sbp = success_before_passing
        self.fbc = failures_before_critical
        self.fbw = failures_before_critical if failures_before_warning is None \
            else failures_before_warning
        self.current = initial
        self._successes = 0
        self._failures = 0

    def feed(self, status: str) -> str | None:
        """Take one raw result; return the status to show with its output now, or None when
        the result is held back (the check keeps showing ``current`` and its old output)."""
        if status in (PASSING, WARNING):
            self._successes += 1
            self._failures = 0
            if self._successes < self.sbp:
                return None
            self.current = status
        else:
            self._failures += 1
            self._successes = 0
            if self._failures >= self.fbc:
                self.current = CRITICAL
            elif self._failures >= self.fbw:
                self.current = WARNING
            else:
                return None
        return self.current


def http_status_of(code: int) -> str:
    if 200 <= code < 300:
        return PASSING
    if code == 429:
        return WARNING
    return CRITICAL


def exit_status_of(code: int) -> str:
    """A script's exit code as a status (Consul, and Nagios plugins): 0, 1, anything else."""
    if code == 0:
        return PASSING
    if code == 1:
        return WARNING
    return CRITICAL


def cut_output(text: str, limit: int = OUTPUT_MAX) -> str:
    data = text.encode(errors="replace")
    if len(data) <= limit:
        return text
    return data[:limit].decode(errors="ignore") + " ... (output truncated)"


def refuse_exec_check(defn: CheckDef, *, local: bool, enable_script_checks: bool,
                      enable_local_script_checks: bool) -> None:
    """Consul's rule for checks that run commands (script and Docker).

    ``enable_script_checks`` allows them from anyone who can reach the API;
    ``enable_local_script_checks`` only from config files and API callers on this host
    (``local``). Raises a :class:`DefinitionError` that names the setting."""
    if not defn.runs_commands or enable_script_checks:
        return
    if local and enable_local_script_checks:
        return
    what = f"check {defn.check_id!r}: {defn.kind} checks run commands"
    if local:
        raise DefinitionError(
            f"{what} and are disabled on this agent; to enable them, set "
            "enable_local_script_checks (definitions from config files and from API callers "
            "on this host) or enable_script_checks (any API caller) to true")
    raise DefinitionError(
        f"{what} and are disabled on this agent for API callers on other hosts; to enable "
        "them, set enable_script_checks to true (enable_local_script_checks allows only "
        "config files and callers on this host)")


class _Looping:
    """A check whose work is one task (``_loop``), started and stopped with the check."""

    defn: CheckDef
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(
            self._loop(), name=f"check-{self.defn.check_id}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001, S110 - stopping anyway
                pass
            self.task = None

    async def _loop(self) -> None:
        raise NotImplementedError


class Runner(_Looping):
    """Base of the periodic runners: one probe at a time, every ``Interval``."""

    def __init__(self, defn: CheckDef, report: Report, initial: str) -> None:
        self.defn = defn
        self.report = report
        self.filter = StatusFilter(defn.success_before_passing, defn.failures_before_critical,
                                   initial, defn.failures_before_warning)
        self.task = None
        self.runs = 0

    async def _loop(self) -> None:
        # Consul staggers the first run randomly within the interval; a short fixed delay
        # keeps start-up cheap without making a fresh registration wait a whole interval.
        await asyncio.sleep(min(0.05, self.defn.interval))
        while True:
            started = time.monotonic()
            try:
                status, output = await self.probe()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a bug in a probe must not kill the runner
                log.warning("check probe error check=%s error=%r", self.defn.check_id, e)
                status, output = CRITICAL, f"check error: {e}"
            self.runs += 1
            shown = self.filter.feed(status)
            if shown is not None:
                self.report(self.defn.check_id, shown,
                            cut_output(output, self.defn.output_max_size))
            else:
                log.debug("check result held back check=%s result=%s shown=%s",
                          self.defn.check_id, status, self.filter.current)
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.0, self.defn.interval - elapsed))

    async def probe(self) -> tuple[str, str]:
        raise NotImplementedError


class HTTPRunner(Runner):
    def __init__(self, defn: CheckDef, report: Report, initial: str,
                 session: Callable[[], aiohttp.ClientSession]) -> None:
        super().__init__(defn, report, initial)
        self._session = session

    async def probe(self) -> tuple[str, str]:
        d = self.defn
        headers: list[tuple[str, str]] = [("User-Agent", "Rumor Health Check"),
                                          ("Accept", "text/plain, text/*, */*")]
        custom = {k.lower() for k in d.header}
        headers = [h for h in headers if h[0].lower() not in custom]
        for k, vs in d.header.items():
            headers.extend((k, v) for v in vs)
        ssl_arg: Any = None
        if d.http.startswith("https://"):
            if d.tls_skip_verify:
                ssl_arg = False
            elif d.tls_server_name:
                ctx = ssl.create_default_context()
                ssl_arg = ctx
        what = f"HTTP {d.method} {d.http}"
        limit = d.output_max_size
        try:
            async with asyncio.timeout(d.timeout):
                async with self._session().request(
                    d.method, d.http, headers=headers,
                    data=d.body.encode() if d.body else None, ssl=ssl_arg,
                    allow_redirects=not d.disable_redirects,
                    server_hostname=d.tls_server_name or None,
                ) as resp:
                    body = await resp.content.read(limit + 1)
                    code = resp.status
        except TimeoutError:
            return CRITICAL, f"{what}: request timed out after {d.timeout:g}s"
        except aiohttp.ClientError as e:
            return CRITICAL, f"{what}: {e}"
        except OSError as e:
            return CRITICAL, f"{what}: {e.strerror or e}"
        from http import HTTPStatus  # here, not at every agent's start

        try:
            reason = HTTPStatus(code).phrase
        except ValueError:
            reason = ""
        text = body[:limit].decode(errors="replace")
        return http_status_of(code), f"{what}: {code} {reason} Output: {text}"


def split_hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


class TCPRunner(Runner):
    async def probe(self) -> tuple[str, str]:
        d = self.defn
        host, port = split_hostport(d.tcp)
        try:
            async with asyncio.timeout(d.timeout):
                _, writer = await asyncio.open_connection(host, port)
        except TimeoutError:
            return CRITICAL, f"dial tcp {d.tcp}: i/o timeout"
        except OSError as e:
            return CRITICAL, f"dial tcp {d.tcp}: {e.strerror or e}"
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        return PASSING, f"TCP connect {d.tcp}: Success"


class _UDPProbe(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.done.done():
            self.done.set_result("reply")

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


UDP_PAYLOAD = b"rumor health check"


class UDPRunner(Runner):
    async def probe(self) -> tuple[str, str]:
        d = self.defn
        host, port = split_hostport(d.udp)
        loop = asyncio.get_running_loop()
        try:
            transport, proto = await loop.create_datagram_endpoint(
                _UDPProbe, remote_addr=(host, port))
        except OSError as e:
            return CRITICAL, f"dial udp {d.udp}: {e.strerror or e}"
        try:
            transport.sendto(UDP_PAYLOAD)
            try:
                async with asyncio.timeout(d.timeout):
                    await proto.done
            except TimeoutError:
                return PASSING, f"UDP connect {d.udp}: Success (no reply within {d.timeout:g}s)"
            except OSError as e:
                return CRITICAL, f"read udp {d.udp}: {e.strerror or e}"
            return PASSING, f"UDP connect {d.udp}: Success"
        finally:
            transport.close()


class TTLRunner:
    """Critical when no update arrived within the TTL; updates come from the API."""

    def __init__(self, defn: CheckDef, report: Report) -> None:
        self.defn = defn
        self.report = report
        self._timer: asyncio.TimerHandle | None = None
        self.expired = False

    def start(self) -> None:
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.defn.ttl, self._expire)

    def _expire(self) -> None:
        self._timer = None
        self.expired = True
        self.report(self.defn.check_id, CRITICAL,
                    f"TTL expired (last update more than {self.defn.ttl:g}s ago)")

    def touch(self) -> None:
        """An update arrived: restart the TTL."""
        self.expired = False
        self._arm()

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def alias_status(catalog: Catalog, node: str, service_id: str) -> tuple[str, str]:
    """Consul's alias result (``agent/checks/alias.go``) from the local copy of the catalog:
    the worst of the node's checks and the aliased service's checks. A service that is not
    on the node is critical; a node the catalog does not know is critical."""
    if not catalog.has_node(node):
        return CRITICAL, f"Node {node!r} is not in the catalog"
    health, msg = PASSING, "No checks found."
    for c in catalog.node_checks(node):
        r = c.record
        if r.service_id and r.service_id != service_id:
            continue
        if r.status in (CRITICAL, WARNING):
            if health != CRITICAL:
                health = r.status
                msg = f"Aliased check {r.name!r} failing: {r.output}"
        elif health == PASSING:
            msg = "All checks passing."
    if service_id and service_id not in catalog.node_services(node):
        return CRITICAL, f"Service {service_id} could not be found on node {node}"
    return health, msg


class AliasRunner(_Looping):
    """Mirrors another service's or node's health; wakes on every change of that node."""

    WAIT = 60.0
    """Seconds of one wait on the catalog (then the status is read again anyway)."""

    def __init__(self, defn: CheckDef, report: Report, catalog: Catalog, local_node: str) -> None:
        self.defn = defn
        self.report = report
        self.catalog = catalog
        self.node = defn.alias_node or local_node
        self.task = None

    async def _loop(self) -> None:
        key = f"node:{self.node.lower()}"
        last: tuple[str, str] | None = None
        index = 0
        while True:
            index = self.catalog.key_index(key)
            now = alias_status(self.catalog, self.node, self.defn.alias_service)
            if now != last:
                last = now
                self.report(self.defn.check_id, now[0],
                            cut_output(now[1], self.defn.output_max_size))
            await self.catalog.wait_keys([key], index, self.WAIT)


AnyRunner = Runner | TTLRunner | AliasRunner


class CheckManager:
    """Owns the runners of this agent's checks and what they share (HTTP session, catalog,
    the container engine's socket)."""

    def __init__(self, report: Report, *, catalog: Catalog | None = None,
                 local_node: str = "", docker_socket: str = "") -> None:
        self.report = report
        self.catalog = catalog
        self.local_node = local_node
        self.docker_socket = docker_socket
        """Unix socket of the container engine for Docker checks; empty: ``DOCKER_HOST`` or
        ``/var/run/docker.sock``."""
        self.nameservers: tuple[str, ...] = ()
        """The agent's ``recursors`` ("ip" or "ip:port"): HTTP checks resolve host names
        through them; empty: the system's resolv.conf."""
        self.runners: dict[str, AnyRunner] = {}
        self._session: aiohttp.ClientSession | None = None
        self.running = False

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # host names in check URLs resolve with aiodns (c-ares), off the thread pool, and
            # through the agent's recursors when it has some (c-ares takes "ip:port")
            resolver = (aiohttp.AsyncResolver(nameservers=list(self.nameservers))
                        if self.nameservers else aiohttp.AsyncResolver())
            conn = aiohttp.TCPConnector(limit=64, force_close=True, ttl_dns_cache=10,
                                        resolver=resolver)
            self._session = aiohttp.ClientSession(connector=conn, auto_decompress=True,
                                                  cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    def make_runner(self, defn: CheckDef, initial: str) -> AnyRunner | None:
        from .check_exec import DockerRunner, ScriptRunner
        from .check_h2 import GRPCRunner, H2PingRunner

        k = defn.kind
        if k == "http":
            return HTTPRunner(defn, self.report, initial, self._get_session)
        if k == "tcp":
            return TCPRunner(defn, self.report, initial)
        if k == "udp":
            return UDPRunner(defn, self.report, initial)
        if k == "ttl":
            return TTLRunner(defn, self.report)
        if k == "script":
            return ScriptRunner(defn, self.report, initial)
        if k == "docker":
            return DockerRunner(defn, self.report, initial, self.docker_socket)
        if k == "grpc":
            return GRPCRunner(defn, self.report, initial)
        if k == "h2ping":
            return H2PingRunner(defn, self.report, initial)
        if k == "alias" and self.catalog is not None:
            return AliasRunner(defn, self.report, self.catalog, self.local_node)
        return None  # maintenance and container checks are set by their owner

    async def start_check(self, defn: CheckDef, initial: str) -> None:
        """(Re)start the runner of a check; maintenance and container checks have none.
        The old runner is stopped first, so two runs of one check never overlap."""
        old = self.runners.pop(defn.check_id, None)
        if old is not None:
            await old.stop()
        runner = self.make_runner(defn, initial)
        if runner is None:
            return
        self.runners[defn.check_id] = runner
        runner.start()

    async def stop_check(self, check_id: str) -> None:
        r = self.runners.pop(check_id, None)
        if r is not None:
            await r.stop()

    def ttl_touch(self, check_id: str) -> bool:
        r = self.runners.get(check_id)
        if isinstance(r, TTLRunner):
            r.touch()
            return True
        return False

    async def stop(self) -> None:
        for cid in list(self.runners):
            await self.stop_check(cid)
        if self._session is not None:
            await self._session.close()
            self._session = None

"""Health check runners: HTTP, TCP and TTL, each an asyncio task that never blocks the loop.

A runner probes, turns the raw result into a status through :class:`StatusFilter` (Consul's
``SuccessBeforePassing`` / ``FailuresBeforeCritical`` counters, a pure object tested on its own)
and reports ``(check_id, status, output)`` to a callback only when something changed. Results:

* HTTP: 2xx passing, 429 warning, anything else (or no answer within the timeout) critical.
  Output is Consul's ``HTTP GET <url>: 200 OK Output: <body>`` with the body cut at 4 KiB.
* TCP: a connection within the timeout is passing, otherwise critical.
* TTL: critical when no ``pass``/``warn``/``fail``/``update`` came within the TTL.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import aiohttp

from .catalog import CRITICAL, PASSING, WARNING
from .definitions import OUTPUT_MAX, CheckDef

log = logging.getLogger(__name__)

Report = Callable[[str, str, str], None]
"""``report(check_id, status, output)``."""


class StatusFilter:
    """Consul's flap damping: a status change is reported only after enough equal results.

    ``success_before_passing``: consecutive passing results needed before passing shows;
    ``failures_before_critical``: consecutive critical results needed before critical shows.
    Warning is never delayed. Both 0 means every result shows at once.
    """

    def __init__(self, success_before_passing: int, failures_before_critical: int,
                 initial: str) -> None:
        self.sbp = success_before_passing
        self.fbc = failures_before_critical
        self.current = initial
        self._successes = 0
        self._failures = 0

    def feed(self, status: str) -> str:
        if status == PASSING:
            self._failures = 0
            self._successes += 1
            if self._successes >= self.sbp:
                self.current = PASSING
        elif status == CRITICAL:
            self._successes = 0
            self._failures += 1
            if self._failures >= self.fbc:
                self.current = CRITICAL
        else:
            self._successes = 0
            self._failures = 0
            self.current = WARNING
        return self.current


def http_status_of(code: int) -> str:
    if 200 <= code < 300:
        return PASSING
    if code == 429:
        return WARNING
    return CRITICAL


def cut_output(text: str) -> str:
    data = text.encode(errors="replace")
    if len(data) <= OUTPUT_MAX:
        return text
    return data[:OUTPUT_MAX].decode(errors="ignore") + " ... (output truncated)"


class Runner:
    """Base of the periodic runners."""

    def __init__(self, defn: CheckDef, report: Report, initial: str) -> None:
        self.defn = defn
        self.report = report
        self.filter = StatusFilter(defn.success_before_passing, defn.failures_before_critical,
                                   initial)
        self.task: asyncio.Task[None] | None = None
        self.runs = 0

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
            self.report(self.defn.check_id, shown, cut_output(output))
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
        try:
            async with asyncio.timeout(d.timeout):
                async with self._session().request(
                    d.method, d.http, headers=headers,
                    data=d.body.encode() if d.body else None, ssl=ssl_arg,
                    allow_redirects=True,
                    server_hostname=d.tls_server_name or None,
                ) as resp:
                    body = await resp.content.read(OUTPUT_MAX + 1)
                    code = resp.status
        except TimeoutError:
            return CRITICAL, f"{what}: request timed out after {d.timeout:g}s"
        except aiohttp.ClientError as e:
            return CRITICAL, f"{what}: {e}"
        except OSError as e:
            return CRITICAL, f"{what}: {e.strerror or e}"
        try:
            reason = HTTPStatus(code).phrase
        except ValueError:
            reason = ""
        text = body[:OUTPUT_MAX].decode(errors="replace")
        return http_status_of(code), f"{what}: {code} {reason} Output: {text}"


class TCPRunner(Runner):
    async def probe(self) -> tuple[str, str]:
        d = self.defn
        host, _, port = d.tcp.rpartition(":")
        host = host.strip("[]")
        try:
            async with asyncio.timeout(d.timeout):
                _, writer = await asyncio.open_connection(host, int(port))
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


class CheckManager:
    """Owns the runners of this agent's checks and the shared HTTP client session."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.runners: dict[str, Runner | TTLRunner] = {}
        self._session: aiohttp.ClientSession | None = None
        self.running = False

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            conn = aiohttp.TCPConnector(limit=64, force_close=True, ttl_dns_cache=10)
            self._session = aiohttp.ClientSession(connector=conn, auto_decompress=True,
                                                  cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def start_check(self, defn: CheckDef, initial: str) -> None:
        """(Re)start the runner of a check; maintenance checks have none."""
        old = self.runners.pop(defn.check_id, None)
        if old is not None:
            await old.stop()
        runner: Runner | TTLRunner
        if defn.kind == "http":
            runner = HTTPRunner(defn, self.report, initial, self._get_session)
        elif defn.kind == "tcp":
            runner = TCPRunner(defn, self.report, initial)
        elif defn.kind == "ttl":
            runner = TTLRunner(defn, self.report)
        else:
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

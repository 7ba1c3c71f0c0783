"""Reaching other datacenters: which agent to ask, in which order, and the forwarded request.

Theory of operation. A datacenter's catalog lives only in that datacenter (every agent there
holds a replica). A read for datacenter ``X`` (``?dc=X``) goes, over HTTP, to an alive WAN member
of ``X``, which answers from its own replica, exactly as if the client had asked it directly; so
blocking reads (``?index=&wait=``) work across the hop unchanged, the remote agent holds the
request and answers when its index passes.

* A WAN member of this datacenter knows the other datacenters' WAN members from the WAN pool
  (tags ``dc`` and ``rumor_http``, :mod:`registry.wan`) and sends the request straight there.
* A LAN-only agent knows its own datacenter's WAN members from their LAN tags and sends the
  request to one of them, which forwards it on (two hops at most; the forwarded request is marked
  with :data:`FORWARDED_HEADER`, and a marked request is never forwarded over the LAN again).

Candidates are tried nearest first (the smoothed latency of earlier requests to each, unknown
ones last, then by name), the next one when one cannot be reached; a reply of any status from a
reached agent is the answer. An unknown datacenter is Consul's ``500 No path to datacenter``;
a known one whose WAN members are all down or unreachable is a 500 that says so, and no request
waits longer than its own deadline (``wait`` + :data:`SLACK` for a blocking read,
:data:`TIMEOUT` otherwise), each candidate being given at most :data:`CONNECT_TIMEOUT` to accept.

Each datacenter hop is counted (requests, errors, latency) for the metrics.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import field
from typing import Any

import aiohttp

from gossip import Gossip, distance
from gossip.dclass import dataclass

from .errors import RequestError
from .wan import DC_TAG, HTTP_TAG, LAN_WAN_HTTP_TAG

log = logging.getLogger(__name__)

FORWARDED_HEADER = "X-Rumor-Forwarded"
TIMEOUT = 10.0
"""Seconds a non-blocking forwarded read may take in all."""
SLACK = 10.0
"""Seconds a blocking forwarded read may take beyond its ``wait``."""
CONNECT_TIMEOUT = 2.0
"""Seconds one candidate is given to accept the connection before the next one is tried."""
EWMA = 0.3
NO_PATH = "No path to datacenter"

_PASS_REQUEST = ("X-Consul-Token", "Authorization", "Content-Type", "Accept")
_PASS_RESPONSE = ("Content-Type", "X-Consul-Index", "X-Consul-KnownLeader",
                  "X-Consul-LastContact", "X-Consul-Effective-Consistency")


@dataclass
class HopStats:
    """Counters of the requests sent to one datacenter."""

    requests: int = 0
    errors: int = 0
    latency_sum: float = 0.0
    latency_count: int = 0


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass
class Federation:
    """Routes requests to other datacenters through the WAN pool (see the module docstring)."""

    datacenter: str
    lan: Gossip | None
    wan: Gossip | None = None
    hops: dict[str, HopStats] = field(default_factory=dict)
    _rtt: dict[str, float] = field(default_factory=dict)
    _session: aiohttp.ClientSession | None = None

    # --- what we know ---------------------------------------------------------------------

    @property
    def is_wan_member(self) -> bool:
        return self.wan is not None

    def wan_members(self) -> list[Any]:
        return self.wan.members() if self.wan is not None else []

    def local_wan_members(self) -> list[Any]:
        """Alive LAN peers that are WAN members (their LAN tag says so), nearest first."""
        if self.lan is None:
            return []
        me = self.lan.local_member().name
        found = [m for m in self.lan.members_with_tag(LAN_WAN_HTTP_TAG)
                 if m.status == "alive" and m.name != me]
        return sorted(found, key=lambda m: (self._rtt.get(m.tags[LAN_WAN_HTTP_TAG], math.inf),
                                            m.name))

    def known_datacenters(self) -> set[str]:
        """Datacenters with at least one WAN member that has not left (Consul lists a
        datacenter while it has members, even failed ones)."""
        out = {self.datacenter}
        for m in self.wan_members():
            dc = m.tags.get(DC_TAG)
            if dc and m.status != "left":
                out.add(dc)
        return out

    def rtt(self, dc: str) -> float:
        """The estimated round trip to ``dc`` in seconds (0 for ours, inf when unknown): the
        nearest of its alive WAN members by the WAN pool's Vivaldi coordinates, or, before
        there are any, the best smoothed latency of earlier requests to its WAN members."""
        if dc == self.datacenter:
            return 0.0
        coords = self.wan.coordinates() if self.wan is not None else {}
        me = coords.get(self.wan.local_member().name) if self.wan is not None else None
        best = math.inf
        measured = math.inf
        for m in self.wan_members():
            if m.tags.get(DC_TAG) != dc or HTTP_TAG not in m.tags:
                continue
            c = coords.get(m.name)
            if me is not None and c is not None and m.status == "alive":
                best = min(best, distance(me, c))
            measured = min(measured, self._rtt.get(m.tags[HTTP_TAG], math.inf))
        # the WAN pool's network coordinates when there are some, else what requests measured
        return best if best < math.inf else measured

    def datacenters(self) -> list[str]:
        """Known datacenters, nearest first (ours first), then by name."""
        return sorted(self.known_datacenters(), key=lambda dc: (self.rtt(dc), dc))

    def stats(self) -> dict[str, dict[str, str]]:
        """``/v1/agent/self`` Stats sections (``rumor info``): ``serf_wan`` on a WAN member
        (members by status and each one), and ``federation`` (datacenters, this datacenter's
        WAN members, the hops)."""
        out: dict[str, dict[str, str]] = {}
        if self.wan is not None:
            members = self.wan.members()
            out["serf_wan"] = {
                "members": str(len(members)),
                "alive": str(sum(1 for m in members if m.status == "alive")),
                "failed": str(sum(1 for m in members if m.status == "failed")),
                "member_list": " ".join(f"{m.name}={m.status}" for m in
                                        sorted(members, key=lambda m: m.name)),
            }
        hops = " ".join(f"{dc}:{h.requests}/{h.errors}" for dc, h in sorted(self.hops.items()))
        out["federation"] = {
            "wan_member": str(self.wan is not None).lower(),
            "datacenters": ",".join(self.datacenters()),
            "local_wan_members": ",".join(m.name for m in self.local_wan_members()) or "-",
            "hops_requests_errors": hops or "-",
        }
        return out

    def candidates(self, dc: str, *, forwarded: bool) -> tuple[list[str], str]:
        """HTTP addresses to try for ``dc`` in order, and what they are (for errors).

        Raises the 500 ``No path to datacenter`` when nothing can carry the request."""
        if self.wan is not None:
            members = [m for m in self.wan_members()
                       if m.tags.get(DC_TAG) == dc and HTTP_TAG in m.tags]
            if not members:
                raise RequestError(NO_PATH, 500)
            alive = [m for m in members if m.status == "alive"]
            if not alive:
                names = ", ".join(sorted(m.name for m in members))
                raise RequestError(f"{NO_PATH} {dc}: its WAN members ({names}) are all down", 500)
            alive.sort(key=lambda m: (self._rtt.get(m.tags[HTTP_TAG], math.inf), m.name))
            return [m.tags[HTTP_TAG] for m in alive], f"{dc}'s WAN members"
        if forwarded:  # a LAN-only agent never forwards a forwarded request (no loops)
            raise RequestError(f"{NO_PATH} {dc}: this agent is not a WAN member", 500)
        local = self.local_wan_members()
        if not local:
            raise RequestError(
                f"{NO_PATH} {dc}: no WAN member of {self.datacenter} is alive "
                "(start one with -join-wan or -serf-wan-port)", 500)
        return [m.tags[LAN_WAN_HTTP_TAG] for m in local], f"{self.datacenter}'s WAN members"

    # --- forwarding -----------------------------------------------------------------------

    async def forward(self, dc: str, method: str, path_qs: str, headers: Mapping[str, str],
                      body: bytes, *, forwarded: bool, wait: float | None) -> Reply:
        """Send the request to ``dc`` (see the module docstring); a RequestError when no
        candidate could be reached."""
        addrs, what = self.candidates(dc, forwarded=forwarded)
        stats = self.hops.setdefault(dc, HopStats())
        deadline = time.monotonic() + (wait + SLACK if wait is not None else TIMEOUT)
        out_headers = {k: v for k, v in headers.items() if k in _PASS_REQUEST}
        out_headers[FORWARDED_HEADER] = self.datacenter
        session = self._client()
        last = ""
        for addr in addrs:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            stats.requests += 1
            started = time.monotonic()
            try:
                timeout = aiohttp.ClientTimeout(total=left, sock_connect=min(CONNECT_TIMEOUT, left))
                async with session.request(method, f"http://{addr}{path_qs}", data=body or None,
                                           headers=out_headers, timeout=timeout,
                                           allow_redirects=False) as resp:
                    data = await resp.read()
                    took = time.monotonic() - started
                    stats.latency_sum += took
                    stats.latency_count += 1
                    if wait is None:  # a blocking read's time says nothing of the distance
                        old = self._rtt.get(addr)
                        self._rtt[addr] = took if old is None else old + EWMA * (took - old)
                    return Reply(resp.status,
                                 {k: v for k, v in resp.headers.items() if k in _PASS_RESPONSE},
                                 data)
            except RuntimeError as e:   # the session was closed: the agent is stopping
                raise RequestError(f"{NO_PATH} {dc}: the agent is stopping ({e})", 503) from None
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                stats.errors += 1
                self._rtt[addr] = math.inf
                last = f"{addr}: {type(e).__name__} {e}".strip()
                log.warning("datacenter hop failed dc=%s to=%s error=%s", dc, addr, last)
        raise RequestError(f"{NO_PATH} {dc}: none of {what} answered in time ({last})", 500)

    async def all_datacenters(self) -> list[str]:
        """Known datacenters, nearest first; a LAN-only agent asks one of its WAN members."""
        if self.wan is not None or not self.local_wan_members():
            return self.datacenters()
        try:
            reply = await self.forward(self.datacenter, "GET", "/v1/catalog/datacenters", {},
                                       b"", forwarded=False, wait=None)
            got = json.loads(reply.body) if reply.status == 200 else None
        except (RequestError, ValueError):
            got = None
        if isinstance(got, list) and all(isinstance(x, str) for x in got):
            return got
        return [self.datacenter]

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(auto_decompress=True)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class FederationCollector:
    """Prometheus families of the datacenter hops (``rumor_federation_*``, label ``dc``) and
    the WAN pool's size."""

    def __init__(self, federation: Federation) -> None:
        self.federation = federation

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        fed = self.federation
        req = CounterMetricFamily("rumor_federation_requests", "Requests forwarded to another "
                                  "datacenter, per attempt.", labels=["dc"])
        err = CounterMetricFamily("rumor_federation_errors", "Forwarding attempts that reached "
                                  "no agent (the next WAN member is tried).", labels=["dc"])
        lat = CounterMetricFamily("rumor_federation_latency_seconds", "Seconds spent in "
                                  "forwarded requests that were answered (sum).", labels=["dc"])
        cnt = CounterMetricFamily("rumor_federation_answered", "Forwarded requests that were "
                                  "answered.", labels=["dc"])
        for dc, h in sorted(fed.hops.items()):
            req.add_metric([dc], h.requests)
            err.add_metric([dc], h.errors)
            lat.add_metric([dc], h.latency_sum)
            cnt.add_metric([dc], h.latency_count)
        wan = GaugeMetricFamily("rumor_federation_wan_members", "WAN pool members by datacenter "
                                "and status (empty on a LAN-only agent).",
                                labels=["dc", "status"])
        counts: dict[tuple[str, str], int] = {}
        for m in fed.wan_members():
            key = (m.tags.get(DC_TAG, ""), m.status)
            counts[key] = counts.get(key, 0) + 1
        for (dc, status), n in sorted(counts.items()):
            wan.add_metric([dc, status], n)
        yield from (req, err, lat, cnt, wan)

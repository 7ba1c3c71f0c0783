"""The agent's metrics, read from each subsystem's counters at scrape time.

Nothing here counts anything itself: gossip, the catalog, DNS and the LB keep plain counters on
their hot paths, and :class:`AgentCollector` turns a snapshot of them into Prometheus families
(``rumor_gossip_*``, ``rumor_registry_*``, ``rumor_dns_*``, ``rumor_lb_*``) when scraped, plus the
standard ``process_*`` families. The same families also feed Consul's JSON metrics shape.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

if TYPE_CHECKING:
    from dnsserver import DNSServer
    from gossip import Gossip
    from lb import LoadBalancer

    from .federation import Federation
    from .service import Registry

_GOSSIP_EVENTS = {
    # memberlist counter -> (family suffix, help)
    "probes": ("probes_total", "Probes started."),
    "probe_failures": ("probe_failures_total", "Probes that got no ack at all."),
    "probe_tcp_rescues": ("probe_tcp_rescues_total", "Probes answered only by the TCP fallback."),
    "indirect_relayed": ("indirect_pings_relayed_total", "Indirect pings relayed for others."),
    "nacks_sent": ("nacks_sent_total", "Nacks sent as an intermediary."),
    "suspects": ("suspicions_total", "Members this node started suspecting."),
    "deaths": ("deaths_total", "Members declared dead by this node."),
    "refutes": ("refutations_total", "Suspicions of this node it refuted."),
    "push_pulls": ("push_pulls_total", "Push/pull state exchanges."),
    "push_pull_failures": ("push_pull_failures_total", "Failed push/pull exchanges."),
    "reaped": ("reaped_total", "Dead members forgotten after GossipToTheDeadTime."),
    "join_resyncs": ("join_resyncs_total", "Push/pulls a few gossip rounds after our join."),
    "stranger_syncs": ("stranger_syncs_total",
                       "Push/pulls with a sender not known as a member (we missed its join)."),
}


class AgentCollector:
    """A prometheus_client collector over a running agent's subsystems (None when off)."""

    def __init__(self, *, gossip: Gossip | None, registry: Registry | None,
                 dns: DNSServer | None, lb: LoadBalancer | None) -> None:
        self.gossip = gossip
        self.registry = registry
        self.dns = dns
        self.lb = lb

    def collect(self) -> Iterator[Metric]:
        yield from self._runtime()
        yield from self._gossip()
        yield from self._registry()
        yield from self._dns()
        yield from self._lb()

    # --- runtime ------------------------------------------------------------------------------

    def _runtime(self) -> Iterator[Metric]:
        lag = self.registry.loop_lag if self.registry is not None else None
        if lag is None:
            return
        yield HistogramMetricFamily(
            "rumor_runtime_loop_lag_seconds",
            "How late the event loop ran a timer due every "
            f"{lag.interval:g} s (a callback that runs long delays it).",
            buckets=[("+Inf" if upper == float("inf") else repr(upper), n)
                     for upper, n in lag.buckets()],
            sum_value=lag.sum)
        yield GaugeMetricFamily("rumor_runtime_loop_lag_max_seconds",
                                "Longest loop lag seen since the agent started.", value=lag.max)

    # --- gossip -------------------------------------------------------------------------------

    def _gossip(self) -> Iterator[Metric]:
        g = self.gossip
        if g is None:
            return
        c: dict[str, int] = g.counters
        members = GaugeMetricFamily("rumor_gossip_members", "Members by Serf status.",
                                    labels=["status"])
        for status in ("alive", "leaving", "left", "failed"):
            members.add_metric([status], c.get(f"serf.members.{status}", 0))
        yield members
        yield GaugeMetricFamily("rumor_gossip_health_score",
                                "Lifeguard local health (0 = healthy; probes slow down as it rises).",
                                value=c.get("memberlist.health_score", 0))
        for key, (suffix, help_) in _GOSSIP_EVENTS.items():
            yield CounterMetricFamily(f"rumor_gossip_{suffix.removesuffix('_total')}", help_,
                                      value=c.get(f"memberlist.{key}", 0))
        msgs = CounterMetricFamily("rumor_gossip_messages", "Messages by direction and type.",
                                   labels=["direction", "type"])
        dropped = CounterMetricFamily("rumor_gossip_dropped",
                                      "Inbound input dropped, by reason.", labels=["reason"])
        for k, v in c.items():
            if k.startswith("memberlist.msgs_in."):
                msgs.add_metric(["in", k.rsplit(".", 1)[1]], v)
            elif k.startswith("memberlist.msgs_out."):
                msgs.add_metric(["out", k.rsplit(".", 1)[1]], v)
            elif k.startswith("memberlist.drops."):
                dropped.add_metric([k.rsplit(".", 1)[1]], v)
            elif k.startswith("serf.dropped."):
                dropped.add_metric(["serf_" + k.rsplit(".", 1)[1]], v)
        yield msgs
        yield dropped
        nbytes = CounterMetricFamily("rumor_gossip_bytes", "Gossip bytes by direction.",
                                     labels=["direction"])
        nbytes.add_metric(["in"], c.get("memberlist.bytes_in", 0))
        nbytes.add_metric(["out"], c.get("memberlist.bytes_out", 0))
        yield nbytes
        by_type = CounterMetricFamily("rumor_gossip_bytes_out_by_type",
                                      "Gossip bytes sent, by message type.", labels=["type"])
        for k, v in c.items():
            if k.startswith("memberlist.bytes_out_by_type."):
                by_type.add_metric([k.rsplit(".", 1)[1]], v)
        yield by_type
        serf = CounterMetricFamily("rumor_gossip_serf_events",
                                   "Serf-layer events (member changes, user events, queries).",
                                   labels=["event"])
        for k, v in c.items():
            if k.startswith(("serf.member.", "serf.events.", "serf.queries.")):
                serf.add_metric([k.removeprefix("serf.")], v)
        yield serf
        coord = CounterMetricFamily(
            "rumor_gossip_coordinate_samples",
            "RTT samples of direct probes for the network coordinates: used (zero_rtt: used, "
            "but measured as 0), or rejected (a bad coordinate or RTT).", labels=["result"])
        for result, key in (("used", "updates"), ("zero_rtt", "zero-rtt"),
                            ("rejected", "rejected")):
            coord.add_metric([result], c.get(f"serf.coordinate.{key}", 0))
        yield coord

    # --- registry -----------------------------------------------------------------------------

    def _registry(self) -> Iterator[Metric]:
        r = self.registry
        if r is None:
            return
        s = r.stats()
        for key, name, help_ in (
            ("nodes", "rumor_registry_nodes", "Nodes in the catalog."),
            ("services", "rumor_registry_services", "Distinct service names in the catalog."),
            ("instances", "rumor_registry_instances", "Service instances in the catalog."),
            ("local_services", "rumor_registry_local_services",
             "Service instances registered with this agent."),
            ("blocking_waiters", "rumor_registry_blocking_queries_waiting",
             "Blocking queries (and other watchers) waiting for a change."),
            ("index", "rumor_registry_index", "The catalog's change index."),
        ):
            yield GaugeMetricFamily(name, help_, value=s.get(key, 0))
        yield CounterMetricFamily("rumor_registry_changes", "Visible catalog changes.",
                                  value=s.get("changes", 0))
        cue = CounterMetricFamily("rumor_registry_reconciles",
                                  "Push/pulls started on cue (not the periodic ones), by reason.",
                                  labels=["reason"])
        cue.add_metric(["came_back"], s.get("repl_heal_push_pulls", 0))
        cue.add_metric(["missing_record"], s.get("repl_record_wait_push_pulls", 0))
        yield cue
        checks = GaugeMetricFamily("rumor_registry_checks", "Checks in the catalog by status.",
                                   labels=["status"])
        counts = {"passing": 0, "warning": 0, "critical": 0}
        for chk in r.catalog.all_checks():
            counts[chk.status] = counts.get(chk.status, 0) + 1
        for status, n in sorted(counts.items()):
            checks.add_metric([status], n)
        yield checks

    # --- dns ----------------------------------------------------------------------------------

    def _dns(self) -> Iterator[Metric]:
        d = self.dns
        if d is None:
            return
        s = d.counters.snapshot()
        q = CounterMetricFamily("rumor_dns_queries", "Queries by type.", labels=["qtype"])
        for qtype, n in s["qtypes"].items():
            q.add_metric([qtype], n)
        yield q
        rc = CounterMetricFamily("rumor_dns_responses", "Responses by RCODE.", labels=["rcode"])
        for rcode, n in s["rcodes"].items():
            rc.add_metric([rcode], n)
        yield rc
        for key, help_ in (("cache_hits", "Answers served from the encoded-answer cache."),
                           ("native_hits", "Of those, answers sent by the C thread (UDP)."),
                           ("cache_misses", "Answers built from the catalog view."),
                           ("truncated", "UDP answers sent with TC set."),
                           ("forwarded", "Queries forwarded to a recursor."),
                           ("forward_failures", "Forwarded queries that every recursor failed."),
                           ("chases", "Answers that waited for a recursor to give a "
                                      + "host-name CNAME target's records."),
                           ("chase_failures", "Chases that no recursor answered in time "
                                              + "(the answer was the CNAME alone).")):
            yield CounterMetricFamily(f"rumor_dns_{key}", help_, value=s.get(key, 0))
        rl = CounterMetricFamily("rumor_dns_rate_limited",
                                 "UDP answers held back by response-rate limiting, by action "
                                 "(dropped, or slipped: sent empty with TC).",
                                 labels=["action"])
        rl.add_metric(["dropped"], s.get("rate_limited_dropped", 0))
        rl.add_metric(["slipped"], s.get("rate_limited_slipped", 0))
        yield rl
        dropped = CounterMetricFamily("rumor_dns_dropped", "Bad or refused input by reason.",
                                      labels=["reason"])
        for reason, n in s["drops"].items():
            dropped.add_metric([reason], n)
        yield dropped
        yield GaugeMetricFamily("rumor_dns_tcp_connections", "Open DNS TCP connections.",
                                value=s.get("tcp_connections", 0))
        buckets = []
        total = 0
        for upper, n in s["latency_buckets_us"].items():
            total += n
            le = "+Inf" if upper == "+Inf" else repr(int(upper) / 1e6)
            buckets.append((le, total))
        if not buckets or buckets[-1][0] != "+Inf":
            buckets.append(("+Inf", total))
        yield HistogramMetricFamily("rumor_dns_query_duration_seconds",
                                    "Time to answer a query locally.", buckets=buckets,
                                    sum_value=s.get("latency_sum_s", 0.0))

    # --- lb -------------------------------------------------------------------------------------

    def _lb(self) -> Iterator[Metric]:
        lb = self.lb
        if lb is None:
            return
        labels = ["listener", "backend"]
        fams: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "connections": CounterMetricFamily("rumor_lb_connections",
                                               "Connections proxied, per backend.", labels=labels),
            "requests": CounterMetricFamily("rumor_lb_requests",
                                            "Requests proxied, per backend.", labels=labels),
            "errors": CounterMetricFamily("rumor_lb_errors", "Failed proxy attempts, per backend.",
                                          labels=labels),
            "ejections": CounterMetricFamily("rumor_lb_ejections",
                                             "Passive-health ejections, per backend.", labels=labels),
            "active": GaugeMetricFamily("rumor_lb_active_connections",
                                        "Open connections, per backend.", labels=labels),
        }
        nbytes = CounterMetricFamily("rumor_lb_bytes", "Bytes proxied, per backend and direction.",
                                     labels=labels + ["direction"])
        lconns = CounterMetricFamily("rumor_lb_listener_connections",
                                     "Client connections accepted, per listener.",
                                     labels=["listener"])
        lerrors = CounterMetricFamily("rumor_lb_listener_errors",
                                      "Error answers and failed proxies, per listener and reason.",
                                      labels=["listener", "reason"])
        tls_ok = CounterMetricFamily("rumor_lb_tls_handshakes",
                                     "TLS handshakes completed, per listener.",
                                     labels=["listener"])
        tls_failed = CounterMetricFamily("rumor_lb_tls_handshake_failures",
                                         "TLS handshakes failed, per listener and reason "
                                         "(timeout, http_request, unsupported_protocol, "
                                         "no_shared_cipher, unknown_ca, bad_certificate, eof, "
                                         "other).", labels=["listener", "reason"])
        for info in lb.listeners():
            name = info["Name"]
            cnt = info.get("Counters", {})
            lconns.add_metric([name], cnt.get("Connections", 0))
            for reason, n in (cnt.get("ErrorReasons") or {}).items():
                lerrors.add_metric([name, reason], n)
            if info.get("TLS"):
                tls_ok.add_metric([name], cnt.get("TLSHandshakes", 0))
                for reason, n in (cnt.get("TLSHandshakeFailures") or {}).items():
                    tls_failed.add_metric([name, reason], n)
            for b in info.get("Backends", []):
                backend = f"{b['Node']}/{b['ServiceID']}"
                fams["connections"].add_metric([name, backend], b.get("Connections", 0))
                fams["requests"].add_metric([name, backend], b.get("Requests", 0))
                fams["errors"].add_metric([name, backend], b.get("Errors", 0))
                fams["ejections"].add_metric([name, backend], b.get("Ejections", 0))
                fams["active"].add_metric([name, backend], b.get("Active", 0))
                nbytes.add_metric([name, backend, "in"], b.get("BytesIn", 0))
                nbytes.add_metric([name, backend, "out"], b.get("BytesOut", 0))
        yield from fams.values()
        yield nbytes
        yield lconns
        yield lerrors
        yield tls_ok
        yield tls_failed


def registry_for(*, gossip: Gossip | None, registry: Registry | None, dns: DNSServer | None,
                 lb: LoadBalancer | None, federation: Federation | None = None
                 ) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(AgentCollector(gossip=gossip, registry=registry, dns=dns, lb=lb))
    if federation is not None:
        from .federation import FederationCollector

        reg.register(FederationCollector(federation))
    ProcessCollector(registry=reg)
    return reg


def consul_json(reg: CollectorRegistry) -> dict[str, Any]:
    """Consul's ``/v1/agent/metrics`` JSON shape from the same families."""
    gauges: list[dict[str, Any]] = []
    counters: list[dict[str, Any]] = []
    for fam in reg.collect():
        for s in fam.samples:
            if s.name.endswith(("_bucket", "_created")):
                continue
            entry_name = s.name.replace("_", ".")
            if fam.type == "counter" or s.name.endswith(("_count", "_sum")):
                counters.append({"Name": entry_name, "Count": s.value, "Sum": s.value,
                                 "Min": s.value, "Max": s.value, "Mean": s.value, "Stddev": 0,
                                 "Rate": 0, "Labels": dict(s.labels)})
            else:
                gauges.append({"Name": entry_name, "Value": s.value, "Labels": dict(s.labels)})
    return {"Timestamp": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime()),
            "Gauges": gauges, "Points": [], "Counters": counters, "Samples": []}


_LEGACY_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LEGACY_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_OM_SUFFIXES = ("_created", "_gsum", "_gcount")
_PROM_TYPE = {"counter": "counter", "gauge": "gauge", "histogram": "histogram",
              "summary": "summary", "info": "gauge", "stateset": "gauge",
              "gaugehistogram": "histogram", "unknown": "untyped"}


_NAMES: dict[str, str] = {}
_LABELS: dict[str, str] = {}


def _escaped(s: str, legacy: re.Pattern[str], escape: str, cache: dict[str, str]) -> str:
    """``s`` as prometheus_client writes a metric or label name (its ``escape`` function when
    outside the ``legacy`` set), remembered in ``cache`` (an agent's names are a few hundred)."""
    out = cache.get(s)
    if out is None:
        from prometheus_client.openmetrics import exposition

        out = s if legacy.match(s) else getattr(exposition, escape)(s)
        if len(cache) < 4096:
            cache[s] = out
    return out


def _name(s: str) -> str:
    return _NAMES.get(s) or _escaped(s, _LEGACY_NAME, "escape_metric_name", _NAMES)


def _label(s: str) -> str:
    return _LABELS.get(s) or _escaped(s, _LEGACY_LABEL, "escape_label_name", _LABELS)


def _value(v: float) -> str:
    """Go's float formatting, as prometheus_client's ``floatToGoString``."""
    d = float(v)
    s = repr(d)
    if s[-1].isdigit() and (d <= 0 or s.find(".") <= 6):
        return s        # the common case: a finite number written as Python writes it
    from prometheus_client.utils import floatToGoString

    return floatToGoString(d)   # type: ignore[no-any-return,no-untyped-call]


def prometheus_text(reg: CollectorRegistry) -> bytes:
    """The Prometheus text format (0.0.4) of ``reg``: byte for byte what prometheus_client's
    ``generate_latest`` writes, without its per-sample name validation and escaping calls
    (names are checked once per process and remembered). A scrape of an agent cost ~2 ms of
    CPU that way, most of it there; it is what a monitoring system, or a bench that polls 200
    agents a second, pays on every agent."""
    out: list[str] = []
    add = out.append
    for metric in reg.collect():
        base = metric.name
        mtype = metric.type
        mname = base + "_total" if mtype == "counter" else (
            base + "_info" if mtype == "info" else base)
        doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        add(f"# HELP {_name(mname)} {doc}\n# TYPE {_name(mname)} {_PROM_TYPE.get(mtype, mtype)}\n")
        extra: dict[str, list[str]] = {}
        for s in metric.samples:
            labels = s.labels
            if labels:
                inner = ",".join(
                    '{}="{}"'.format(_label(k), v.replace("\\", r"\\").replace("\n", r"\n")
                                     .replace('"', r"\""))
                    for k, v in sorted(labels.items()))
                line = f"{_name(s.name)}{{{inner}}} {_value(s.value)}"
            else:
                line = f"{_name(s.name)} {_value(s.value)}"
            if s.timestamp is not None:
                line += f" {int(float(s.timestamp) * 1000):d}"
            line += "\n"
            sname = s.name
            if sname.startswith(base) and sname[len(base):] in _OM_SUFFIXES:
                extra.setdefault(sname[len(base):], []).append(line)
            else:
                add(line)
        for suffix, lines in sorted(extra.items()):
            add(f"# HELP {_name(base + suffix)} {doc}\n# TYPE {_name(base + suffix)} gauge\n")
            out.extend(lines)
    return "".join(out).encode()

"""HTML for the web UI's pages: pure functions of a :class:`~registry.ui.model.UIState`.

Every page is complete, useful HTML without any script (the first paint comes from the server).
``rumor.js`` then follows the page's *watch* URLs (Consul blocking queries on the JSON API),
fetches the same page again when one of them reports a new index, and patches only the elements
whose HTML changed. For that to work, each element the script may patch on its own carries a
stable ``data-key``; its children either all have one (a keyed list) or it is replaced whole.

Every string that came from outside (node names, tags, meta, check output, listener names …) goes
through :func:`e` (HTML escaping, quotes included) or :func:`seg` (one URL path segment).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from gossip.dclass import dataclass

from ..catalog import CRITICAL, PASSING, WARNING, health_rank
from .model import UICheck, UIInstance, UIService, UIState

OUTPUT_SHOWN = 4096
"""Characters of a check's output shown in the page (Consul keeps at most 4 KiB of it)."""


NAV = (("services", "/ui/", "Services"), ("nodes", "/ui/nodes", "Nodes"),
       ("checks", "/ui/checks", "Health"), ("lb", "/ui/lb", "Load balancer"),
       ("kv", "/ui/kv/", "Key/value"))


def e(value: object) -> str:
    """Escape for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def seg(value: str) -> str:
    """One URL path segment (also safe inside an attribute after :func:`e`)."""
    return quote(value, safe="")


@dataclass(frozen=True, slots=True)
class Page:
    status: int
    title: str
    section: str            # which NAV entry is current
    body: str               # the children of <main>
    watch: tuple[str, ...]  # JSON API URLs whose index changes mean "render again"
    poll: float = 0.0       # seconds between refreshes when nothing can be watched (LB counters)
    static: bool = False    # nothing on the page changes by itself; the script leaves it alone


# --- small pieces -------------------------------------------------------------------------------


def badge(status: str, text: str | None = None) -> str:
    cls = {PASSING: "ok", WARNING: "warn", CRITICAL: "crit", "alive": "ok", "suspect": "warn",
           "failed": "crit", "left": "off", "leaving": "off"}.get(status, "off")
    return f'<span class="badge {cls}" data-status="{e(status)}">{e(text or status)}</span>'


def maint_badge() -> str:
    return '<span class="badge maint" title="in maintenance mode">maintenance</span>'


def source_badge(meta: Mapping[str, str]) -> str:
    """Instances the container watcher registered say so (meta ``source=docker``)."""
    if meta.get("source") != "docker":
        return ""
    name = meta.get("container", "")
    return (f'<span class="badge src" data-source="docker" '
            f'title="registered from the running container {e(name)}">container</span>')


def chips(tags: Iterable[str]) -> str:
    items = "".join(f'<li class="chip">{e(t)}</li>' for t in tags)
    return f'<ul class="chips">{items}</ul>' if items else ""


def kv_chips(pairs: Mapping[str, str]) -> str:
    items = "".join(f'<li class="chip"><b>{e(k)}</b>={e(v)}</li>'
                    for k, v in sorted(pairs.items()))
    return f'<ul class="chips">{items}</ul>' if items else ""


def _health_counts(svc: UIService) -> str:
    parts = []
    for st, word in ((PASSING, "passing"), (WARNING, "warning"), (CRITICAL, "critical")):
        n = svc.count(st)
        if n:
            parts.append(badge(st, f"{n} {word}"))
    if svc.maintenance:
        parts.append(f'<span class="badge maint">{svc.maintenance} in maintenance</span>')
    if not svc.instances:
        parts.append('<span class="badge off">no instances</span>')
    return "".join(parts)


def _notice(missing: Sequence[str], want: str, what: str) -> str:
    if want not in missing:
        return ""
    return (f'<p class="notice" data-key="notice-{e(want)}">{e(what)} is not running on this '
            "agent, so there is nothing to show here.</p>")


def _addr(address: str, port: int) -> str:
    if not address:
        return f":{port}" if port else ""
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{port}" if port else address


OUTPUT_INLINE = 160
"""A one-line check output up to this many characters is shown as it is; longer or multi-line
output is folded under its first line."""


def check_output(c: UICheck) -> str:
    """A check's output as text, never as markup: short output in full; long output (an HTTP
    check's ``… Output: <response body>``, often a whole HTML page) folded under a summary."""
    out = c.output.strip()
    if not out:
        return ""
    if len(out) <= OUTPUT_INLINE and "\n" not in out:
        return f'<pre class="output">{e(out)}</pre>'
    head, sep, body = out.partition(" Output: ")  # Consul's HTTP and gRPC check format
    if not sep or "\n" in head:
        head, body = out.splitlines()[0][:OUTPUT_INLINE], out
    kind = "HTML" if body.lstrip()[:1] == "<" else "text"
    shown = body if len(body) <= OUTPUT_SHOWN else body[:OUTPUT_SHOWN] + "\n…"
    what = "response body" if sep else "output"
    return (f'<details class="output" data-key="out:{e(c.node)}/{e(c.check_id)}"><summary>{e(head)} <span class="muted small">'
            f"({e(what)}: {len(body)} characters of {kind}, shown as text)</span></summary>"
            f'<pre class="output">{e(shown)}</pre></details>')


def check_block(c: UICheck, *, show_node: bool = False, show_service: bool = True) -> str:
    where = []
    if show_node:
        where.append(f'<a href="/ui/nodes/{e(seg(c.node))}">{e(c.node)}</a>')
    if show_service and c.service_name:
        where.append(f'<a href="/ui/services/{e(seg(c.service_name))}">{e(c.service_name)}</a>')
    meta = f'<span class="muted">{e(c.type)}</span>' if c.type else ""
    return (
        f'<li class="check h-{e(c.status)}" data-key="chk:{e(c.node)}/{e(c.check_id)}" '
        f'data-health="{e(c.status)}">'
        f'<div class="row"><span class="name">{e(c.name or c.check_id)}</span>'
        f'{badge(c.status)}{maint_badge() if c.maintenance else ""}{meta}</div>'
        + (f'<div class="where">{" · ".join(where)}</div>' if where else "")
        + (f'<div class="muted small">{e(c.notes)}</div>' if c.notes else "")
        + check_output(c)
        + "</li>"
    )


def checks_list(checks: Iterable[UICheck], key: str, **kw: Any) -> str:
    items = "".join(check_block(c, **kw) for c in checks)
    if not items:
        return f'<p class="muted" data-key="{e(key)}">No checks.</p>'
    return f'<ul class="checks" data-key="{e(key)}">{items}</ul>'


def instance_block(i: UIInstance, *, show_service: bool = False) -> str:
    title = (f'<a href="/ui/services/{e(seg(i.service))}">{e(i.service)}</a> '
             f'<span class="muted">{e(i.service_id)}</span>' if show_service else
             f'<a href="/ui/nodes/{e(seg(i.node))}">{e(i.node)}</a> '
             f'<span class="muted">{e(i.service_id)}</span>')
    return (
        f'<li class="card h-{e(i.health)}" data-key="inst:{e(i.node)}/{e(i.service_id)}" '
        f'data-health="{e(i.health)}"{" data-maintenance" if i.maintenance else ""}>'
        f'<div class="row"><span class="name">{title}</span>{badge(i.health)}'
        f'{maint_badge() if i.maintenance else ""}{source_badge(i.meta)}</div>'
        f'<div class="addr">{e(_addr(i.address, i.port))}</div>'
        + chips(i.tags) + kv_chips(i.meta)
        + checks_list(i.checks, f"checks:{i.node}/{i.service_id}", show_service=False)
        + "</li>"
    )


# --- pages --------------------------------------------------------------------------------------


def services_page(st: UIState) -> Page:
    rows = []
    for s in sorted(st.services, key=lambda s: (-health_rank(s.health), s.name.lower())):
        rows.append(
            f'<li class="card h-{e(s.health)}" data-key="svc:{e(s.name)}" '
            f'data-health="{e(s.health)}">'
            f'<div class="row"><a class="name" href="/ui/services/{e(seg(s.name))}">{e(s.name)}'
            f'</a><span class="count">{len(s.instances)} instance'
            f'{"" if len(s.instances) == 1 else "s"}</span></div>'
            f'<div class="row">{_health_counts(s)}</div>{chips(s.tags)}</li>'
        )
    body = _notice(st.missing, "registry", "The service registry")
    if rows:
        body += f'<ul class="cards" id="services" data-key="services">{"".join(rows)}</ul>'
    elif "registry" not in st.missing:
        body += ('<p class="empty" data-key="services">No services are registered yet. Register '
                 'one with <code>PUT /v1/agent/service/register</code>.</p>')
    head = _summary(st)
    return Page(200, "Services", "services", head + body,
                ("/v1/catalog/services", "/v1/health/state/any"))


def _summary(st: UIState) -> str:
    counts = {PASSING: 0, WARNING: 0, CRITICAL: 0}
    for s in st.services:
        for i in s.instances:
            counts[i.health if i.health in counts else CRITICAL] += 1
    alive = sum(1 for n in st.nodes if n.status == "alive")
    return (
        '<section class="summary" data-key="summary">'
        f'<div><b>{len(st.services)}</b> services</div>'
        f'<div><b>{sum(counts.values())}</b> instances</div>'
        f'<div class="ok-t"><b>{counts[PASSING]}</b> passing</div>'
        f'<div class="warn-t"><b>{counts[WARNING]}</b> warning</div>'
        f'<div class="crit-t"><b>{counts[CRITICAL]}</b> critical</div>'
        f'<div><b>{alive}</b>/{len(st.nodes)} nodes alive</div>'
        "</section>"
    )


def service_page(st: UIState, name: str) -> Page:
    watch = (f"/v1/health/service/{seg(name)}",)
    svc = st.service(name)
    back = '<p class="crumbs" data-key="crumbs"><a href="/ui/">← Services</a></p>'
    if svc is None:
        body = back + (f'<h1 data-key="h1">{e(name)}</h1><p class="empty" data-key="missing">'
                       "No service of this name is registered (it may appear later; this page "
                       "follows the catalog).</p>")
        return Page(404, name, "services", body, watch)
    items = "".join(instance_block(i) for i in
                    sorted(svc.instances, key=lambda i: (-health_rank(i.health), i.node, i.service_id)))
    body = (
        back
        + f'<h1 data-key="h1">{e(svc.name)} {badge(svc.health)}</h1>'
        + f'<div class="row" data-key="counts">{_health_counts(svc)}</div>'
        + f'<div data-key="tags">{chips(svc.tags)}</div>'
        + f'<ul class="cards" id="instances" data-key="instances">{items}</ul>'
    )
    return Page(200, svc.name, "services", body, watch)


def nodes_page(st: UIState) -> Page:
    rows = []
    for n in st.nodes:
        rows.append(
            f'<li class="card s-{e(n.status)}" data-key="node:{e(n.name)}" '
            f'data-status="{e(n.status)}" data-health="{e(n.health)}">'
            f'<div class="row"><a class="name" href="/ui/nodes/{e(seg(n.name))}">{e(n.name)}</a>'
            f'{badge(n.status)}{maint_badge() if n.maintenance else ""}</div>'
            f'<div class="addr">{e(_addr(n.address, n.port))}'
            f'{" · " + e(n.datacenter) if n.datacenter else ""}</div>'
            f'<div class="row">{badge(n.health, "checks " + n.health)}'
            f'<span class="count">{len(n.services)} service instance'
            f'{"" if len(n.services) == 1 else "s"}</span></div>'
            + kv_chips(n.tags) + "</li>"
        )
    body = (_notice(st.missing, "gossip", "Gossip membership")
            + f'<ul class="cards" id="nodes" data-key="nodes">{"".join(rows)}</ul>')
    if st.wan_members:
        wan = [
            f'<li class="card s-{e(n.status)}" data-key="wan:{e(n.name)}" '
            f'data-status="{e(n.status)}"><div class="row"><span class="name">{e(n.name)}</span>'
            f'{badge(n.status)}</div><div class="addr">{e(_addr(n.address, n.port))}'
            f'{" · " + e(n.datacenter) if n.datacenter else ""}</div></li>'
            for n in st.wan_members]
        body += ('<h2>WAN members (other datacenters are reached through them)</h2>'
                 f'<ul class="cards" id="wan" data-key="wan">{"".join(wan)}</ul>')
    # A member turning "suspect" (or back) is gossip's own state, not a catalog change that
    # wakes a blocking query, so the nodes page also refreshes every few seconds.
    return Page(200, "Nodes", "nodes", body, ("/v1/catalog/nodes", "/v1/health/state/any"),
                poll=5.0)


def node_page(st: UIState, name: str) -> Page:
    watch = (f"/v1/health/node/{seg(name)}", "/v1/catalog/nodes")
    n = st.node(name)
    back = '<p class="crumbs" data-key="crumbs"><a href="/ui/nodes">← Nodes</a></p>'
    if n is None:
        body = back + (f'<h1 data-key="h1">{e(name)}</h1><p class="empty" data-key="missing">'
                       "No node of this name is known to this agent.</p>")
        return Page(404, name, "nodes", body, watch)
    node_checks = [c for c in n.checks if not c.service_id]
    services = "".join(instance_block(i, show_service=True) for i in n.services)
    body = (
        back
        + f'<h1 data-key="h1">{e(n.name)} {badge(n.status)}'
        f'{maint_badge() if n.maintenance else ""}</h1>'
        + '<dl class="facts" data-key="facts">'
        f'<dt>Address</dt><dd>{e(_addr(n.address, n.port))}</dd>'
        f'<dt>Datacenter</dt><dd>{e(n.datacenter)}</dd>'
        f'<dt>Gossip tags</dt><dd>{kv_chips(n.tags) or "—"}</dd>'
        f'<dt>Meta</dt><dd>{kv_chips(n.meta) or "—"}</dd></dl>'
        + '<h2 data-key="h2-checks">Node checks</h2>'
        + checks_list(node_checks, "node-checks")
        + '<h2 data-key="h2-services">Service instances</h2>'
        + (f'<ul class="cards" data-key="node-services">{services}</ul>' if services else
           '<p class="muted" data-key="node-services">None.</p>')
    )
    return Page(200, n.name, "nodes", body, watch)


def checks_page(st: UIState, state: str = "any") -> Page:
    if state not in ("any", PASSING, WARNING, CRITICAL):
        state = "any"
    chosen = [c for c in st.checks if state == "any" or c.status == state]
    chosen.sort(key=lambda c: (-health_rank(c.status), c.node.lower(), c.check_id))
    counts = {s: sum(1 for c in st.checks if c.status == s) for s in (PASSING, WARNING, CRITICAL)}
    tabs = []
    for s, label in (("any", f"all {len(st.checks)}"), (CRITICAL, f"critical {counts[CRITICAL]}"),
                     (WARNING, f"warning {counts[WARNING]}"), (PASSING, f"passing {counts[PASSING]}")):
        cur = ' aria-current="page"' if s == state else ""
        tabs.append(f'<a class="tab t-{s}" href="/ui/checks?state={s}"{cur}>{e(label)}</a>')
    body = (_notice(st.missing, "registry", "The service registry")
            + f'<nav class="tabs" data-key="tabs">{"".join(tabs)}</nav>'
            + checks_list(chosen, "checks", show_node=True))
    return Page(200, "Health", "checks", body, ("/v1/health/state/any",))


_BACKEND_COLS = ("Active", "Connections", "Requests", "BytesIn", "BytesOut", "Errors", "Ejections")

# The listener counts bytes on the client side of the proxy, each backend on its own side, so in
# HTTP mode they differ (docs/http-api.md, "Counters"). The page says which side each number is.
_LISTENER_LABELS = {
    "BytesIn": ("Bytes from clients", (
        "bytes received from clients, as they sent them (before the LB rewrites request heads)")),
    "BytesOut": ("Bytes to clients", (
        "bytes sent to clients, including the answers the LB makes itself (502, 503, 504, 400 …)")),
}
_BACKEND_LABELS = {
    "BytesIn": ("To backend", (
        "bytes sent to this backend: requests after the LB rewrote their heads (X-Forwarded-*, "
        "Connection); a retried request counts at each backend it went to")),
    "BytesOut": ("From backend", "bytes received from this backend"),
}
BYTES_NOTE = ("The listener counts bytes on the client side, each backend on its own side. In "
              "HTTP mode they differ: the LB rewrites request heads, answers some requests itself "
              "(502, 503 …), retries idempotent requests elsewhere, and a backend that left the "
              "pool takes its counts with it.")


def _label(labels: Mapping[str, tuple[str, str]], key: str) -> tuple[str, str]:
    return labels.get(key, (key, ""))


def _num(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int) and v >= 10000:
        for unit, size in (("G", 1_000_000_000), ("M", 1_000_000), ("k", 1000)):
            if v >= size:
                return f"{v / size:.1f}{unit}"
    return str(v)


def listener_block(d: Mapping[str, Any]) -> str:
    name = str(d.get("Name", ""))
    counters = d.get("Counters") or d.get("Stats") or {}
    facts = []
    for k in ("Address", "Bind", "Mode", "Service", "Tag", "Strategy"):
        v = d.get(k)
        if v not in (None, ""):
            facts.append(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>")
    if isinstance(counters, Mapping):
        for k, v in counters.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                label, tip = _label(_LISTENER_LABELS, str(k))
                title = f' title="{e(tip)}"' if tip else ""
                facts.append(f"<dt{title}>{e(label)}</dt><dd{title}>{e(_num(v))}</dd>")
    rows = []
    backends = d.get("Backends") or []
    cols = [c for c in _BACKEND_COLS if any(c in b for b in backends if isinstance(b, Mapping))]
    for b in backends:
        if not isinstance(b, Mapping):
            continue
        ejected, draining = bool(b.get("Ejected")), bool(b.get("Draining"))
        state = "ejected" if ejected else "draining" if draining else "in rotation"
        cls = "crit" if ejected else "off" if draining else "ok"
        addr = _addr(str(b.get("Address", "")), int(b.get("Port", 0) or 0))
        key = f'be:{b.get("Node", "")}/{b.get("ServiceID", "")}/{addr}'
        cells = "".join(f'<td data-label="{e(_label(_BACKEND_LABELS, c)[0])}" class="n">'
                        f'{e(_num(b.get(c, "")))}</td>' for c in cols)
        rows.append(
            f'<tr data-key="{e(key)}" data-state="{e(state)}">'
            f'<td data-label="Backend"><b>{e(addr)}</b><br><span class="muted small">'
            f'{e(b.get("Node", ""))} {e(b.get("ServiceID", ""))}</span></td>'
            f'<td data-label="State"><span class="badge {cls}">{e(state)}</span></td>'
            f"{cells}</tr>"
        )
    head = "".join(
        f'<th scope="col" class="n"{tip_attr}>{e(label)}</th>'
        for label, tip_attr in (
            (lbl, f' title="{e(tip)}"' if tip else "")
            for lbl, tip in (_label(_BACKEND_LABELS, c) for c in cols)))
    note = (f'<p class="muted small" data-key="bytes-note">{e(BYTES_NOTE)}</p>'
            if rows and d.get("Mode") == "http" else "")
    # Every child is keyed, down to the backend rows, so that a counter change repaints (and
    # flashes) only the facts list and the rows that changed, not the whole card.
    table = (
        '<table class="backends" data-key="backends"><thead data-key="head"><tr>'
        f'<th scope="col">Backend</th><th scope="col">State</th>{head}</tr></thead>'
        f'<tbody data-key="rows">{"".join(rows)}</tbody></table>'
        if rows else '<p class="muted" data-key="backends">No healthy backends right now.</p>'
    )
    return (f'<li class="card" data-key="lst:{e(name)}"><div class="row" data-key="title">'
            f'<span class="name">{e(name)}</span></div>'
            f'<dl class="facts" data-key="facts">{"".join(facts)}</dl>{table}{note}</li>')


def lb_page(st: UIState) -> Page:
    body = _notice(st.missing, "lb", "The load balancer")
    if st.listeners:
        items = "".join(listener_block(d) for d in st.listeners)
        body += f'<ul class="cards" id="listeners" data-key="listeners">{items}</ul>'
    elif "lb" not in st.missing:
        body += ('<p class="empty" data-key="listeners">No listeners. Add one with '
                 "<code>PUT /v1/lb/listener</code> or the <code>lb.listeners</code> setting.</p>")
    return Page(200, "Load balancer", "lb", body, (), poll=2.0)


@dataclass(frozen=True, slots=True)
class KVView:
    """What the KV page shows: a folder (its keys one level down) or one key."""

    path: str
    folders: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    value: bytes | None = None   # one key: its value
    flags: int = 0
    create_index: int = 0
    modify_index: int = 0
    found: bool = True


def _kv_href(key: str) -> str:
    return "/ui/kv/" + quote(key, safe="/")


def _crumbs(path: str) -> str:
    out = ['<a href="/ui/kv/">(root)</a>']
    acc = ""
    for part in [p for p in path.split("/") if p]:
        acc += part + "/"
        out.append(f'<a href="{e(_kv_href(acc))}">{e(part)}</a>')
    return '<p class="crumbs">' + " / ".join(out) + "</p>"


def kv_page(st: UIState, view: KVView) -> Page:
    """The KV store, one folder or one key at a time (read-only: writes go through the API)."""
    body = f"<h1>Key/value</h1>{_crumbs(view.path)}"
    watch = "/v1/kv/" + quote(view.path, safe="/") + ("?keys&separator=/"
                                                       if view.value is None else "")
    if not view.found:
        body += (f'<p class="empty" data-key="kv">No key or folder {e(view.path or "(root)")}. '
                 "Write one with <code>rumor kv put</code> or <code>PUT /v1/kv/:key</code>.</p>")
        return Page(404 if view.path else 200, "Key/value", "kv", body, (watch,))
    if view.value is not None:
        try:
            text = view.value.decode()
            shown = f"<pre>{e(text)}</pre>"
        except UnicodeDecodeError:
            shown = (f'<p class="notice">{len(view.value)} bytes of binary data '
                     "(read it with <code>?raw</code>).</p>")
        body += (f'<section data-key="kv"><h2>{e(view.path)}</h2>'
                 f"<dl><dt>Flags</dt><dd>{view.flags}</dd>"
                 f"<dt>CreateIndex</dt><dd>{view.create_index}</dd>"
                 f"<dt>ModifyIndex</dt><dd>{view.modify_index}</dd>"
                 f"<dt>Size</dt><dd>{len(view.value)} bytes</dd></dl>{shown}</section>")
        return Page(200, f"{view.path} · Key/value", "kv", body, (watch,))
    items = "".join(f'<li class="folder"><a href="{e(_kv_href(k))}">{e(k[len(view.path):])}</a></li>'
                    for k in view.folders)
    items += "".join(f'<li><a href="{e(_kv_href(k))}">{e(k[len(view.path):])}</a></li>'
                     for k in view.keys)
    body += f'<ul class="kv" id="kv" data-key="kv">{items}</ul>'
    return Page(200, "Key/value", "kv", body, (watch,))


def token_page(reason: str, next_path: str) -> Page:
    body = (
        '<section class="login" data-key="login"><h1>ACL token needed</h1>'
        f'<p class="notice">{e(reason)}. This agent enforces ACLs; enter a token with read '
        "rights. It is kept in a cookie of this browser and sent with the UI's requests.</p>"
        '<form method="post" action="/ui/token">'
        f'<input type="hidden" name="next" value="{e(next_path)}">'
        '<label for="token">Token</label> '
        '<input id="token" name="token" type="password" autocomplete="current-password" required>'
        ' <button type="submit">Use token</button></form></section>'
    )
    return Page(403, "ACL token needed", "", body, (), static=True)


# --- the document around a page -----------------------------------------------------------------


_UI_HREF = re.compile(r'href="(/ui/(?!lb\b|static/)[^"]*)"')


def with_dc(url: str, dc: str, *, in_html: bool = False) -> str:
    """``url`` asking for datacenter ``dc`` (``in_html``: already escaped for an attribute)."""
    sep = ("&amp;" if in_html else "&") if "?" in url else "?"
    return f"{url}{sep}dc={seg(dc)}"


def _links_in(body: str, dc: str) -> str:
    """Every link to a page of the UI in ``body`` keeps showing datacenter ``dc`` (the LB page
    is this agent's own and is left as it is)."""
    return _UI_HREF.sub(lambda m: f'href="{with_dc(m.group(1), dc, in_html=True)}"', body)


def dc_selector(st: UIState, path: str) -> str:
    """A form that reloads this page for another datacenter (plain GET, works without script;
    rumor.js submits it on change)."""
    if len(st.datacenters) <= 1 and not st.remote:
        return (f'<span class="where" id="dc" data-dc="{e(st.datacenter)}">'
                f"{e(st.datacenter)}</span>")
    options = "".join(
        f'<option value="{e(dc)}"{" selected" if dc == st.datacenter else ""}>'
        f'{e(dc)}{" (this agent)" if dc == st.agent_datacenter else ""}</option>'
        for dc in (st.datacenters if st.datacenter in st.datacenters
                   else (*st.datacenters, st.datacenter)))
    return (f'<form class="dcs" id="dc-form" method="get" action="{e(path)}" '
            f'data-dc="{e(st.datacenter)}"><label for="dc">Datacenter</label> '
            f'<select id="dc" name="dc">{options}</select> '
            '<button type="submit">Show</button></form>')


def document(st: UIState, page: Page, path: str = "/ui/") -> str:
    current = ' aria-current="page"'
    nav = "".join(
        f'<a href="{href}"{current if key == page.section else ""}>{label}</a>'
        for key, href, label in NAV
    )
    watch = " ".join(page.watch)
    body = page.body
    where = f'<span class="where">{e(st.datacenter)} · {e(st.node_name)}</span>'
    if st.remote:
        nav = _links_in(nav, st.datacenter)
        body = _links_in(body, st.datacenter)
        watch = " ".join(with_dc(u, st.datacenter) for u in page.watch)
        body = (f'<p class="notice remote" data-key="remote-dc">Datacenter '
                f'<b>{e(st.datacenter)}</b>, read through this agent ({e(st.node_name)} in '
                f'{e(st.agent_datacenter)}) across the WAN.</p>' + body)
        where = (f'<span class="where">datacenter {e(st.datacenter)} · via '
                 f'{e(st.node_name)} ({e(st.agent_datacenter)})</span>')
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(page.title)} · Rumor</title>"
        '<link rel="stylesheet" href="/ui/static/rumor.css">'
        '<link rel="icon" href="/ui/static/favicon.svg" type="image/svg+xml">'
        "</head>"
        f'<body data-section="{e(page.section)}" data-watch="{e(watch)}" '
        f'data-poll="{page.poll:g}" data-index="{st.index}"'
        f'{" data-static" if page.static else ""}>'
        '<header class="top"><a class="brand" href="/ui/">Rumor</a>'
        f"{where}{dc_selector(st, path)}"
        f'<span id="live" class="live" aria-live="polite" data-state="static">static</span>'
        f"<nav>{nav}</nav></header>"
        f'<main id="main" data-dc="{e(st.datacenter)}">{body}</main>'
        f'<footer>Rumor {e(st.version)} · catalog index <span id="index">{st.index}</span>'
        "</footer>"
        '<script src="/ui/static/rumor.js" defer></script>'
        "</body></html>\n"
    )

"""The web UI's server-side rendering: fed by the real catalog, escaped, complete without script."""

from __future__ import annotations

import json
from dataclasses import replace
from html.parser import HTMLParser
from types import SimpleNamespace
from typing import Any

import pytest

from gossip.events import Member
from registry import web
from registry.api.keys import CONFIG, GOSSIP, LB, PORTS, REGISTRY
from registry.catalog import Catalog, CheckRecord, NodeInfo, ServiceRecord
from registry.config import build
from registry.ui import render
from registry.ui.model import collect
from tests.harness.webapp import AppClient

EVIL = '<script>alert("x")</script>&"\''


class Tree(HTMLParser):
    """Collects tags with attributes and all text, and fails on any <script> without src."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.inline_scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = dict(attrs)
        self.tags.append((tag, d))
        if tag == "script" and not d.get("src"):
            self.inline_scripts += 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def with_attr(self, name: str, value: str) -> list[dict[str, str | None]]:
        return [a for _, a in self.tags if a.get(name) == value]


def parse(html: str) -> Tree:
    t = Tree()
    t.feed(html)
    t.close()
    return t


def make_catalog() -> Catalog:
    cat = Catalog(datacenter="dc1", local_node="n1")
    with cat.batch():
        cat.put_node(NodeInfo(name="n1", address="10.0.0.1", meta={"rack": "r1"}), "alive")
        cat.put_node(NodeInfo(name="n2", address="10.0.0.2"), "alive")
        cat.put_service("n1", ServiceRecord(id="web1", service="web", tags=("v1", "blue"),
                                            port=8080))
        cat.put_service("n2", ServiceRecord(id="web2", service="web", tags=("v1",), port=8080))
        cat.put_service("n2", ServiceRecord(id="db", service="db", port=5432))
        cat.put_check("n1", CheckRecord(check_id="service:web1", name="web ttl", status="passing",
                                        output="ok", service_id="web1", service_name="web",
                                        type="ttl"))
        cat.put_check("n2", CheckRecord(check_id="service:web2", name="web http",
                                        status="critical", output="connection refused",
                                        service_id="web2", service_name="web", type="http"))
        cat.put_check("n2", CheckRecord(check_id="service:db", name="db tcp", status="warning",
                                        output="slow", service_id="db", service_name="db"))
    return cat


def make_agent(cat: Any = None, *, members: list[Member] | None = None,
               listeners: list[dict[str, Any]] | None = None, **cfg: Any) -> Any:
    config = build({"dev": True, "node_name": "n1", **cfg})
    gossip = SimpleNamespace(members=lambda: list(members)) if members is not None else None
    lb = SimpleNamespace(listeners=lambda: list(listeners)) if listeners is not None else None
    return SimpleNamespace(config=config, registry=SimpleNamespace(catalog=cat) if cat else None,
                           gossip=gossip, lb=lb, gossip_address="127.0.0.1", gossip_port=7946)


def page_html(agent: Any, build_page: Any, *args: Any) -> str:
    st = collect(agent)
    return render.document(st, build_page(st, *args))


def test_services_page_lists_services_with_worst_health() -> None:
    html = page_html(make_agent(make_catalog()), render.services_page)
    t = parse(html)
    web_card = t.with_attr("data-key", "svc:web")[0]
    db_card = t.with_attr("data-key", "svc:db")[0]
    assert web_card["data-health"] == "critical" and "h-critical" in (web_card["class"] or "")
    assert db_card["data-health"] == "warning"
    text = "".join(t.text)
    assert "1 passing" in text and "1 critical" in text and "1 warning" in text
    # the page says which JSON endpoints keep it live, and carries no inline script
    body = next(a for tag, a in t.tags if tag == "body")
    assert body["data-watch"] == "/v1/catalog/services /v1/health/state/any"
    assert t.inline_scripts == 0


def test_service_page_shows_instances_checks_and_output() -> None:
    html = page_html(make_agent(make_catalog()), render.service_page, "web")
    t = parse(html)
    inst = t.with_attr("data-key", "inst:n2/web2")[0]
    assert inst["data-health"] == "critical"
    assert t.with_attr("data-key", "inst:n1/web1")[0]["data-health"] == "passing"
    assert "connection refused" in "".join(t.text)
    # critical instances come first
    assert html.index("inst:n2/web2") < html.index("inst:n1/web1")


def test_unknown_service_is_404_but_still_watched() -> None:
    st = collect(make_agent(make_catalog()))
    page = render.service_page(st, "nope")
    assert page.status == 404 and page.watch == ("/v1/health/service/nope",)


def test_everything_from_outside_is_escaped() -> None:
    cat = Catalog(datacenter="dc1", local_node="n1")
    with cat.batch():
        cat.put_node(NodeInfo(name="n1", address="10.0.0.1", meta={EVIL: EVIL}), "alive")
        cat.put_service("n1", ServiceRecord(id=EVIL, service="evil", tags=(EVIL,),
                                            meta={"k": EVIL}, port=1))
        cat.put_check("n1", CheckRecord(check_id="c" + EVIL, name=EVIL, status="critical",
                                        output=EVIL, notes=EVIL, service_id=EVIL,
                                        service_name="evil"))
    members = [Member(name="n1", addr="10.0.0.1", port=7946, tags={EVIL: EVIL})]
    listeners = [{"Name": EVIL, "Bind": EVIL, "Counters": {EVIL: 1},
                  "Backends": [{"Node": EVIL, "ServiceID": EVIL, "Address": EVIL, "Port": 1,
                                "Active": 0}]}]
    agent = make_agent(cat, members=members, listeners=listeners)
    pages = [(render.services_page,), (render.service_page, "evil"), (render.nodes_page,),
             (render.node_page, "n1"), (render.checks_page, "any"), (render.lb_page,)]
    for p in pages:
        html = page_html(agent, *p)
        assert "<script>alert" not in html, p[0].__name__
        t = parse(html)
        assert t.inline_scripts == 0, p[0].__name__
        assert EVIL in "".join(t.text) or any(EVIL in str(a.values()) for _, a in t.tags)
    # a path segment made of user input is percent-encoded in links
    html = page_html(make_agent(cat), render.services_page)
    assert 'href="/ui/services/evil"' in html
    assert render.seg("a/b c") == "a%2Fb%20c"


def test_maintenance_is_visible() -> None:
    cat = make_catalog()
    with cat.batch():
        cat.put_check("n1", CheckRecord(check_id="_service_maintenance:web1",
                                        name="Service Maintenance Mode", status="critical",
                                        notes="deploying", service_id="web1",
                                        service_name="web"))
        cat.put_check("n2", CheckRecord(check_id="_node_maintenance", name="Node Maintenance Mode",
                                        status="critical", notes="kernel upgrade"))
    agent = make_agent(cat, members=[Member(name="n1", addr="10.0.0.1", port=7946),
                                     Member(name="n2", addr="10.0.0.2", port=7946)])
    t = parse(page_html(agent, render.service_page, "web"))
    inst = t.with_attr("data-key", "inst:n1/web1")[0]
    assert "data-maintenance" in inst and inst["data-health"] == "critical"
    assert "maintenance" in "".join(t.text) and "deploying" in "".join(t.text)
    t = parse(page_html(agent, render.nodes_page))
    assert "maintenance" in "".join(t.text)
    t = parse(page_html(agent, render.services_page))
    assert "in maintenance" in "".join(t.text)


def test_nodes_page_merges_gossip_status_and_tags() -> None:
    members = [Member(name="n1", addr="10.0.0.1", port=7946, tags={"role": "web"}),
               Member(name="n2", addr="10.0.0.2", port=7946, status="failed"),
               Member(name="n3", addr="10.0.0.3", port=7946, status="suspect")]
    t = parse(page_html(make_agent(make_catalog(), members=members), render.nodes_page))
    assert t.with_attr("data-key", "node:n2")[0]["data-status"] == "failed"
    assert t.with_attr("data-key", "node:n3")[0]["data-status"] == "suspect"
    assert t.with_attr("data-key", "node:n1")[0]["data-status"] == "alive"
    assert "role" in "".join(t.text) and "10.0.0.3:7946" in "".join(t.text)


def test_checks_page_filters_by_state() -> None:
    agent = make_agent(make_catalog())
    t = parse(page_html(agent, render.checks_page, "critical"))
    healths = {a["data-health"] for a in (x for _, x in t.tags) if a.get("data-health")}
    assert healths == {"critical"}
    t = parse(page_html(agent, render.checks_page, "bogus"))   # unknown filter: everything
    assert {"passing", "warning", "critical"} <= {
        a["data-health"] for _, a in t.tags if a.get("data-health")}


def test_lb_page_shows_per_backend_counters() -> None:
    listeners = [{
        "Name": "web", "Bind": "127.0.0.1:9000", "Address": "127.0.0.1:9000", "Mode": "http",
        "Service": "web", "Strategy": "round_robin",
        "Counters": {"Connections": 7, "Requests": 12, "Active": 1, "ErrorReasons": {}},
        "Backends": [
            {"Node": "n1", "ServiceID": "web1", "Address": "10.0.0.1", "Port": 8080,
             "Active": 0, "Connections": 3, "Requests": 6, "BytesIn": 120, "BytesOut": 12345,
             "Errors": 0, "Ejections": 0, "Ejected": False, "Draining": False},
            {"Node": "n2", "ServiceID": "web2", "Address": "10.0.0.2", "Port": 8080,
             "Active": 0, "Connections": 4, "Requests": 6, "BytesIn": 0, "BytesOut": 0,
             "Errors": 3, "Ejections": 1, "Ejected": True, "Draining": False},
        ],
    }]
    st = collect(make_agent(make_catalog(), listeners=listeners))
    page = render.lb_page(st)
    assert page.poll > 0 and page.watch == ()
    t = parse(render.document(st, page))
    rows = [a for tag, a in t.tags if tag == "tr" and a.get("data-key")]
    assert [r["data-state"] for r in rows] == ["in rotation", "ejected"]
    text = "".join(t.text)
    assert "12.3k" in text and "10.0.0.2:8080" in text and "round_robin" in text


def test_missing_subsystems_render_notices_not_errors() -> None:
    agent = make_agent(None)
    for build_page in (render.services_page, render.nodes_page, render.lb_page,
                       render.checks_page):
        html = page_html(agent, build_page) if build_page is not render.checks_page else \
            page_html(agent, build_page, "any")
        assert "not running on this agent" in html
    st = collect(agent)
    assert set(st.missing) == {"registry", "gossip", "lb"}
    assert [n.name for n in st.nodes] == ["n1"]      # the agent itself is still shown


def test_a_subsystem_that_fails_while_read_does_not_break_the_page() -> None:
    def boom() -> list[Member]:
        raise RuntimeError("gossip is having a bad day")

    agent = make_agent(make_catalog())
    agent.gossip = SimpleNamespace(members=boom)
    st = collect(agent)
    assert "gossip" in st.missing and st.service("web") is not None


# --- the routes, over a real HTTP server -----------------------------------------------------


async def _client(agent: Any) -> AppClient:
    from registry.acl import ACL, ACLConfig
    from registry.api import ui_routes
    from registry.api.base import error_middleware

    app = web.Application(middlewares=[error_middleware])
    reg = agent.registry
    if not hasattr(reg, "acl"):
        reg.acl = ACL(ACLConfig.from_dict({}))
    reg.info = SimpleNamespace(address=agent.gossip_address)
    app[CONFIG] = agent.config
    app[REGISTRY] = reg
    app[GOSSIP] = agent.gossip
    app[LB] = agent.lb
    app[PORTS] = SimpleNamespace(http_port=0, https_port=0, dns_port=0,
                                 gossip_port=agent.gossip_port)
    app.router.add_routes(ui_routes.routes)
    return await AppClient(app).start()


async def test_routes_serve_pages_static_files_and_redirects() -> None:
    client = await _client(make_agent(make_catalog()))
    try:
        r = await client.get("/", allow_redirects=False)
        assert r.status == 302 and r.headers["Location"] == "/ui/"
        r = await client.get("/ui", allow_redirects=False)
        assert r.status == 301 and r.headers["Location"] == "/ui/"
        r = await client.get("/ui/kv", allow_redirects=False)
        assert r.status == 302 and r.headers["Location"] == "/ui/kv/"
        r = await client.get("/ui/")
        assert r.status == 200 and r.content_type == "text/html"
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        assert 'data-key="svc:web"' in await r.text()
        r = await client.get("/ui/services/web")
        assert r.status == 200
        r = await client.get("/ui/services/nope")
        assert r.status == 404 and "No service of this name" in await r.text()
        for path in ("/ui/nodes", "/ui/nodes/n2", "/ui/checks?state=warning", "/ui/lb"):
            r = await client.get(path)
            assert r.status == 200, path
        r = await client.get("/ui/static/rumor.js")
        assert r.status == 200 and r.content_type == "text/javascript"
        etag = r.headers["ETag"]
        r = await client.get("/ui/static/rumor.js", headers={"If-None-Match": etag})
        assert r.status == 304
        r = await client.get("/ui/static/rumor.css")
        assert r.status == 200 and r.content_type == "text/css"
        for bad in ("/ui/static/nope.js", "/ui/static/..%2Fmodel.py", "/ui/static/__init__.py"):
            r = await client.get(bad)
            assert r.status == 404, bad
    finally:
        await client.close()


async def test_ui_can_be_turned_off() -> None:
    client = await _client(make_agent(make_catalog(), enable_ui=False))
    try:
        for path in ("/", "/ui", "/ui/kv", "/ui/", "/ui/nodes", "/ui/static/rumor.css"):
            r = await client.get(path, allow_redirects=False)
            assert r.status == 404, path
    finally:
        await client.close()


@pytest.mark.parametrize("name", ["rumor.js", "rumor.css", "favicon.svg"])
def test_static_files_ship_in_the_package(name: str) -> None:
    from registry.api.ui_routes import static_files

    body, _, _ = static_files()[name]
    body = body.replace(b'xmlns="http://www.w3.org/2000/svg"', b"")  # a namespace, not a fetch
    assert body and b"http://" not in body and b"https://" not in body  # no CDN, nothing remote


async def test_with_acls_pages_need_a_read_token_and_the_form_sets_a_cookie() -> None:
    from registry.acl import ACL, ACLConfig

    agent = make_agent(make_catalog())
    agent.registry.acl = ACL(ACLConfig.from_dict({
        "enabled": True, "default_policy": "deny",
        "tokens": {"tok-read": "read", "tok;write=": "write"}}))
    client = await _client(agent)
    try:
        r = await client.get("/ui/services/web")
        text = await r.text()
        assert r.status == 403 and "ACL token needed" in text
        assert "web1" not in text and 'data-key="svc:web"' not in text   # nothing leaks
        assert 'value="/ui/services/web"' in text
        r = await client.get("/ui/", headers={"X-Consul-Token": "wrong"})
        assert r.status == 403 and "ACL not found" in await r.text()
        r = await client.get("/ui/", headers={"X-Consul-Token": "tok-read"})
        assert r.status == 200 and 'data-key="svc:web"' in await r.text()
        # static files stay open so that the token page is styled
        assert (await client.get("/ui/static/rumor.css")).status == 200
        # the form: a cross-site post is refused, a same-site one sets the cookie
        r = await client.post("/ui/token", data={"token": "tok;write=", "next": "/ui/nodes"},
                              headers={"Origin": "http://evil.example"}, allow_redirects=False)
        assert r.status == 403
        r = await client.post("/ui/token", data={"token": "tok;write=",
                                                 "next": "https://evil.example/ui/"},
                              allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/ui/"   # no open redirect
        assert "SameSite=Strict" in r.headers["Set-Cookie"]
        r = await client.get("/ui/nodes")
        assert r.status == 200 and 'data-key="node:n1"' in await r.text()
        r = await client.post("/ui/token", data={"token": ""}, allow_redirects=False)
        assert r.status == 303
        assert (await client.get("/ui/nodes")).status == 403       # forgotten
    finally:
        await client.close()


def test_long_check_output_is_folded_text_never_markup() -> None:
    body = "<!DOCTYPE html><html><body><marquee>Directory listing</marquee>" + \
        "<blink>x</blink>" * 300 + "</body></html>"
    cat = Catalog(datacenter="dc1", local_node="n1")
    with cat.batch():
        cat.put_node(NodeInfo(name="n1", address="10.0.0.1"), "alive")
        cat.put_service("n1", ServiceRecord(id="web1", service="web", port=8080))
        cat.put_check("n1", CheckRecord(
            check_id="service:web1", name="web http", status="passing", service_id="web1",
            service_name="web", output=f"HTTP GET http://127.0.0.1:8080/: 200 OK Output: {body}"))
        cat.put_check("n1", CheckRecord(check_id="short", name="short", status="passing",
                                        output="TTL ok <b>", service_id="web1",
                                        service_name="web"))
    html = page_html(make_agent(cat), render.service_page, "web")
    t = parse(html)
    # the body's tags are text: no <h1>/<li> elements came from it
    assert not [tag for tag, _ in t.tags if tag in ("marquee", "blink")]
    text = "".join(t.text)
    assert "<marquee>Directory listing</marquee>" in text
    folded = t.with_attr("data-key", "out:n1/service:web1")
    assert len(folded) == 1
    assert "HTTP GET http://127.0.0.1:8080/: 200 OK (response body: " in text
    assert f"{len(body)} characters of HTML, shown as text)" in text
    # a short output is shown as it is, escaped
    assert "TTL ok <b>" in text and html.count("<details") == 1


def test_lb_byte_counters_say_which_side_of_the_proxy_they_count() -> None:
    listeners = [{
        "Name": "web", "Bind": "127.0.0.1:9000", "Address": "127.0.0.1:9000", "Mode": "http",
        "Service": "web",
        "Counters": {"Requests": 1, "BytesIn": 79, "BytesOut": 1248},
        "Backends": [{"Node": "n1", "ServiceID": "web1", "Address": "10.0.0.1", "Port": 8080,
                      "Requests": 1, "BytesIn": 227, "BytesOut": 1248}],
    }]
    st = collect(make_agent(make_catalog(), listeners=listeners))
    t = parse(render.document(st, render.lb_page(st)))
    titles = {a.get("title") for _, a in t.tags if a.get("title")}
    text = "".join(t.text)
    # listener: the client side; backends: their own side, each with a tooltip saying so
    assert "Bytes from clients" in text and "Bytes to clients" in text
    assert "To backend" in text and "From backend" in text
    assert any(x and "before the LB rewrites request heads" in x for x in titles)
    assert any(x and "after the LB rewrote their heads" in x for x in titles)
    # and the card explains why the two disagree in HTTP mode
    assert t.with_attr("data-key", "bytes-note") and "In HTTP mode they differ" in text
    tcp = [dict(listeners[0], Mode="tcp")]
    st = collect(make_agent(make_catalog(), listeners=tcp))
    assert not parse(render.document(st, render.lb_page(st))).with_attr("data-key", "bytes-note")


async def test_with_acls_the_pages_show_only_what_the_token_may_read() -> None:
    from registry.acl import ACL, ACLConfig

    agent = make_agent(make_catalog())
    agent.registry.acl = ACL(ACLConfig.from_dict({
        "enabled": True, "default_policy": "deny",
        "policies": [{"name": "web-n1", "rules": 'service "web" { policy = "read" }\n'
                                                  'node "n1" { policy = "read" }'}],
        "token_list": [{"secret_id": "tok-web", "policies": ["web-n1"]}]}))
    client = await _client(agent)
    try:
        r = await client.get("/ui/", headers={"X-Consul-Token": "tok-web"})
        text = await r.text()
        assert r.status == 200 and 'data-key="svc:web"' in text
        assert 'data-key="svc:db"' not in text               # no service:read on db
        r = await client.get("/ui/services/web", headers={"X-Consul-Token": "tok-web"})
        text = await r.text()
        assert "web1" in text and "web2" not in text         # web2 is on n2: no node:read
        r = await client.get("/ui/checks", headers={"X-Consul-Token": "tok-web"})
        text = await r.text()
        assert "web ttl" in text and "db tcp" not in text and "web http" not in text
    finally:
        await client.close()


def test_nodes_page_lists_wan_members_by_datacenter() -> None:
    agent = make_agent(make_catalog())
    agent.wan = SimpleNamespace(members=lambda: [
        Member(name="b1.dc2", addr="10.0.0.9", port=8302, tags={"dc": "dc2"}, status="failed"),
        Member(name="n1.dc1", addr="10.0.0.1", port=8302, tags={"dc": "dc1"})])
    t = parse(page_html(agent, render.nodes_page))
    cards = t.with_attr("data-key", "wan:b1.dc2")
    assert cards and cards[0]["data-status"] == "failed"
    assert "WAN members" in "".join(t.text) and "10.0.0.9:8302 · dc2" in "".join(t.text)
    html = page_html(make_agent(make_catalog()), render.nodes_page)   # not a WAN member
    assert "WAN members" not in html


def _remote_html(page: Any, *args: Any, path: str = "/ui/") -> tuple[str, Any]:
    """dc1's agent showing dc2: dc2's documents as its agents serve them (/v1/catalog/nodes,
    /v1/health/state/any, /v1/health/service/<name>, made from a real catalog)."""
    from registry.api.shapes import check_json, health_entry_json, node_json
    from registry.ui.model import RemoteCatalog, remote_state

    dc2 = make_catalog()
    nodes = [node_json(n) for n in dc2.nodes()] + [{"Address": "no name"}]
    checks = [check_json(c) for c in dc2.all_checks()] + ["junk", {"Node": "x"}]
    entries = {name: [health_entry_json(i) for i in dc2.entries(name)] + [{"Node": 5}]
               for name in dc2.services()}
    local = replace(collect(make_agent(Catalog(datacenter="dc1", local_node="n1"))),
                    datacenters=("dc1", "dc2"))
    st = remote_state(local, RemoteCatalog("dc2", *json.loads(json.dumps([nodes, checks])),
                                           json.loads(json.dumps(entries)), 42))
    return render.document(st, page(st, *args), path), st


def test_another_datacenter_is_shown_and_named() -> None:
    html, st = _remote_html(render.services_page)
    assert st.datacenter == "dc2" and st.agent_datacenter == "dc1" and st.remote
    t = parse(html)
    assert t.with_attr("data-key", "svc:web")[0]["data-health"] == "critical"
    assert t.with_attr("data-key", "svc:db")[0]["data-health"] == "warning"
    main = next(a for tag, a in t.tags if tag == "main")
    assert main["data-dc"] == "dc2"
    assert "Datacenter dc2, read through this agent (n1 in dc1)" in "".join(t.text)
    # the selector lists both datacenters, dc2 chosen; every UI link and watch stays in dc2
    opts = [a for tag, a in t.tags if tag == "option"]
    assert [o["value"] for o in opts] == ["dc1", "dc2"]
    assert "selected" in opts[1] and "selected" not in opts[0]
    assert t.with_attr("href", "/ui/services/web?dc=dc2")
    assert t.with_attr("href", "/ui/nodes?dc=dc2") and t.with_attr("href", "/ui/lb")
    body = next(a for tag, a in t.tags if tag == "body")
    assert body["data-watch"] == "/v1/catalog/services?dc=dc2 /v1/health/state/any?dc=dc2"


def test_another_datacenters_service_nodes_and_checks() -> None:
    html, _ = _remote_html(render.service_page, "web")
    t = parse(html)
    assert t.with_attr("data-key", "inst:n2/web2")[0]["data-health"] == "critical"
    assert "connection refused" in "".join(t.text)
    assert t.with_attr("href", "/ui/nodes/n2?dc=dc2")
    html, _ = _remote_html(render.nodes_page, path="/ui/nodes")
    t = parse(html)
    assert t.with_attr("data-key", "node:n1") and t.with_attr("data-key", "node:n2")
    assert "10.0.0.2 · dc2" in "".join(t.text)
    html, _ = _remote_html(render.checks_page, "critical", path="/ui/checks")
    t = parse(html)
    assert [a["data-key"] for a in t.with_attr("data-health", "critical")] == [
        "chk:n2/service:web2"]
    assert t.with_attr("href", "/ui/checks?state=warning&dc=dc2")


def test_one_datacenter_has_no_selector() -> None:
    t = parse(page_html(make_agent(make_catalog()), render.services_page))
    assert not [a for tag, a in t.tags if tag == "select"]
    assert t.with_attr("id", "dc")[0]["data-dc"] == "dc1"


def test_kv_page_folders_keys_and_values_escaped() -> None:
    agent = make_agent(make_catalog())
    html = page_html(agent, render.kv_page, render.KVView(
        path="app/", folders=("app/db/",), keys=("app/" + EVIL,)))
    t = parse(html)
    assert t.inline_scripts == 0 and EVIL in "".join(t.text)
    hrefs = [a.get("href") for _, a in t.tags if _ == "a"]
    assert "/ui/kv/app/db/" in hrefs and "/ui/kv/app/" in hrefs
    assert t.with_attr("data-watch", "/v1/kv/app/?keys&separator=/")
    html = page_html(agent, render.kv_page, render.KVView(
        path="app/cfg", value=b'{"debug": ' + EVIL.encode() + b"}", flags=7, modify_index=9))
    t = parse(html)
    assert t.inline_scripts == 0 and '{"debug": ' + EVIL + "}" in "".join(t.text)
    assert "9" in "".join(t.text)
    html = page_html(agent, render.kv_page, render.KVView(path="bin", value=b"\xff\xfe"))
    assert "2 bytes of binary data" in html
    page = render.kv_page(collect(agent), render.KVView(path="nope", found=False))
    assert page.status == 404

"""Property-based test of the whole HTTP API against a real agent process.

Every route comes from the app's router (each ``routes`` table of registry/api, mounted by
``make_app``), so a new route is covered without touching this file. Hypothesis sends:

- to every write route (PUT, POST, DELETE): random JSON shapes built from the field names the
  API knows, very deep nesting, truncated JSON, raw bytes and form bodies, with random query
  strings and random path variables;
- to every read route (GET): random query strings built from the parameter names the API reads,
  random path variables, and raw, badly escaped paths;
- any method to random paths under the API's prefixes.

It passes when no answer is a 5xx (a 4xx must carry a plain-text reason, as Consul's do), the
agent keeps running, and its memory (VmRSS in /proc/PID/status) stays within a fixed bound of
what it used after warming up.

What is held back, and why (traffic must stay on loopback, and the agent must stay up):
- ``PUT /v1/agent/leave`` stops the agent by design (test_registry_cli covers it);
- ``PUT /v1/agent/join/{addr}`` only gets loopback addresses or strings that cannot be a host
  name, and a well-formed address that nobody answers on is Consul's 500 (documented);
- ``?dc=`` naming another datacenter is Consul's 500 "No path to datacenter" (this agent has no
  WAN member, so it reaches none);
- body keys that make the agent open connections or bind ports (HTTP, TCP, GRPC, UDP, H2PING,
  Bind, ...) are never generated; test_registry_api fuzzes check definitions on their own;
- a blocking read (``?index=N`` with a valid N) may wait its ``wait`` out: a client timeout is
  accepted for it, not for anything else.
"""

from __future__ import annotations

import base64
import collections
import http.client
import importlib
import json
import os
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from registry import web
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from yarl import URL

from registry.api import ROUTE_MODULES
from tests.harness.agents import AgentProcess

API_DIR = Path(__file__).resolve().parents[2] / "registry" / "api"
REGISTRY_DIR = API_DIR.parent

TIMEOUT = 10.0
"""Seconds a client waits for an answer; only a blocking read may use them up."""
RSS_GROWTH_LIMIT_KB = 48 * 1024
"""How much the agent's resident memory may grow over the whole run (hundreds of random
registrations, events and cached answers): far below what a leak per request would add."""

_SCALE = float(os.environ.get("RUMOR_FUZZ_SCALE", "1"))
EXAMPLES = {k: int(n * _SCALE) for k, n in {"write": 500, "read": 400, "paths": 200}.items()}
"""Fixed counts keep the run to well under a minute; RUMOR_FUZZ_SCALE=10 digs deeper by hand."""
SETTINGS = settings(deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])

EXCLUDED = {("PUT", "/v1/agent/leave"): "stops the agent; test_registry_cli covers it"}
MAY_500 = {("PUT", "/v1/agent/join/{addr}"):
           "a well-formed address nobody answers on is Consul's 500 ('Failed to join')"}

# Keys that would make the agent connect somewhere or bind a port.
NETWORK_KEYS = {"http", "tcp", "grpc", "udp", "h2ping", "bind", "args", "scriptargs", "script",
                "shell", "dockercontainerid", "osservice"}


def _canon(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


# -- what the router and the route code tell us ------------------------------------------------

@dataclass(frozen=True)
class Route:
    method: str
    template: str

    @property
    def variables(self) -> list[str]:
        return [m.group(1) for m in _VAR.finditer(self.template)]


_VAR = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


def routes() -> list[Route]:
    """Every (method, path template) the agent's app mounts, from the route tables."""
    out = []
    for name in ROUTE_MODULES:
        module = importlib.import_module(f"registry.api.{name}")
        for r in module.routes:
            assert isinstance(r, web.RouteDef), r
            methods = ["GET", "PUT", "POST", "DELETE"] if r.method == "*" else [r.method]
            out += [Route(m, r.path) for m in methods]
    return out


ROUTES = routes()
WRITES = [r for r in ROUTES if r.method in ("PUT", "POST", "DELETE", "PATCH")
          and (r.method, r.template) not in EXCLUDED]
READS = [r for r in ROUTES if r.method in ("GET", "HEAD")]
PREFIXES = sorted({r.template.split("{")[0] for r in ROUTES})


def _names_read_by_the_api() -> tuple[list[str], list[str]]:
    """Query parameter names and JSON field names that appear in the API's source."""
    params: set[str] = set()
    fields: set[str] = set()
    for p in [*API_DIR.glob("*.py"), REGISTRY_DIR / "definitions.py"]:
        src = p.read_text()
        params.update(re.findall(
            r'(?:query\.get(?:all)?\(|query\[|_param\(request,\s*|_flag\(request,\s*)"([^"]+)"',
            src))
        params.update(re.findall(r'"([a-z][a-z-]*)" in request\.query', src))
        fields.update(re.findall(r'"([A-Z][A-Za-z]+)"', src))
    fields = {f for f in fields if _canon(f) not in NETWORK_KEYS}
    return sorted(params), sorted(fields)


QUERY_NAMES, FIELD_NAMES = _names_read_by_the_api()


# -- strategies --------------------------------------------------------------------------------

SPECIAL_STRINGS = ["", "0", "-1", "10s", "-1s", "1ms", "5m", "passing", "warning", "critical",
                   "maintenance", "any", "true", "false", "web", "web1", "service:web1", "fuzz",
                   "dc1", "127.0.0.1", "::1", "10.0.0.1:80", "a" * 300, "\u0000", "\ud7ff",
                   "é\u202eö", "%s%n", "../../etc/passwd", '"', "\\"]
key_b64 = st.sampled_from([16, 24, 32]).flatmap(
    lambda n: st.binary(min_size=n, max_size=n)).map(lambda b: base64.b64encode(b).decode())
strings = st.sampled_from(SPECIAL_STRINGS) | st.text(max_size=40) | key_b64
scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | strings)
field_names = st.sampled_from(FIELD_NAMES) | st.text(max_size=12).filter(
    lambda k: _canon(k) not in NETWORK_KEYS)
json_values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(field_names, kids, max_size=7),
    max_leaves=40)


@st.composite
def deep_body(draw: st.DrawFn) -> bytes:
    depth = draw(st.sampled_from([63, 64, 65, 100, 1000, 5000, 100_000]) | st.integers(1, 3000))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"Name":', b"}"), (b'{"a":[', b"]}")]))
    closed = draw(st.booleans())
    return opener * depth + b"1" + (closer * depth if closed else b"")


@st.composite
def truncated_json(draw: st.DrawFn) -> bytes:
    raw = json.dumps(draw(json_values)).encode()
    return raw[:draw(st.integers(0, max(0, len(raw) - 1)))]


bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    json_values.map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
    st.dictionaries(field_names, json_values, max_size=8).map(lambda v: json.dumps(v).encode()),
    deep_body(),
    truncated_json(),
    st.binary(max_size=600),
    st.sampled_from([b"", b"NaN", b'{"Port": Infinity}', b'{"Port": 1e999}', b"\xef\xbb\xbf{}",
                     b"1" * 5000, b"\x00" * 10, b'{"a":1,"a":2}', b"[]", b"{}", b"null"]),
)
# Valid bodies of the write routes: mutating them (a field dropped, retyped or misspelt, a
# nested field changed) gets past the first check into the validation and the state below it.
SEEDS: dict[str, dict[str, Any]] = {
    "/v1/agent/service/register": {
        "Name": "svc", "ID": "svc1", "Port": 80, "Tags": ["a"], "Meta": {"k": "v"},
        "Address": "10.0.0.1", "Weights": {"Passing": 3, "Warning": 1},
        "TaggedAddresses": {"lan": {"Address": "10.0.0.1", "Port": 80}},
        "EnableTagOverride": False, "Check": {"TTL": "30s", "Status": "passing"},
        "Checks": [{"Name": "c2", "TTL": "10s", "DeregisterCriticalServiceAfter": "1m"}]},
    "/v1/agent/check/register": {
        "Name": "chk", "CheckID": "chk1", "TTL": "30s", "ServiceID": "web1", "Notes": "n",
        "Status": "warning", "SuccessBeforePassing": 1, "FailuresBeforeCritical": 2},
    "/v1/agent/check/update/{id}": {"Status": "passing", "Output": "ok"},
    "/v1/catalog/register": {
        "Node": "fuzz", "Address": "127.0.0.1", "NodeMeta": {"a": "b"},
        "Service": {"ID": "cs1", "Service": "cs", "Port": 1, "Tags": ["x"]},
        "Check": {"CheckID": "cc", "Name": "cc", "Status": "passing", "ServiceID": "cs1"}},
    "/v1/catalog/deregister": {"Node": "fuzz", "ServiceID": "cs1"},
    "/v1/lb/listener": {
        "Name": "l1", "Bind": "127.0.0.1:0", "Mode": "http", "Service": "web", "Tag": "a",
        "Strategy": "least_conn", "MaxConnections": 10, "ConnectTimeout": "1s",
        "Routes": [{"Host": "a.example", "PathPrefix": "/x", "Service": "web"}]},
    "/v1/operator/keyring": {"Key": base64.b64encode(bytes(range(32))).decode()},
}


def _respell(key: str, how: int) -> str:
    return [key, key.lower(), re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower(), key.upper()][how]


@st.composite
def mutated(draw: st.DrawFn, seed: Any) -> Any:
    """The seed with some fields dropped, retyped or respelt, nested values mutated, and a few
    fields added. Fields that make the agent connect or bind (NETWORK_KEYS) are kept as they
    are, so a mutated listener still binds 127.0.0.1:0 or nothing."""
    if isinstance(seed, list):
        return [draw(mutated(x)) for x in seed] + draw(st.lists(json_values, max_size=1))
    if not isinstance(seed, dict):
        return draw(st.just(seed) | json_values)
    out = dict(seed)
    mutable = sorted(k for k in seed if _canon(k) not in NETWORK_KEYS)
    picks = st.lists(st.sampled_from(mutable), max_size=3, unique=True) if mutable else st.just([])
    for key in draw(picks):
        value = out.pop(key)
        action = draw(st.sampled_from(["nested", "drop", "retype", "respell"]))
        if action == "nested":
            out[key] = draw(mutated(value))
        elif action == "retype":
            out[key] = draw(json_values)
        elif action == "respell":
            out[_respell(key, draw(st.integers(1, 3)))] = value
    out.update(draw(st.dictionaries(field_names, json_values, max_size=2)))
    return out


def bodies_for(route: Route) -> st.SearchStrategy[bytes]:
    seed = SEEDS.get(route.template)
    if seed is None:
        return bodies
    as_json = mutated(seed).map(lambda v: json.dumps(v).encode())
    return st.one_of(as_json, as_json, as_json, bodies)


header_values = (st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
                 | st.sampled_from(["", "Bearer ", "Bearer x", "Basic !!!", "Basic dXNlcg==",
                                    "null", "http://evil.example", "rumor_token=%ZZ", "*"]))
headers = st.dictionaries(
    st.sampled_from(["X-Consul-Token", "Authorization", "Origin", "Cookie", "If-None-Match",
                     "Accept", "Accept-Encoding", "X-Forwarded-For", "Referer"]),
    header_values, max_size=3)
content_types = st.sampled_from([None, "application/json", "text/plain",
                                 "application/x-www-form-urlencoded",
                                 "multipart/form-data; boundary=xyz", "multipart/form-data"])


def _quote(s: str) -> str:
    return urllib.parse.quote(s, safe="")


RAW_SEGMENTS = ["%", "%ZZ", "%00", "%ff", "..", ".", "%2e%2e", "%2F", "a%2Fb", "%u2215", "~",
                ";", "a;b=c", "@", ":", "[", "]"]
segments = (st.sampled_from(SPECIAL_STRINGS).map(_quote) | st.text(max_size=30).map(_quote)
            | st.sampled_from(RAW_SEGMENTS))
# join: a loopback address (a closed port answers "Failed to join", Consul's 500), or text that
# can never be a host name, so nothing is ever looked up or contacted off this machine.
join_addrs = (st.integers(0, 70000).map(lambda p: _quote(f"127.0.0.1:{p}"))
              | st.text(max_size=20).map(lambda s: _quote("!" + s))
              | st.sampled_from(["", "%ZZ", "[::1", "[::1]:0", "127.0.0.1:x", ":7946"]))


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    names = st.sampled_from(QUERY_NAMES) | st.text(max_size=10)
    values = (st.sampled_from(["", "0", "1", "-1", "5", "10ms", "1s", "99999999999999999999",
                               "true", "false", "abc", "Service.ID == \"web1\"",
                               "Checks.Status != passing", "web1 in Service.Tags",
                               "not (Meta.a matches \"[\")", "((((", "Meta[\"x\"] is empty",
                               "rack:r1", "ServiceName contains \"w\" or Node == fuzz"])
              | st.text(max_size=40))
    pairs = draw(st.lists(st.tuples(names, values), max_size=6))
    if draw(st.integers(0, 9)) == 0:                 # sometimes raw, badly escaped
        raw = "&".join(f"{k}={v}" for k, v in pairs)
        return urllib.parse.quote(raw, safe="%&=;+,/?:@!$'()*[]~")
    return urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote)


@st.composite
def fill(draw: st.DrawFn, route: Route) -> str:
    path = route.template
    for var in route.variables:
        if route.template.startswith("/v1/agent/join/"):
            value = draw(join_addrs)
        elif var == "key":                            # {key:.*} may span segments
            value = "/".join(draw(st.lists(segments, max_size=3)))
        else:
            value = draw(segments)
        path = _VAR.sub(lambda _m, v=value: v, path, count=1)  # type: ignore[misc]
    return path


def may_500(method: str, target: str) -> bool:
    path = URL.build(path=target.split("?")[0], encoded=True).path
    return any(method == m and re.fullmatch(_VAR.sub("[^/]*", t), path) for m, t in MAY_500)


def no_path_to_dc(target: str, body: bytes) -> bool:
    """Consul's documented 500 for a ``?dc=`` naming a datacenter nobody can reach (issue 14),
    from the API or from a UI page of that datacenter; this agent is dc1 and has no WAN member,
    so any other name gets it."""
    dcs = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query).get("dc", [])
    return bool(dcs) and dcs[0] not in ("", "dc1") and b"No path to datacenter" in body


def stays_here(method: str, target: str) -> bool:
    """False for a request that would stop the agent or make it contact another machine, as
    the server may see the path: escapes decoded, with and without dot segments resolved."""
    raw = target.split("?")[0].split("#")[0]
    for path in {URL.build(path=raw, encoded=True).path, URL("http://h" + raw).path}:
        if (method, path.rstrip("/")) in EXCLUDED:
            return False
        if path.startswith("/v1/agent/join/"):
            addr = path.removeprefix("/v1/agent/join/")
            host = addr.rsplit(":", 1)[0].strip("[]") if ":" in addr else addr
            if host not in ("127.0.0.1", "::1") and re.search(r"[^A-Za-z0-9.\-:\[\]]",
                                                              addr) is None:
                return False
    return True


# -- the agent and the client ------------------------------------------------------------------

@dataclass
class Answer:
    status: int | None             # None: the client timed out
    ctype: str
    body: bytes


class Target:
    def __init__(self, agent: AgentProcess) -> None:
        self.agent = agent
        self.sent = 0
        self.timeouts: list[str] = []
        self.baseline_kb = 0
        self.statuses: collections.Counter[tuple[str, int | None]] = collections.Counter()

    def rss_kb(self) -> int:
        assert self.agent.proc is not None
        status = Path(f"/proc/{self.agent.proc.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1))  # type: ignore[union-attr]

    def send(self, method: str, target: str, body: bytes | None = None,
             ctype: str | None = None, extra: dict[str, str] | None = None) -> Answer:
        assert stays_here(method, target), target
        self.sent += 1
        conn = http.client.HTTPConnection("127.0.0.1", self.agent.http_port, timeout=TIMEOUT)
        try:
            headers = {**(extra or {}), "Connection": "close"}
            if ctype:
                headers["Content-Type"] = ctype
            conn.request(method, target, body=body, headers=headers)
            resp = conn.getresponse()
            status = resp.status
            ctype_got = resp.getheader("Content-Type", "")
            # errors are short and complete; a 2xx may be a stream (monitor): not read
            data = resp.read() if status >= 300 else b""
            return Answer(status, ctype_got, data)
        except TimeoutError:
            return Answer(None, "", b"")
        finally:
            conn.close()

    def check(self, route: Route | None, method: str, target: str, answer: Answer) -> None:
        where = f"{method} {target}"
        self.statuses[(f"{method} {route.template if route else '*'}", answer.status)] += 1
        assert self.agent.alive(), f"the agent died after {where}:\n{self.agent.log_tail()}"
        if answer.status is None:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
            blocking = any(v.isdigit() and int(v) > 0 for v in query.get("index", [])[:1])
            streaming = target.startswith("/v1/agent/monitor")
            assert blocking or streaming, f"no answer in {TIMEOUT}s to {where}"
            self.timeouts.append(where)
            return
        if answer.status >= 500:
            assert answer.status == 500 and (may_500(method, target)
                                              or no_path_to_dc(target, answer.body)), (
                f"{answer.status} for {where}: {answer.body[:300]!r}\n{self.agent.log_tail(20)}")
        if 400 <= answer.status < 500 and method != "HEAD":
            assert answer.body.strip(), f"{answer.status} without a reason for {where}"
            if not target.startswith("/ui"):         # the UI answers its browser in HTML
                assert answer.ctype.startswith("text/plain"), (where, answer.ctype, answer.body)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    # encrypted, so that the keyring routes get past "encryption not enabled"
    key = base64.b64encode(bytes(range(100, 132))).decode()
    agent = AgentProcess("fuzz", tmp_path_factory.mktemp("fuzz"),
                         extra_args=["-encrypt", key]).start()
    t = Target(agent)
    try:
        agent.http("PUT", "/v1/agent/service/register",
                   {"Name": "web", "ID": "web1", "Tags": ["a"], "Meta": {"k": "v"},
                    "Check": {"TTL": "60s", "Status": "passing"}})
        for r in ROUTES:                          # warm up every route once before measuring
            if (r.method, r.template) not in EXCLUDED and not r.template.startswith(
                    ("/v1/agent/monitor", "/v1/agent/join")):
                t.send(r.method, _VAR.sub("web1", r.template))
        t.baseline_kb = t.rss_kb()
        yield t
        # still answering, and the memory stayed bounded
        assert agent.http("GET", "/v1/agent/self")["Config"]["NodeName"] == "fuzz"
        grown = t.rss_kb() - t.baseline_kb
        print(f"fuzz: {t.sent} requests, {len(t.timeouts)} blocking reads timed out, "
              f"RSS grew {grown} kB")
        for (what, status), n in sorted(t.statuses.items(), key=str):
            print(f"  {n:5d} {status} {what}")
        assert grown < RSS_GROWTH_LIMIT_KB, f"RSS grew {grown} kB over {t.sent} requests"
    finally:
        agent.stop()


def _assert_memory(target: Target) -> None:
    grown = target.rss_kb() - target.baseline_kb
    assert grown < RSS_GROWTH_LIMIT_KB, f"RSS grew {grown} kB over {target.sent} requests"


# -- the properties ----------------------------------------------------------------------------

def test_routes_come_from_the_router() -> None:
    """The enumeration sees the API (a renamed table or module would empty it silently)."""
    templates = {(r.method, r.template) for r in ROUTES}
    assert ("PUT", "/v1/agent/service/register") in templates
    assert ("GET", "/v1/health/service/{name}") in templates
    assert len(WRITES) >= 20 and len(READS) >= 30, (len(WRITES), len(READS))
    assert {"index", "wait", "filter"} <= set(QUERY_NAMES)
    assert {"Name", "Port", "Meta", "TTL"} <= set(FIELD_NAMES)
    assert not {_canon(f) for f in FIELD_NAMES} & NETWORK_KEYS


@settings(SETTINGS, max_examples=EXAMPLES["write"])
@given(data=st.data())
def test_write_routes_never_answer_5xx(target: Target, data: st.DataObject) -> None:
    route = data.draw(st.sampled_from(WRITES), label="route")
    path = data.draw(fill(route), label="path")
    query = data.draw(query_strings() | st.just(""), label="query")
    body = data.draw(bodies_for(route), label="body")
    ctype = data.draw(content_types, label="content-type")
    extra = data.draw(headers, label="headers")
    url = path + ("?" + query if query else "")
    assume(stays_here(route.method, url))
    target.check(route, route.method, url, target.send(route.method, url, body, ctype, extra))
    if target.sent % 100 == 0:
        _assert_memory(target)


@settings(SETTINGS, max_examples=EXAMPLES["read"])
@given(data=st.data())
def test_read_routes_never_answer_5xx(target: Target, data: st.DataObject) -> None:
    route = data.draw(st.sampled_from(READS), label="route")
    path = data.draw(fill(route), label="path")
    query = data.draw(query_strings(), label="query")
    # a valid blocking index without a wait would block for Consul's default 5 minutes
    if re.search(r"(^|&)index=[0-9]*[1-9]", query) and "wait=" not in query:
        query += "&wait=10ms"
    extra = data.draw(headers, label="headers")
    url = path + ("?" + query if query else "")
    assume(stays_here(route.method, url))
    target.check(route, route.method, url, target.send(route.method, url, extra=extra))
    if target.sent % 100 == 0:
        _assert_memory(target)


@settings(SETTINGS, max_examples=EXAMPLES["paths"])
@given(method=st.sampled_from(["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
       prefix=st.sampled_from(PREFIXES + ["/", "/v1/", "/v2/", "//", "/ui/static/"]),
       rest=st.lists(segments, max_size=4), query=query_strings() | st.just(""),
       body=st.none() | st.binary(max_size=200))
def test_any_path_and_method_never_answers_5xx(target: Target, method: str, prefix: str,
                                               rest: list[str], query: str,
                                               body: bytes | None) -> None:
    path = prefix + "/".join(rest)
    url = path + ("?" + query if query else "")
    assume(stays_here(method, url))
    target.check(None, method, url, target.send(method, url, body))

"""docs/http-api.md's endpoint tables match the routes the agent's aiohttp app serves, and the
request bodies the docs show are accepted.

The routes come from a running in-process agent (``app.router.routes()``), the documented ones
from the first cell of every table row in docs/http-api.md that names a path. Each side must
hold the other: an undocumented route or a documented endpoint that is not served fails, with
the list of differences.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from registry.agent import Agent
from tests.harness.agents import free_port

from .registry_fixtures import agent_fixture

DOC = Path(__file__).resolve().parents[2] / "docs" / "http-api.md"
METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH")
_ITEM = re.compile(r"^(?P<methods>(?:[A-Z]+/)*[A-Z]+)?\s*(?P<path>(?:…|/)\S*)$")


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    async for a in agent_fixture(tmp_path, acl={"enabled": True, "default_policy": "allow"}):
        yield a


def canon(path: str) -> str:
    """One spelling for a path: variable segments (``:name``, ``{name}``, ``{tail:.*}``,
    ``*``) become ``{}``; the query string and a trailing slash go."""
    path = path.split("?", 1)[0]
    segs = []
    for seg in path.split("/"):
        if seg.startswith((":", "{")) or seg == "*":
            seg = "{}"
        segs.append(seg)
    out = "/".join(segs)
    return out.rstrip("/") or "/"


def documented(text: str) -> set[tuple[str, str]]:
    """(method, canonical path) of every endpoint named in a table row's first cell.

    A cell lists items separated by commas or spaces: ``GET /v1/x``, ``GET/PUT /v1/y/:id``,
    ``…/warn/:id`` (the previous path with its last segments replaced), ``/v1/z`` (the previous
    item's methods; GET in the UI table, ``*`` when there is none)."""
    out: set[tuple[str, str]] = set()
    for line in text.splitlines():
        if not line.startswith("| "):
            continue
        cell = line.split("|")[1].replace("`", "").strip()
        if "/v1/" not in cell and not cell.startswith(("/", "POST /ui")):
            continue
        methods: list[str] = []
        prev = ""
        for raw in re.split(r"[,;]\s*", cell):
            raw = raw.strip()
            for piece in re.findall(r"(?:(?:[A-Z]+/)*[A-Z]+\s+)?(?:…|/)\S*", raw):
                m = _ITEM.match(piece.strip())
                if m is None:
                    continue
                if m.group("methods") and all(x in METHODS for x in m.group("methods").split("/")):
                    methods = m.group("methods").split("/")
                path = m.group("path")
                if path.startswith("…"):
                    tail = path[1:].strip("/").split("/")
                    base = prev.split("?", 1)[0].rstrip("/").split("/")
                    path = "/".join(base[:len(base) - len(tail)] + tail)
                prev = path
                if not methods:
                    methods = ["GET"] if path.startswith("/ui") or path == "/" else ["*"]
                for meth in methods:
                    out.add((meth, canon(path)))
    return out


def served(agent: Agent) -> set[tuple[str, str]]:
    assert agent._runner is not None
    out = set()
    for r in agent._runner.app.router.routes():
        if r.method == "HEAD":
            continue                       # aiohttp adds one per GET
        out.add((r.method, canon(r.resource.canonical if r.resource else "")))
    return out


async def test_endpoint_tables_match_the_routes(agent: Agent) -> None:
    docs = documented(DOC.read_text())
    routes = served(agent)
    undocumented = sorted(routes - docs)
    not_served = sorted(docs - routes)
    assert not undocumented and not not_served, (
        f"routes missing from docs/http-api.md: {undocumented}; "
        f"documented but not served: {not_served}")


def test_the_parser_reads_the_tables_forms() -> None:
    rows = [
        "| `GET /v1/kv/:key?raw` | x |",
        "| `PUT /v1/agent/check/pass/:id` `…/warn/:id` `…/fail/:id` | x |",
        "| `GET /v1/acl/policy/:id`, `/v1/acl/policy/name/:name` | x |",
        "| `GET`/`POST /v1/operator/keyring` | x |",
        "| `GET /v1/query`, `GET/PUT/DELETE /v1/query/:id` | x |",
        "| `?cas=`, `?acquire=`; `/v1/session/*`, `/v1/txn` | x |",
        "| `/ui/nodes`, `/ui/nodes/:name` | x |",
        "| `POST /ui/token` | x |",
        "| kind | fields |",
    ]
    assert documented("\n".join(rows)) == {
        ("GET", "/v1/kv/{}"), ("PUT", "/v1/agent/check/pass/{}"),
        ("PUT", "/v1/agent/check/warn/{}"), ("PUT", "/v1/agent/check/fail/{}"),
        ("GET", "/v1/acl/policy/{}"), ("GET", "/v1/acl/policy/name/{}"),
        ("GET", "/v1/operator/keyring"), ("POST", "/v1/operator/keyring"),
        ("GET", "/v1/query"), ("GET", "/v1/query/{}"), ("PUT", "/v1/query/{}"),
        ("DELETE", "/v1/query/{}"), ("*", "/v1/session/{}"), ("*", "/v1/txn"),
        ("GET", "/ui/nodes"), ("GET", "/ui/nodes/{}"), ("POST", "/ui/token")}


# -- the request bodies the docs show are accepted by the strict decoder --------------------------
ROOT = DOC.parents[1]
_CURL = re.compile(r"curl -X (?P<method>PUT|POST) \S*?(?P<path>/v1/\S+)\s+-d '(?P<body>\{.*?\})'")


def _block_after(text: str, intro: str) -> str:
    """The fenced code block that follows the line containing ``intro``."""
    at = text.index(intro)
    start = text.index("\n", text.index("```", at)) + 1
    return text[start:text.index("```", start)]


def _strip_comments(jsonc: str) -> str:
    return "\n".join(re.sub(r"\s//.*$", "", line) for line in jsonc.splitlines())


def doc_requests(port: int) -> list[tuple[str, str, str, dict[str, object]]]:
    """(where, method, path, body) of every request body docs/http-api.md and README.md send;
    addresses outside loopback and fixed ports are swapped for loopback and ``port``."""
    out: list[tuple[str, str, str, dict[str, object]]] = []
    for name in ("README.md", "docs/http-api.md"):
        text = (ROOT / name).read_text().replace("\\\n", " ")
        for m in _CURL.finditer(text):
            out.append((name, m.group("method"), m.group("path"), json.loads(m.group("body"))))
    text = DOC.read_text()
    register = _strip_comments(_block_after(text, "A service definition, in the body of"))
    out.append(("http-api.md service definition", "PUT", "/v1/agent/service/register",
                json.loads(register)))
    listener = _block_after(text, "A listener spec (keys case-insensitive")
    out.append(("http-api.md listener spec", "PUT", "/v1/lb/listener", json.loads(listener)))
    fixed = []
    for where, method, path, body in out:
        raw = json.dumps(body)
        raw = re.sub(r"(10\.0\.0\.5|localhost|127\.0\.0\.1):(8080|9000)", f"127.0.0.1:{port}", raw)
        fixed.append((where, method, path, json.loads(raw.replace("10.0.0.5", "127.0.0.1"))))
    return fixed


async def test_request_bodies_in_the_docs_are_accepted(tmp_path: Path) -> None:
    async for a in agent_fixture(tmp_path, enable_lb=True):
        reqs = doc_requests(free_port())
        assert len(reqs) >= 5, reqs           # three curl bodies, the definition, the listener
        async with aiohttp.ClientSession() as s:
            for where, method, path, body in reqs:
                if path == "/v1/lb/listener":
                    body["Bind"] = f"127.0.0.1:{free_port()}"
                async with s.request(method, f"http://127.0.0.1:{a.http_port}{path}",
                                     json=body) as r:
                    assert r.status == 200, (where, body, r.status, await r.text())

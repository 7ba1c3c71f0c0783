"""docs/http-api.md's endpoint tables match the routes the agent's aiohttp app serves.

The routes come from a running in-process agent (``app.router.routes()``), the documented ones
from the first cell of every table row in docs/http-api.md that names a path. Each side must
hold the other: an undocumented route or a documented endpoint that is not served fails, with
the list of differences.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from registry.agent import Agent

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
        if seg.startswith(":") or seg.startswith("{") or seg == "*":
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
    text = "\n".join([
        "| `GET /v1/kv/:key?raw` | x |",
        "| `PUT /v1/agent/check/pass/:id` `…/warn/:id` `…/fail/:id` | x |",
        "| `GET /v1/acl/policy/:id`, `/v1/acl/policy/name/:name` | x |",
        "| `GET`/`POST` /v1/operator/keyring` | x |",
        "| `GET /v1/query`, `GET/PUT/DELETE /v1/query/:id` | x |",
        "| `?cas=`, `?acquire=`; `/v1/session/*`, `/v1/txn` | x |",
        "| `/ui/nodes`, `/ui/nodes/:name` | x |",
        "| `POST /ui/token` | x |",
        "| kind | fields |",
    ])
    assert documented(text) == {
        ("GET", "/v1/kv/{}"), ("PUT", "/v1/agent/check/pass/{}"),
        ("PUT", "/v1/agent/check/warn/{}"), ("PUT", "/v1/agent/check/fail/{}"),
        ("GET", "/v1/acl/policy/{}"), ("GET", "/v1/acl/policy/name/{}"),
        ("GET", "/v1/operator/keyring"), ("POST", "/v1/operator/keyring"),
        ("GET", "/v1/query"), ("GET", "/v1/query/{}"), ("PUT", "/v1/query/{}"),
        ("DELETE", "/v1/query/{}"), ("*", "/v1/session/{}"), ("*", "/v1/txn"),
        ("GET", "/ui/nodes"), ("GET", "/ui/nodes/{}"), ("POST", "/ui/token")}

"""Prepared queries: parsing (400s that say what is wrong), tag filters and the failover order."""

from __future__ import annotations

from typing import Any

import pytest

from registry.errors import RequestError
from registry.prepared import PreparedQueries, execute, parse_query


def _entry(sid: str, tags: list[str]) -> dict[str, Any]:
    return {"Node": {"Node": "n"}, "Service": {"ID": sid, "Tags": tags}, "Checks": []}


@pytest.mark.parametrize("body, fragment", [
    ([], "prepared query object"),
    ({"Name": "x"}, "Service name"),
    ({"Service": {"Service": "web", "Tags": "v1"}}, "Tags"),
    ({"Service": {"Service": "web", "OnlyPassing": "yes"}}, "OnlyPassing"),
    ({"Service": {"Service": "web", "Failover": {"NearestN": -1}}}, "NearestN"),
    ({"Service": {"Service": "web", "Failover": {"Datacenters": "dc2"}}}, "Datacenters"),
    ({"Name": "bad name", "Service": {"Service": "web"}}, "Invalid Name"),
])
def test_bad_queries_say_why(body: Any, fragment: str) -> None:
    with pytest.raises(RequestError, match=fragment) as e:
        parse_query(body, id="1")
    assert e.value.status == 400


def test_tags_all_present_and_negation() -> None:
    q = parse_query({"Service": {"Service": "web", "Tags": ["v1", "!canary"]}}, id="1")
    assert q.matches_tags(["V1", "x"])
    assert not q.matches_tags(["v1", "canary"])
    assert not q.matches_tags(["v2"])


async def test_failover_order_nearest_then_listed() -> None:
    q = parse_query({"Service": {"Service": "web", "Failover": {
        "NearestN": 2, "Datacenters": ["dc5", "dc2"]}}}, id="1")
    asked: list[str] = []
    have = {"dc5": [_entry("w5", [])], "dc4": [_entry("w4", [])]}

    async def fetch(dc: str, service: str, passing: bool) -> list[dict[str, Any]]:
        asked.append(dc)
        if dc == "dc3":
            raise RequestError("No path to datacenter", 500)   # skipped, not fatal
        return have.get(dc, [])

    res = await execute(q, local_dc="dc1", nearest=["dc3", "dc2", "dc4"], fetch=fetch)
    assert asked == ["dc1", "dc3", "dc2", "dc5"]        # NearestN first, then the list, no repeat
    assert (res["Datacenter"], res["Failovers"]) == ("dc5", 3)
    assert [e["Service"]["ID"] for e in res["Nodes"]] == ["w5"]


async def test_nothing_anywhere_answers_empty_from_local() -> None:
    q = parse_query({"Service": {"Service": "web", "Failover": {"Datacenters": ["dc2"]}}},
                    id="1")

    async def fetch(dc: str, service: str, passing: bool) -> list[dict[str, Any]]:
        return []

    res = await execute(q, local_dc="dc1", nearest=[], fetch=fetch)
    assert (res["Nodes"], res["Datacenter"], res["Failovers"]) == ([], "dc1", 1)


def test_store_persists_and_refuses_duplicates(tmp_path: Any) -> None:
    from registry.datadir import DataDir

    dd = DataDir(tmp_path)
    store = PreparedQueries(dd)
    q = store.put({"Name": "webq", "Service": {"Service": "web"}})
    with pytest.raises(RequestError, match="already exists"):
        store.put({"Name": "WEBQ", "Service": {"Service": "web"}})
    again = PreparedQueries(DataDir(tmp_path))
    assert again.get("webq").id == q.id and again.get(q.id).service == "web"
    again.delete(q.id)
    assert PreparedQueries(DataDir(tmp_path)).list() == []

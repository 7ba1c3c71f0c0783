"""The catalog and its view: health, ordering, per-resource indexes and blocking waits."""

from __future__ import annotations

import asyncio

import pytest

from registry.catalog import Catalog, CheckRecord, NodeInfo, ServiceRecord


def make() -> Catalog:
    c = Catalog(datacenter="dc1", local_node="a")
    with c.batch():
        for n, ip in (("a", "10.0.0.1"), ("b", "10.0.0.2")):
            c.put_node(NodeInfo(name=n, address=ip, node_id=f"id-{n}"), "alive")
    return c


def svc(sid: str, name: str = "web", tags: tuple[str, ...] = (), port: int = 80) -> ServiceRecord:
    return ServiceRecord(id=sid, service=name, tags=tags, port=port)


def chk(cid: str, status: str, sid: str = "", name: str = "") -> CheckRecord:
    return CheckRecord(check_id=cid, name=cid, status=status, service_id=sid, service_name=name)


def test_instances_only_healthy_and_sorted() -> None:
    c = make()
    c.put_service("b", svc("web2", tags=("v2",)))
    c.put_service("a", svc("web1", tags=("V1",)))
    c.put_service("a", svc("web0"))
    c.put_check("a", chk("service:web0", "critical", "web0", "web"))
    c.put_check("b", chk("service:web2", "warning", "web2", "web"))
    assert [i.service_id for i in c.instances("web")] == ["web1", "web2"]
    assert [i.service_id for i in c.instances("WEB", passing_only=True)] == ["web1"]
    assert [i.service_id for i in c.instances("web", tag="v1")] == ["web1"]  # case-insensitive
    assert c.instances("web")[1].health == "warning"
    assert [i.service_id for i in c.entries("web")] == ["web0", "web1", "web2"]
    assert c.services() == {"web": frozenset({"V1", "v2"})}
    i = c.instances("web")[0]
    assert (i.node, i.node_address, i.datacenter, i.port, i.weight_passing) == ("a", "10.0.0.1", "dc1", 80, 1)


def test_failed_node_turns_every_instance_critical_at_once() -> None:
    c = make()
    c.put_service("b", svc("web2"))
    c.put_service("b", svc("db1", "db"))
    c.set_status("b", "failed")
    assert c.instances("web") == [] and c.instances("db") == []
    serf = c.entries("web")[0].checks[0]
    assert (serf.check_id, serf.status) == ("serfHealth", "critical")
    assert c.node("B").status == "failed"  # type: ignore[union-attr]
    c.set_status("b", "alive")
    assert len(c.instances("web")) == 1


def test_node_list_follows_a_status_change_that_does_not_move_the_nodes_index() -> None:
    c = make()
    c.put_service("b", svc("web2"))
    assert {n.name: n.status for n in c.nodes()}["b"] == "alive"
    before = c.key_index("nodes")
    c.set_status("b", "failed")
    assert c.key_index("nodes") == before          # the list of nodes did not change...
    assert {n.name: n.status for n in c.nodes()}["b"] == "failed"   # ...but what it shows did


def test_node_check_and_maintenance_affect_all_instances_of_node() -> None:
    c = make()
    c.put_service("a", svc("web1"))
    c.put_service("a", svc("api1", "api"))
    c.put_check("a", chk("_node_maintenance", "critical"))
    assert c.instances("web") == [] and c.instances("api") == []
    c.remove_check("a", "_node_maintenance")
    assert len(c.instances("web")) == 1
    c.put_check("a", chk("_service_maintenance:web1", "critical", "web1", "web"))
    assert c.instances("web") == [] and len(c.instances("api")) == 1


def test_per_resource_indexes() -> None:
    c = make()
    c.put_service("a", svc("web1"))
    c.put_service("a", svc("db1", "db"))
    web, db, services = c.key_index("svc:web"), c.key_index("svc:db"), c.key_index("services")
    c.put_check("a", chk("service:db1", "passing", "db1", "db"))
    assert c.key_index("svc:web") == web  # a db check does not move web
    assert c.key_index("svc:db") > db
    assert c.key_index("services") == services  # nor the service list
    before = c.index
    c.put_check("a", chk("service:db1", "passing", "db1", "db"))  # no change, no step
    assert c.index == before
    c.set_status("a", "failed")  # node health moves every service on it
    assert c.key_index("svc:web") > web
    assert c.index >= 1 and c.key_index("svc:never-seen") >= 1


def test_batch_moves_index_once() -> None:
    c = make()
    before = c.index
    with c.batch():
        for n in range(10):
            c.put_service("a", svc(f"web{n}"))
    assert c.index == before + 1
    assert c.key_index("svc:web") == c.index


async def test_wait_wakes_only_the_changed_resource() -> None:
    c = make()
    c.put_service("a", svc("web1"))
    c.put_service("a", svc("db1", "db"))
    web_idx = c.key_index("svc:web")
    waiter = asyncio.create_task(c.wait_keys(["svc:web"], web_idx, 5.0))
    await asyncio.sleep(0.01)
    c.put_check("a", chk("service:db1", "critical", "db1", "db"))
    await asyncio.sleep(0.01)
    assert not waiter.done()  # a db change does not wake a web watcher
    c.put_service("a", svc("web1", tags=("new",)))
    got = await asyncio.wait_for(waiter, 1.0)
    assert got > web_idx
    assert c.waiter_count() == 0


async def test_view_wait_timeout_and_immediate() -> None:
    c = make()
    assert await c.wait(0, 5.0) == c.index  # already past
    t = asyncio.get_running_loop().time()
    assert await c.wait(c.index, 0.05) == c.index
    assert asyncio.get_running_loop().time() - t >= 0.04


def test_remove_node_drops_everything() -> None:
    c = make()
    c.put_service("b", svc("web2"))
    c.put_check("b", chk("service:web2", "passing", "web2", "web"))
    assert c.remove_node("B")
    assert c.entries("web") == () and c.node("b") is None and "web" not in c.services()


def test_service_rename_moves_between_services() -> None:
    c = make()
    c.put_service("a", svc("x1", "old"))
    c.put_service("a", svc("x1", "new"))
    assert c.entries("old") == () and len(c.entries("new")) == 1


def test_view_satisfies_consumers_protocols() -> None:
    """The catalog is what dnsserver and lb read; check their declared Protocols when present."""
    c = make()
    c.put_service("a", svc("web1"))
    inst = c.instances("web")[0]
    for attr in ("node", "node_address", "datacenter", "service_id", "service", "tags", "address",
                 "port", "meta", "weight_passing", "weight_warning", "health"):
        assert hasattr(inst, attr)
    for attr in ("name", "address", "datacenter", "meta", "status"):
        assert hasattr(c.nodes()[0], attr)
    assert c.datacenter == "dc1" and isinstance(c.index, int)


@pytest.mark.parametrize("statuses,expected", [
    ([], "passing"), (["passing"], "passing"), (["passing", "warning"], "warning"),
    (["warning", "critical", "passing"], "critical"), (["bogus"], "critical"),
])
def test_worst(statuses: list[str], expected: str) -> None:
    from registry.catalog import worst

    assert worst(statuses) == expected


def test_health_rank_orders_statuses_and_counts_unknown_as_critical() -> None:
    from registry.catalog import STATUSES, health_rank

    assert [health_rank(s) for s in STATUSES] == [0, 1, 2]
    assert health_rank("bogus") == health_rank("critical")
    assert sorted(["passing", "bogus", "warning"], key=health_rank) == ["passing", "warning", "bogus"]


def test_catalog_is_the_view_dns_and_lb_read() -> None:
    """Static check (mypy on the tests) and runtime duck check of both consumers' Protocols."""
    import dnsserver.view
    import lb.view

    c = make()
    dns_view: dnsserver.view.View = c
    lb_view: lb.view.CatalogView = c
    for v in (dns_view, lb_view):
        assert v.index >= 1 and callable(v.wait)

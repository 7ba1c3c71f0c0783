"""What a container publishes: a pure function of its inspect document (a case table)."""

from __future__ import annotations

from typing import Any

import pytest

from registry.containers import services_for

CID = "f" * 64


def doc(*, name: str = "/web1", labels: dict[str, str] | None = None,
        env: list[str] | None = None, ports: dict[str, Any] | None = None,
        running: bool = True, health: dict[str, Any] | None = None,
        ip: str = "10.88.0.5", exposed: dict[str, Any] | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"Running": running, "Paused": False}
    if health is not None:
        state["Health"] = health
    return {"Id": CID, "Name": name, "State": state,
            "Config": {"Labels": labels or {}, "Env": env or [], "ExposedPorts": exposed},
            "NetworkSettings": {"IPAddress": "", "Ports": ports or {},
                                "Networks": {"podman": {"IPAddress": ip}}}}


def pub(host_port: int, host_ip: str = "0.0.0.0") -> list[dict[str, str]]:
    return [{"HostIp": host_ip, "HostPort": str(host_port)}]


def brief(d: dict[str, Any], **kw: Any) -> list[tuple[str, str, str, int, tuple[str, ...]]]:
    return [(w.sdef.record.id, w.sdef.record.service, w.sdef.record.address,
             w.sdef.record.port, w.sdef.record.tags) for w in services_for(d, **kw)]


@pytest.mark.parametrize("d,want", [
    # nothing published, no labels: nothing
    (doc(), []),
    # not running
    (doc(ports={"80/tcp": pub(8080)}, running=False), []),
    # a published port alone: named after the container, on the node's address
    (doc(ports={"80/tcp": pub(8080)}), [("docker:web1:80", "web1", "", 8080, ())]),
    # a host IP binding is the address
    (doc(ports={"80/tcp": pub(8080, "127.0.0.1")}),
     [("docker:web1:80", "web1", "127.0.0.1", 8080, ())]),
    # labels name and tag it
    (doc(labels={"rumor.service.name": "shop", "rumor.service.tags": "a, b"},
         ports={"80/tcp": pub(8080)}), [("docker:web1:80", "shop", "", 8080, ("a", "b"))]),
    # the environment convention as a fallback; labels win over it
    (doc(env=["SERVICE_NAME=api", "SERVICE_TAGS=x"], ports={"80/tcp": pub(8080)}),
     [("docker:web1:80", "api", "", 8080, ("x",))]),
    (doc(labels={"rumor.service.name": "lab"}, env=["SERVICE_NAME=env"],
         ports={"80/tcp": pub(1)}), [("docker:web1:80", "lab", "", 1, ())]),
    # several ports: one service each, per-port names, else name-port
    (doc(labels={"rumor.service.name": "app", "rumor.service.9090.name": "metrics"},
         env=["SERVICE_53_NAME=dns"],
         ports={"80/tcp": pub(8080), "9090/tcp": pub(9090), "53/udp": pub(5353),
                "443/tcp": None}),
     [("docker:web1:53:udp", "dns", "", 5353, ()), ("docker:web1:80", "app-80", "", 8080, ()),
      ("docker:web1:9090", "metrics", "", 9090, ())]),
    # the container's own address, chosen by a label
    (doc(labels={"rumor.service.address": "container"}, ports={"80/tcp": pub(8080)}),
     [("docker:web1:80", "web1", "10.88.0.5", 80, ())]),
    # labels but no published port: the container's IP and its exposed port
    (doc(labels={"rumor.service.name": "db"}, exposed={"5432/tcp": {}}),
     [("docker:web1", "db", "10.88.0.5", 5432, ())]),
    (doc(labels={"rumor.service.name": "db", "rumor.service.port": "6000"}),
     [("docker:web1", "db", "10.88.0.5", 6000, ())]),
    # opting out
    (doc(labels={"rumor.service.ignore": "true"}, ports={"80/tcp": pub(8080)}), []),
    # odd names are cleaned so they stay valid service names
    (doc(name="/my app!", ports={"80/tcp": pub(8080)}),
     [("docker:my-app:80", "my-app", "", 8080, ())]),
])
def test_services_for(d: dict[str, Any], want: list[Any]) -> None:
    assert brief(d) == want


def test_default_address_from_config() -> None:
    d = doc(ports={"80/tcp": pub(8080)})
    assert brief(d, default_address="container") == [("docker:web1:80", "web1", "10.88.0.5",
                                                      80, ())]


def test_meta_marks_the_source_and_keeps_label_meta() -> None:
    [w] = services_for(doc(labels={"rumor.service.meta.team": "pay",
                                   "rumor.service.meta.bad key": "x",
                                   "rumor.service.meta.source": "mine"},
                           ports={"80/tcp": pub(8080)}))
    assert dict(w.sdef.record.meta) == {"source": "docker", "container": "web1",
                                        "container_id": CID, "team": "pay"}


@pytest.mark.parametrize("status,mapped", [
    ("healthy", "passing"), ("unhealthy", "critical"), ("starting", "critical"),
    ("weird", "critical"),
])
def test_healthcheck_becomes_a_check(status: str, mapped: str) -> None:
    [w] = services_for(doc(ports={"80/tcp": pub(8080)}, health={
        "Status": status, "Log": [{"ExitCode": 1, "Output": "nope\n"}]}))
    [c] = w.sdef.checks
    assert (c.kind, c.service_id, c.check_id) == ("container", "docker:web1:80",
                                                  "docker:web1:80:health")
    assert w.health is not None and w.health[0] == mapped
    assert w.health[1] == f"container health: {status} (exit 1) nope"


def test_no_healthcheck_no_check() -> None:
    [w] = services_for(doc(ports={"80/tcp": pub(8080)}))
    assert w.sdef.checks == () and w.health is None


@pytest.mark.parametrize("junk", [
    {}, {"State": None}, {"State": {"Running": True}, "Config": None, "NetworkSettings": None},
    {"State": {"Running": True}, "NetworkSettings": {"Ports": {"x/tcp": pub(1),
                                                               "80/tcp": [{"HostPort": "x"}]}}},
])
def test_odd_documents_do_not_crash(junk: dict[str, Any]) -> None:
    services_for(junk)


def test_labels_cannot_make_a_registration_too_large() -> None:
    labels = {"rumor.service.tags": ",".join(["t" * 1000] * 500)}
    labels.update({f"rumor.service.meta.k{i}": "v" * 2000 for i in range(200)})
    [w] = services_for(doc(labels=labels, ports={"80/tcp": pub(8080)}))
    r = w.sdef.record
    assert len(r.tags) == 64 and all(len(t) == 255 for t in r.tags)
    assert len(r.meta) == 64 and all(len(v) <= 512 for v in r.meta.values())

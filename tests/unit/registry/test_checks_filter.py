"""Pure pieces of the check runners: flap damping, status mappings, the script-check rule,
alias results and the gRPC health messages."""

from __future__ import annotations

import pytest

from registry.catalog import Catalog, CheckRecord, NodeInfo, ServiceRecord
from registry.check_h2 import H2Error, decode_health_response, encode_health_request
from registry.checks import (
    StatusFilter,
    alias_status,
    cut_output,
    exit_status_of,
    http_status_of,
    refuse_exec_check,
)
from registry.definitions import DefinitionError, parse_check

P, W, C = "passing", "warning", "critical"


@pytest.mark.parametrize("sbp,fbw,fbc,initial,feed,expected", [
    (0, None, 0, C, [P], [P]),
    (2, None, 0, C, [P, P], [None, P]),
    (2, None, 0, C, [P, C, P, P], [None, C, None, P]),
    (0, None, 3, P, [C, C, C], [None, None, C]),
    (0, None, 3, P, [C, P, C, C], [None, P, None, None]),
    (0, None, 3, P, [W], [W]),            # warning counts as a success (Consul)
    (2, None, 0, C, [W, W], [None, W]),
    (1, None, 1, C, [P, C], [P, C]),
    (0, 1, 3, P, [C, C, C], [W, W, C]),   # FailuresBeforeWarning comes first
    (0, 2, 4, P, [C, C, C, C, P], [None, W, W, C, P]),
])
def test_status_filter(sbp: int, fbw: int | None, fbc: int, initial: str, feed: list[str],
                       expected: list[str | None]) -> None:
    f = StatusFilter(sbp, fbc, initial, fbw)
    assert [f.feed(s) for s in feed] == expected


@pytest.mark.parametrize("code,status", [
    (200, P), (204, P), (299, P), (301, C), (429, W), (404, C), (500, C), (503, C),
])
def test_http_status(code: int, status: str) -> None:
    assert http_status_of(code) == status


@pytest.mark.parametrize("code,status", [(0, P), (1, W), (2, C), (127, C), (255, C), (-9, C)])
def test_exit_status(code: int, status: str) -> None:
    assert exit_status_of(code) == status


def test_output_is_capped() -> None:
    assert cut_output("ok") == "ok"
    long = cut_output("é" * 5000)
    assert len(long.encode()) <= 4096 + 40 and long.endswith("(output truncated)")
    assert cut_output("x" * 50, 10) == "x" * 10 + " ... (output truncated)"


SCRIPT = parse_check({"Name": "s", "Args": ["/bin/true"], "Interval": "1s"})
DOCKER = parse_check({"Name": "d", "DockerContainerID": "web", "Args": ["true"],
                      "Interval": "1s"})
HTTP = parse_check({"Name": "h", "HTTP": "http://127.0.0.1:1/", "Interval": "1s"})


@pytest.mark.parametrize("defn,local,remote_on,local_on,refused", [
    (SCRIPT, True, False, False, "enable_local_script_checks"),
    (SCRIPT, False, False, False, "enable_script_checks"),
    (SCRIPT, False, False, True, "enable_script_checks to true"),
    (SCRIPT, True, False, True, None),
    (SCRIPT, False, True, False, None),
    (DOCKER, True, False, False, "docker checks run commands"),
    (HTTP, False, False, False, None),
])
def test_exec_rule(defn: object, local: bool, remote_on: bool, local_on: bool,
                   refused: str | None) -> None:
    if refused is None:
        refuse_exec_check(defn, local=local, enable_script_checks=remote_on,  # type: ignore[arg-type]
                          enable_local_script_checks=local_on)
        return
    with pytest.raises(DefinitionError, match=refused):
        refuse_exec_check(defn, local=local, enable_script_checks=remote_on,  # type: ignore[arg-type]
                          enable_local_script_checks=local_on)


def _catalog() -> Catalog:
    cat = Catalog(datacenter="dc1", local_node="a")
    with cat.batch():
        cat.put_node(NodeInfo(name="b", address="10.0.0.2"), "alive")
        cat.put_service("b", ServiceRecord(id="db1", service="db"))
        cat.put_service("b", ServiceRecord(id="web1", service="web"))
        cat.put_check("b", CheckRecord(check_id="c1", name="db ok", status=P, service_id="db1"))
        cat.put_check("b", CheckRecord(check_id="c2", name="web", status=C, service_id="web1"))
    return cat


def test_alias_status() -> None:
    cat = _catalog()
    assert alias_status(cat, "b", "db1") == (P, "All checks passing.")
    assert alias_status(cat, "b", "web1")[0] == C
    assert alias_status(cat, "b", "nope") == (C, "Service nope could not be found on node b")
    assert alias_status(cat, "zz", "db1")[0] == C
    with cat.batch():
        cat.put_check("b", CheckRecord(check_id="n1", name="disk", status=W, output="90%"))
    assert alias_status(cat, "b", "db1") == (W, "Aliased check 'disk' failing: 90%")
    with cat.batch():
        cat.set_status("b", "failed")
    assert alias_status(cat, "b", "db1")[0] == C  # serfHealth of a failed node


def test_health_messages() -> None:
    assert encode_health_request("") == b"\0\0\0\0\0"
    assert encode_health_request("svc") == b"\0\0\0\0\x05\x0a\x03svc"
    assert decode_health_response(b"\0\0\0\0\x02\x08\x01") == 1
    assert decode_health_response(b"\0\0\0\0\0") == 0
    # unknown fields are skipped
    assert decode_health_response(b"\0\0\0\0\x06\x12\x02hi\x08\x02") == 2
    for bad in (b"", b"\0\0\0\0\x05\x08", b"\1\0\0\0\0", b"\0\0\0\0\x02\x08\x81",
                b"\0\0\0\0\x01\x0f"):
        with pytest.raises(H2Error):
            decode_health_response(bad)

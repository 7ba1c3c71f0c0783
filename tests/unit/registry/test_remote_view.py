"""Another datacenter's catalog document -> a DNS view, and a prepared query's results -> a
view; what a peer sends is never trusted to be well-formed."""

from __future__ import annotations

from typing import Any

from registry.remote_view import results_view, view_document, view_from_document


def test_round_trip_keeps_nodes_instances_health_and_weights() -> None:
    doc = {"Datacenter": "dc2",
           "Nodes": [{"Node": "b1", "Address": "10.9.0.1", "Meta": {"rack": "r1"},
                      "Status": "alive"}],
           "Instances": [
               {"Node": "b1", "ID": "web1", "Service": "web", "Tags": ["v1"], "Address": "",
                "Port": 80, "Meta": {}, "Weights": [10, 1], "Health": "warning"}]}
    v = view_from_document("dc2", doc)
    assert v.datacenter == "dc2" and v.node("b1") is not None
    (inst,) = v.instances("web")
    assert (inst.port, inst.weight_passing, inst.health, inst.node_address) == (
        80, 10, "warning", "10.9.0.1")
    assert v.instances("web", passing_only=True) == []
    again = view_from_document("dc2", view_document(v))
    assert [i.service_id for i in again.instances("web")] == ["web1"]


def test_bad_entries_are_skipped_not_fatal() -> None:
    doc: dict[str, Any] = {
        "Nodes": [{"Node": "ok", "Address": "10.0.0.1"}, {"Address": "no name"}, "junk", None,
                  {"Node": "m", "Address": "10.0.0.2", "Meta": ["not", "a", "map"]}],
        "Instances": [{"Node": "ghost", "ID": "x", "Service": "web"},      # unknown node
                      {"Node": "ok", "ID": "a", "Service": "web", "Port": "eighty"},
                      {"Node": "ok", "ID": "b", "Service": "web", "Weights": 7},
                      {"Node": "ok", "ID": "c", "Service": "web", "Port": 81}, 42]}
    v = view_from_document("dc2", doc)
    assert [i.service_id for i in v.instances("web")] == ["c"]
    assert view_from_document("dc2", {}).services() == {}


def test_query_results_are_the_instances_of_a_service_named_like_the_query() -> None:
    res = {"Datacenter": "dc2", "Nodes": [
        {"Node": {"Node": "b1", "Address": "10.9.0.1"},
         "Service": {"ID": "web1", "Service": "web", "Port": 80, "Tags": ["v1"],
                     "Weights": {"Passing": 3, "Warning": 1}},
         "Checks": [{"Status": "passing"}, {"Status": "warning"}]},
        {"Node": "broken"}]}
    v = results_view("webq", res)
    (inst,) = v.instances("webq")
    assert (inst.service_id, inst.health, inst.weight_passing, v.datacenter) == (
        "web1", "warning", 3, "dc2")

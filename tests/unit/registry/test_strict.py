"""Strict decoding's field lists against the parsers (pure; no server)."""

from __future__ import annotations

import pytest

from registry.api import strict
from registry.definitions import _CHECK_KEYS, _SERVICE_KEYS
from registry.errors import RequestError


@pytest.mark.parametrize("shape, parsed", [(strict.SERVICE, _SERVICE_KEYS),
                                           (strict.CHECK, _CHECK_KEYS)])
def test_every_field_the_parser_reads_is_known(shape: strict.Obj, parsed: dict[str, str]) -> None:
    # a field added to the parser must never be refused as unknown by the decoder in front
    for name in parsed.values():
        strict.check_body({name: None}, shape)


@pytest.mark.parametrize("body, refused", [
    ({"Name": "w", "Prot": 1}, 'unknown field "Prot"'),
    ({"name": "w", "check": {"ttl": "1s", "intervall": "1s"}}, 'unknown field "intervall"'),
    ({"Name": "w", "Checks": [{"TTL": "1s"}, {"Bogus": 1}]}, 'unknown field "Bogus"'),
    ({"Name": "w", "Connect": {"Native": True}}, "not supported"),
    ({"Name": "w", "Namespace": "ns1"}, "not supported"),
    ({"Name": "w", "Check": {"TTL": "1s", "Partition": "p"}}, "not supported"),
])
def test_refusals(body: dict[str, object], refused: str) -> None:
    with pytest.raises(RequestError) as e:
        strict.check_body(body, strict.SERVICE)
    assert refused in e.value.message and e.value.status == 400


@pytest.mark.parametrize("body", [
    {"Name": "w", "enable_tag_override": True, "tagged_addresses": {"lan": {"address": "a"}}},
    {"Name": "w", "Meta": {"anything-goes": "x"}, "Check": {"Header": {"X-Any": ["1"]}}},
    {"Name": "w", "Connect": None, "Proxy": {}, "Namespace": "default", "Partition": ""},
    {"Name": "w", "Tags": "not-a-list"},  # a wrong type is the parser's to name, not ours
    ["not", "an", "object"],
])
def test_accepted(body: object) -> None:
    strict.check_body(body, strict.SERVICE)

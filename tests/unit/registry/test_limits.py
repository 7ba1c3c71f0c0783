"""Caps and recovery: decompression bombs, blocking-wait caps, corrupt state files."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import msgpack
import pytest
from aiohttp.test_utils import make_mocked_request

from registry.api.blocking import MAX_WAIT, blocking_params
from registry.catalog import Catalog, NodeInfo
from registry.datadir import DataDir
from registry.errors import RequestError
from registry.local import STATE_FILE, LocalState
from registry.replication import Replicator


def make_rep(limit: int) -> Replicator:
    cat = Catalog(datacenter="dc1", local_node="a")
    local = LocalState(cat, NodeInfo(name="a"), None)
    return Replicator(cat, local, broadcast=lambda k, p: None, member_status=lambda n: "alive",
                      full_max_bytes=limit)


def test_decompression_bomb_is_refused() -> None:
    rep = make_rep(1 << 20)
    bomb = b"\x01" + zlib.compress(msgpack.packb([2, [["x" * 100, 1, [1, []], [], [], []]]])
                                   + b"\x00" * (8 << 20), 9)
    assert len(bomb) < 64 * 1024
    rep.merge_app_state(bomb)
    assert rep.dropped.get("bad_full_state") == 1


@pytest.mark.parametrize("query,expected", [
    ("", None), ("index=0", None), ("index=5", (5, 300.0)), ("index=5&wait=10s", (5, 10.0)),
    ("index=5&wait=2h", (5, MAX_WAIT)),
])
def test_blocking_params(query: str, expected: tuple[int, float] | None) -> None:
    got = blocking_params(make_mocked_request("GET", "/v1/catalog/services?" + query))
    if expected is None:
        assert got is None
    else:
        assert got is not None and got[0] == expected[0]
        assert expected[1] <= got[1] <= expected[1] * (1 + 1 / 16)  # Consul's wait/16 jitter


@pytest.mark.parametrize("query", ["index=x", "index=-1", "index=3&wait=never"])
def test_blocking_params_refused(query: str) -> None:
    with pytest.raises(RequestError):
        blocking_params(make_mocked_request("GET", "/v1/catalog/services?" + query))


def test_corrupt_state_file_is_moved_aside(tmp_path: Path) -> None:
    dd = DataDir(tmp_path)
    dd.file(STATE_FILE).write_text('{"Services": [{"Service": {"Name": "web"')
    st = LocalState(Catalog(datacenter="dc1", local_node="a"), NodeInfo(name="a"), dd)
    assert st.load() == 0
    assert (tmp_path / (STATE_FILE + ".corrupt")).exists()


def test_bad_entries_in_state_file_are_skipped(tmp_path: Path) -> None:
    dd = DataDir(tmp_path)
    dd.file(STATE_FILE).write_text(json.dumps({"Version": 5, "Services": [
        {"Service": {"Name": "ok", "Port": 1}, "Source": "api"},
        {"Service": {"Name": "bad", "Port": 99999}, "Source": "api"}, "junk"],
        "Checks": [{"Definition": {"Name": "c", "TTL": "5s", "ServiceID": "ok"},
                    "Status": "passing"}, {"Definition": "junk"}]}))
    cat = Catalog(datacenter="dc1", local_node="a")
    st = LocalState(cat, NodeInfo(name="a"), dd)
    assert st.load() == 1
    assert list(st.services) == ["ok"] and st.checks["c"].status == "passing"

"""The Serf layer's ping delegate carries Vivaldi coordinates as Serf does: our coordinate in
every ack, the peer's coordinate and the RTT of our direct probe folded into ours."""

from __future__ import annotations

from types import SimpleNamespace

from gossip import codec
from gossip.serf import Serf, SerfDelegate
from gossip.serf_config import SerfConfig
from gossip.serf_messages import Coordinate


def _pair() -> tuple[SerfDelegate, SerfDelegate]:
    return (SerfDelegate(Serf(SerfConfig(node_name="a"))),
            SerfDelegate(Serf(SerfConfig(node_name="b"))))


def test_ack_payload_is_serfs_coordinate_payload() -> None:
    a, _ = _pair()
    payload = a.ack_payload()
    assert payload[0] == 0x01                      # Serf's PingVersion
    assert codec.decode_coordinate(payload) == a.serf.vivaldi.coord


def test_probes_move_both_sides_towards_the_measured_rtt() -> None:
    a, b = _pair()
    na, nb = SimpleNamespace(name="a"), SimpleNamespace(name="b")
    for _ in range(60):                            # a probes b and b probes a, 20 ms apart
        a.notify_ping_complete(nb, 0.020, b.ack_payload(), 0.0)
        b.notify_ping_complete(na, 0.020, a.ack_payload(), 0.0)
    from gossip import distance

    est = distance(a.serf.vivaldi.coord, a.serf.coordinates["b"])
    assert 0.010 < est < 0.030, est
    assert a.serf.counters["serf.coordinate.updates"] == 60


def test_bad_or_missing_payloads_are_counted_not_raised() -> None:
    a, _ = _pair()
    nb = SimpleNamespace(name="b")
    before = a.serf.vivaldi.coord
    a.notify_ping_complete(nb, 0.02, b"", 0.0)                 # a peer without coordinates
    a.notify_ping_complete(nb, 0.02, b"\x07junk", 0.0)         # unknown version byte
    a.notify_ping_complete(nb, 0.02, b"\x01\xc1", 0.0)         # not msgpack
    bad = codec.encode_coordinate(Coordinate(vec=(0.0,) * 3))  # wrong dimensions
    a.notify_ping_complete(nb, 0.02, bad, 0.0)
    a.notify_ping_complete(nb, 99.0, codec.encode_coordinate(Coordinate()), 0.0)  # bogus RTT
    assert a.serf.vivaldi.coord == before and "b" not in a.serf.coordinates
    assert a.serf.counters["serf.coordinate.rejected"] == 4


def test_a_node_that_leaves_is_forgotten() -> None:
    a, b = _pair()
    nb = SimpleNamespace(name="b", addr="127.0.0.1", port=1, meta=b"", vsn=())
    a.notify_ping_complete(nb, 0.02, b.ack_payload(), 0.0)
    assert "b" in a.serf.coordinates
    a.notify_leave(nb, 1.0)
    assert "b" not in a.serf.coordinates

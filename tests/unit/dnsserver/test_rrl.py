"""Response-rate limiting on a manual clock: credit, debt, slip, prefixes, the table cap."""

from __future__ import annotations

import pytest

from dnsserver import ConfigError, DNSConfig
from dnsserver.rrl import RateLimitConfig, RateLimiter, Verdict, client_key

SEND, DROP, SLIP = Verdict.SEND, Verdict.DROP, Verdict.SLIP


def run(limiter: RateLimiter, host: str, times: list[float]) -> list[Verdict]:
    return [limiter.check(host, t) for t in times]


@pytest.mark.parametrize(("host", "other", "same"), [
    ("192.0.2.1", "192.0.2.254", True),          # same /24
    ("192.0.2.1", "192.0.3.1", False),
    ("2001:db8:0:ff::1", "2001:db8:0:ff:ffff::9", True),   # same /56
    ("2001:db8:0:100::1", "2001:db8:0:ff::1", False),
    ("::ffff:192.0.2.7", "192.0.2.8", True),     # v4-mapped counts as IPv4
    ("0.0.0.1", "::1", False),                   # families never collide
])
def test_client_key_groups_by_prefix(host: str, other: str, same: bool) -> None:
    assert (client_key(host, 24, 56) == client_key(other, 24, 56)) is same


def test_burst_of_rate_then_limited_with_slip() -> None:
    lim = RateLimiter(RateLimitConfig(responses_per_second=5, slip=2))
    got = run(lim, "192.0.2.1", [0.0] * 10)
    assert got == [SEND] * 5 + [DROP, SLIP, DROP, SLIP, DROP]
    assert (lim.sent, lim.dropped, lim.slipped) == (5, 3, 2)


@pytest.mark.parametrize(("slip", "expect"), [
    (0, [DROP] * 4),
    (1, [SLIP] * 4),
    (3, [DROP, DROP, SLIP, DROP]),
])
def test_slip_values(slip: int, expect: list[Verdict]) -> None:
    lim = RateLimiter(RateLimitConfig(responses_per_second=1, slip=slip))
    assert lim.check("192.0.2.1", 0.0) is SEND
    assert run(lim, "192.0.2.1", [0.0] * 4) == expect


def test_flood_gets_its_burst_then_nothing_and_paced_client_is_never_limited() -> None:
    # 1,000 q/s for 20 s from one network, limit 10/s: the first second's burst is answered,
    # then the account stays in debt for as long as the flood lasts.
    lim = RateLimiter(RateLimitConfig(responses_per_second=10, slip=0, window=5))
    for i in range(20_000):
        lim.check("198.51.100.9", i / 1000)
    assert lim.sent == 10 and lim.dropped == 19_990
    # A network asking at exactly the rate is never limited.
    paced = [lim.check("198.51.101.9", i / 10) for i in range(200)]
    assert paced == [SEND] * 200


def test_debt_keeps_a_flooder_limited_for_the_window() -> None:
    lim = RateLimiter(RateLimitConfig(responses_per_second=10, slip=0, window=2))
    for i in range(1000):                       # deep in debt after a 1 s flood
        lim.check("198.51.100.9", i / 1000)
    assert lim.check("198.51.100.9", 1.5) is DROP       # 0.5 s quiet: still in debt
    assert lim.check("198.51.100.9", 4.5) is SEND       # debt (-20) repaid after ~2 s quiet


def test_other_network_unaffected() -> None:
    lim = RateLimiter(RateLimitConfig(responses_per_second=2, slip=0))
    run(lim, "203.0.113.1", [0.0] * 50)
    assert run(lim, "203.0.114.1", [0.0, 0.0]) == [SEND, SEND]


def test_table_is_capped_under_many_networks() -> None:
    lim = RateLimiter(RateLimitConfig(responses_per_second=1, max_clients=64))
    for i in range(10_000):
        lim.check(f"10.{i >> 8 & 255}.{i & 255}.1", 0.0)   # 10,000 distinct /24s at once
        assert len(lim) <= 64
    assert lim.evicted > 0


def test_refilled_accounts_are_swept_before_evicting() -> None:
    lim = RateLimiter(RateLimitConfig(responses_per_second=1, max_clients=8))
    for i in range(8):
        lim.check(f"10.0.{i}.1", 0.0)
    lim.check("10.9.9.1", 5.0)        # table full; all 8 have refilled by t=5: swept, not evicted
    assert lim.evicted == 0 and len(lim) == 1


def test_config_from_dict_and_errors() -> None:
    cfg = DNSConfig.from_dict({"rate_limit": {"responses_per_second": 20, "slip": 3,
                                              "window": "10s"}}, port=0)
    assert cfg.rate_limit.enabled and cfg.rate_limit.slip == 3 and cfg.rate_limit.window == 10
    assert not DNSConfig(port=0).rate_limit.enabled              # off by default
    for bad, says in [({"responses_per_second": -1}, "negative"),
                      ({"slip": -2}, "slip"),
                      ({"ipv4_prefix_length": 33}, "1-32"),
                      ({"rps": 5}, "unknown key"),
                      ({"slip": "two"}, "not a number"),
                      ("fast", "not a map")]:
        with pytest.raises(ConfigError, match=says):
            DNSConfig.from_dict({"rate_limit": bad}, port=0)

"""Response-rate limiting (RRL) for UDP answers, per client network; sans-I/O.

Theory of operation. An open DNS port can be used to reflect and amplify traffic at a victim
whose address is spoofed as the source of many queries. Response-rate limiting, as BIND and
Knot do it, caps the answers sent to one client network per second. Clients are grouped by
prefix (an IPv4 /24, an IPv6 /56 by default) because an attacker spoofs whole ranges and a
real resolver pool sits in one. Each network has an account of credit:

* credit grows by ``rate`` per second of elapsed time, up to ``rate`` (one second's worth of
  burst), and each answer spends 1;
* with less than 1 credit the answer is *limited*, and the account still pays for it, going
  into debt (down to ``-rate * window``). So a network that asks faster than ``rate`` gets its
  first second's burst and then nothing but slipped answers until it slows down, and one that
  flooded stays limited until it has been quiet for up to ``window`` seconds (BIND's
  accounting); a network that stays at or under ``rate`` is never limited;
* of the limited answers, every ``slip``-th is not dropped but *slipped*: sent as an empty,
  truncated (TC) answer. A real client that receives it retries over TCP, which cannot be
  spoofed and is not limited, so real clients behind a flooded prefix still get answers,
  while a reflection gains nothing (the slipped answer is no larger than the query).
  ``slip`` 0 drops every limited answer, 1 slips every one.

The table of accounts is capped (``max_clients``): when full, accounts that have refilled (they
would behave like a fresh one) are swept out, and if none has, the oldest is evicted. A flood
from many prefixes therefore costs bounded memory, and can at worst make a limited prefix look
fresh again, never block a real client.
"""

from __future__ import annotations

import itertools
import socket
from dataclasses import dataclass
from enum import IntEnum

__all__ = ["RateLimitConfig", "RateLimiter", "Verdict", "client_key"]


class Verdict(IntEnum):
    """What to do with one answer."""

    SEND = 0
    DROP = 1
    SLIP = 2


@dataclass(frozen=True, kw_only=True, slots=True)
class RateLimitConfig:
    """Response-rate limiting settings (``dns_config.rate_limit``; BIND's names)."""

    responses_per_second: float = 0.0
    """Answers per second a client network may receive over UDP; 0 turns RRL off. Default 0
    (off): switch it on when the DNS port is reachable from outside."""
    slip: int = 2
    """Of the limited answers, every ``slip``-th is sent truncated (TC) so that a real client
    retries over TCP; 0 drops them all, 1 truncates them all. Default 2 (BIND's)."""
    window: float = 15.0
    """Seconds of debt an over-limit network accumulates at most: it stays limited until it has
    been quiet for about this long. Default 15 (BIND's)."""
    ipv4_prefix_length: int = 24
    """Prefix that groups IPv4 clients into one account. Default 24."""
    ipv6_prefix_length: int = 56
    """Prefix that groups IPv6 clients into one account. Default 56."""
    max_clients: int = 100_000
    """Accounts kept at most (memory is bounded under a flood from many networks); beyond it
    refilled accounts are swept and then the oldest evicted. Default 100000."""

    @property
    def enabled(self) -> bool:
        return self.responses_per_second > 0


def client_key(host: str, v4_bits: int, v6_bits: int) -> int:
    """The account key of a client address: its network prefix as an integer.

    IPv4 keys are below 2**32, IPv6 keys are offset above it, so the two never collide.
    IPv4-mapped IPv6 addresses (``::ffff:a.b.c.d``, seen on a dual-stack socket) count as IPv4.
    """
    if ":" not in host:
        return int.from_bytes(socket.inet_aton(host), "big") >> (32 - v4_bits)
    raw = socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0])
    if raw[:12] == b"\0" * 10 + b"\xff\xff":
        return int.from_bytes(raw[12:], "big") >> (32 - v4_bits)
    return (1 << 32) + (int.from_bytes(raw, "big") >> (128 - v6_bits))


class _Account:
    __slots__ = ("credit", "limited", "stamp")

    def __init__(self, credit: float, stamp: float) -> None:
        self.credit = credit
        self.stamp = stamp
        self.limited = 0


class RateLimiter:
    """Decide per answer: ``limiter.check(client_ip, now)`` -> :class:`Verdict`.

    Pure: the caller passes the time, so tests run on a manual clock.
    """

    def __init__(self, config: RateLimitConfig) -> None:
        self.config = config
        self._rate = float(config.responses_per_second)
        self._floor = -self._rate * config.window
        self._v4 = config.ipv4_prefix_length
        self._v6 = config.ipv6_prefix_length
        self._accounts: dict[int, _Account] = {}
        self.sent = 0
        """Answers allowed."""
        self.dropped = 0
        """Limited answers dropped."""
        self.slipped = 0
        """Limited answers sent truncated."""
        self.evicted = 0
        """Accounts evicted from a full table."""

    def __len__(self) -> int:
        return len(self._accounts)

    def check(self, host: str, now: float) -> Verdict:
        """Spend one answer of ``host``'s network at time ``now`` (seconds)."""
        key = client_key(host, self._v4, self._v6)
        acct = self._accounts.get(key)
        rate = self._rate
        if acct is None:
            if len(self._accounts) >= self.config.max_clients:
                self._make_room(now)
            acct = self._accounts[key] = _Account(rate, now)
        else:
            elapsed = now - acct.stamp
            if elapsed > 0:
                acct.credit = min(rate, acct.credit + elapsed * rate)
                acct.stamp = now
        if acct.credit >= 1.0:
            acct.credit -= 1.0
            self.sent += 1
            return Verdict.SEND
        acct.credit = max(self._floor, acct.credit - 1.0)
        acct.limited += 1
        slip = self.config.slip
        if slip and acct.limited % slip == 0:
            self.slipped += 1
            return Verdict.SLIP
        self.dropped += 1
        return Verdict.DROP

    def _make_room(self, now: float) -> None:
        """Free at least an eighth of the table: accounts that have refilled first (they would
        behave like new ones), then the oldest. Amortised O(1) per new account, so a flood from
        many networks cannot make every packet pay for a sweep of the whole table."""
        rate = self._rate
        accounts = self._accounts
        want = max(1, len(accounts) // 8)
        full = [k for k, a in accounts.items() if a.credit + (now - a.stamp) * rate >= rate]
        for k in full:
            del accounts[k]
        short = want - len(full)
        if short > 0:
            for k in list(itertools.islice(accounts, short)):
                del accounts[k]
            self.evicted += short

"""Configuration of the memberlist layer (SWIM + Lifeguard), one frozen dataclass.

Defaults and presets follow hashicorp/memberlist 0.2.2 (``DefaultLANConfig``,
``DefaultWANConfig``, ``DefaultLocalConfig``) so that timings match a Debian ``serf`` 0.9.4
cluster. Durations are float seconds; only the codec converts to wire units.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import replace
from typing import Any

from .dclass import dataclass
from .errors import ConfigError

__all__ = ["META_MAX_SIZE", "MemberlistConfig", "lan", "local", "wan"]

META_MAX_SIZE = 512
"""Largest node Meta memberlist accepts (``MetaMaxSize``)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class MemberlistConfig:
    """Settings of one memberlist instance. Build with :meth:`lan`, :meth:`wan` or :meth:`local`."""

    # -- identity and addresses -------------------------------------------------------------
    name: str = ""
    """Node name, unique in the cluster. Required (no default)."""
    bind_addr: str = "0.0.0.0"
    """IP the UDP and TCP sockets bind to. Default ``0.0.0.0``."""
    bind_port: int = 7946
    """Port for UDP and TCP (the same number). 0 picks a free port. Default 7946."""
    advertise_addr: str = ""
    """IP other nodes use to reach us. Empty: ``bind_addr`` when it is specific (the driver
    fills it in; binding 0.0.0.0 without an advertise address is an error). Default empty."""
    advertise_port: int = 0
    """Port other nodes use to reach us. 0: the bound port. Default 0."""

    # -- protocol versions (Vsn = [pmin, pmax, pcur, dmin, dmax, dcur]) --------------------
    protocol_min: int = 1
    """Lowest memberlist protocol we understand (``ProtocolVersionMin``). Default 1."""
    protocol_max: int = 5
    """Highest memberlist protocol we understand (``ProtocolVersionMax``). PMax >= 3 invites
    TCP fallback pings, >= 4 indirect pings with nacks, >= 5 CRC gossip and Serf relays.
    Default 5."""
    protocol_version: int = 2
    """memberlist protocol we speak (Serf maps every Serf protocol to 2). Default 2."""
    delegate_protocol_min: int = 2
    """Lowest delegate (Serf) protocol we understand. Default 2."""
    delegate_protocol_max: int = 5
    """Highest delegate (Serf) protocol we understand; must be >= 5 to merge with Debian serf.
    Default 5."""
    delegate_protocol_version: int = 4
    """Delegate (Serf) protocol we speak: 4, or 5 when the Serf layer implements query relay.
    Default 4."""

    # -- failure detection (SWIM probe) -----------------------------------------------------
    probe_interval: float = 1.0
    """Seconds between probes, scaled by the awareness multiplier (score+1). LAN 1 s, WAN 5 s,
    local 1 s."""
    probe_timeout: float = 0.5
    """Seconds to wait for a direct ack before indirect probes (not scaled by awareness); should
    be about the 99th percentile RTT. LAN 0.5 s, WAN 3 s, local 0.2 s."""
    indirect_checks: int = 3
    """Number of nodes asked to probe a target indirectly (k in SWIM). LAN 3, WAN 3, local 1."""
    disable_tcp_pings: bool = False
    """Do not send the TCP fallback ping to PMax>=3 targets. Default False."""
    awareness_max_multiplier: int = 8
    """Upper bound of the Lifeguard local-health multiplier: score is 0..this-1 and probe
    interval/ack deadline are scaled by score+1. Default 8."""

    # -- suspicion (Lifeguard) -----------------------------------------------------------------
    suspicion_mult: int = 4
    """Suspicion timeout multiplier. min = suspicion_mult * max(1, log10(max(1, n))) *
    probe_interval; confirmations needed k = suspicion_mult - 2. LAN 4, WAN 6, local 3."""
    suspicion_max_timeout_mult: int = 6
    """max = suspicion_max_timeout_mult * min: the suspicion timeout with no confirmations.
    Default 6."""

    # -- dissemination -----------------------------------------------------------------------
    retransmit_mult: int = 4
    """Each broadcast is sent retransmit_mult * ceil(log10(n+1)) times. LAN 4, WAN 4, local 2."""
    gossip_interval: float = 0.2
    """Seconds between gossip rounds. LAN 0.2 s, WAN 0.5 s, local 0.1 s."""
    gossip_nodes: int = 3
    """Random nodes gossiped to per round. LAN 3, WAN 4, local 3."""
    eager_gossip: bool = True
    """Start an extra gossip round as soon as a new broadcast is queued (a member joined,
    is suspected, died or left; a Serf intent or user event) instead of waiting up to a
    gossip_interval for the next regular round; at most one such round per
    ``eager_gossip_gap``, and in a burst one per interval (``eager_gossip_burst``).
    An extra round carries only the news (broadcasts not yet sent to gossip_nodes peers);
    retransmissions wait for the regular rounds, so a burst of news (many joins at once) is
    not slowed by peers decoding copies they already have. Each broadcast is still sent
    retransmit_mult * log(n) times in all, so the bytes stay the same; news just leaves
    sooner (on average half a gossip interval earlier per hop). memberlist has no such round;
    turn it off to mimic its timing exactly. Default True."""
    eager_gossip_gap: float = 0.0
    """Seconds from one eager round to the next at least; 0 (the default) means a quarter of
    gossip_interval."""
    eager_gossip_burst: int = 3
    """Eager rounds that may run back to back (``eager_gossip_gap`` apart); beyond them, one
    per gossip_interval (a token bucket: one round's worth comes back every interval). A few
    pieces of news (a suspicion, its confirmations, the death; a leave) each leave every node
    at once; a burst (many joins at once) gets one extra round per interval beside the
    regular one. Unbounded rounds every quarter interval made a 50-agent join storm on one
    core slower, not faster (median 2.6 s against 1.7 s at one per interval: more, smaller
    packets for processes that had no CPU to spare). 0: no limit but the gap."""
    quiet_idle_rounds: bool = True
    """Do not wake up for a regular gossip round that has nothing to send (issue 18: idle
    CPU). A round with nothing queued sends nothing (as in memberlist), so while the queues
    are empty :meth:`Memberlist.next_deadline` reports the next other timer instead; the
    skipped round runs, still empty, at that wake-up, and the regular rounds keep their phase.
    As soon as something is queued the next deadline is the overdue round again, so the
    driver (which re-arms after every entry point) wakes at once: news never waits longer
    than with the round armed. Default True; False wakes for every round."""
    gossip_to_the_dead_time: float = 30.0
    """Seconds we keep gossiping to a dead node (so it may refute); dead nodes are reaped after
    this at the next probe-list wrap. LAN 30 s, WAN 60 s, local 15 s."""
    udp_buffer_size: int = 1400
    """Byte budget of one outgoing UDP packet, piggy-backed broadcasts included. Default 1400."""
    enable_compression: bool = True
    """LZW-compress packets (used only when shorter) and streams (always). Default True."""
    handoff_queue_depth: int = 1024
    """Most gossip messages (alive/suspect/dead/user) accepted per receive batch before drops
    (memberlist ``HandoffQueueDepth``). Default 1024."""

    # -- anti-entropy -----------------------------------------------------------------------
    push_pull_interval: float = 30.0
    """Seconds between periodic push/pull syncs, scaled by 1 for n<=32 else
    ceil(log2(n) - 5) + 1; 0 disables. LAN 30 s, WAN 60 s, local 15 s."""
    join_resync: bool = True
    """After a successful join, one more push/pull with a random other member, 10 gossip
    intervals later (2 s on LAN). Gossip reaches every node only with high probability: when
    many nodes join at once, a node now and then misses the news of one that joined just
    after it and would wait for its first periodic push/pull (at a random point of the first
    push_pull_interval, up to 30 s). The resync fetches the whole state once the join burst
    has been gossiped. memberlist has no such exchange; turn it off to mimic it. Default True."""
    stranger_sync: float = 10.0
    """Seconds after we first hear from a sender we do not list as a member before we
    push/pull with it, if it is still not one; 0 never. Such a sender knows us, so we are the one who missed the
    news of its join (gossip reaches every node only with high probability, and a loaded
    host drops datagrams); without this we would learn of it at a periodic push/pull, up to
    push_pull_interval scaled by the pool's size later (90 s at 100 nodes). The wait lets
    ordinary join gossip arrive first; at most one such exchange runs at a time, one starts
    at most every stranger_sync seconds, and the same address is tried again only after six
    times as long. memberlist has no such exchange; set 0 to mimic it. LAN 10 s, WAN 30 s,
    local 5 s."""
    tcp_timeout: float = 10.0
    """Deadline in seconds of one TCP exchange (push/pull, TCP ping, inbound connection).
    LAN 10 s, WAN 30 s, local 1 s."""
    dead_node_reclaim_time: float = 0.0
    """Seconds after which a dead node's name may come back from another address; 0 never.
    Default 0."""

    # -- encryption -----------------------------------------------------------------------
    secret_keys: tuple[bytes, ...] = ()
    """AES keys (16, 24 or 32 bytes), primary first. Empty: no encryption. Default empty."""
    gossip_verify_incoming: bool = True
    """With keys set, drop plaintext packets/streams. Default True."""
    gossip_verify_outgoing: bool = True
    """With keys set, encrypt what we send. Default True."""

    # -- leave --------------------------------------------------------------------------
    leave_timeout: float = 5.0
    """Longest wait in seconds for our own leave message to be sent out (Serf
    BroadcastTimeout). Default 5 s."""

    # -- caps on what the network fills -----------------------------------------------------
    max_packet_size: int = 65536
    """Largest UDP datagram read. Default 65536 bytes."""
    max_stream_size: int = 20 * 1024 * 1024
    """Largest TCP stream (request or answer) accepted. Default 20 MiB (memberlist's limit)."""
    max_decompressed_size: int = 20 * 1024 * 1024
    """Largest decompressed payload accepted (LZW bombs). Default 20 MiB."""
    max_pending_streams: int = 128
    """Most TCP exchanges (inbound plus outbound) in flight at once; more are refused.
    Default 128 (memberlist's push/pull limit)."""
    max_push_pull_nodes: int = 100_000
    """Largest node count accepted in one push/pull. Default 100000."""
    push_pull_slice: int = 256
    """Node states a push/pull works through per slice (decoding, merging or encoding them;
    a state that needs little work, a cached encoding or an alive that is not news, counts
    1/4 or 1/8): a push/pull of thousands of members is handled
    in several short timer callbacks instead of one long one (issue 13's 20 ms per
    callback; ~3-6 ms per slice at 256). Default 256."""
    max_nodes: int = 100_000
    """Most nodes kept in the table; alives about new nodes beyond this are dropped.
    Default 100000."""
    event_queue_depth: int = 8192
    """Most undelivered events kept by the core for :meth:`Memberlist.next_event`; the oldest
    are dropped (and counted) beyond it. Default 8192."""
    max_broadcast_queue: int = 4096
    """Most queued memberlist broadcasts; oldest-most-sent are pruned beyond it. Default 4096."""

    # -- presets ------------------------------------------------------------------------------
    @classmethod
    def lan(cls, **overrides: Any) -> MemberlistConfig:
        """memberlist ``DefaultLANConfig`` (what ``serf agent`` uses by default)."""
        return cls(**overrides)

    @classmethod
    def wan(cls, **overrides: Any) -> MemberlistConfig:
        """memberlist ``DefaultWANConfig``."""
        base: dict[str, Any] = {
            "tcp_timeout": 30.0,
            "suspicion_mult": 6,
            "push_pull_interval": 60.0,
            "probe_timeout": 3.0,
            "probe_interval": 5.0,
            "gossip_nodes": 4,
            "gossip_interval": 0.5,
            "gossip_to_the_dead_time": 60.0,
            "stranger_sync": 30.0,
        }
        base.update(overrides)
        return cls(**base)

    @classmethod
    def local(cls, **overrides: Any) -> MemberlistConfig:
        """memberlist ``DefaultLocalConfig`` (loopback / one host)."""
        base: dict[str, Any] = {
            "tcp_timeout": 1.0,
            "indirect_checks": 1,
            "retransmit_mult": 2,
            "suspicion_mult": 3,
            "push_pull_interval": 15.0,
            "probe_timeout": 0.2,
            "probe_interval": 1.0,
            "gossip_interval": 0.1,
            "gossip_to_the_dead_time": 15.0,
            "stranger_sync": 5.0,
        }
        base.update(overrides)
        return cls(**base)

    def replace(self, **changes: Any) -> MemberlistConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)

    # -- derived ------------------------------------------------------------------------------
    @property
    def vsn(self) -> tuple[int, int, int, int, int, int]:
        """What we advertise in alive/push-pull: (pmin, pmax, pcur, dmin, dmax, dcur)."""
        return (
            self.protocol_min,
            self.protocol_max,
            self.protocol_version,
            self.delegate_protocol_min,
            self.delegate_protocol_max,
            self.delegate_protocol_version,
        )

    def validate(self) -> MemberlistConfig:
        """Raise :class:`ConfigError` naming the setting and the fix; return self if fine."""

        def bad(setting: str, msg: str) -> ConfigError:
            return ConfigError(f"gossip.{setting}: {msg}")

        if not self.name:
            raise bad("name", "empty; set a node name unique in the cluster")
        if len(self.name.encode()) > 512:
            raise bad("name", "longer than 512 bytes; use a shorter node name")
        for attr in ("bind_addr", "advertise_addr"):
            value = getattr(self, attr)
            if attr == "advertise_addr" and not value:
                continue
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise bad(attr, f"{value!r} is not an IP address; use e.g. 127.0.0.1") from None
        if self.advertise_addr and ipaddress.ip_address(self.advertise_addr).is_unspecified:
            raise bad("advertise_addr", f"{self.advertise_addr} cannot be reached; use a real IP")
        for attr in ("bind_port", "advertise_port"):
            value = getattr(self, attr)
            if not isinstance(value, int) or not 0 <= value <= 65535:
                raise bad(attr, f"{value!r} is not a port; use 0-65535 (0 = pick/bound port)")
        if not 1 <= self.protocol_min <= self.protocol_version <= self.protocol_max:
            raise bad(
                "protocol_version",
                f"need 1 <= protocol_min ({self.protocol_min}) <= protocol_version "
                f"({self.protocol_version}) <= protocol_max ({self.protocol_max}); use 1, 2, 5",
            )
        if self.protocol_version < 2:
            raise bad("protocol_version", "protocol 1 is not supported; use 2")
        if not (
            1
            <= self.delegate_protocol_min
            <= self.delegate_protocol_version
            <= self.delegate_protocol_max
        ):
            raise bad(
                "delegate_protocol_version",
                f"need delegate_protocol_min ({self.delegate_protocol_min}) <= "
                f"delegate_protocol_version ({self.delegate_protocol_version}) <= "
                f"delegate_protocol_max ({self.delegate_protocol_max}); use 2, 4, 5",
            )
        if any(v > 255 for v in self.vsn):
            raise bad("protocol_max", "protocol numbers are one byte; use values <= 255")
        for attr in (
            "probe_interval",
            "probe_timeout",
            "gossip_interval",
            "tcp_timeout",
            "leave_timeout",
        ):
            value = getattr(self, attr)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise bad(attr, f"{value!r} must be a positive number of seconds")
        for attr in ("gossip_to_the_dead_time", "push_pull_interval", "dead_node_reclaim_time",
                     "stranger_sync", "eager_gossip_gap"):
            value = getattr(self, attr)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise bad(attr, f"{value!r} must be >= 0 seconds")
        if self.probe_timeout >= self.probe_interval:
            raise bad(
                "probe_timeout",
                f"{self.probe_timeout} s is not below probe_interval {self.probe_interval} s; "
                "lower probe_timeout or raise probe_interval",
            )
        for attr, low in (
            ("indirect_checks", 0),
            ("gossip_nodes", 0),
            ("eager_gossip_burst", 0),
            ("suspicion_mult", 1),
            ("suspicion_max_timeout_mult", 1),
            ("retransmit_mult", 1),
            ("awareness_max_multiplier", 1),
            ("handoff_queue_depth", 1),
            ("max_pending_streams", 1),
            ("max_push_pull_nodes", 1),
            ("push_pull_slice", 1),
            ("max_nodes", 1),
            ("event_queue_depth", 1),
            ("max_broadcast_queue", 1),
        ):
            value = getattr(self, attr)
            if not isinstance(value, int) or value < low:
                raise bad(attr, f"{value!r} must be an integer >= {low}")
        if not 576 <= self.udp_buffer_size <= 65000:
            raise bad(
                "udp_buffer_size",
                f"{self.udp_buffer_size} out of range; use 576-65000 (1400 fits Ethernet MTU)",
            )
        if self.max_packet_size < self.udp_buffer_size:
            raise bad("max_packet_size", "smaller than udp_buffer_size; raise it (65536)")
        if self.max_stream_size < 64 * 1024:
            raise bad("max_stream_size", "below 64 KiB; push/pull answers need more (20 MiB)")
        if self.max_decompressed_size < self.max_packet_size:
            raise bad("max_decompressed_size", "below max_packet_size; raise it")
        for i, key in enumerate(self.secret_keys):
            if not isinstance(key, bytes) or len(key) not in (16, 24, 32):
                raise bad(
                    f"secret_keys[{i}]",
                    "an AES key must be 16, 24 or 32 bytes (serf keygen gives 32, base64)",
                )
        return self


def lan(**overrides: Any) -> MemberlistConfig:
    """Same as :meth:`MemberlistConfig.lan`."""
    return MemberlistConfig.lan(**overrides)


def wan(**overrides: Any) -> MemberlistConfig:
    """Same as :meth:`MemberlistConfig.wan`."""
    return MemberlistConfig.wan(**overrides)


def local(**overrides: Any) -> MemberlistConfig:
    """Same as :meth:`MemberlistConfig.local`."""
    return MemberlistConfig.local(**overrides)

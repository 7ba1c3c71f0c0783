"""Configuration of the Serf layer (tags, intents, events, queries, reaping, snapshot, handlers).

Defaults follow the Serf 0.9.4 agent (``reference/memberlist-wire.md`` §7.13). Durations are float
seconds. ``local()`` shortens the reap/reconnect timers for tests and single-host clusters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import field, replace

from .dclass import dataclass
from .errors import ConfigError

RUMOR_TAG = "rumor"
"""Reserved gossip tag every Rumor agent puts in its Meta (value: the Rumor version). Peers
carrying it are Rumor agents and receive application-channel messages; plain Serf agents never
carry it and never receive them."""

RUMOR_VERSION = "0.1.0"

META_MAX_SIZE = 512
"""memberlist's MetaMaxSize: the encoded tag blob (``0xff`` + msgpack map) must fit in it."""


@dataclass(frozen=True, kw_only=True)
class SerfConfig:
    """Settings of the Serf layer. Build with ``SerfConfig(node_name=..., tags=...)``."""

    node_name: str
    """This node's name, unique in the cluster (must equal the memberlist node name)."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Gossip tags, encoded into memberlist Meta as ``0xff + msgpack(map)`` (at most 512 bytes in
    total, reserved ``rumor`` tag included). Default: none."""
    protocol_version: int = 5
    """Serf (delegate) protocol spoken: 2..5. Default 5 (relay understood)."""
    broadcast_timeout: float = 5.0
    """Seconds to wait for the leave intent to be gossiped before leaving memberlist. Serf: 5 s."""
    leave_notify_max: int = 32
    """On a graceful leave, also send our leave intent, and then memberlist's leave message,
    straight to this many random live members (gossip alone may miss some when few members
    are alive and some just died). 0 = gossip only."""
    leave_propagate_delay: float = 1.0
    """Seconds to wait after the memberlist leave so that it spreads. Serf: 1 s."""
    reap_interval: float = 15.0
    """Seconds between reaping passes over failed and left members. Serf: 15 s."""
    reconnect_interval: float = 30.0
    """Seconds between reconnect attempts to a random failed member. Serf: 30 s."""
    reconnect_timeout: float = 24 * 3600.0
    """Seconds a failed member is kept (and reconnected to) before it is reaped. Serf: 24 h."""
    tombstone_timeout: float = 24 * 3600.0
    """Seconds a left member is kept before it is reaped. Serf: 24 h."""
    flap_timeout: float = 60.0
    """A failed member back within this many seconds counts as a flap (``serf.member.flap``).
    Serf: 60 s."""
    queue_check_interval: float = 30.0
    """Seconds between checks of the broadcast queue depths. Serf: 30 s."""
    queue_depth_warning: int = 128
    """Log a warning when a broadcast queue is deeper than this at a check. Serf: 128."""
    recent_intent_timeout: float = 300.0
    """Seconds an intent about a not-yet-known node is buffered. Serf: 5 min."""
    event_buffer: int = 512
    """Slots of the user-event de-duplication ring (``LTime % event_buffer``). Serf: 512."""
    query_buffer: int = 512
    """Slots of the query de-duplication ring. Serf: 512."""
    query_timeout_mult: int = 16
    """Default query timeout = gossip_interval × this × ceil(log10(N+1)). Serf: 16."""
    query_size_limit: int = 1024
    """Largest encoded query we send, bytes. Serf: 1024."""
    query_response_size_limit: int = 1024
    """Largest encoded query response we send, bytes. Serf: 1024."""
    user_event_size_limit: int = 512
    """Largest user event (name + payload, and encoded message) we send, bytes. Serf agent: 512;
    hard ceiling 9 KiB."""
    max_queue_depth: int = 4096
    """Most broadcasts kept in each Serf queue (intents, events, queries, app); older ones are
    dropped first. Serf: 4096."""
    max_pending_queries: int = 64
    """Most queries of ours waiting for answers at once; the oldest is closed first."""
    max_responses_per_query: int = 4096
    """Most acks or responses collected for one query."""
    max_intent_buffer: int = 4096
    """Most intents kept for unknown nodes."""
    recent_events_max: int = 256
    """User events remembered for ``recent_events()`` (/v1/event/list). Consul keeps 256."""
    app_message_max: int = 1200
    """Largest application-channel message (``broadcast_app``), bytes; it must fit one packet."""
    app_state_max: int = 8 * 1024 * 1024
    """Largest application state accepted in a push/pull, bytes."""
    enable_name_conflict_resolution: bool = True
    """Answer ``_serf_conflict`` queries (we always answer; this controls whether we ask)."""
    snapshot_path: str = ""
    """Snapshot file (append-only log). Empty: no snapshot, no automatic rejoin."""
    snapshot_min_compact_size: int = 128 * 1024
    """Compact the snapshot when it grows beyond max(this, 2 × its compacted size), bytes."""
    snapshot_flush_interval: float = 0.5
    """Seconds between snapshot flushes (writes run in a thread, never on the loop)."""
    rejoin_after_leave: bool = False
    """Rejoin the snapshot's members even if the last run ended with a graceful leave."""
    event_handlers: tuple[str, ...] = ()
    """Event handler scripts ``[filter=]command`` (Serf syntax), run by ``sh -c``."""
    coalesce_period: float = 3.0
    """Member events for handlers are held at most this long and merged per member (Serf
    agent: 3 s). 0 disables coalescing."""
    quiescent_period: float = 1.0
    """...or released after this long without a new member event (Serf agent: 1 s)."""
    user_coalesce_period: float = 3.0
    """User events sent with coalescing on are held at most this long, newest per name kept
    (Serf agent: 3 s). 0 disables."""
    user_quiescent_period: float = 1.0
    """...or released after this long without a new one (Serf agent: 1 s)."""
    handler_timeout: float = 60.0
    """Seconds an event handler may run before it is killed."""
    max_handler_queue: int = 1024
    """Events waiting for handlers; further ones are dropped and counted."""
    identify_rumor_peers: bool = True
    """Add the reserved ``rumor`` tag to our Meta so that peers know we speak the app channel."""

    @classmethod
    def local(cls, node_name: str, **kw: object) -> SerfConfig:
        """Short timers for tests on one host (reap after 30 s, reconnect every 2 s)."""
        base = cls(
            node_name=node_name,
            broadcast_timeout=2.0,
            leave_propagate_delay=0.5,
            reap_interval=2.0,
            reconnect_interval=2.0,
            reconnect_timeout=30.0,
            tombstone_timeout=30.0,
        )
        return replace(base, **kw)  # type: ignore[arg-type]

    def effective_tags(self) -> dict[str, str]:
        """The tags we advertise: the configured ones plus the reserved Rumor tag."""
        tags = dict(self.tags)
        if self.identify_rumor_peers:
            tags[RUMOR_TAG] = RUMOR_VERSION
        return tags

    def validate(self) -> None:
        """Raise ConfigError naming the first bad setting and how to fix it."""
        if not self.node_name or len(self.node_name) > 128 or any(c.isspace() for c in self.node_name):
            raise ConfigError(f"serf.node_name: {self.node_name!r} must be 1-128 characters, no spaces")
        if not 2 <= self.protocol_version <= 5:
            raise ConfigError(f"serf.protocol_version: {self.protocol_version}; use 2-5")
        for k, v in self.tags.items():
            if not isinstance(k, str) or not isinstance(v, str) or not k:
                raise ConfigError(f"serf.tags: {k!r}={v!r}; tags are non-empty string keys and string values")
        if self.identify_rumor_peers and RUMOR_TAG in self.tags:
            raise ConfigError(f"serf.tags: {RUMOR_TAG!r} is reserved for Rumor; choose another tag name")
        from .serf import encode_tags  # local import: serf imports this module

        size = len(encode_tags(self.effective_tags()))
        if size > META_MAX_SIZE:
            raise ConfigError(f"serf.tags: encoded tags are {size} bytes; the limit is {META_MAX_SIZE}")
        positive = (
            "broadcast_timeout", "reap_interval", "reconnect_interval", "reconnect_timeout",
            "tombstone_timeout", "recent_intent_timeout", "snapshot_flush_interval",
            "flap_timeout", "queue_check_interval",
            "handler_timeout",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"serf.{name}: {getattr(self, name)} must be more than 0 seconds")
        for name in ("coalesce_period", "quiescent_period", "user_coalesce_period",
                     "user_quiescent_period"):
            if getattr(self, name) < 0:
                raise ConfigError(f"serf.{name}: must be 0 (off) or more seconds")
        if self.leave_notify_max < 0:
            raise ConfigError("serf.leave_notify_max: must be 0 or more")
        if self.leave_propagate_delay < 0:
            raise ConfigError("serf.leave_propagate_delay: must be 0 or more seconds")
        counts = (
            "event_buffer", "query_buffer", "query_timeout_mult", "max_queue_depth",
            "max_pending_queries", "max_responses_per_query", "max_intent_buffer",
            "queue_depth_warning",
            "recent_events_max", "max_handler_queue",
        )
        for name in counts:
            if getattr(self, name) < 1:
                raise ConfigError(f"serf.{name}: {getattr(self, name)} must be at least 1")
        if not 16 <= self.user_event_size_limit <= 9 * 1024:
            raise ConfigError(
                f"serf.user_event_size_limit: {self.user_event_size_limit}; use 16-9216 bytes (Serf's ceiling is 9 KiB)"
            )
        for name in ("query_size_limit", "query_response_size_limit"):
            if not 64 <= getattr(self, name) <= 64 * 1024:
                raise ConfigError(f"serf.{name}: {getattr(self, name)}; use 64-65536 bytes")
        if not 64 <= self.app_message_max <= 1300:
            raise ConfigError(f"serf.app_message_max: {self.app_message_max}; use 64-1300 bytes (one packet)")
        if self.app_state_max < 1024:
            raise ConfigError("serf.app_state_max: must be at least 1024 bytes")
        for h in self.event_handlers:
            parse_handler_spec(h)


_EVENT_TYPES = ("member-join", "member-leave", "member-failed", "member-update", "member-reap",
                "user", "query", "*")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:\-]*$")


def parse_handler_spec(spec: str) -> tuple[tuple[tuple[str, str], ...], str]:
    """Parse ``[filter=]command``; filters are ``type[:name]`` joined by commas.

    Returns ((type, name), ...), command. Mirrors Serf's agent/event_handler.go grammar: the part
    before the first ``=`` is a filter list only if every element is a known event type.
    """
    text = spec.strip()
    if not text:
        raise ConfigError("event_handlers: empty handler; use [filter=]command")
    filters: list[tuple[str, str]] = [("*", "")]
    command = text
    head, sep, rest = text.partition("=")
    if sep and head and " " not in head:
        parsed: list[tuple[str, str]] = []
        for part in head.split(","):
            kind, _, name = part.partition(":")
            if kind not in _EVENT_TYPES:
                raise ConfigError(
                    f"event_handlers: {part!r} is not an event type; use one of "
                    + ", ".join(_EVENT_TYPES) + " (user:NAME and query:NAME filter by name)"
                )
            if name and kind not in ("user", "query"):
                raise ConfigError(f"event_handlers: only user and query filters take a name, not {part!r}")
            if not _NAME_RE.match(name):
                raise ConfigError(f"event_handlers: bad event name in {part!r}")
            parsed.append((kind, name))
        filters = parsed
        command = rest.strip()
    if not command:
        raise ConfigError(f"event_handlers: {spec!r} has no command")
    return tuple(filters), command

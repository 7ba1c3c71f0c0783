"""Turn the agent's configuration into gossip configs and start the ``gossip.Gossip`` service.

``prepare_gossip(cfg)`` validates everything before the agent binds anything and raises
``ConfigError`` naming the setting (``gossip.probe_interval: ...``, ``tags: ...``,
``encrypt: ...``); ``start_gossip(cfg, datadir, prepared)`` starts the service.

The ``gossip`` section of the agent config takes ``profile`` (lan, wan, local) and, to override
the profile, any memberlist or Serf setting by its field name (durations as "10s" or seconds):
``probe_interval``, ``probe_timeout``, ``suspicion_mult``, ``gossip_interval``,
``push_pull_interval``, ``reconnect_timeout``, ``tombstone_timeout``, ``reap_interval``,
``reconnect_interval``, ``user_event_size_limit``, ``rejoin_after_leave``... Files in the data
dir: ``serf/local.snapshot`` (rejoin after restart) and ``serf/local.keyring`` (the keyring after
rotations; it wins over ``encrypt`` when present, as in Consul).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
from pathlib import Path
from typing import Any

from gossip import ConfigError as GossipConfigError
from gossip import Gossip, Keyring, KeyringError, MemberlistConfig, SerfConfig, load_keyring_file
from gossip.dclass import dataclass

from .config import AgentConfig
from .durations import parse_duration
from .errors import ConfigError
from .netaddr import advertise_address

log = logging.getLogger(__name__)

PROFILES = ("lan", "wan", "local")


def _consul_tags() -> dict[str, str]:
    """Consul's ``build`` member tag (``version:revision``; ``consul members`` shows the version
    part as Build). A tag set in the config wins."""
    from . import CONSUL_VERSION, __version__

    return {"build": f"{CONSUL_VERSION}:rumor-{__version__}"}
KEYRING_FILE = "serf/local.keyring"
SNAPSHOT_FILE = "serf/local.snapshot"

_ML_FIELDS = {f.name: f for f in dataclasses.fields(MemberlistConfig)}
_SERF_FIELDS = {f.name: f for f in dataclasses.fields(SerfConfig)}
_RESERVED = {"name", "bind_addr", "bind_port", "advertise_addr", "advertise_port", "secret_keys",
             "node_name", "tags", "snapshot_path", "event_handlers"}


@dataclass(frozen=True)
class PreparedGossip:
    memberlist: MemberlistConfig
    serf: SerfConfig
    keys: tuple[bytes, ...]


def _coerce(name: str, value: Any, kind: Any) -> Any:
    setting = f"gossip.{name}"
    k = str(kind)
    if "float" in k:
        try:
            return parse_duration(value, what=setting) if isinstance(value, str) else float(value)
        except (ValueError, TypeError) as e:
            raise ConfigError(str(e) if isinstance(e, ValueError) else f"{setting}: {value!r} is not a number") from None
    if "bool" in k:
        if not isinstance(value, bool):
            raise ConfigError(f"{setting}: {value!r} must be true or false")
        return value
    if "int" in k:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{setting}: {value!r} must be a whole number")
        return value
    raise ConfigError(f"{setting}: cannot be set from the agent configuration")


def prepare_gossip(cfg: AgentConfig) -> PreparedGossip:
    """Build and validate the memberlist and Serf configs (ConfigError names the setting)."""
    section = dict(cfg.gossip)
    profile = section.pop("profile", "lan")
    if profile not in PROFILES:
        raise ConfigError(f"gossip.profile: {profile!r}; use lan, wan or local")
    ml_over: dict[str, Any] = {}
    serf_over: dict[str, Any] = {}
    for key, value in section.items():
        if key in _RESERVED:
            raise ConfigError(f"gossip.{key}: set it with the agent's own setting, not in the gossip section")
        if key in _ML_FIELDS:
            ml_over[key] = _coerce(key, value, _ML_FIELDS[key].type)
        elif key in _SERF_FIELDS:
            serf_over[key] = _coerce(key, value, _SERF_FIELDS[key].type)
        else:
            raise ConfigError(f"gossip.{key}: unknown setting; see docs/configuration.md (gossip)")
    ml_over.setdefault("delegate_protocol_version", 5)  # we implement Serf's relay
    factory = {"lan": MemberlistConfig.lan, "wan": MemberlistConfig.wan,
               "local": MemberlistConfig.local}[profile]
    try:
        ml = factory(name=cfg.node_name, bind_addr=cfg.bind_addr, bind_port=cfg.serf_lan_port,
                     advertise_addr=advertise_address(cfg), **ml_over)
        ml.validate()
    except GossipConfigError as e:
        raise ConfigError(_prefixed(str(e))) from None
    except TypeError as e:
        raise ConfigError(f"gossip: {e}") from None
    data_dir = Path(cfg.data_dir) if cfg.data_dir else None
    try:
        base = SerfConfig.local(cfg.node_name) if profile == "local" else SerfConfig(node_name=cfg.node_name)
        serf = dataclasses.replace(
            base, tags={**_consul_tags(), **cfg.tags}, event_handlers=tuple(cfg.event_handlers),
            snapshot_path=str(data_dir / SNAPSHOT_FILE) if data_dir else "", **serf_over)
        serf.validate()
    except GossipConfigError as e:
        msg = str(e)
        if msg.startswith("serf.tags"):
            msg = msg.replace("serf.tags", "tags", 1)
        elif msg.startswith("event_handlers"):
            pass
        else:
            msg = _prefixed(msg)
        raise ConfigError(msg) from None
    keys: tuple[bytes, ...] = ()
    if cfg.encrypt:
        try:
            raw_key = base64.b64decode(cfg.encrypt, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError("encrypt: not valid base64; generate a key with `rumor keygen`") from None
        if len(raw_key) not in (16, 24, 32):
            raise ConfigError(f"encrypt: the key is {len(raw_key)} bytes; it must be 16, 24 or 32")
        keys = (raw_key,)
    return PreparedGossip(ml, serf, keys)


def _prefixed(msg: str) -> str:
    for prefix in ("memberlist.", "serf.", "gossip."):
        if msg.startswith(prefix):
            return "gossip." + msg[len(prefix):]
    return "gossip: " + msg


def load_keyring(path: Path, fallback: tuple[bytes, ...]) -> Keyring | None:
    """The saved keyring (after rotations) if there is one, else the ``encrypt`` key."""
    try:
        ring = load_keyring_file(path)
    except KeyringError as e:
        raise ConfigError(f"encrypt: {e}; fix or delete the file") from None
    except OSError as e:
        raise ConfigError(f"encrypt: cannot read {path}: {e.strerror or e}") from None
    if ring is not None:
        if fallback and fallback[0] not in ring:
            log.warning("using the saved keyring path=%s; the encrypt key is not in it", path)
        return ring
    return Keyring(fallback) if fallback else None


async def start_gossip(cfg: AgentConfig, datadir: Any, prepared: PreparedGossip) -> Gossip:
    """Start the gossip service for the agent (rejoins the snapshot's members by itself)."""
    base = Path(datadir.path) if datadir is not None else None
    keyring: Keyring | None = None
    keyring_path: Path | None = None
    if base is not None:
        keyring_path = base / KEYRING_FILE
        keyring = load_keyring(keyring_path, prepared.keys)
        serf = dataclasses.replace(prepared.serf, snapshot_path=str(base / SNAPSHOT_FILE))
    else:
        keyring = Keyring(prepared.keys) if prepared.keys else None
        serf = prepared.serf
    g = Gossip(prepared.memberlist, serf, keyring=keyring, keyring_path=keyring_path)
    try:
        await g.start(release_memory=False)   # the agent does it once it is up
    except OSError as e:
        raise ConfigError(
            f"ports.serf_lan: cannot bind {cfg.bind_addr}:{cfg.serf_lan_port} ({e.strerror or e}); "
            "pick another port with -serf-lan-port"
        ) from None
    return g

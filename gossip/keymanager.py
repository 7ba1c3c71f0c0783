"""Cluster-wide key rotation through Serf's internal key queries (§7.11), both sides.

Answering side: :func:`install_key_handlers` registers ``_serf_install-key``, ``_serf_use-key``,
``_serf_remove-key`` and ``_serf_list-keys`` on a :class:`gossip.serf.Serf` core; each acts on the
local :class:`gossip.security.Keyring` and answers ``0x08 + msgpack{Keys, Message, PrimaryKey,
Result}`` exactly as ``serf agent`` does, so ``serf keys`` works on a mixed cluster.

Asking side: :func:`request_payload` builds the query payload, and :func:`summarize` folds the
responses into a :class:`KeyResponse`, counting a node that did not answer as a failure the way
Serf's KeyManager does (it expects one response per live member).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import field
from typing import TYPE_CHECKING

from . import codec
from .atomicfile import atomic_write
from .dclass import dataclass
from .errors import EncryptionError, KeyringError, MalformedPacket
from .security import Keyring, decode_key, encode_key
from .serf_messages import KeyRequest, Query
from .serf_messages import KeyResponse as WireKeyResponse

if TYPE_CHECKING:
    from .serf import Serf

log = logging.getLogger(__name__)

OPERATIONS = ("install-key", "use-key", "remove-key", "list-keys")
_ERR_PREFIX = {
    "install-key": "Failed to install key",
    "use-key": "Failed to change primary key",
    "remove-key": "Failed to remove key",
}
_MAX_KEYS_IN_RESPONSE = 64


@dataclass(frozen=True, kw_only=True)
class KeyResponse:
    """Outcome of a cluster-wide key operation (Serf's KeyResponse)."""

    operation: str
    num_nodes: int
    """Live members expected to answer."""
    num_resp: int
    """Members that answered."""
    num_err: int
    """Members that answered with an error, plus those that did not answer."""
    messages: Mapping[str, str] = field(default_factory=dict)
    """Node name -> error text, for the nodes that failed."""
    keys: Mapping[str, int] = field(default_factory=dict)
    """list-keys: base64 key -> number of nodes that have it."""
    primary_keys: Mapping[str, int] = field(default_factory=dict)
    """list-keys: base64 primary key -> number of nodes that use it."""

    @property
    def ok(self) -> bool:
        return self.num_err == 0 and self.num_resp >= self.num_nodes

    def error_text(self) -> str:
        if self.ok:
            return ""
        return f"{self.num_err}/{self.num_nodes} nodes reported failure"

    def to_json(self) -> dict[str, object]:
        """Consul's /v1/operator/keyring entry shape."""
        return {
            "WAN": False,
            "Datacenter": "",
            "Segment": "",
            "Messages": dict(self.messages),
            "Keys": dict(self.keys),
            "PrimaryKeys": dict(self.primary_keys),
            "NumNodes": self.num_nodes,
            "NumResp": self.num_resp,
            "NumErr": self.num_err,
        }


def request_payload(key_b64: str | None) -> bytes:
    """Query payload for a key operation: ``0x07 + msgpack{Key}`` (empty key for list-keys)."""
    key = decode_key(key_b64) if key_b64 else None
    return codec.encode_serf(KeyRequest(key=key))


def _response(result: bool, message: str = "", keyring: Keyring | None = None) -> bytes:
    keys: tuple[str, ...] = ()
    primary = ""
    if keyring is not None:
        all_keys, primary = keyring.list_base64()
        keys = tuple(all_keys[:_MAX_KEYS_IN_RESPONSE])
        if len(all_keys) > _MAX_KEYS_IN_RESPONSE:
            message = f"Only {_MAX_KEYS_IN_RESPONSE} of {len(all_keys)} keys listed (response size limit)"
    return codec.encode_serf(WireKeyResponse(result=result, message=message, keys=keys,
                                             primary_key=primary))


def handle_key_query(operation: str, payload: bytes, keyring: Keyring | None,
                     on_change: Callable[[Keyring], None] | None = None) -> bytes:
    """Act on the local keyring for one internal key query; returns the response payload."""
    if operation == "list-keys":
        if keyring is None or not keyring:
            return _response(False, "Keyring is empty (encryption not enabled)")
        return _response(True, "", keyring)
    if keyring is None or not keyring:
        return _response(False, "No keyring to modify (encryption not enabled)")
    try:
        msg = codec.decode_serf(payload)
    except MalformedPacket as e:
        return _response(False, f"Failed to decode key request: {e}")
    if not isinstance(msg, KeyRequest) or not msg.key:
        return _response(False, "Failed to decode key request: no key")
    try:
        if operation == "install-key":
            keyring.install(msg.key)
        elif operation == "use-key":
            keyring.use(msg.key)
        elif operation == "remove-key":
            keyring.remove(msg.key)
        else:
            return _response(False, f"unknown key operation {operation}")
    except EncryptionError as e:
        return _response(False, f"{_ERR_PREFIX[operation]}: {e}")
    log.info("keyring changed op=%s key=%s...", operation, encode_key(msg.key)[:6])
    if on_change is not None:
        try:
            on_change(keyring)
        except Exception:
            log.exception("saving the keyring failed")
    return _response(True)


def install_key_handlers(serf: Serf, get_keyring: Callable[[], Keyring | None],
                         on_change: Callable[[Keyring], None] | None = None) -> None:
    """Register the four key handlers on a Serf core's ``internal_handlers``."""
    handlers = serf.internal_handlers

    def make(op: str) -> Callable[[Query], bytes | None]:
        def handler(q: Query) -> bytes | None:
            return handle_key_query(op, q.payload or b"", get_keyring(), on_change)

        return handler

    for op in OPERATIONS:
        handlers[op] = make(op)


def summarize(operation: str, responses: Mapping[str, bytes], num_nodes: int) -> KeyResponse:
    """Fold the query responses of a key operation into a KeyResponse."""
    messages: dict[str, str] = {}
    keys: dict[str, int] = {}
    primaries: dict[str, int] = {}
    num_err = 0
    for node, payload in responses.items():
        try:
            msg = codec.decode_serf(payload)
        except MalformedPacket as e:
            messages[node] = f"Failed to decode response: {e}"
            num_err += 1
            continue
        if not isinstance(msg, WireKeyResponse):
            messages[node] = "Unexpected response type"
            num_err += 1
            continue
        if not msg.result:
            messages[node] = msg.message
            num_err += 1
        elif msg.message:
            messages[node] = msg.message
        if operation == "list-keys" and msg.result:
            for k in msg.keys:
                keys[k] = keys.get(k, 0) + 1
            if msg.primary_key:
                primaries[msg.primary_key] = primaries.get(msg.primary_key, 0) + 1
    missing = max(0, num_nodes - len(responses))
    return KeyResponse(operation=operation, num_nodes=num_nodes, num_resp=len(responses),
                       num_err=num_err + missing, messages=messages, keys=keys,
                       primary_keys=primaries)


# -- the keyring file (blocking: call from a worker thread) ---------------------------------------


def save_keyring_file(path: str | os.PathLike[str], ring: Keyring) -> None:
    """Write the keys (primary first) as a JSON list of base64 strings, atomically, mode 0600."""
    keys, _primary = ring.list_base64()
    data = (json.dumps(keys) + "\n").encode()
    atomic_write(path, data, mode=0o600)


def load_keyring_file(path: str | os.PathLike[str]) -> Keyring | None:
    """The keyring saved by :func:`save_keyring_file`; None when there is no file.

    Raises KeyringError when the file exists but is not a list of valid base64 keys."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
        if not isinstance(data, list) or not data or not all(isinstance(k, str) for k in data):
            raise ValueError("not a non-empty list of base64 keys")
        return Keyring.from_base64(data)
    except (ValueError, EncryptionError) as e:
        raise KeyringError(f"keyring file {os.fspath(path)}: {e}") from None

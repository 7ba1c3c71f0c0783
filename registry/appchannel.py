"""One gossip application channel shared by the catalog replicator and the KV store.

Gossip has one application delegate; this one routes to both:

- a message whose first byte is ``KV_TAG`` (``b"K"``) is a KV delta; anything else is a catalog
  delta (those are msgpack arrays, whose first byte is never ``K``);
- a push-pull state is the catalog's state, then the KV's, then the KV part's length (4 bytes,
  big-endian) and the trailer ``RKV1``. A state without the trailer is a catalog state alone (an
  older Rumor). An older Rumor reading ours ignores the trailing bytes after its compressed
  catalog state; it drops KV deltas as undecodable (counted).

The answering side of a push-pull merges first and answers after; each part keeps its own
answer, so both are answered in the same exchange.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable
from typing import Protocol

from .kv import KV_TAG, KVReplicator

log = logging.getLogger(__name__)

TRAILER = b"RKV1"


class CatalogChannel(Protocol):
    def notify_app_message(self, buf: bytes) -> None: ...

    def local_app_state(self, join: bool = False) -> bytes: ...

    def merge_app_state(self, buf: bytes, join: bool = False) -> None: ...


class AppChannel:
    """The gossip app delegate: catalog replication + KV replication."""

    def __init__(self, catalog: CatalogChannel, kv: KVReplicator,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.catalog = catalog
        self.kv = kv
        self.clock = clock

    def notify_app_message(self, buf: bytes) -> None:
        if buf[:1] == KV_TAG:
            self.kv.notify_message(buf)
        else:
            self.catalog.notify_app_message(buf)

    def local_app_state(self, join: bool = False) -> bytes:
        cat = self.catalog.local_app_state(join)
        kv = self.kv.local_state(self.clock())
        return cat + kv + struct.pack(">I", len(kv)) + TRAILER

    def merge_app_state(self, buf: bytes, join: bool = False) -> None:
        if len(buf) >= 8 and buf.endswith(TRAILER):
            (n,) = struct.unpack(">I", buf[-8:-4])
            if n <= len(buf) - 8:
                cut = len(buf) - 8 - n
                self.kv.merge_state(buf[cut:len(buf) - 8])
                self.catalog.merge_app_state(buf[:cut], join)
                return
        self.catalog.merge_app_state(buf, join)

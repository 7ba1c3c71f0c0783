"""One gossip application channel shared by the catalog replicator and the LWW stores.

Gossip has one application delegate; this one routes to the catalog's replicator and to each
last-writer-wins store (the KV store, tag ``K``; external nodes, tag ``X``):

- a message whose first byte is a store's tag is that store's delta; anything else is a catalog
  delta (those are msgpack arrays, whose first byte is never an ASCII letter);
- a push-pull state is the catalog's state, then each store's part followed by its length
  (4 bytes, big-endian) and its 4-byte marker (``RKV1``, ``REX1``). Parts are read off the end
  while a known marker is there; what remains is the catalog's state. An older Rumor reading ours
  ignores the bytes after its compressed catalog state, and drops store deltas as undecodable
  (counted).

The answering side of a push-pull merges first and answers after; each part keeps its own
answer, so all are answered in the same exchange.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from .kv import KVReplicator

log = logging.getLogger(__name__)


class CatalogChannel(Protocol):
    def notify_app_message(self, buf: bytes) -> None: ...

    def local_app_state(self, join: bool = False) -> bytes: ...

    def merge_app_state(self, buf: bytes, join: bool = False) -> None: ...


class AppChannel:
    """The gossip app delegate: catalog replication + the stores' replication."""

    def __init__(self, catalog: CatalogChannel,
                 parts: Sequence[tuple[bytes, KVReplicator]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``parts``: (4-byte state marker, replicator) for each store."""
        self.catalog = catalog
        self.parts = list(parts)
        self.by_tag = {rep.tag: rep for _, rep in self.parts}
        self.by_marker = dict(self.parts)
        self.clock = clock

    def notify_app_message(self, buf: bytes) -> None:
        rep = self.by_tag.get(buf[:1])
        if rep is not None:
            rep.notify_message(buf)
        else:
            self.catalog.notify_app_message(buf)

    def local_app_state(self, join: bool = False) -> bytes:
        out = [self.catalog.local_app_state(join)]
        for marker, rep in self.parts:
            part = rep.local_state(self.clock())
            out += [part, struct.pack(">I", len(part)), marker]
        return b"".join(out)

    def merge_app_state(self, buf: bytes, join: bool = False) -> None:
        end = len(buf)
        found: list[tuple[KVReplicator, bytes]] = []
        while end >= 8:
            rep = self.by_marker.get(buf[end - 4:end])
            if rep is None:
                break
            (n,) = struct.unpack(">I", buf[end - 8:end - 4])
            if n > end - 8:
                break
            found.append((rep, buf[end - 8 - n:end - 8]))
            end -= 8 + n
        for rep, part in found:
            rep.merge_state(part)
        self.catalog.merge_app_state(buf[:end], join)

"""External nodes: nodes and services registered through ``PUT /v1/catalog/register`` for hosts
that run no agent (consul-esm, Terraform's ``consul_node``, catalog-sync tools).

The agent that takes such a registration becomes the node's only writer, as it is of its own
node, and replicates it to every agent. The records live in a last-writer-wins store of their own
(the KV store's machinery, ``registry/kv.py``, under the app-channel tag ``X``), one entry per
item: ``<node>\\0n`` (the node's info), ``<node>\\0s\\0<service ID>``, ``<node>\\0c\\0<check ID>``, with
Rumor's replication record codecs as values. So an external node spreads as deltas, converges by
anti-entropy, and survives a restart or kill -9 of its agent (``external.msgpack`` in the data
dir, on disk before the API answers). Each change to a node's entries rebuilds its catalog
record, with the status ``external``: such a node has no serfHealth check (no agent reports on
it), so its instances' health is the worst of its own checks, whose statuses the registrant sets
(Consul's behaviour; consul-esm re-registers to update them).

Only the writer changes a node: another agent refuses with 403 while the writer is alive in the
gossip pool, and takes the node over (restamping every entry under its own ID) when the writer
has failed or left, so an external node never becomes unmanageable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import msgpack  # type: ignore[import-untyped]

from .catalog import EXTERNAL, Catalog, CheckRecord, NodeInfo, ServiceRecord
from .datadir import DataDir
from .errors import PermissionDenied, RequestError
from .kv import Entry
from .kv_service import KVService
from .replication import dec_check, dec_info, dec_service, enc_check, enc_info, enc_service

log = logging.getLogger(__name__)

TAG = b"X"
MARKER = b"REX1"
STATE_FILE = "external.msgpack"


def _node_key(name: str) -> str:
    return name.lower() + "\x00"


class ExternalNodes:
    """External nodes' records: the writes this agent makes, and the catalog view of all."""

    def __init__(self, catalog: Catalog, writer: str, datadir: DataDir | None,
                 broadcast: Callable[[str, bytes], None], *,
                 writer_alive: Callable[[str], bool]) -> None:
        self.catalog = catalog
        self.writer = writer
        self.service = KVService(writer, datadir, broadcast, state_file=STATE_FILE, tag=TAG)
        self.store = self.service.store
        self.replicator = self.service.replicator
        self.writer_alive = writer_alive
        self.store.listeners.append(self._on_change)
        self.conflicts = 0

    # --- from the store to the catalog ----------------------------------------------------------

    def _on_change(self, entries: list[Entry]) -> None:
        for lc in {e.key.split("\x00", 1)[0] for e in entries}:
            self._rebuild(lc)

    def rebuild_all(self) -> None:
        for lc in sorted({k.split("\x00", 1)[0] for k in self.store.entries}):
            self._rebuild(lc)

    def _records(self, lc: str) -> tuple[NodeInfo | None, dict[str, ServiceRecord],
                                          dict[str, CheckRecord]]:
        info: NodeInfo | None = None
        services: dict[str, ServiceRecord] = {}
        checks: dict[str, CheckRecord] = {}
        for e in self.store.under(_node_key(lc)):
            try:
                raw = msgpack.unpackb(e.value or b"", strict_map_key=True)
                kind = e.key[len(lc) + 1:len(lc) + 2]
                if kind == "n":
                    info = dec_info(raw)
                elif kind == "s":
                    rec = dec_service(raw)
                    services[rec.id] = rec
                elif kind == "c":
                    crec = dec_check(raw)
                    checks[crec.check_id] = crec
            except Exception as ex:  # noqa: BLE001 - a bad record from a peer is skipped
                log.warning("external node record skipped key=%r error=%r", e.key, ex)
        return info, services, checks

    def _rebuild(self, lc: str) -> None:
        info, services, checks = self._records(lc)
        status = self.catalog.node_status(lc)
        if status is not None and status != EXTERNAL:
            self.conflicts += 1
            log.warning("external node shadows an agent's node; ignored node=%s", lc)
            return
        with self.catalog.batch():
            if info is None:
                if status == EXTERNAL:
                    self.catalog.remove_node(lc)
                return
            if status is None:
                self.catalog.put_node(info, EXTERNAL)
            self.catalog.replace_node(info, services, checks)

    # --- writes from the API --------------------------------------------------------------------

    def owner(self, name: str) -> str | None:
        """The writer of the node's info, or None when the node is not registered."""
        e = self.store.get(_node_key(name) + "n")
        return e.writer if e is not None else None

    def _claim(self, name: str) -> list[tuple[str, bytes]]:
        """Check that this agent may write the node; when its writer is gone, the entries to
        restamp under this agent's ID."""
        owner = self.owner(name)
        if owner is None or owner == self.writer:
            return []
        if self.writer_alive(owner):
            raise PermissionDenied(
                f"node {name!r} is an external node written by another agent (ID {owner}); "
                "each external node has one writer: send this to that agent")
        log.info("taking over external node node=%s previous_writer=%s", name, owner)
        return [(e.key, e.value or b"") for e in self.store.under(_node_key(name))]

    async def register(self, info: NodeInfo | None, name: str,
                       service: ServiceRecord | None, checks: Iterable[CheckRecord]) -> None:
        """Write the node's info (unless None: SkipNodeUpdate), a service and checks."""
        puts = self._claim(name)
        base = _node_key(name)
        if info is not None:
            puts.append((base + "n", msgpack.packb(enc_info(info))))
        elif self.owner(name) is None:
            raise RequestError(f"SkipNodeUpdate: node {name!r} is not registered yet; "
                               "send its Address")
        if service is not None:
            puts.append((base + "s\x00" + service.id, msgpack.packb(enc_service(service))))
        for c in checks:
            puts.append((base + "c\x00" + c.check_id, msgpack.packb(enc_check(c))))
        await self._write(puts, [])

    def service_record(self, name: str, sid: str) -> ServiceRecord | None:
        e = self.store.get(_node_key(name) + "s\x00" + sid)
        if e is None or e.value is None:
            return None
        rec: ServiceRecord = dec_service(msgpack.unpackb(e.value))
        return rec

    async def deregister(self, name: str, service_id: str = "", check_id: str = "") -> None:
        """The whole node, a service (with its checks), or a check."""
        puts = self._claim(name)
        base = _node_key(name)
        if not service_id and not check_id:
            deletes = [e.key for e in self.store.under(base)]
            puts = []
        else:
            deletes = []
            if service_id:
                deletes.append(base + "s\x00" + service_id)
                _, _, checks = self._records(name.lower())
                deletes.extend(base + "c\x00" + cid for cid, c in checks.items()
                               if c.service_id == service_id)
            if check_id:
                deletes.append(base + "c\x00" + check_id)
            puts = [(k, v) for k, v in puts if k not in deletes]
        await self._write(puts, deletes)

    async def _write(self, puts: list[tuple[str, bytes]], deletes: list[str]) -> None:
        written: list[Entry] = []
        with self.catalog.batch():
            for key, value in puts:
                written.append(self.store.put(key, value))
            for key in deletes:
                written.extend(self.store.delete(key))
        if written:
            self.replicator.on_local_writes(written, time.monotonic())
            await self.service.persist()

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> int:
        n = self.service.load()
        self.rebuild_all()
        await self.service.start()
        return n

    async def stop(self) -> None:
        await self.service.stop()

    def stats(self) -> dict[str, Any]:
        out = {k.replace("kv_", "external_", 1): v for k, v in self.service.stats().items()}
        out["external_conflicts"] = self.conflicts
        return out

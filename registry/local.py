"""This agent's own services and checks: the single writer of the local node's catalog record.

Every change (API registration, config load or SIGHUP, a check result, maintenance mode) goes
through :class:`LocalState`, which validates first and then, in one step: updates the catalog in
one batch, stamps the change with a rising version of the node record (newest wins on other
agents), tells the replicator, and persists registrations to the data dir with an atomic write
(temp file + fsync + rename + directory fsync) before the API answers. A restart, even after
``kill -9``, restores the services and checks with no re-registration; TTL checks keep their last
status (like Consul), HTTP/TCP checks start from their initial status and run again.

Versions are ``max(previous + 1, wall-clock microseconds)`` so a node that lost its data dir and
starts again still publishes versions newer than the copies other agents hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from enum import StrEnum
from typing import Any, TypeVar

from gossip.dclass import dataclass

from .catalog import (
    CRITICAL,
    NODE_MAINT_CHECK_ID,
    SERVICE_MAINT_PREFIX,
    STATUSES,
    Catalog,
    CheckRecord,
    NodeInfo,
    ServiceRecord,
)
from .checks import CheckManager, cut_output
from .datadir import DataDir, atomic_write_json, read_json
from .definitions import (
    CheckDef,
    DefinitionError,
    ServiceDef,
    parse_check,
    parse_service,
    service_to_json,
)
from .errors import NotFound, RequestError

log = logging.getLogger(__name__)

STATE_FILE = "local-state.json"
NODE_MAINT_DEFAULT = ("Maintenance mode is enabled for this node, but no reason was provided. "
                      "This is a default message.")
SERVICE_MAINT_DEFAULT = ("Maintenance mode is enabled for this service, but no reason was "
                         "provided. This is a default message.")

class ItemType(StrEnum):
    """What a versioned item of a node's record is (the letters replication sends)."""

    SERVICE = "s"
    CHECK = "c"
    NODE = "n"


class ChangeKind(StrEnum):
    """What a change did. The values are the letters of replication's delta messages (a put in
    capitals, a delete in lower case), kept for wire compatibility; code names the member."""

    SERVICE_PUT = "S"
    SERVICE_DELETE = "s"
    CHECK_PUT = "C"
    CHECK_DELETE = "c"
    NODE_INFO = "N"

    @property
    def item_type(self) -> ItemType:
        return _ITEM_TYPE[self]

    @property
    def deletes(self) -> bool:
        return self in (ChangeKind.SERVICE_DELETE, ChangeKind.CHECK_DELETE)


_ITEM_TYPE = {
    ChangeKind.SERVICE_PUT: ItemType.SERVICE, ChangeKind.SERVICE_DELETE: ItemType.SERVICE,
    ChangeKind.CHECK_PUT: ItemType.CHECK, ChangeKind.CHECK_DELETE: ItemType.CHECK,
    ChangeKind.NODE_INFO: ItemType.NODE,
}

Change = tuple[ChangeKind, str, int, int]
"""``(kind, item_id, version, previous_version)``."""


class _TaskLock:
    """A lock that the task holding it may take again (public mutators call each other)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        me = asyncio.current_task()
        if me is not None and self._owner is me:
            yield
            return
        async with self._lock:
            self._owner = me
            try:
                yield
            finally:
                self._owner = None


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def _serialized(fn: F) -> F:
    """Run a mutator alone: two registrations of the same service never interleave."""
    @functools.wraps(fn)
    async def wrapper(self: LocalState, *args: Any, **kw: Any) -> Any:
        async with self._serial.hold():
            return await fn(self, *args, **kw)
    return wrapper  # type: ignore[return-value]


@dataclass(slots=True)
class LocalService:
    record: ServiceRecord
    source: str  # 'api' | 'config'


@dataclass(slots=True)
class LocalCheck:
    defn: CheckDef
    status: str
    output: str
    source: str
    critical_since: float | None = None
    output_published: float = float("-inf")
    pending_output: str | None = None
    output_timer: asyncio.TimerHandle | None = None


class LocalState:
    """The local node's services and checks, their runners, and their persistence."""

    def __init__(self, catalog: Catalog, info: NodeInfo, datadir: DataDir | None, *,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 output_update_interval: float = 60.0) -> None:
        self.catalog = catalog
        self.info = info
        self.datadir = datadir
        self.clock = clock
        self.wall = wall
        self.output_update_interval = output_update_interval
        """Seconds between publications of an output-only change of a check (0 = always)."""
        self.services: dict[str, LocalService] = {}
        self.checks: dict[str, LocalCheck] = {}
        self.version = 0
        self.item_versions: dict[tuple[str, str], int] = {}
        self._held: list[Change] | None = None
        """Changes kept for one notification (:meth:`changes_together`)."""
        self.listeners: list[Callable[[list[Change]], None]] = []
        self.manager = CheckManager(self._on_result, catalog=catalog, local_node=info.name)
        self.refuse_check: Callable[[CheckDef], None] | None = None
        """Raises DefinitionError for a stored check the agent's settings no longer allow."""
        self._write_lock = asyncio.Lock()
        self._serial = _TaskLock()
        self._flush_pending: asyncio.TimerHandle | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._reap_wanted = asyncio.Event()
        """Set when a check with DeregisterCriticalServiceAfter is added: the reaper, asleep
        while no check has one (no wake-ups on an idle agent, issue 18), looks again."""
        self._started = False
        self.counters: dict[str, int] = {"persist_writes": 0, "check_updates": 0,
                                         "reaped_services": 0}
        with catalog.batch():
            catalog.put_node(info, "alive")
            self._bump([(ChangeKind.NODE_INFO, "")])

    # --- versions and notification ------------------------------------------------------------

    def _bump(self, items: Iterable[tuple[ChangeKind, str]]) -> None:
        changes: list[Change] = []
        for kind, item in items:
            prev = self.version
            self.version = max(self.version + 1, int(self.wall() * 1e6))
            key = (kind.item_type, item)
            if kind.deletes:
                self.item_versions.pop(key, None)
            else:
                self.item_versions[key] = self.version
            changes.append((kind, item, self.version, prev))
        if changes and self._held is not None:
            self._held.extend(changes)
            return
        self._notify(changes)

    def _notify(self, changes: list[Change]) -> None:
        if changes:
            for cb in self.listeners:
                try:
                    cb(changes)
                except Exception:
                    log.exception("local change listener failed")

    @contextlib.contextmanager
    def changes_together(self) -> Iterator[None]:
        """Changes made inside (awaits included) reach the listeners as one list when the
        outermost block ends: the replication sends them as one gossip batch rather than a
        message per item (an agent's start with its configured services and checks)."""
        outer = self._held is None
        if outer:
            self._held = []
        try:
            yield
        finally:
            if outer:
                held, self._held = self._held, None
                self._notify(held or [])

    def raise_version_above(self, v: int) -> None:
        """Another agent holds a newer record of us (we lost state): publish above it."""
        if v >= self.version:
            self.version = v + 1

    def check_record(self, cid: str) -> CheckRecord | None:
        c = self.checks.get(cid)
        if c is None:
            return None
        svc = self.services.get(c.defn.service_id) if c.defn.service_id else None
        return c.defn.record(status=c.status, output=c.output,
                             service_name=svc.record.service if svc else "",
                             service_tags=svc.record.tags if svc else ())

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._started = True
        for c in self.checks.values():
            await self.manager.start_check(c.defn, c.status)
        self._reaper = asyncio.get_running_loop().create_task(self._reap_loop())

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            try:
                await self._reaper
            except asyncio.CancelledError:
                pass
        await self.manager.stop()
        if self._flush_pending is not None:
            self._flush_pending.cancel()
            self._flush_pending = None
        if self._flush_task is not None:
            await self._flush_task    # a deferred write under way finishes before the last one
            self._flush_task = None
        await self.flush()

    # --- persistence ----------------------------------------------------------------------------

    def _state_json(self) -> dict[str, Any]:
        return {
            "Version": self.version,
            "Services": [{"Service": service_to_json(s.record), "Source": s.source}
                         for s in self.services.values()],
            "Checks": [{"Definition": c.defn.to_json(), "Source": c.source,
                        "Status": c.status,
                        "Output": c.output if c.defn.kind in ("ttl", "container") else ""}
                       for c in self.checks.values()],
        }

    async def flush(self) -> None:
        """Write the registrations to the data dir (atomic, fsynced) off the event loop."""
        if self.datadir is None:
            return
        data = self._state_json()
        path = self.datadir.file(STATE_FILE)
        async with self._write_lock:
            await asyncio.to_thread(atomic_write_json, path, data)
            self.counters["persist_writes"] += 1

    def _flush_soon(self) -> None:
        if self.datadir is None or self._flush_pending is not None or not self._started:
            return
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._flush_pending = None
            self._flush_task = loop.create_task(self._deferred_flush())
        self._flush_pending = loop.call_later(0.5, fire)

    async def _deferred_flush(self) -> None:
        try:
            await self.flush()
        except OSError as e:  # the next change, or stop(), writes again
            log.error("writing the local state failed error=%s", e)

    def load(self) -> int:
        """Restore registrations from the data dir; returns how many services came back.

        Entries that no longer parse are skipped with an error log, never fatal."""
        if self.datadir is None:
            return 0
        data = read_json(self.datadir.file(STATE_FILE))
        if not isinstance(data, dict):
            return 0
        v = data.get("Version")
        if isinstance(v, int):
            self.version = max(self.version, v)
        n = 0
        with self.catalog.batch():
            for item in data.get("Services") or []:
                try:
                    sdef = parse_service(item.get("Service"))
                except (RequestError, AttributeError) as e:
                    log.error("stored service skipped error=%s", e)
                    continue
                self._apply_service(sdef.record, item.get("Source", "api"))
                n += 1
            for item in data.get("Checks") or []:
                try:
                    cdef = parse_check(item.get("Definition"))
                except (RequestError, AttributeError) as e:
                    log.error("stored check skipped error=%s", e)
                    continue
                if cdef.service_id and cdef.service_id not in self.services:
                    continue
                if self.refuse_check is not None:
                    try:
                        self.refuse_check(cdef)
                    except RequestError as e:
                        log.error("stored check skipped error=%s", e)
                        continue
                status = cdef.initial_status
                output = ""
                if cdef.kind in ("ttl", "maintenance", "container") \
                        and item.get("Status") in STATUSES:
                    status = item["Status"]
                    output = str(item.get("Output") or "")
                if cdef.kind == "maintenance":
                    status = CRITICAL
                self._apply_check(cdef, item.get("Source", "api"), status, output)
        return n

    # --- services -----------------------------------------------------------------------------

    def _apply_service(self, rec: ServiceRecord, source: str) -> None:
        old = self.services.get(rec.id)
        self.services[rec.id] = LocalService(rec, source)
        self.catalog.put_service(self.info.name, rec)
        changes = [(ChangeKind.SERVICE_PUT, rec.id)]
        if old is not None and (old.record.service, old.record.tags) != (rec.service, rec.tags):
            for cid, c in self.checks.items():
                if c.defn.service_id == rec.id:
                    self.catalog.put_check(self.info.name, self.check_record(cid))  # type: ignore[arg-type]
                    changes.append((ChangeKind.CHECK_PUT, cid))
        self._bump(changes)

    def _apply_check(self, defn: CheckDef, source: str, status: str, output: str) -> None:
        self.checks[defn.check_id] = LocalCheck(
            defn, status, output, source, self.clock() if status == CRITICAL else None)
        if defn.deregister_critical_after:
            self._reap_wanted.set()
        rec = self.check_record(defn.check_id)
        assert rec is not None
        self.catalog.put_check(self.info.name, rec)
        self._bump([(ChangeKind.CHECK_PUT, defn.check_id)])

    @_serialized
    async def register_service(self, sdef: ServiceDef, *, source: str = "api",
                               replace_existing_checks: bool = False,
                               persist: bool = True) -> None:
        rec = sdef.record
        for c in sdef.checks:
            other = self.checks.get(c.check_id)
            if other is not None and other.defn.service_id not in ("", rec.id) \
                    and other.defn.service_id in self.services:
                raise DefinitionError(
                    f"CheckID {c.check_id!r} already belongs to service {other.defn.service_id!r}")
        new_ids = {c.check_id for c in sdef.checks}
        with self.catalog.batch():
            self._apply_service(rec, source)
            if replace_existing_checks:
                for cid in [cid for cid, c in self.checks.items()
                            if c.defn.service_id == rec.id and cid not in new_ids
                            and not cid.startswith(SERVICE_MAINT_PREFIX)]:
                    await self._remove_check(cid)
            for c in sdef.checks:
                await self._put_check(c, source)
        if persist:
            await self.flush()

    @_serialized
    async def deregister_service(self, sid: str, *, persist: bool = True) -> None:
        if sid not in self.services:
            raise NotFound(f'Unknown service ID "{sid}". Ensure that the service ID is passed, '
                           "not the service name.")
        with self.catalog.batch():
            for cid in [cid for cid, c in self.checks.items() if c.defn.service_id == sid]:
                await self._remove_check(cid)
            del self.services[sid]
            self.catalog.remove_service(self.info.name, sid)
            self._bump([(ChangeKind.SERVICE_DELETE, sid)])
        log.info("service deregistered id=%s", sid)
        if persist:
            await self.flush()

    # --- checks -------------------------------------------------------------------------------

    async def _put_check(self, defn: CheckDef, source: str) -> None:
        old = self.checks.get(defn.check_id)
        if old is not None and old.defn == defn:
            return
        status, output = defn.initial_status, ""
        if old is not None and old.defn.kind == defn.kind and defn.kind != "maintenance":
            status, output = old.status, old.output  # re-registration keeps the current result
        if old is not None:
            await self.manager.stop_check(defn.check_id)
        self._apply_check(defn, source, status, output)
        if self._started:
            await self.manager.start_check(defn, status)

    async def _remove_check(self, cid: str) -> None:
        await self.manager.stop_check(cid)
        gone = self.checks.pop(cid)
        if gone.output_timer is not None:
            gone.output_timer.cancel()
        self.catalog.remove_check(self.info.name, cid)
        self._bump([(ChangeKind.CHECK_DELETE, cid)])

    @_serialized
    async def register_check(self, defn: CheckDef, *, source: str = "api",
                             persist: bool = True) -> None:
        if defn.service_id and defn.service_id not in self.services:
            raise DefinitionError(f'ServiceID "{defn.service_id}" does not exist')
        await self._put_check(defn, source)
        if persist:
            await self.flush()

    @_serialized
    async def deregister_check(self, cid: str, *, persist: bool = True) -> None:
        if cid not in self.checks:
            raise NotFound(f'Unknown check ID "{cid}". Ensure that the check ID is passed, '
                           "not the check name.")
        await self._remove_check(cid)
        if persist:
            await self.flush()

    def update_ttl(self, cid: str, status: str, output: str) -> None:
        """``/v1/agent/check/pass|warn|fail|update``: set a TTL check's status and restart it."""
        c = self.checks.get(cid)
        if c is None:
            raise NotFound(f'Unknown check ID "{cid}". Ensure that the check ID is passed, '
                           "not the check name.")
        if c.defn.kind != "ttl":
            raise RequestError(f'CheckID "{cid}" does not have associated TTL', 400)
        if status not in STATUSES:
            raise RequestError(f'Invalid check status: "{status}"', 400)
        self.manager.ttl_touch(cid)
        self._set_result(cid, status, cut_output(output, c.defn.output_max_size))
        self._flush_soon()

    def set_result(self, cid: str, status: str, output: str) -> None:
        """The result of a check whose owner runs it (a container's own healthcheck)."""
        self._on_result(cid, status, output)
        self._flush_soon()

    def _on_result(self, cid: str, status: str, output: str) -> None:
        """A runner's result. A status change shows (and replicates) at once; a change of the
        output alone is published at most every ``output_update_interval`` seconds, like
        Consul's ``check_update_interval``, so a check whose body carries a timestamp does not
        wake every watcher and fill gossip on each run."""
        c = self.checks.get(cid)
        if c is None:
            return
        if status == c.status and output != c.output and self.output_update_interval > 0:
            now = self.clock()
            wait = c.output_published + self.output_update_interval - now
            if wait > 0:
                c.pending_output = output
                if c.output_timer is None:
                    loop = asyncio.get_running_loop()
                    c.output_timer = loop.call_later(wait, self._publish_output, cid)
                return
        self._set_result(cid, status, output)
        if c.defn.kind == "ttl":
            self._flush_soon()

    def _publish_output(self, cid: str) -> None:
        c = self.checks.get(cid)
        if c is None:
            return
        c.output_timer = None
        if c.pending_output is not None:
            out, c.pending_output = c.pending_output, None
            self._set_result(cid, c.status, out)

    def _set_result(self, cid: str, status: str, output: str) -> None:
        c = self.checks[cid]
        if c.status == status and c.output == output:
            return
        if status != c.status:
            log.info("check status changed check=%s from=%s to=%s", cid, c.status, status)
        if status == CRITICAL and c.critical_since is None:
            c.critical_since = self.clock()
        elif status != CRITICAL:
            c.critical_since = None
        c.status, c.output = status, output
        c.output_published = self.clock()
        c.pending_output = None
        if c.output_timer is not None:
            c.output_timer.cancel()
            c.output_timer = None
        self.counters["check_updates"] += 1
        rec = self.check_record(cid)
        assert rec is not None
        with self.catalog.batch():
            self.catalog.put_check(self.info.name, rec)
            self._bump([(ChangeKind.CHECK_PUT, cid)])

    async def _reap_loop(self) -> None:
        """DeregisterCriticalServiceAfter: remove services whose check stayed critical."""
        while True:
            if not any(c.defn.deregister_critical_after for c in self.checks.values()):
                self._reap_wanted.clear()
                await self._reap_wanted.wait()
            await asyncio.sleep(0.5)
            now = self.clock()
            doomed = set()
            for c in self.checks.values():
                after = c.defn.deregister_critical_after
                if after and c.critical_since is not None and c.defn.service_id \
                        and now - c.critical_since >= after:
                    doomed.add(c.defn.service_id)
            for sid in doomed:
                if sid in self.services:
                    log.info("service deregistered after critical check id=%s", sid)
                    self.counters["reaped_services"] += 1
                    try:
                        await self.deregister_service(sid)
                    except RequestError:
                        pass

    # --- maintenance ----------------------------------------------------------------------------

    @_serialized
    async def set_node_maintenance(self, enable: bool, reason: str) -> None:
        if enable:
            defn = CheckDef(check_id=NODE_MAINT_CHECK_ID, name="Node Maintenance Mode",
                            kind="maintenance", notes=reason or NODE_MAINT_DEFAULT)
            cur = self.checks.get(NODE_MAINT_CHECK_ID)
            if cur is None or cur.defn != defn:
                self._apply_check(defn, "api", CRITICAL, "")
        elif NODE_MAINT_CHECK_ID in self.checks:
            await self._remove_check(NODE_MAINT_CHECK_ID)
        await self.flush()

    @_serialized
    async def set_service_maintenance(self, sid: str, enable: bool, reason: str) -> None:
        if sid not in self.services:
            raise NotFound(f'Unknown service ID "{sid}"')
        cid = SERVICE_MAINT_PREFIX + sid
        if enable:
            defn = CheckDef(check_id=cid, name="Service Maintenance Mode", kind="maintenance",
                            service_id=sid, notes=reason or SERVICE_MAINT_DEFAULT)
            cur = self.checks.get(cid)
            if cur is None or cur.defn != defn:
                self._apply_check(defn, "api", CRITICAL, "")
        elif cid in self.checks:
            await self._remove_check(cid)
        await self.flush()

    # --- configuration ------------------------------------------------------------------------

    async def apply_config(self, services: Iterable[Mapping[str, Any]],
                           checks: Iterable[Mapping[str, Any]]) -> None:
        """Make the config-defined services and checks exactly these (start and SIGHUP).

        Everything is parsed first; a bad definition refuses the whole set (the caller logs
        it) and changes nothing."""
        sdefs = [parse_service(s, where=f"services[{i}].") for i, s in enumerate(services)]
        cdefs = [parse_check(c, where=f"checks[{i}].") for i, c in enumerate(checks)]
        await self.apply_parsed_config(sdefs, cdefs)

    @_serialized
    async def apply_parsed_config(self, sdefs: list[ServiceDef], cdefs: list[CheckDef]) -> None:
        want_s = {s.record.id for s in sdefs}
        want_c = {c.check_id for c in cdefs} | {c.check_id for s in sdefs for c in s.checks}
        with self.changes_together(), self.catalog.batch():
            for sid, s in list(self.services.items()):
                if s.source == "config" and sid not in want_s:
                    await self.deregister_service(sid, persist=False)
            for cid, c in list(self.checks.items()):
                if c.source == "config" and cid not in want_c and cid in self.checks:
                    await self._remove_check(cid)
            for sdef in sdefs:
                cur = self.services.get(sdef.record.id)
                if cur is not None and cur.record == sdef.record and all(
                        c.check_id in self.checks and self.checks[c.check_id].defn == c
                        for c in sdef.checks):
                    cur.source = "config"
                    continue
                await self.register_service(sdef, source="config", persist=False,
                                            replace_existing_checks=True)
            for cdef in cdefs:
                if cdef.service_id and cdef.service_id not in self.services:
                    raise DefinitionError(f'checks: ServiceID "{cdef.service_id}" does not exist')
                await self._put_check(cdef, "config")
        await self.flush()

    # --- reads ----------------------------------------------------------------------------------

    def service_ids(self) -> list[str]:
        return sorted(self.services)

    def node_info(self) -> NodeInfo:
        return self.info

    def republish_info(self) -> None:
        self._bump([(ChangeKind.NODE_INFO, "")])

    def republish_all(self) -> None:
        """Restamp every item of the local record with new versions (they re-spread as deltas;
        agents that still hold the same data see no visible change)."""
        self._bump([(ChangeKind.NODE_INFO, "")]
                   + [(ChangeKind.SERVICE_PUT, s) for s in self.services]
                   + [(ChangeKind.CHECK_PUT, c) for c in self.checks])

    def set_node_info(self, info: NodeInfo) -> None:
        if info == self.info:
            return
        self.info = info
        with self.catalog.batch():
            self.catalog.put_node(info)
            self._bump([(ChangeKind.NODE_INFO, "")])


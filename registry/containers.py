"""Containers publish themselves: the agent watches its container engine and registers them.

Theory of operation. With ``docker { socket = ... }`` (or ``-docker``) the agent follows the
Docker Engine API (Podman serves the same one) on a unix socket:

1. It opens the event stream first, then lists the running containers and *reconciles*: every
   service this watcher registered (``source=docker``) that no running container wants any
   more is deregistered, and every wanted one is registered or updated. Registrations go
   through :class:`~registry.local.LocalState` with source ``docker``, the same path config
   files and the API use, so persistence, replication, DNS and the LB need nothing new.
2. Each container event that can change what a container publishes (start, die, stop,
   destroy, health_status, rename, pause, ...) makes the watcher inspect that one container
   and apply the result; exec events (Docker checks run one every interval) are ignored.
3. When the stream is lost (engine restarted, socket gone) the watcher waits (1 s doubling to
   30 s) and starts again at step 1, so nothing stale stays and nothing is registered twice
   (service IDs are derived from container names and ports, the same every time). Until
   the engine answers, the services restored from the data dir stay as they were: the watcher
   cannot tell a stopped container from an engine that is slow to start.

What a container publishes is a pure function of its inspect document,
:func:`services_for`: a running container that publishes ports or carries Rumor's labels
(``rumor.service.*``) or the ``SERVICE_*`` environment convention gives one service per
published port (or one service when it publishes none). Labels override the environment:

* ``rumor.service.name`` / ``SERVICE_NAME``; per port ``rumor.service.<port>.name`` /
  ``SERVICE_<port>_NAME``. Default: the container's name (with ``-<port>`` when it publishes
  several ports and no per-port name says otherwise).
* ``rumor.service.tags`` / ``SERVICE_TAGS`` (comma-separated); per port
  ``rumor.service.<port>.tags``.
* ``rumor.service.meta.<key>`` -> meta ``<key>``; the watcher adds ``source=docker``,
  ``container`` (name) and ``container_id``.
* ``rumor.service.address``: ``host`` (the published host port, on the binding's host IP or
  this node's address) or ``container`` (the container's IP and its own port). Default: the
  agent's ``docker.address`` (``host``). Without published ports, ``container`` is used.
* ``rumor.service.ignore=true`` / ``SERVICE_IGNORE``: not registered.

A container with a ``HEALTHCHECK`` gets a check (type ``container``) that mirrors it:
healthy is passing; starting and unhealthy are critical (a container not yet healthy takes
no traffic, as in Swarm). Its output is the last health probe's output.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from typing import Any

from gossip.dclass import dataclass

from .catalog import CRITICAL, PASSING, SERVICE_MAINT_PREFIX, ServiceRecord
from .definitions import CheckDef, ServiceDef
from .docker_api import Engine, EngineError
from .errors import RequestError
from .local import LocalState

log = logging.getLogger(__name__)

SOURCE = "docker"
LABEL = "rumor.service."
_NAME_OK = re.compile(r"[^A-Za-z0-9_.-]+")
_META_KEY = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
HEALTH = {"healthy": PASSING, "unhealthy": CRITICAL, "starting": CRITICAL}
IGNORED_ACTIONS = ("exec_", "attach", "commit", "copy", "export", "top", "resize",
                   "cleanup", "init", "mount", "unmount", "sync")


@dataclass(frozen=True, slots=True)
class Wanted:
    """One service a container wants, and the status of its health check (if any)."""

    sdef: ServiceDef
    health: tuple[str, str] | None


def _env(inspect: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in (inspect.get("Config") or {}).get("Env") or []:
        if isinstance(item, str) and "=" in item:
            k, _, v = item.partition("=")
            out[k] = v
    return out


def _clean_name(name: str) -> str:
    return _NAME_OK.sub("-", name.strip().lstrip("/")).strip("-.") or "container"


MAX_TAGS = 64
MAX_TAG = 255
MAX_META = 64


def _tags(text: str) -> tuple[str, ...]:
    """Comma-separated tags, at most 64 of at most 255 characters (labels are not checked by
    the engine; a registration must stay small enough to gossip)."""
    return tuple(t.strip()[:MAX_TAG] for t in text.split(",") if t.strip())[:MAX_TAGS]


def _container_ip(inspect: Mapping[str, Any]) -> str:
    ns = inspect.get("NetworkSettings") or {}
    ip = ns.get("IPAddress") or ""
    if not ip:
        for net in (ns.get("Networks") or {}).values():
            if isinstance(net, dict) and net.get("IPAddress"):
                return str(net["IPAddress"])
    return str(ip)


def _published(inspect: Mapping[str, Any]) -> list[tuple[int, str, str, int]]:
    """``(container port, proto, host ip, host port)`` of each published port, sorted."""
    out: set[tuple[int, str, str, int]] = set()
    ports = (inspect.get("NetworkSettings") or {}).get("Ports") or {}
    for key, binds in ports.items():
        if not binds:
            continue
        port, _, proto = str(key).partition("/")
        if not port.isdigit():
            continue
        for b in binds:
            hp = str((b or {}).get("HostPort") or "")
            if hp.isdigit():
                out.add((int(port), proto or "tcp", str(b.get("HostIp") or ""), int(hp)))
                break  # one binding per port (IPv4 and IPv6 bindings repeat the same port)
    return sorted(out)


def _exposed(inspect: Mapping[str, Any]) -> int:
    for key in sorted((inspect.get("Config") or {}).get("ExposedPorts") or {}):
        port = str(key).partition("/")[0]
        if port.isdigit():
            return int(port)
    return 0


def _health(inspect: Mapping[str, Any]) -> tuple[str, str] | None:
    h = (inspect.get("State") or {}).get("Health")
    if not isinstance(h, dict) or not h.get("Status"):
        return None
    status = str(h["Status"])
    output = f"container health: {status}"
    logs = h.get("Log") or []
    if logs and isinstance(logs[-1], dict):
        last = logs[-1]
        output += f" (exit {last.get('ExitCode')}) {str(last.get('Output') or '').strip()}"
    return HEALTH.get(status, CRITICAL), output.strip()


def services_for(inspect: Mapping[str, Any], *, default_address: str = "host") -> list[Wanted]:
    """What one container (its ``GET /containers/{id}/json`` document) publishes."""
    state = inspect.get("State") or {}
    if not state.get("Running") or state.get("Paused"):
        return []
    labels: Mapping[str, str] = (inspect.get("Config") or {}).get("Labels") or {}
    env = _env(inspect)

    def pick(label: str, var: str) -> str:
        v = labels.get(LABEL + label)
        if v is None:
            v = env.get(var)
        return str(v or "")

    ours = any(k.startswith(LABEL) for k in labels) or any(k.startswith("SERVICE_") for k in env)
    published = _published(inspect)
    if not ours and not published:
        return []
    if pick("ignore", "SERVICE_IGNORE").lower() in ("true", "1", "yes"):
        return []
    cname = _clean_name(str(inspect.get("Name") or inspect.get("Id", "")[:12]))
    cid = str(inspect.get("Id") or "")
    base = _clean_name(pick("name", "SERVICE_NAME")) if pick("name", "SERVICE_NAME") else cname
    tags = _tags(pick("tags", "SERVICE_TAGS"))
    meta = {"source": SOURCE, "container": cname, "container_id": cid[:64]}
    for k, v in labels.items():
        if k.startswith(LABEL + "meta."):
            mk = k[len(LABEL + "meta."):]
            if _META_KEY.match(mk) and not mk.startswith(("consul-", "rumor-")) \
                    and mk not in meta and len(meta) < MAX_META:
                meta[mk] = str(v)[:512]
    mode = pick("address", "SERVICE_ADDRESS") or default_address
    if mode not in ("host", "container"):
        mode = default_address
    ip = _container_ip(inspect)
    health = _health(inspect)

    def one(sid: str, name: str, address: str, port: int, more_tags: tuple[str, ...]) -> Wanted:
        rec = ServiceRecord(id=sid, service=name, tags=tags + more_tags, address=address,
                            port=port, meta=dict(meta))
        checks: tuple[CheckDef, ...] = ()
        if health is not None:
            checks = (CheckDef(check_id=f"{sid}:health", name="Container health",
                               kind="container", service_id=sid, initial_status=health[0],
                               notes=f"HEALTHCHECK of container {cname}"),)
        return Wanted(ServiceDef(rec, checks), health)

    if not published:
        label_port = pick("port", "SERVICE_PORT")
        return [one(f"docker:{cname}", base, ip, int(label_port) if label_port.isdigit() else
                    _exposed(inspect), ())]
    out = []
    for cport, proto, host_ip, host_port in published:
        suffix = "" if proto == "tcp" else f":{proto}"
        pname = pick(f"{cport}.name", f"SERVICE_{cport}_NAME")
        name = _clean_name(pname) if pname else (
            base if len(published) == 1 else f"{base}-{cport}")
        ptags = _tags(pick(f"{cport}.tags", f"SERVICE_{cport}_TAGS"))
        if mode == "container":
            address, port = ip, cport
        else:
            address = "" if host_ip in ("", "0.0.0.0", "::") else host_ip
            port = host_port
        out.append(one(f"docker:{cname}:{cport}{suffix}", name, address, port, ptags))
    return out


class ContainerWatcher:
    """Follows the engine and keeps this agent's ``source=docker`` services in step."""

    BACKOFF_MAX = 30.0
    HEALTH_RECHECK = (0.3, 1.5)
    """Seconds after a health event at which the container is inspected again."""

    def __init__(self, local: LocalState, engine: Engine, *,
                 default_address: str = "host") -> None:
        self.local = local
        self.engine = engine
        self.default_address = default_address
        self.task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Task[None]] = set()
        self.counters = {"reconciles": 0, "events": 0, "stream_losses": 0, "registered": 0,
                         "deregistered": 0}

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run(), name="container-watch")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001, S110 - stopping anyway
                pass
            self.task = None
        for t in list(self._pending):
            t.cancel()
        await self.engine.close()

    async def run(self) -> None:
        delay = 1.0
        warned = False
        while True:
            try:
                async for ev in self.engine.events():
                    if ev.get("Type") == "_connected":
                        await self.reconcile()
                        self.connected.set()
                        delay, warned = 1.0, False
                        continue
                    await self.on_event(ev)
                raise EngineError("event stream ended")
            except asyncio.CancelledError:
                raise
            except EngineError as e:
                self.connected.clear()
                self.counters["stream_losses"] += 1
                (log.debug if warned else log.warning)(
                    "container engine unavailable socket=%s error=%s retry_in=%.0fs",
                    self.engine.socket_path, e, delay)
                warned = True
            except Exception:
                self.connected.clear()
                log.exception("container watcher failed; starting again")
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.BACKOFF_MAX)

    def _ours(self) -> dict[str, str]:
        """service ID -> container ID of the services this watcher registered."""
        return {sid: s.record.meta.get("container_id", "")
                for sid, s in self.local.services.items() if s.source == SOURCE}

    async def reconcile(self) -> None:
        """Make the docker-sourced services exactly what the running containers want."""
        async with self._lock:
            await self._reconcile()

    async def _reconcile(self) -> None:
        wanted: list[Wanted] = []
        for c in await self.engine.containers():
            cid = str(c.get("Id") or "")
            if not cid:
                continue
            doc = await self.engine.inspect(cid)
            if doc is not None:
                wanted.extend(services_for(doc, default_address=self.default_address))
        keep = {w.sdef.record.id for w in wanted}
        for sid in self._ours():
            if sid not in keep:
                await self._deregister(sid)
        for w in wanted:
            await self._apply(w)
        self.counters["reconciles"] += 1
        log.info("containers reconciled services=%d", len(wanted))

    async def on_event(self, ev: Mapping[str, Any]) -> None:
        action = str(ev.get("Action") or ev.get("status") or "")
        if action.startswith(IGNORED_ACTIONS):
            return
        cid = str(ev.get("id") or (ev.get("Actor") or {}).get("ID") or "")
        if not cid:
            return
        self.counters["events"] += 1
        log.debug("container event action=%s id=%s", action, cid[:12])
        await self.sync_container(cid)
        if action.startswith("health_status"):
            # The engine may send the event before it saves the new health state (Podman
            # 4.3 does, and its event carries the previous status): look again shortly.
            for delay in self.HEALTH_RECHECK:
                self._later(delay, cid)

    def _later(self, delay: float, cid: str) -> None:
        async def again() -> None:
            await asyncio.sleep(delay)
            try:
                await self.sync_container(cid)
            except EngineError as e:
                log.debug("container re-check failed id=%s error=%s", cid[:12], e)
        t = asyncio.get_running_loop().create_task(again())
        self._pending.add(t)
        t.add_done_callback(self._pending.discard)

    async def sync_container(self, cid: str) -> None:
        """Inspect one container and apply what it publishes (alone: under the lock)."""
        async with self._lock:
            await self._sync(cid)

    async def _sync(self, cid: str) -> None:
        doc = await self.engine.inspect(cid)
        wanted = services_for(doc, default_address=self.default_address) if doc else []
        full = str(doc.get("Id")) if doc else cid
        keep = {w.sdef.record.id for w in wanted}
        for sid, owner in self._ours().items():
            mine = owner.startswith(full) or full.startswith(owner or "\0")
            if mine and sid not in keep:
                await self._deregister(sid)
        for w in wanted:
            await self._apply(w)

    async def _deregister(self, sid: str) -> None:
        try:
            await self.local.deregister_service(sid)
            self.counters["deregistered"] += 1
            log.info("container service deregistered id=%s", sid)
        except RequestError:
            pass

    async def _apply(self, w: Wanted) -> None:
        rec = w.sdef.record
        cur = self.local.services.get(rec.id)
        if cur is not None and cur.source != SOURCE:
            log.warning("container service not registered id=%s reason=%s", rec.id,
                        f"a service with this ID came from {cur.source}")
            return
        check_ids = {c.check_id for c in w.sdef.checks}
        have = {cid for cid, c in self.local.checks.items() if c.defn.service_id == rec.id
                and not cid.startswith(SERVICE_MAINT_PREFIX)}  # maintenance is the operator's
        if cur is None or cur.record != rec or have != check_ids:
            await self.local.register_service(w.sdef, source=SOURCE,
                                              replace_existing_checks=True)
            self.counters["registered"] += 1
            log.info("container service registered id=%s name=%s address=%s port=%d",
                     rec.id, rec.service, rec.address, rec.port)
        if w.health is not None:
            for c in w.sdef.checks:
                lc = self.local.checks.get(c.check_id)
                if lc is not None and (lc.status, lc.output) != w.health:
                    self.local.set_result(c.check_id, *w.health)

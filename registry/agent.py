"""The agent: the one composition root that wires gossip, the catalog, DNS, the LB and HTTP.

Start-up order (each step only once the previous one succeeded; a failure undoes what started):
  1. validate every subsystem's configuration (nothing binds before the whole config is good),
  1b. try every listen address at once (registry/preflight.py), so that nothing half-starts,
  2. data dir (node ID, lock), 3. gossip, 4. registry (catalog, local services, checks),
  5. HTTP API, 6. DNS, 7. load balancer, 8. join (start_join; retry_join runs in the background),
  9. on a WAN member: the WAN pool (registry/wan.py), its LAN tags, and start_join_wan
     (retry_join_wan runs in the background).
Background work (retry_join, SIGHUP reloads) runs in an ``asyncio.TaskGroup`` that :meth:`run`
owns: leaving it at shutdown cancels whatever is still running, and a job that fails is logged.
Shutdown runs the other way and is bounded: leave the cluster (so peers see ``left``, not
``failed``), close listeners (LB, DNS, HTTP), stop checks and flush the local state to disk.
SIGINT/SIGTERM stop the agent with exit code 0; SIGHUP reloads service definitions and the
certificates of the HTTPS API and of the load balancer's TLS listeners.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from dnsserver import DNSConfig, DNSServer
from gossip import Gossip
from gossip.memory import release_free_memory
from lb import (
    HostCache,
    LBConfig,
    LBError,
    ListenerSpec,
    LoadBalancer,
    listeners_from_config,
)

from . import __version__, web
from .config import AgentConfig, split_hostport
from .datadir import DataDir
from .errors import ConfigError
from .federation import Federation
from .joinaddr import expand as expand_join
from .listeners import ListenerStore
from .looplag import LoopLag
from .membership import prepare_gossip, start_gossip
from .netaddr import advertise_address
from .preflight import check_listen_addresses
from .remote_view import FederatedView, RemoteViews
from .service import Registry, prepare_registry
from .tls import LBCertificateLoader, ReloadableServerContext, tls_files_from
from .wan import http_address, lan_tags, prepare_wan, start_wan, with_wan_port

log = logging.getLogger(__name__)

SHUTDOWN_BUDGET = 4.0
"""Seconds the whole shutdown may take; SIGTERM must exit within 5 s."""


class Agent:
    """A running Rumor node agent.

    Attributes other modules read: ``config``, ``datadir``, ``gossip`` (the ``gossip.Gossip``
    service or None), ``registry`` (``registry.service.Registry`` or None), ``dns``
    (``dnsserver.DNSServer`` or None), ``lb`` (``lb.LoadBalancer`` or None), and the bound ports
    ``http_port``, ``dns_port``, ``gossip_port``. The HTTP API is handed the subsystems it
    serves (:func:`registry.api.make_app`); it never sees the agent.
    """

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.datadir: DataDir | None = None
        self._tmp_data_dir: str | None = None
        self.gossip: Gossip | None = None
        self.wan: Gossip | None = None
        """The WAN pool's gossip service on a WAN member, else None."""
        self.federation: Federation | None = None
        self.remote_views: RemoteViews | None = None
        """Other datacenters' views for DNS (registry/remote_view.py)."""
        self.registry: Registry | None = None
        self.dns: DNSServer | None = None
        self.lb: LoadBalancer | None = None
        self._dns_config: DNSConfig | None = None
        self._lb_config: LBConfig | None = None
        self._lb_listeners: list[ListenerSpec] = []
        self.resolver = HostCache(config.recursors)
        """Host names (join addresses, LB backends) via aiodns and the recursors, TTL-cached."""
        self.http_port = 0
        self.https_port = 0
        self._tls: ReloadableServerContext | None = None
        self.dns_port = 0
        self.gossip_port = config.serf_lan_port
        self.started_at = time.time()
        self._runner: web.AppRunner | None = None
        self._stop = asyncio.Event()
        self._background: asyncio.TaskGroup | None = None
        """The task group of :meth:`run` while the agent serves; None before and after."""
        self._reload_pending = False
        self.on_started: Callable[[Agent], None] | None = None
        """Called once every subsystem is up (``rumor agent -dev`` prints its banner)."""
        self.loop_lag: LoopLag | None = None

    # --- identity ---------------------------------------------------------------------------

    @property
    def gossip_address(self) -> str:
        return advertise_address(self.config)

    # --- lifecycle --------------------------------------------------------------------------

    def prepare(self) -> None:
        """Build every subsystem's own config; raise ConfigError before anything binds."""
        cfg = self.config
        self._gossip_prep = prepare_gossip(cfg)
        self._registry_prep = prepare_registry(cfg)
        self._wan_prep = prepare_wan(cfg, self._gossip_prep)
        if cfg.https_port >= 0:
            if cfg.https_port == cfg.http_port and cfg.http_port > 0:
                raise ConfigError(f"ports.https: {cfg.https_port} is also ports.http; give "
                                  "HTTPS its own port (Consul uses 8501) or -http-port -1")
            self._tls = ReloadableServerContext(tls_files_from(cfg.tls))
        if cfg.enable_dns and cfg.dns_port >= 0:
            try:
                self._dns_config = DNSConfig.from_dict(
                    dict(cfg.dns_config), domain=cfg.domain, alt_domain=cfg.alt_domain,
                    bind_addr=cfg.client_addr, port=cfg.dns_port, recursors=tuple(cfg.recursors),
                )
            except ValueError as e:
                raise ConfigError(str(e)) from None
        if cfg.enable_lb:
            opts = {k: v for k, v in cfg.lb.items() if k != "listeners"}
            try:
                self._lb_config = LBConfig.from_dict(opts)
                self._lb_listeners = listeners_from_config(cfg.lb)
                for spec in self._lb_listeners:     # certificate files checked before start
                    if spec.tls is not None or spec.backend_tls is not None:
                        from lb import prepare_listener_tls

                        prepare_listener_tls(spec, LBCertificateLoader())
            except (ValueError, TypeError) as e:
                msg = str(e)
                raise ConfigError(msg if msg.startswith("lb") else f"lb: {msg}") from None

    async def start(self) -> None:
        self.prepare()
        # Every listen address is tried before anything starts, so that all conflicts are
        # reported at once and nothing (gossip above all) half-starts (registry/preflight.py).
        await asyncio.to_thread(check_listen_addresses, self.config, self._lb_listeners)
        try:
            await self._start()
        except BaseException:
            await self._close_everything(leave=False)
            raise

    async def _start(self) -> None:
        cfg = self.config
        self.loop_lag = LoopLag()
        self.loop_lag.start()
        if cfg.dev and not cfg.data_dir:
            import tempfile

            self._tmp_data_dir = tempfile.mkdtemp(prefix="rumor-dev-")
            self.datadir = DataDir(Path(self._tmp_data_dir))
        else:
            self.datadir = DataDir(Path(cfg.data_dir))

        self.gossip = await start_gossip(cfg, self.datadir, self._gossip_prep)
        self.gossip_port = self.gossip.bound_port
        self.federation = Federation(cfg.datacenter, self.gossip)

        self.registry = Registry(cfg, self.datadir, self.gossip, self._registry_prep)
        self.registry.loop_lag = self.loop_lag
        if self.registry.replicator is not None:
            self.registry.replicator.after_merge = _freeze_heap
        await self.registry.start()

        # DNS and the LB are made (not started) before the HTTP API, which is handed them
        view = self.registry.view
        self.remote_views = RemoteViews(self.federation)
        if self._dns_config is not None:
            self.dns = DNSServer(self._dns_config, self.registry.dns_view,
                                 remote=self.remote_views)
        store: ListenerStore | None = None
        if self._lb_config is not None:
            # the LB reads other datacenters too, for listeners with Failover
            self.lb = LoadBalancer(self._lb_config, FederatedView(view, self.remote_views),
                                   cert_loader=LBCertificateLoader(), resolver=self.resolver)
            store = ListenerStore(self.lb, self.datadir)

        await self._start_http(store)

        if self.dns is not None:
            try:
                await self.dns.start()
            except OSError as e:  # taken since the pre-flight check
                raise ConfigError(
                    f"ports.dns: cannot listen on {cfg.client_addr}:{cfg.dns_port} "
                    f"({e.strerror or e}); pick another port with -dns-port"
                ) from None
            self.dns_port = self.dns.udp_port

        if self.lb is not None and store is not None:
            await self.lb.start()
            for spec in self._lb_listeners + store.saved():
                try:
                    await self.lb.add_listener(spec)
                except (LBError, OSError) as e:  # a listener that cannot bind is reported
                    log.error("lb listener not started name=%s error=%s", spec.name, e)

        if cfg.start_join:
            joined = await self.gossip.join(await expand_join(cfg.start_join, self.resolver))
            if joined == 0:
                raise ConfigError(
                    "start_join: could not join any of " + ", ".join(cfg.start_join)
                    + "; check the addresses or use -retry-join"
                )
        if self._wan_prep is not None:
            await self._start_wan()
        release_free_memory()   # start-up garbage back to the OS (gossip/memory.py)
        # What start-up left alive (modules, classes, functions: ~100,000 objects) lives as
        # long as the process; moved out of the collector's reach, no full collection walks it
        # again (idle CPU, issue 18). Collected just above, so no cycle is kept by this.
        gc.freeze()
        log.info(
            "agent started node=%s datacenter=%s http=%s:%s https=%s dns=%s gossip=%s:%s "
            "version=%s",
            cfg.node_name, cfg.datacenter, cfg.client_addr, self.http_port,
            self.https_port or "-", self.dns_port,
            self.gossip_address, self.gossip_port, __version__,
        )
        if self.on_started is not None:
            self.on_started(self)

    async def _start_http(self, listener_store: ListenerStore | None) -> None:
        """The HTTP API on ``ports.http`` and/or ``ports.https`` (one app, one runner)."""
        cfg = self.config
        if cfg.http_port < 0 and cfg.https_port < 0:
            return
        from .api import make_app

        assert self.registry is not None
        app = make_app(cfg, self.registry, gossip=self.gossip, dns=self.dns, lb=self.lb,
                       listener_store=listener_store, ports=self, started_at=self.started_at,
                       request_stop=self.request_stop, reload=self.reload,
                       federation=self.federation)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        if self.remote_views is not None:   # DNS <name>.query.<domain> runs the HTTP API's query
            from .api.query_routes import run_query

            self.remote_views.query_runner = lambda name: run_query(app, name)
        if cfg.http_port >= 0:
            self.http_port = await self._listen(cfg.http_port, "ports.http", "-http-port")
        if cfg.https_port >= 0:
            assert self._tls is not None
            self.https_port = await self._listen(cfg.https_port, "ports.https", "-https-port",
                                                 self._tls.outer)

    async def _listen(self, port: int, setting: str, flag: str,
                      ssl_context: ssl.SSLContext | None = None) -> int:
        assert self._runner is not None
        host = self.config.client_addr
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                             socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            await web.SockSite(self._runner, sock, ssl_context=ssl_context).start()
        except OSError as e:
            sock.close()
            raise ConfigError(
                f"{setting}: cannot listen on {host}:{port} ({e.strerror}); "
                f"pick another port with {flag}"
            ) from None
        return int(sock.getsockname()[1])

    async def _start_wan(self) -> None:
        """Join the WAN pool: start it, tell the LAN which of us carries other datacenters'
        requests (registry/wan.py), and join the start_join_wan addresses."""
        cfg = self.config
        assert self._wan_prep is not None and self.gossip is not None
        if self.http_port <= 0:
            raise ConfigError("ports.http: a WAN member needs the HTTP API (other datacenters "
                              "send their requests to it); do not set -http-port -1")
        http = http_address(cfg, self.http_port)
        self.wan = await start_wan(cfg, self.datadir, self._wan_prep, http)
        if self.federation is not None:
            self.federation.wan = self.wan
        await self.gossip.set_tags(lan_tags(cfg, self.wan, http))
        if cfg.start_join_wan:
            joined = await self.wan.join([with_wan_port(a) for a in cfg.start_join_wan])
            if joined == 0:
                raise ConfigError(
                    "start_join_wan: could not join any of " + ", ".join(cfg.start_join_wan)
                    + "; check the addresses or use -retry-join-wan")
        log.info("wan pool started name=%s wan=%s:%s http=%s", self._wan_prep.memberlist.name,
                 self.gossip_address, self.wan.bound_port, http)

    async def _retry_join(self, wan: bool = False) -> None:
        cfg = self.config
        pool = self.wan if wan else self.gossip
        what = "retry_join_wan" if wan else "retry_join"
        addrs = [with_wan_port(a) for a in cfg.retry_join_wan] if wan else list(cfg.retry_join)
        assert pool is not None
        attempt = 0
        while True:
            attempt += 1
            try:
                joined = await pool.join(await expand_join(addrs, self.resolver))
            except Exception as e:  # noqa: BLE001 - any failure is logged and retried
                log.warning("%s failed attempt=%d error=%s", what, attempt, e)
                joined = 0
            if joined:
                log.info("%s succeeded joined=%d attempt=%d", what, joined, attempt)
                return
            if cfg.retry_max and attempt >= cfg.retry_max:
                log.error("%s gave up attempts=%d", what, attempt)
                return
            await asyncio.sleep(cfg.retry_interval)
            peer = _alive_peer(pool)
            if peer is not None:
                # Others reached us meanwhile (they joined us, or gossip did): we are in a
                # cluster, as a successful join would have made us. Another full push/pull
                # with a seed that is already slow (a join storm, issue 13) only adds to it.
                log.info("%s stopped: already a member of a cluster alive_peer=%s "
                         "attempts=%d", what, peer, attempt)
                return

    async def _retry_join_wan(self) -> None:
        await self._retry_join(wan=True)

    def _spawn(self, job: Callable[[], Coroutine[Any, Any, None]], what: str) -> None:
        """Run ``job()`` in run()'s task group (only while the agent serves)."""
        assert self._background is not None
        self._background.create_task(_logged(job(), what), name=f"agent-{what}")

    def _on_sighup(self) -> None:
        if self._background is None:
            self._reload_pending = True   # still starting: reload once the agent serves
        else:
            self._spawn(self._reload_job, "reload")

    async def _reload_job(self) -> None:
        await self.reload()

    # --- running and stopping ---------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    async def reload(self) -> list[str]:
        """SIGHUP and ``PUT /v1/agent/reload``: re-read the config files (a ``-config-dir`` is
        listed again, so a file added there counts) and re-apply service and check definitions,
        TLS certificates and the ACL section. Returns the problems (each also logged); a part
        that is wrong keeps running as it was."""
        from .config import build, merge, read_file

        settings: dict[str, Any] = {}
        paths = _config_paths(self.config)
        try:
            for f in paths:
                settings = merge(settings, read_file(f))
            fresh = build({**_settings_of(self.config), **{
                k: settings[k] for k in ("services", "checks") if k in settings}})
        except ConfigError as e:
            log.error("reload refused, keeping the running config: %s", e)
            return [str(e)]
        problems: list[str] = []
        if self._tls is not None:
            from .tls import tls_files_from

            try:
                tls = settings.get("tls") or {}
                self._tls.reload(tls_files_from(dict(tls) if isinstance(tls, dict) else {}))
                log.info("tls certificates reloaded cert_file=%s", self._tls.files.cert_file)
            except ConfigError as e:
                log.error("tls reload refused, keeping the running certificates: %s", e)
                problems.append(str(e))
        if self.lb is not None:
            # errors are logged; those listeners keep their last good certificates
            problems.extend((await self.lb.reload_tls()).values())
        if self.registry is not None:
            await self.registry.reload_definitions(fresh.services, fresh.checks)
            if paths:       # the ACLs come from the files (an agent built in-process has none)
                acl = settings.get("acl") or {}
                why = self.registry.reload_acl(acl if isinstance(acl, dict) else {})
                if why is not None:
                    problems.append(why)
        log.info("reloaded services=%d checks=%d", len(fresh.services), len(fresh.checks))
        return problems

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        try:
            await self.start()
            try:
                async with asyncio.TaskGroup() as background:
                    self._background = background
                    if self.config.retry_join:
                        self._spawn(self._retry_join, "retry_join")
                    if self.config.retry_join_wan and self.wan is not None:
                        self._spawn(self._retry_join_wan, "retry_join_wan")
                    if self._reload_pending:
                        self._spawn(self._reload_job, "reload")
                    await self._stop.wait()
                    log.info("shutting down")
                    raise _Stopping  # leaving the group cancels the jobs still running
            except* _Stopping:
                pass
            finally:
                self._background = None
        finally:
            await self._close_everything(leave=True)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        return 0

    async def _close_everything(self, *, leave: bool) -> None:
        deadline = time.monotonic() + SHUTDOWN_BUDGET

        def left() -> float:
            return max(0.1, deadline - time.monotonic())

        if self.loop_lag is not None:
            self.loop_lag.stop()
        if leave and self.wan is not None:
            await _bounded(self.wan.leave(min(1.0, left())), left(), "wan leave")
        if leave and self.gossip is not None:
            await _bounded(self.gossip.leave(min(2.5, left())), left(), "gossip leave")
        # requests to other datacenters first: their blocking reads would hold HTTP handlers
        if self.remote_views is not None:
            await _bounded(self.remote_views.close(), min(0.5, left()), "remote views close")
        if self.federation is not None:
            await _bounded(self.federation.close(), min(0.5, left()), "federation close")
        if self.lb is not None:
            await _bounded(self.lb.stop(), min(1.0, left()), "lb stop")
        if self.dns is not None:
            await _bounded(self.dns.stop(), min(0.5, left()), "dns stop")
        if self._runner is not None:
            await _bounded(self._runner.cleanup(), min(1.0, left()), "http stop")
        if self.registry is not None:
            await _bounded(self.registry.stop(), min(1.0, left()), "registry stop")
        if self.wan is not None:
            await _bounded(self.wan.shutdown(), min(0.5, left()), "wan shutdown")
        if self.gossip is not None:
            await _bounded(self.gossip.shutdown(), min(0.5, left()), "gossip shutdown")
        if self._tmp_data_dir:
            import shutil

            shutil.rmtree(self._tmp_data_dir, ignore_errors=True)


def _freeze_heap() -> None:
    """Move every object alive now out of the garbage collector's reach (``gc.freeze``).

    A full collection walks every tracked object: at 20,000 catalog instances it takes ~60 ms
    of one callback, at 100,000 several times that, and a merge of a big catalog sets off
    several. Catalog records hold no reference cycles, so freezing them loses nothing (they
    are still freed by reference counting when removed); what is lost is the collection of
    cycles among objects alive at a freeze, so it is done only after a merge changed the
    catalog (at most once per merge slice), never on a timer. O(1)."""
    gc.freeze()


async def _bounded(aw: Any, timeout: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout):
            await aw
    except TimeoutError:
        log.warning("shutdown step timed out step=%s", what)
    except Exception:
        log.exception("shutdown step failed step=%s", what)


def _config_paths(cfg: AgentConfig) -> list[Path]:
    """The config files to read now: each ``-config-dir`` listed again, then the
    ``-config-file`` files, in the order the agent read them at start."""
    from .config import files_in_dir

    dirs = [Path(d) for d in cfg.config_dirs]
    paths: list[Path] = []
    for d in dirs:
        try:
            paths.extend(files_in_dir(d))
        except ConfigError as e:
            log.error("reload: %s", e)
    paths.extend(Path(f) for f in cfg.config_files if Path(f).parent not in dirs)
    return paths


class _Stopping(Exception):
    """Raised inside run()'s task group to end it (and cancel its jobs) at shutdown."""


async def _logged(job: Coroutine[Any, Any, None], what: str) -> None:
    """A background job's failure is logged; it never takes the agent (or its group) down."""
    try:
        await job
    except Exception:
        log.exception("background job failed job=%s", what)


def _settings_of(cfg: AgentConfig) -> dict[str, Any]:
    from dataclasses import fields

    return {f.name: getattr(cfg, f.name) for f in fields(cfg)}


def parse_join_address(value: str, default_port: int) -> tuple[str, int]:
    return split_hostport(value, default_port)


def _alive_peer(pool: Gossip) -> str | None:
    """The name of an alive member of ``pool`` other than ourselves, if there is one."""
    me = pool.local_member().name
    for m in pool.members():
        if m.name != me and m.status == "alive":
            return m.name
    return None

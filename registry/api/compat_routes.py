"""Small Consul endpoints and behaviours that clients probe: ``/v1/agent/version``,
``/v1/agent/host``, and the effective-consistency header.

``X-Consul-Effective-Consistency`` follows the request's mode as Consul's does: ``stale`` for
``?stale``, ``consistent`` for ``?consistent``, ``leader`` otherwise. Every Rumor read is
answered from the agent's own replica whatever the mode (there is no leader to ask); the header
tells a client which mode it asked for, so code that checks it behaves as with Consul. The KV
store always answers ``stale`` (see ``kv_routes``).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any

from .. import CONSUL_VERSION, __version__, web
from .base import Handler, json_response
from .keys import REGISTRY

routes = web.RouteTableDef()

HEADER = "X-Consul-Effective-Consistency"


@web.middleware
async def consistency_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    resp = await handler(request)
    if resp.headers.get(HEADER) == "leader":
        if "stale" in request.query:
            resp.headers[HEADER] = "stale"
        elif "consistent" in request.query:
            resp.headers[HEADER] = "consistent"
    return resp


def setup(app: web.Application) -> None:
    app.middlewares.append(consistency_middleware)


@routes.get("/v1/agent/version")
async def agent_version(request: web.Request) -> web.Response:
    return json_response({"SKU": "oss", "HumanVersion": CONSUL_VERSION, "BuildDate": "",
                          "FIPS": "", "Revision": f"rumor-{__version__}",
                          "RumorVersion": __version__})


def _meminfo() -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                k, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    out[k] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
    except OSError:
        pass
    return out


def _cpus() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    try:
        with open("/proc/cpuinfo") as f:
            cur: dict[str, str] = {}
            for line in [*f, "\n"]:
                if not line.strip():
                    if cur:
                        out.append({"cpu": len(out), "vendorId": cur.get("vendor_id", ""),
                                    "modelName": cur.get("model name", ""),
                                    "cores": 1, "mhz": float(cur.get("cpu MHz", "0") or 0)})
                    cur = {}
                    continue
                k, _, v = line.partition(":")
                cur[k.strip()] = v.strip()
    except (OSError, ValueError):
        pass
    return out


def _host(data_dir: str) -> dict[str, Any]:
    """gopsutil's shapes, as Consul's /v1/agent/host answers them (a subset)."""
    mem = _meminfo()
    total, avail = mem.get("MemTotal", 0), mem.get("MemAvailable", 0)
    try:
        with open("/proc/uptime") as f:
            uptime = int(float(f.read().split()[0]))
    except (OSError, ValueError, IndexError):
        uptime = 0
    disk_path = data_dir or "/"
    try:
        import shutil

        du = shutil.disk_usage(disk_path)
        disk = {"path": disk_path, "total": du.total, "free": du.free, "used": du.used,
                "usedPercent": 100.0 * du.used / du.total if du.total else 0.0}
    except OSError:
        disk = {"path": disk_path}
    import platform

    uname = platform.uname()
    return {
        "Memory": {"total": total, "available": avail, "used": total - avail,
                   "usedPercent": 100.0 * (total - avail) / total if total else 0.0,
                   "free": mem.get("MemFree", 0)},
        "CPU": _cpus(),
        "Host": {"hostname": socket.gethostname(), "uptime": uptime,
                 "bootTime": int(time.time()) - uptime, "procs": len(
                     [p for p in os.listdir("/proc") if p.isdigit()]) if os.path.isdir("/proc") else 0,
                 "os": uname.system.lower(), "platform": "", "platformVersion": "",
                 "kernelVersion": uname.release, "kernelArch": uname.machine},
        "Disk": disk,
        "CollectionTime": time.time_ns(),
        "Errors": None,
    }


@routes.get("/v1/agent/host")
async def agent_host(request: web.Request) -> web.Response:
    reg = request.app[REGISTRY]
    data_dir = str(reg.datadir.path) if reg.datadir is not None else ""
    data = await asyncio.to_thread(_host, data_dir)
    return json_response(data)

"""Run the load balancer on its own, fed by a static in-memory view.

    python -m lb config.json [--uvloop]

``config.json``: ``{"lb": {LBConfig keys}, "listeners": [ListenerSpec objects],
"services": {"web": [{"Address": "127.0.0.1", "Port": 8081, "Node": "n1"}, ...]}}``.
Once every listener is bound it prints one line ``READY {"name": "ip:port", ...}`` and runs
until SIGTERM/SIGINT. Used by the benchmark and by tests that need the proxy in its own
process (to measure its memory or CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from typing import Any

from .config import LBConfig
from .loadbalancer import LoadBalancer, listeners_from_config
from .memview import MemInstance, MemoryView


def _instances(name: str, items: list[dict[str, Any]]) -> list[MemInstance]:
    out = []
    for i, item in enumerate(items):
        d = {k.lower(): v for k, v in item.items()}
        out.append(MemInstance(
            service=name, port=int(d["port"]), address=d.get("address", "127.0.0.1"),
            node=d.get("node", f"node{i}"), service_id=d.get("id", f"{name}-{i}"),
            tags=tuple(d.get("tags", ())), weight_passing=int(d.get("weight", 1)),
            health=d.get("health", "passing")))
    return out


async def _run(cfg: dict[str, Any]) -> None:
    view = MemoryView()
    for name, items in (cfg.get("services") or {}).items():
        view.set_instances(name, _instances(name, items))
    lb = LoadBalancer(LBConfig.from_dict(cfg.get("lb")), view)
    await lb.start()
    ready = {}
    for spec in listeners_from_config({"listeners": cfg.get("listeners", [])}):
        info = await lb.add_listener(spec)
        ready[spec.name] = info["Address"]
    print("READY " + json.dumps(ready), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await lb.stop(1.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lb", description=__doc__.split("\n")[0])
    ap.add_argument("config", help="JSON file: lb, listeners, services")
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop")
    ap.add_argument("--log-level", default="WARNING")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    with open(args.config, encoding="utf-8") as f:
        cfg = json.load(f)
    if args.uvloop:
        import uvloop
        uvloop.run(_run(cfg))
    else:
        asyncio.run(_run(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())

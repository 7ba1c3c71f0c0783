"""``rumor agent``: run the node agent in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from typing import Any

from .. import logs
from ..config import add_agent_flags, load
from ..errors import ConfigError, DataDirError

EPILOG = """examples:
  rumor agent -dev                                   # one node, everything on, temp data dir
  rumor agent -node web1 -bind 10.0.0.5 -data-dir /var/lib/rumor -retry-join 10.0.0.2
  rumor agent -config-file /etc/rumor/agent.json -config-dir /etc/rumor/services.d
"""


def register(sub: Any) -> None:
    p = sub.add_parser("agent", help="run the agent", description="Run the Rumor agent.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                       allow_abbrev=False)
    add_agent_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..lazyaiohttp import defer_aiohttp_init

    defer_aiohttp_init()  # the HTTP client's imports wait until a check or federation uses it
    try:
        cfg = load(args)
    except ConfigError as e:
        print(f"==> config error: {e}", file=sys.stderr)
        return 1
    logs.setup(cfg.log_level, cfg.log_json)
    from ..agent import Agent
    from ..preflight import ListenError

    _install_fast_loop()
    # What is imported by now (~45,000 objects: modules, classes, functions) lives as long as
    # the process. Frozen, no collection walks it again: the agent's collection once it is up
    # (gossip/memory.py) and the idle agent's full collections cost a fraction (issue 13:
    # start-up CPU, issue 18: idle CPU). With the collector off, the imports' garbage cycles
    # are frozen too and stay: ~1,000 objects, ~280 KB (classes the dataclass decorator
    # replaced, argparse's help sections). A collection here to free them would cost 17-22 ms,
    # more than turning the collector off saves; the ~280 KB are the price.
    gc.freeze()
    agent = Agent(cfg)

    def started(agent: Agent) -> None:
        gc.enable()     # off since main() (registry/cli.py): the start is over, and frozen
        if cfg.dev:
            _print_banner(agent)

    agent.on_started = started
    try:
        return asyncio.run(agent.run())
    except ListenError as e:
        print(f"==> {e}", file=sys.stderr)
        return 1
    except (ConfigError, DataDirError) as e:
        print(f"==> config error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def _install_fast_loop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    logging.getLogger(__name__).debug("using uvloop")


def _print_banner(agent: Any) -> None:
    from ..banner import dev_banner

    cfg = agent.config
    print(dev_banner(node=cfg.node_name, datacenter=cfg.datacenter, client_addr=cfg.client_addr,
                     http_port=agent.http_port, dns_port=agent.dns_port,
                     gossip_addr=agent.gossip_address, gossip_port=agent.gossip_port,
                     domain=cfg.domain, ui=cfg.enable_ui,
                     https_port=agent.https_port), flush=True)

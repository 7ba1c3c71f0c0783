"""Join addresses given as host names: every A and AAAA record of the name is a peer to try.

``-join``/``-retry-join`` (and ``start_join``/``retry_join``) take ``host``, ``host:port``,
``ip``, ``ip:port`` or ``[v6]:port``. A host name is resolved with aiodns through the agent's
``recursors`` (or the system's resolv.conf when there are none), and each of its addresses is
joined, as Consul does; a name that does not resolve is passed on unchanged, so that the join
reports it.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence

from lb import HostCache

from .config import split_hostport

log = logging.getLogger(__name__)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def expand(addrs: Sequence[str], cache: HostCache) -> list[str]:
    out: list[str] = []
    for spec in addrs:
        host, port = split_hostport(spec, 0)
        if not host or _is_ip(host):
            out.append(spec)
            continue
        try:
            ips = await cache.resolve(host)
        except OSError as e:
            log.warning("join address does not resolve address=%s error=%s", spec, e)
            out.append(spec)
            continue
        for ip in ips:
            v6 = ":" in ip
            if port:
                out.append(f"[{ip}]:{port}" if v6 else f"{ip}:{port}")
            else:
                out.append(f"[{ip}]" if v6 else ip)
    return list(dict.fromkeys(out))

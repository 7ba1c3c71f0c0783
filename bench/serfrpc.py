"""A minimal client for Serf's msgpack RPC (handshake, members, join, leave), for benchmarks.

Polling ``serf members`` would fork a process per poll, which on a 2-core machine disturbs the
very agents being measured; one persistent RPC connection per agent is cheap.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import msgpack


class SerfRPC:
    def __init__(self, addr: str, timeout: float = 5.0) -> None:
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        self.seq = 0
        self.call("handshake", {"Version": 1}, body=False)

    def _next(self) -> Any:
        while True:
            try:
                return next(self.unpacker)
            except StopIteration:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("serf RPC closed")
                self.unpacker.feed(data)

    def call(self, command: str, args: dict[str, Any] | None = None, *, body: bool = True) -> Any:
        self.seq += 1
        out = msgpack.packb({"Command": command, "Seq": self.seq})
        if args is not None:
            out += msgpack.packb(args)
        self.sock.sendall(out)
        header = self._next()
        if header.get("Error"):
            raise RuntimeError(f"serf rpc {command}: {header['Error']}")
        return self._next() if body else None

    def members(self) -> dict[str, str]:
        """name -> status (alive, leaving, left, failed)."""
        return {m["Name"]: m["Status"] for m in self.call("members")["Members"]}

    def members_full(self) -> list[dict[str, Any]]:
        out = []
        for m in self.call("members")["Members"]:
            addr = m["Addr"]
            if isinstance(addr, (bytes, bytearray)):
                ip = ipaddress.ip_address(bytes(addr[-4:]) if len(addr) == 16 and
                                          addr[:12] == b"\0" * 10 + b"\xff\xff" else bytes(addr))
                m["Addr"] = str(ip)
            out.append(m)
        return out

    def join(self, addrs: list[str]) -> int:
        return int(self.call("join", {"Existing": addrs, "Replay": False})["Num"])

    def leave(self) -> None:
        self.call("leave", body=False)

    def close(self) -> None:
        self.sock.close()

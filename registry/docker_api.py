"""A small client of the Docker Engine API on a unix socket (Podman serves the same API).

Only what Rumor uses: list and inspect containers, follow the event stream, and run a command
in a container (exec). Requests go over aiohttp's ``UnixConnector``; the API version prefix is
left out so that the engine answers in its own version (Docker and Podman both accept that).
Every failure is an :class:`EngineError` with a sentence saying what went wrong.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from .errors import RumorError

DEFAULT_SOCKET = "/var/run/docker.sock"
MAX_EVENT_LINE = 1024 * 1024
"""Bytes; an event line longer than this ends the stream (the watcher reconnects)."""


class EngineError(RumorError):
    """The container engine could not be reached or refused a request."""


def default_socket() -> str:
    """``DOCKER_HOST`` when it names a unix socket, else Docker's default path."""
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        return host[len("unix://"):]
    return DEFAULT_SOCKET


class Engine:
    """The engine's API on ``socket_path``; one connection pool, closed by :meth:`close`."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            conn = aiohttp.UnixConnector(path=self.socket_path, limit=8)
            self._session = aiohttp.ClientSession(
                connector=conn, base_url="http://engine",
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _json(self, method: str, path: str, body: Any = None,
                    timeout: float = 30) -> Any:
        try:
            async with self._http().request(
                    method, path, json=body,
                    timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                data = await resp.read()
                if resp.status >= 400:
                    raise EngineError(f"{method} {path}: {resp.status} {_message(data)}")
                return json.loads(data) if data else None
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise EngineError(f"cannot reach the engine at {self.socket_path}: {e}") from None
        except ValueError:
            raise EngineError(f"{method} {path}: the answer is not JSON") from None

    async def ping(self) -> None:
        await self._raw_ok("/_ping")

    async def _raw_ok(self, path: str) -> None:
        try:
            async with self._http().get(path, timeout=aiohttp.ClientTimeout(total=10)) as r:
                if r.status >= 400:
                    raise EngineError(f"GET {path}: {r.status}")
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise EngineError(f"cannot reach the engine at {self.socket_path}: {e}") from None

    async def containers(self) -> list[dict[str, Any]]:
        """Running containers (``GET /containers/json``)."""
        out = await self._json("GET", "/containers/json")
        if not isinstance(out, list):
            raise EngineError("GET /containers/json: not a list")
        return [c for c in out if isinstance(c, dict)]

    async def inspect(self, cid: str) -> dict[str, Any] | None:
        """``GET /containers/{id}/json``; None when the container is gone."""
        try:
            out = await self._json("GET", f"/containers/{cid}/json")
        except EngineError as e:
            if ": 404 " in str(e):
                return None
            raise
        return out if isinstance(out, dict) else None

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Container events as they happen, after a first ``{"Type": "_connected"}`` once the
        engine accepted the request; ends (or raises EngineError) when the stream is lost."""
        params = {"filters": json.dumps({"type": ["container"]})}
        try:
            async with self._http().get(
                    "/events", params=params,
                    timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as resp:
                if resp.status >= 400:
                    raise EngineError(f"GET /events: {resp.status}")
                yield {"Type": "_connected"}  # from here on no event is missed
                buf = b""
                async for chunk in resp.content.iter_any():
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        ev = _decode_event(line)
                        if ev is not None:
                            yield ev
                    # some engines send one JSON object per chunk without a newline
                    if buf:
                        ev = _decode_event(buf)
                        if ev is not None:
                            buf = b""
                            yield ev
                    if len(buf) > MAX_EVENT_LINE:
                        raise EngineError("event stream: a line longer than 1 MiB")
        except (aiohttp.ClientError, OSError) as e:
            raise EngineError(f"event stream from {self.socket_path} lost: {e}") from None

    async def exec(self, cid: str, cmd: list[str], limit: int) -> tuple[int, str]:
        """Run ``cmd`` in container ``cid``; return its exit code and (capped) output."""
        created = await self._json("POST", f"/containers/{cid}/exec", {
            "AttachStdin": False, "AttachStdout": True, "AttachStderr": True, "Tty": False,
            "Cmd": cmd})
        if not isinstance(created, dict) or not isinstance(created.get("Id"), str):
            raise EngineError(f"POST /containers/{cid}/exec: no exec Id in the answer")
        eid = created["Id"]
        out = bytearray()
        try:
            async with self._http().post(f"/exec/{eid}/start",
                                         json={"Detach": False, "Tty": False}) as resp:
                if resp.status >= 400:
                    raise EngineError(f"POST /exec/{eid}/start: {resp.status} "
                                      f"{_message(await resp.read())}")
                raw = bytearray()
                async for chunk in resp.content.iter_any():
                    raw.extend(chunk)
                    out.extend(_demux(raw, limit - len(out)))
        except (aiohttp.ClientError, OSError) as e:
            raise EngineError(f"exec in {cid}: {e}") from None
        info = await self._json("GET", f"/exec/{eid}/json")
        code = info.get("ExitCode") if isinstance(info, dict) else None
        if not isinstance(code, int):
            raise EngineError(f"GET /exec/{eid}/json: no exit code")
        return code, out.decode(errors="replace")


def _demux(raw: bytearray, room: int) -> bytes:
    """Take whole frames of Docker's multiplexed stream (8-byte header: stream, 0, 0, 0,
    big-endian length) off the front of ``raw``; returns their payload, at most ``room``
    bytes of it."""
    out = bytearray()
    while len(raw) >= 8:
        (size,) = struct.unpack(">I", bytes(raw[4:8]))
        if raw[0] not in (0, 1, 2) or raw[1:4] != b"\0\0\0":
            # not multiplexed (a TTY stream): take it as it is
            out.extend(raw)
            raw.clear()
            break
        if len(raw) < 8 + size:
            break
        out.extend(raw[8:8 + size])
        del raw[:8 + size]
    return bytes(out[:max(0, room)])


def _decode_event(line: bytes) -> dict[str, Any] | None:
    line = line.strip()
    if not line:
        return None
    try:
        ev = json.loads(line)
    except ValueError:
        return None
    return ev if isinstance(ev, dict) else None


def _message(data: bytes) -> str:
    try:
        j = json.loads(data)
        if isinstance(j, dict) and isinstance(j.get("message"), str):
            return str(j["message"])
    except ValueError:
        pass
    return data[:200].decode(errors="replace").strip()

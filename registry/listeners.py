"""LB listeners made through the HTTP API, kept in the data dir so that they survive a restart."""

from __future__ import annotations

import logging
from typing import Any

from lb import ListenerSpec, LoadBalancer

from .datadir import DataDir, atomic_write_json, read_json

log = logging.getLogger(__name__)

FILE_NAME = "lb-listeners.json"


class ListenerStore:
    """Creates and removes the load balancer's API-made listeners and persists the set."""

    def __init__(self, lb: LoadBalancer, datadir: DataDir) -> None:
        self.lb = lb
        self.path = datadir.file(FILE_NAME)

    def saved(self) -> list[ListenerSpec]:
        """The listeners saved by earlier runs; a bad entry is logged and skipped."""
        out = []
        for item in read_json(self.path) or []:
            try:
                out.append(ListenerSpec.from_dict(item))
            except (ValueError, TypeError) as e:
                log.error("saved lb listener skipped error=%s", e)
        return out

    async def put(self, spec: ListenerSpec) -> dict[str, Any]:
        """Create or replace a listener and persist the set."""
        result: dict[str, Any] = await self.lb.add_listener(spec)
        self._persist(spec.name, spec)
        return result

    async def delete(self, name: str) -> None:
        await self.lb.remove_listener(name)
        self._persist(name, None)

    def _persist(self, name: str, spec: ListenerSpec | None) -> None:
        saved = [x for x in (read_json(self.path) or []) if x.get("Name") != name]
        if spec is not None:
            saved.append(spec.to_dict())
        atomic_write_json(self.path, saved)

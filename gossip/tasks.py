"""Background tasks with an owner: one ``asyncio.TaskGroup`` for the lifetime of a service.

The service and the transport start and stop in separate calls (``start()`` ... ``close()``),
so the group cannot live in one ``async with`` of the caller. It lives in a runner task that
:meth:`TaskOwner.open` starts and :meth:`TaskOwner.close` cancels: cancelling the runner makes
the group cancel every child and wait for all of them, so nothing outlives the service (see
``swimprotocol/tasks.py::TaskOwner`` for why orphan tasks go wrong).

A child's exception would make the group cancel its siblings, so each child is wrapped: an
unexpected error is logged with the task's name and the others carry on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["TaskOwner"]

log = logging.getLogger(__name__)


class TaskOwner:
    """Owns the background tasks of one service (see the module docstring)."""

    __slots__ = ("_closing", "_group", "_name", "_runner")

    def __init__(self, name: str) -> None:
        self._name = name
        self._group: asyncio.TaskGroup | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closing = False

    async def open(self) -> None:
        """Start the group (from a running loop); returns once tasks can be spawned."""
        if self._runner is not None:
            return
        ready = asyncio.get_running_loop().create_future()
        self._runner = asyncio.get_running_loop().create_task(self._run(ready),
                                                               name=f"{self._name}-tasks")
        await ready

    async def _run(self, ready: asyncio.Future[None]) -> None:
        async with asyncio.TaskGroup() as group:
            self._group = group
            ready.set_result(None)
            await asyncio.Event().wait()  # until close() cancels us; the group then cancels all

    @property
    def running(self) -> bool:
        return self._group is not None and not self._closing

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[None] | None:
        """Run ``coro`` as a child of the group; None (and ``coro`` closed) once closing."""
        group = self._group
        if group is None or self._closing:
            coro.close()
            return None
        return group.create_task(self._guard(coro, name), name=f"{self._name}-{name}")

    async def _guard(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task failed task=%s-%s", self._name, name)

    async def close(self) -> None:
        """Cancel every child and wait for them all. Idempotent."""
        self._closing = True
        runner = self._runner
        if runner is None or runner.done():
            return
        if runner is asyncio.current_task():
            raise RuntimeError("TaskOwner.close() called from its own runner")
        runner.cancel()
        try:
            await runner
        except asyncio.CancelledError:
            # our caller's own cancellation must propagate; the runner's is expected
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise

"""Checks that run commands: script checks on this host and Docker checks inside a container.

Script checks run ``Args`` directly (no shell) in a process group of their own, with stdin
closed and stdout and stderr read together, keeping at most ``OutputMaxSize`` bytes (the rest
is read and dropped so that the command never blocks on a full pipe). On timeout the whole
group is killed with SIGKILL, children included, and the result is critical. Runs never
overlap: the runner waits for one to end (or be killed) before it schedules the next.

Docker checks create an exec instance in the container through the engine's API
(``POST /containers/{id}/exec``, ``POST /exec/{id}/start``, ``GET /exec/{id}/json``), read
its multiplexed output and map its exit code the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import TYPE_CHECKING

from .catalog import CRITICAL
from .checks import Report, Runner, cut_output, exit_status_of
from .definitions import CheckDef

if TYPE_CHECKING:
    from .docker_api import Engine

DRAIN_AFTER_EXIT = 1.0
"""Seconds the output pipe is still read after the command exited (a child it left behind
may hold the pipe open; the result does not wait for it)."""


async def _read_capped(stream: asyncio.StreamReader, limit: int, into: bytearray) -> int:
    """Read ``stream`` to its end, keeping at most ``limit`` bytes; returns all bytes seen."""
    total = 0
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            return total
        total += len(chunk)
        room = limit - len(into)
        if room > 0:
            into.extend(chunk[:room])


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def run_command(args: tuple[str, ...], timeout: float,
                      limit: int) -> tuple[int | None, str]:
    """Run ``args`` with no shell; return ``(exit code or None on timeout, output)``."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    except OSError as e:
        return 127, f"cannot run {args[0]!r}: {e.strerror or e}"
    assert proc.stdout is not None
    out = bytearray()
    reader = asyncio.ensure_future(_read_capped(proc.stdout, limit, out))
    try:
        async with asyncio.timeout(timeout):
            code = await proc.wait()
    except TimeoutError:
        _kill_group(proc.pid)
        await proc.wait()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        return None, out.decode(errors="replace")
    except asyncio.CancelledError:
        _kill_group(proc.pid)  # the check was removed or the agent stops: nothing lingers
        reader.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await proc.wait()
        raise
    total = 0
    try:
        async with asyncio.timeout(DRAIN_AFTER_EXIT):
            total = await reader
    except TimeoutError:
        pass  # a child the command left behind holds the pipe: the result does not wait
    text = out.decode(errors="replace")
    if total > limit:
        text += " ... (output truncated)"
    return code, text


class ScriptRunner(Runner):
    async def probe(self) -> tuple[str, str]:
        d = self.defn
        code, output = await run_command(d.args, d.timeout, d.output_max_size)
        if code is None:
            return CRITICAL, f"Timed out ({d.timeout:g}s) running check\n{output}".rstrip()
        return exit_status_of(code), output


class DockerRunner(Runner):
    def __init__(self, defn: CheckDef, report: Report, initial: str, socket_path: str) -> None:
        super().__init__(defn, report, initial)
        from .docker_api import Engine, default_socket

        self.engine: Engine = Engine(socket_path or default_socket())

    def command(self) -> list[str]:
        d = self.defn
        if d.shell:
            return [d.shell, "-c", " ".join(d.args)]
        return list(d.args)

    async def probe(self) -> tuple[str, str]:
        from .docker_api import EngineError

        d = self.defn
        try:
            async with asyncio.timeout(d.timeout):
                code, output = await self.engine.exec(d.docker_container_id, self.command(),
                                                      d.output_max_size)
        except TimeoutError:
            return CRITICAL, f"Timed out ({d.timeout:g}s) running check"
        except EngineError as e:
            return CRITICAL, f"docker exec in {d.docker_container_id}: {e}"
        return exit_status_of(code), cut_output(output, d.output_max_size)

    async def stop(self) -> None:
        await super().stop()
        await self.engine.close()

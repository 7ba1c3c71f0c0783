"""Event handler scripts, run the way ``serf agent -event-handler`` runs them.

A handler is ``[filter=]command``: filters are event types (``member-join``, ``member-leave``,
``member-failed``, ``member-update``, ``member-reap``, ``user``, ``query``, ``*``), optionally with
a name for user events and queries (``user:deploy``), joined by commas. The command runs under
``sh -c`` with:

* environment ``SERF_EVENT`` (``member-join``..., ``user``, ``query``), ``SERF_SELF_NAME``,
  ``SERF_SELF_ROLE`` (the ``role`` tag), ``SERF_TAG_<NAME>`` for each of our tags; for user
  events ``SERF_USER_EVENT`` and ``SERF_USER_LTIME``; for queries ``SERF_QUERY_NAME`` and
  ``SERF_QUERY_LTIME``; the same names are also set with a ``RUMOR_`` prefix;
* on stdin, for member events, one line per member ``name<TAB>addr<TAB>role<TAB>k=v,k=v``; for
  user events and queries, the payload (a newline is added when it lacks one, as Serf does).

For a query, what the script prints (trimmed to the response size limit) is the answer.

Like the Serf agent, member events are *coalesced* before they reach the scripts: they are held
until no new one came for ``quiescent`` seconds (1 s) or ``period`` seconds (3 s) passed since
the first; then each member's latest event is kept and handed over in one run per event type.
User events fired with coalescing on (``CC``) are held the same way and only the newest of each
name is run. Queries are never held.
Scripts run one at a time in a background task with a timeout; events beyond the queue limit
are dropped and counted. Nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence

from .dclass import dataclass
from .events import (
    MEMBER_EVENT_NAMES,
    GossipEvent,
    Member,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberReaped,
    MemberRefuted,
    MemberUpdated,
    QueryReceived,
    UserEventReceived,
)
from .serf_config import parse_handler_spec

log = logging.getLogger(__name__)

_TAG_ENV = re.compile(r"[^A-Z0-9_]")
MAX_OUTPUT = 8 * 1024


class Coalescer:
    """Hold events until quiet for ``quiescent`` s or ``period`` s after the first (pure)."""

    def __init__(self, period: float, quiescent: float) -> None:
        self.period = period
        self.quiescent = quiescent
        self._pending: dict[str, GossipEvent] = {}
        self._first = 0.0
        self._last = 0.0

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, key: str, ev: GossipEvent, now: float) -> None:
        """Keep ``ev`` as the latest for ``key`` (member name, or user event name)."""
        if not self._pending:
            self._first = now
        old = self._pending.get(key)
        if not (isinstance(old, UserEventReceived) and isinstance(ev, UserEventReceived)
                and old.ltime > ev.ltime):
            self._pending[key] = ev
        self._last = now

    def deadline(self) -> float | None:
        if not self._pending:
            return None
        return min(self._first + self.period, self._last + self.quiescent)

    def flush(self, now: float) -> list[GossipEvent]:
        """The held events, grouped by type, when the deadline has passed; else []."""
        d = self.deadline()
        if d is None or now < d:
            return []
        events = list(self._pending.values())
        self._pending.clear()
        order = {t: i for i, t in enumerate(dict.fromkeys(type(e) for e in events))}
        return sorted(events, key=lambda e: order[type(e)])


@dataclass(frozen=True)
class Handler:
    filters: tuple[tuple[str, str], ...]
    command: str

    @classmethod
    def parse(cls, spec: str) -> Handler:
        filters, command = parse_handler_spec(spec)
        return cls(filters, command)

    def accepts(self, kind: str, name: str = "") -> bool:
        for ftype, fname in self.filters:
            if ftype == "*":
                return True
            if ftype == kind and (not fname or fname == name):
                return True
        return False


def member_line(m: Member) -> str:
    tags = ",".join(f"{k}={v}" for k, v in m.tags.items())
    return f"{m.name}\t{m.addr}\t{m.tags.get('role', '')}\t{tags}\n"


def _event_kind(ev: GossipEvent) -> tuple[str, str]:
    if isinstance(ev, UserEventReceived):
        return "user", ev.name
    if isinstance(ev, QueryReceived):
        return "query", ev.name
    return MEMBER_EVENT_NAMES[type(ev)], ""


class EventHandlers:
    """Runs handler scripts for gossip events (see the module docstring).

    ``respond`` is called with (query event, output bytes) for query handlers.
    """

    def __init__(self, specs: Sequence[str], *, self_name: str,
                 tags: Callable[[], Mapping[str, str]], timeout: float = 60.0,
                 max_queue: int = 1024, response_limit: int = 1024,
                 respond: Callable[[QueryReceived, bytes], None] | None = None,
                 coalesce_period: float = 3.0, quiescent_period: float = 1.0,
                 user_coalesce_period: float = 3.0, user_quiescent_period: float = 1.0,
                 clock: Callable[[], float] | None = None) -> None:
        self.handlers = [Handler.parse(s) for s in specs]
        self.self_name = self_name
        self.tags = tags
        self.timeout = timeout
        self.max_queue = max_queue
        self.response_limit = response_limit
        self.respond = respond
        self.counters: Counter[str] = Counter()
        self._queue: deque[GossipEvent] = deque()
        self._wake = asyncio.Event()
        self._members = Coalescer(coalesce_period, quiescent_period) if coalesce_period > 0 else None
        self._users = (Coalescer(user_coalesce_period, user_quiescent_period)
                       if user_coalesce_period > 0 else None)
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    def __bool__(self) -> bool:
        return bool(self.handlers)

    def start(self) -> None:
        if self.handlers and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="event-handlers")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def dispatch(self, ev: GossipEvent) -> None:
        """Queue an event for the handlers that want it (never blocks)."""
        if not self.handlers or isinstance(ev, MemberRefuted):  # not a Serf event
            return
        kind, name = _event_kind(ev)
        if not any(h.accepts(kind, name) for h in self.handlers):
            return
        if len(self._queue) + self._held() >= self.max_queue:
            self.counters["handlers.dropped"] += 1
            return
        if isinstance(ev, UserEventReceived):
            if ev.coalesce and self._users is not None:
                self._users.add(ev.name, ev, self._now())
                self._wake.set()
                return
        elif not isinstance(ev, QueryReceived) and self._members is not None:
            self._members.add(ev.member.name, ev, self._now())
            self._wake.set()
            return
        self._queue.append(ev)
        self._wake.set()

    def _held(self) -> int:
        return (len(self._members) if self._members else 0) + (len(self._users) if self._users else 0)

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _release(self) -> float | None:
        """Move coalesced events whose time has come to the queue; next deadline or None."""
        now = self._now()
        deadlines: list[float] = []
        for c in (self._members, self._users):
            if c is None:
                continue
            self._queue.extend(c.flush(now))
            d = c.deadline()
            if d is not None:
                deadlines.append(d)
        return min(deadlines) if deadlines else None

    async def _run(self) -> None:
        while True:
            deadline = self._release()
            if not self._queue:
                timeout = None if deadline is None else max(0.0, deadline - self._now())
                try:
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                self._wake.clear()
                continue
            while self._queue:
                ev = self._queue.popleft()
                batch: list[GossipEvent] = [ev]
                if not isinstance(ev, (UserEventReceived, QueryReceived)):
                    while self._queue and type(self._queue[0]) is type(ev):
                        batch.append(self._queue.popleft())
                kind, name = _event_kind(ev)
                for h in self.handlers:
                    if h.accepts(kind, name):
                        try:
                            await self._invoke(h, kind, batch)
                        except asyncio.CancelledError:
                            raise
                        except Exception:
                            log.exception("event handler failed command=%s", h.command)
                            self.counters["handlers.errors"] += 1

    def environment(self, kind: str, ev: GossipEvent) -> dict[str, str]:
        env = dict(os.environ)
        tags = dict(self.tags())
        extra = {"EVENT": kind, "SELF_NAME": self.self_name, "SELF_ROLE": tags.get("role", "")}
        for k, v in tags.items():
            extra["TAG_" + _TAG_ENV.sub("_", k.upper())] = v
        if isinstance(ev, UserEventReceived):
            extra["USER_EVENT"] = ev.name
            extra["USER_LTIME"] = str(ev.ltime)
        elif isinstance(ev, QueryReceived):
            extra["QUERY_NAME"] = ev.name
            extra["QUERY_LTIME"] = str(ev.ltime)
        for k, v in extra.items():
            env["SERF_" + k] = v
            env["RUMOR_" + k] = v
        return env

    async def _invoke(self, h: Handler, kind: str, batch: list[GossipEvent]) -> None:
        ev = batch[0]
        if isinstance(ev, (UserEventReceived, QueryReceived)):
            stdin = ev.payload
            if stdin and not stdin.endswith(b"\n"):
                stdin += b"\n"
        else:
            members = [e.member for e in batch
                       if isinstance(e, (MemberJoined, MemberLeft, MemberFailed, MemberUpdated, MemberReaped))]
            stdin = "".join(member_line(m) for m in members).encode()
        self.counters["handlers.runs"] += 1
        proc = await asyncio.create_subprocess_shell(
            h.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=self.environment(kind, ev),
            start_new_session=True,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(stdin), self.timeout)
        except TimeoutError:
            self.counters["handlers.timeouts"] += 1
            log.warning("event handler timed out command=%s timeout=%ss", h.command, self.timeout)
            # The script runs in its own session: kill its whole process group, or a child that
            # still holds the pipes would keep us waiting.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                async with asyncio.timeout(5.0):
                    await proc.wait()
            except TimeoutError:
                log.warning("event handler did not exit after SIGKILL command=%s", h.command)
            return
        if proc.returncode != 0:
            self.counters["handlers.failed"] += 1
            log.warning("event handler exited code=%s command=%s output=%r", proc.returncode,
                        h.command, out[:200])
        else:
            log.debug("event handler ran event=%s command=%s output=%r", kind, h.command, out[:200])
        if isinstance(ev, QueryReceived) and self.respond is not None and out:
            self.respond(ev, out[: min(self.response_limit, MAX_OUTPUT)])

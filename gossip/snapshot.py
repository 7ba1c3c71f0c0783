"""The gossip snapshot: an append-only log in the data dir so a restarted agent rejoins alone.

Like Serf's snapshot (``-snapshot``), it is a text file of one record per line::

    alive: NAME ADDR:PORT      a member became alive
    not-alive: NAME            a member failed, left or was reaped
    clock: N                   member Lamport clock
    event-clock: N             user-event Lamport clock
    query-clock: N             query Lamport clock
    leave                      this agent left gracefully (no rejoin unless rejoin_after_leave)
    # comment

Replaying it gives the members that were alive when we stopped and the last clocks. The log is
compacted (rewritten with only the current alive set and clocks) when it grows past
max(min_compact_size, 2 × the size of the last compaction); the rewrite goes to a temp file that
is fsynced and renamed over the old one, then the directory is fsynced, so a crash leaves either
the old or the new file, never half of one. A last line cut short by a crash is ignored.

Threading: records are added on the event loop (cheap, in memory, under a lock) and written by
:meth:`Snapshot.flush`, which the service runs in a worker thread; gossip never waits on disk.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import field
from pathlib import Path

from .atomicfile import atomic_write
from .dclass import dataclass

log = logging.getLogger(__name__)

MAX_LINE = 4096


@dataclass
class SnapshotState:
    """What a replay of the snapshot gives."""

    alive: dict[str, str] = field(default_factory=dict)
    """Member name -> "addr:port" of the members alive at the end of the last run."""
    clock: int = 0
    event_clock: int = 0
    query_clock: int = 0
    left: bool = False
    """The last run ended with a graceful leave (and the alive set was cleared)."""
    bad_lines: int = 0


def replay(lines: list[str], rejoin_after_leave: bool = False) -> SnapshotState:
    """Apply snapshot records in order (pure; tested with tables)."""
    st = SnapshotState()
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line == "leave":
            if rejoin_after_leave:
                continue
            st.alive.clear()
            st.clock = st.event_clock = st.query_clock = 0
            st.left = True
            continue
        kind, sep, rest = line.partition(": ")
        if not sep:
            st.bad_lines += 1
            continue
        if kind == "alive":
            name, _, addr = rest.rpartition(" ")
            if not name or ":" not in addr:
                st.bad_lines += 1
                continue
            st.alive[name] = addr
            st.left = False
        elif kind == "not-alive":
            st.alive.pop(rest, None)
        elif kind in ("clock", "event-clock", "query-clock"):
            try:
                value = int(rest)
            except ValueError:
                st.bad_lines += 1
                continue
            if kind == "clock":
                st.clock = value
            elif kind == "event-clock":
                st.event_clock = value
            else:
                st.query_clock = value
        elif kind == "coordinate":
            continue
        else:
            st.bad_lines += 1
    return st


class Snapshot:
    """An open snapshot log (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], *, min_compact_size: int = 128 * 1024,
                 rejoin_after_leave: bool = False) -> None:
        self.path = Path(path)
        self.min_compact_size = min_compact_size
        self.rejoin_after_leave = rejoin_after_leave
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._alive: dict[str, str] = {}
        self._clocks = (0, 0, 0)
        self._last_written_clocks = (0, 0, 0)
        self._offset = 0
        self._last_compact = 0
        self.state = SnapshotState()
        self.write_errors = 0

    # -- blocking: call from a thread ------------------------------------------------------------
    def load(self) -> SnapshotState:
        """Read and replay the file (missing file: empty state)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        text = data.decode("utf-8", "replace")
        lines = text.split("\n")
        if lines and not text.endswith("\n"):
            lines = lines[:-1]  # a last line cut short by a crash
        st = replay([ln for ln in lines if len(ln) <= MAX_LINE], self.rejoin_after_leave)
        if st.bad_lines:
            log.warning("snapshot has unreadable lines path=%s count=%d", self.path, st.bad_lines)
        with self._lock:
            self.state = st
            self._alive = dict(st.alive)
            self._clocks = (st.clock, st.event_clock, st.query_clock)
            self._last_written_clocks = self._clocks
            self._offset = len(data)
            self._last_compact = len(data)
        return st

    def flush(self) -> None:
        """Write pending records; compact when the file has grown enough. Never raises."""
        with self._lock:
            lines = self._pending
            self._pending = []
            compact = self._offset > max(self.min_compact_size, 2 * self._last_compact)
            alive = dict(self._alive)
            clocks = self._clocks
        try:
            if compact:
                self._compact(alive, clocks)
                return
            if not lines:
                return
            data = "".join(lines).encode()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            with self._lock:
                self._offset += len(data)
        except OSError as e:
            self.write_errors += 1
            log.warning("snapshot write failed path=%s error=%s", self.path, e)
            with self._lock:
                self._pending = lines + self._pending

    def _compact(self, alive: dict[str, str], clocks: tuple[int, int, int]) -> None:
        out = ["# rumor gossip snapshot, compacted\n"]
        out += [f"alive: {n} {a}\n" for n, a in sorted(alive.items())]
        out += [f"clock: {clocks[0]}\n", f"event-clock: {clocks[1]}\n", f"query-clock: {clocks[2]}\n"]
        data = "".join(out).encode()
        atomic_write(self.path, data)
        with self._lock:
            self._offset = len(data)
            self._last_compact = len(data)
        log.debug("snapshot compacted path=%s bytes=%d", self.path, len(data))

    # -- cheap: call on the loop -----------------------------------------------------------------
    def alive(self, name: str, addr: str, port: int) -> None:
        hp = f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
        with self._lock:
            if self._alive.get(name) == hp:
                return
            self._alive[name] = hp
            self._pending.append(f"alive: {name} {hp}\n")

    def not_alive(self, name: str) -> None:
        with self._lock:
            if name not in self._alive:
                return
            del self._alive[name]
            self._pending.append(f"not-alive: {name}\n")

    def clocks(self, clock: int, event_clock: int, query_clock: int) -> None:
        with self._lock:
            self._clocks = (clock, event_clock, query_clock)
            last = self._last_written_clocks
            for label, new, old in zip(("clock", "event-clock", "query-clock"), self._clocks, last):
                if new != old:
                    self._pending.append(f"{label}: {new}\n")
            self._last_written_clocks = self._clocks

    def leave(self) -> None:
        with self._lock:
            self._pending.append("leave\n")
            if not self.rejoin_after_leave:
                self._alive.clear()

    def has_pending(self) -> bool:
        with self._lock:
            return bool(self._pending) or self._offset > max(self.min_compact_size, 2 * self._last_compact)

    def previous_members(self, self_name: str) -> list[tuple[str, str]]:
        """(name, "addr:port") of the members alive at the end of the last run, minus us."""
        return [(n, a) for n, a in self.state.alive.items() if n != self_name]

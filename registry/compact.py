"""Shared copies of the small values that catalog records repeat by the thousand.

A catalog of 100,000 instances holds each service name, tag, check name, status, interval and
meta pair tens of thousands of times; decoded from msgpack, each would be its own object (a
"passing" is 56 bytes, a one-pair meta dict 232). :class:`Interner` hands back one shared
object per distinct value: strings, tuples of strings, and meta dicts (shared dicts are never
mutated: records are immutable and every writer builds a new dict). Unique values (service
IDs, check output) are not worth a table entry and are left alone by the callers.

The table is bounded (``limit`` entries): once full, new values are returned as they are and
only the values already shared keep being shared, so hostile input cannot grow it without end.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")

EMPTY_MAP: Mapping[str, Any] = {}
"""The one empty mapping every record without meta shares (never mutated)."""


class Interner:
    """A bounded table of shared strings, string tuples and string-to-string dicts."""

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self._table: dict[Any, Any] = {}

    def __len__(self) -> int:
        return len(self._table)

    def value(self, v: T) -> T:
        """The shared copy of a hashable value (a string, an int...)."""
        got = self._table.get(v)
        if got is not None:
            return got  # type: ignore[no-any-return]
        if len(self._table) < self.limit:
            self._table[v] = v
        return v

    def strings(self, items: list[str] | tuple[str, ...]) -> tuple[str, ...]:
        if not items:
            return ()
        t = tuple(self.value(s) for s in items)
        return self.value(t)

    def str_map(self, m: Mapping[str, str]) -> Mapping[str, str]:
        """The shared copy of a str->str mapping (keys and values shared as well)."""
        if not m:
            return EMPTY_MAP
        key = ("\x00map", *sorted(m.items()))
        got = self._table.get(key)
        if got is not None:
            return got  # type: ignore[no-any-return]
        shared = {self.value(k): self.value(v) for k, v in m.items()}
        if len(self._table) < self.limit:
            self._table[key] = shared
        return shared

    def any_map(self, m: Mapping[str, Any]) -> Mapping[str, Any]:
        """Only the empty mapping is shared (values may be nested)."""
        return EMPTY_MAP if not m else m


SHARED = Interner()
"""The process's table (records of every node are decoded through it)."""

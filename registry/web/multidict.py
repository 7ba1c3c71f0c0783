"""Ordered multi-valued mappings: a request's query and headers, a response's headers.

A key may appear several times (``?tag=a&tag=b``, two ``Set-Cookie`` headers). Indexing and
``get`` give the first value, ``getall`` every value in order. :class:`Headers` compares names
without regard to case and keeps the spelling it was given for output.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar, overload

_T = TypeVar("_T")
_NOTHING: Any = object()


class MultiDict(Mapping[str, str]):
    """Query parameters: keys compare exactly."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] | Mapping[str, str] | None = None
                 ) -> None:
        self._items: list[tuple[str, str]] = []
        if items is not None:
            self.extend(items)

    @staticmethod
    def _fold(key: str) -> str:
        return key

    # -- reading --------------------------------------------------------------------------

    def getall(self, key: str, default: Any = _NOTHING) -> list[str]:
        k = self._fold(key)
        fold = self._fold
        found = [v for n, v in self._items if fold(n) == k]
        if not found:
            if default is _NOTHING:
                raise KeyError(key)
            return default  # type: ignore[no-any-return]
        return found

    def getone(self, key: str, default: Any = _NOTHING) -> Any:
        k = self._fold(key)
        fold = self._fold
        for n, v in self._items:
            if fold(n) == k:
                return v
        if default is _NOTHING:
            raise KeyError(key)
        return default

    @overload
    def get(self, key: str) -> str | None: ...
    @overload
    def get(self, key: str, default: str) -> str: ...
    @overload
    def get(self, key: str, default: _T) -> str | _T: ...
    def get(self, key: str, default: Any = None) -> Any:
        return self.getone(key, default)

    def __getitem__(self, key: str) -> str:
        return self.getone(key)  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        k = self._fold(key)
        fold = self._fold
        return any(fold(n) == k for n, _ in self._items)

    def __iter__(self) -> Iterator[str]:
        return (n for n, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        return list(self._items)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}({self._items!r})>"

    # -- writing --------------------------------------------------------------------------

    def add(self, key: str, value: str) -> None:
        self._items.append((key, value))

    def extend(self, items: Iterable[tuple[str, str]] | Mapping[str, str]) -> None:
        pairs = items.items() if isinstance(items, (Mapping, MultiDict)) else items
        for k, v in pairs:
            self._items.append((k, v))

    def __setitem__(self, key: str, value: str) -> None:
        k = self._fold(key)
        fold = self._fold
        for i, (n, _) in enumerate(self._items):
            if fold(n) == k:
                self._items[i] = (key, value)
                self._items[i + 1:] = [p for p in self._items[i + 1:] if fold(p[0]) != k]
                return
        self._items.append((key, value))


class Headers(MultiDict):
    """HTTP header fields: names compare without regard to case."""

    __slots__ = ()

    @staticmethod
    def _fold(key: str) -> str:
        return key.lower()

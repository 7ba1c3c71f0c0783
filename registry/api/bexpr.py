"""The common subset of Consul's ``?filter=`` expressions (go-bexpr), over the JSON we answer.

Grammar (keywords case-sensitive, like go-bexpr)::

    expr     := and_expr ("or" and_expr)*
    and_expr := unary ("and" unary)*
    unary    := "not" unary | "(" expr ")" | match
    match    := selector ("==" | "!=") value
              | selector ("contains" | "not contains") value
              | selector ("matches" | "not matches") value
              | value ("in" | "not in") selector
              | selector "is" ["not"] "empty"
    selector := Name ("." Name | "[" string "]")*        e.g. Service.Meta.env, Checks.Status
    value    := "double-quoted" | 'single' | `raw` | bare word or number

A selector that passes through a list (``Checks.Status``) yields every element's value;
``==``, ``contains``, ``in`` and ``matches`` hold when any value does, their negations when
none does. ``in``/``contains`` on a map test its keys. A bad expression is a 400.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..errors import RequestError

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
      | (?P<op>==|!=|\(|\)|\[|\])
      | (?P<word>[A-Za-z0-9_\-.:/*@+]+)
    )""",
    re.VERBOSE,
)

Pred = Callable[[Any], bool]


class FilterError(RequestError):
    def __init__(self, message: str) -> None:
        super().__init__(f"Failed to create boolean expression evaluator: {message}", 400)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FilterError(f"unexpected character at position {pos}: {text[pos:pos + 10]!r}")
        pos = m.end()
        if m.group("str") is not None:
            s = m.group("str")
            body = s[1:-1]
            if s[0] != "`":
                body = re.sub(r"\\(.)", r"\1", body)
            out.append(("str", body))
        elif m.group("op") is not None:
            out.append(("op", m.group("op")))
        else:
            out.append(("word", m.group("word")))
    return out


def _resolve(obj: Any, path: list[str]) -> list[Any]:
    vals = [obj]
    for part in path:
        nxt: list[Any] = []
        for v in vals:
            if isinstance(v, list):
                for el in v:
                    if isinstance(el, dict) and part in el:
                        nxt.append(el[part])
            elif isinstance(v, dict) and part in v:
                nxt.append(v[part])
        vals = nxt
    return vals


def _scalar_eq(a: Any, b: str) -> bool:
    if isinstance(a, bool):
        return str(a).lower() == b.lower()
    if isinstance(a, (int, float)):
        try:
            return float(b) == float(a)
        except ValueError:
            return False
    return isinstance(a, str) and a == b


def _eq_any(vals: list[Any], value: str) -> bool:
    for v in vals:
        if isinstance(v, list):
            if any(_scalar_eq(x, value) for x in v):
                return True
        elif _scalar_eq(v, value):
            return True
    return False


def _contains_any(vals: list[Any], value: str) -> bool:
    for v in vals:
        if isinstance(v, list) and any(_scalar_eq(x, value) for x in v):
            return True
        if isinstance(v, dict) and value in v:
            return True
        if isinstance(v, str) and value in v:
            return True
    return False


def _empty(vals: list[Any]) -> bool:
    if not vals:
        return True
    return all(v in (None, "", [], {}) for v in vals)


def _or(a: Pred, b: Pred) -> Pred:
    return lambda o: a(o) or b(o)


def _and(a: Pred, b: Pred) -> Pred:
    return lambda o: a(o) and b(o)


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self, k: int = 0) -> tuple[str, str] | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        t = self.peek()
        if t is None:
            raise FilterError("unexpected end of expression")
        self.i += 1
        return t

    def is_word(self, w: str, k: int = 0) -> bool:
        t = self.peek(k)
        return t is not None and t[0] == "word" and t[1] == w

    def parse(self) -> Pred:
        if not self.toks:
            raise FilterError("empty expression")
        p = self.expr()
        if self.peek() is not None:
            raise FilterError(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return p

    def expr(self) -> Pred:
        left = self.and_expr()
        while self.is_word("or"):
            self.take()
            right = self.and_expr()
            left = _or(left, right)
        return left

    def and_expr(self) -> Pred:
        left = self.unary()
        while self.is_word("and"):
            self.take()
            right = self.unary()
            left = _and(left, right)
        return left

    def unary(self) -> Pred:
        if self.is_word("not"):
            self.take()
            inner = self.unary()
            return lambda o: not inner(o)
        t = self.peek()
        if t == ("op", "("):
            self.take()
            inner = self.expr()
            if self.take() != ("op", ")"):
                raise FilterError("missing )")
            return inner
        return self.match()

    def selector(self) -> list[str]:
        t = self.take()
        if t[0] != "word":
            raise FilterError(f"expected a selector, got {t[1]!r}")
        path = [p for p in t[1].split(".") if p]
        while self.peek() == ("op", "["):
            self.take()
            k = self.take()
            if k[0] not in ("str", "word") or self.take() != ("op", "]"):
                raise FilterError("bad [\"key\"] index in selector")
            path.append(k[1])
            t2 = self.peek()
            if t2 is not None and t2[0] == "word" and t2[1].startswith("."):
                self.take()
                path.extend(p for p in t2[1].split(".") if p)
        return path

    def value(self) -> str:
        t = self.take()
        if t[0] == "op":
            raise FilterError(f"expected a value, got {t[1]!r}")
        return t[1]

    def match(self) -> Pred:
        # value in selector / value not in selector
        if self.is_word("in", 1) or (self.is_word("not", 1) and self.is_word("in", 2)):
            value = self.value()
            neg = self.is_word("not")
            if neg:
                self.take()
            self.take()  # in
            path = self.selector()
            return lambda o: _contains_any(_resolve(o, path), value) != neg
        path = self.selector()
        t = self.take()
        if t == ("op", "=="):
            v = self.value()
            return lambda o: _eq_any(_resolve(o, path), v)
        if t == ("op", "!="):
            v = self.value()
            return lambda o: not _eq_any(_resolve(o, path), v)
        neg = False
        if t == ("word", "not"):
            neg = True
            t = self.take()
        if t == ("word", "contains"):
            v = self.value()
            return lambda o: _contains_any(_resolve(o, path), v) != neg
        if t == ("word", "matches"):
            pattern = self.value()
            try:
                rx = re.compile(pattern)
            except re.error as e:
                raise FilterError(f"bad regular expression {pattern!r}: {e}") from None
            return lambda o: any(isinstance(x, str) and rx.search(x)
                                 for x in _resolve(o, path)) != neg
        if t == ("word", "is") and not neg:
            if self.is_word("not"):
                self.take()
                neg = True
            if self.take() != ("word", "empty"):
                raise FilterError("expected 'empty' after 'is'")
            return lambda o: _empty(_resolve(o, path)) != neg
        raise FilterError(f"unknown operator {t[1]!r}; use ==, !=, contains, in, matches, is empty")


def compile_filter(text: str) -> Pred:
    """Compile a filter expression to a predicate over a JSON object (raises FilterError)."""
    return _Parser(text).parse()


def filter_items(expr: str | None, items: list[Any]) -> list[Any]:
    """Apply a ``?filter=`` expression to JSON-shaped items; no expression keeps them all."""
    if not expr:
        return items
    pred = compile_filter(expr)
    return [x for x in items if pred(x)]

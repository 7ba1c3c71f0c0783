"""Go-style durations ("10s", "1m30s", "250ms") to float seconds and back."""

from __future__ import annotations

import re

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(value: object, *, what: str = "duration") -> float:
    """Parse a Go duration string, or a number of seconds, into float seconds.

    Raises ValueError with a message naming ``what`` and an example of the right form.
    Consul also accepts a bare integer as nanoseconds in JSON; a plain number here means
    seconds, which is what people who write one by hand mean.
    """
    if isinstance(value, bool):
        raise ValueError(f'{what}: {value!r} is not a duration; write it like "10s" or "1m30s"')  # noqa: TRY004
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"{what}: {value!r} is negative; use a duration >= 0")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f'{what}: {value!r} is not a duration; write it like "10s" or "1m30s"')  # noqa: TRY004
    text = value.strip()
    if text in ("0", ""):
        return 0.0
    sign = 1.0
    if text[0] in "+-":
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    pos = 0
    total = 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f'{what}: {value!r} is not a duration; write it like "10s" or "1m30s"')
    if sign < 0 and total > 0:
        raise ValueError(f"{what}: {value!r} is negative; use a duration >= 0")
    return total


def format_duration(seconds: float) -> str:
    """Format seconds the way Go prints a time.Duration (enough for our messages and API)."""
    if seconds == 0:
        return "0s"
    if seconds < 1e-3:
        return f"{seconds * 1e6:g}µs"
    if seconds < 1:
        return f"{seconds * 1e3:g}ms"
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    out = ""
    if h:
        out += f"{int(h)}h"
    if h or m:
        out += f"{int(m)}m"
    out += f"{s:g}s"
    return out

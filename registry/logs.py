"""Logging set-up: key=value text by default, JSON lines with -log-json."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import deque
from collections.abc import Callable

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

_LEVELS = {"TRACE": TRACE, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING,
           "WARNING": logging.WARNING, "ERR": logging.ERROR, "ERROR": logging.ERROR}


def level_of(name: str) -> int:
    return _LEVELS[name.upper()]


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        msg = record.getMessage()
        line = f"{ts}.{int(record.msecs):03d}Z [{record.levelname}] {record.name}: {msg}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "@timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "@level": record.levelname.lower(),
            "@module": record.name,
            "@message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


class MonitorHandler(logging.Handler):
    """Keeps recent lines and feeds live subscribers (for `rumor monitor`).

    Lines are formatted only when someone reads them: the ring keeps the records themselves
    (an agent logs at INFO into this ring whatever its console level, and formatting every
    line nobody asks for showed up in a join burst's profile). A record carrying a traceback
    is formatted at once, so the ring never pins the frames of an exception."""

    def __init__(self, keep: int = 512) -> None:
        super().__init__()
        self.recent: deque[tuple[int, logging.LogRecord | str]] = deque(maxlen=keep)
        self.subscribers: set[Callable[[int, str], None]] = set()

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or self.subscribers:
            line = self._line(record)
            if line is None:
                return
            self.recent.append((record.levelno, line))
            for sub in list(self.subscribers):
                sub(record.levelno, line)
        else:
            self.recent.append((record.levelno, record))

    def _line(self, record: logging.LogRecord) -> str | None:
        try:
            return self.format(record)
        except Exception:  # noqa: BLE001  # pragma: no cover - formatting must not kill logging
            return None

    def backlog(self) -> list[tuple[int, str]]:
        """The kept lines, oldest first, as (level, formatted line)."""
        out: list[tuple[int, str]] = []
        for levelno, item in list(self.recent):
            line = item if isinstance(item, str) else self._line(item)
            if line is not None:
                out.append((levelno, line))
        return out


MONITOR = MonitorHandler()


def setup(level: str = "INFO", as_json: bool = False) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt: logging.Formatter = JSONFormatter() if as_json else TextFormatter()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(fmt)
    root.addHandler(handler)
    MONITOR.setFormatter(fmt)
    root.addHandler(MONITOR)
    lvl = level_of(level)
    root.setLevel(min(lvl, logging.INFO))
    # Nothing shown or kept uses the caller's file and line, thread or process: making a record
    # without them is what the logging HOWTO's "Optimization" section advises (a join storm
    # makes a few hundred INFO records per agent for the monitor's backlog).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler.setLevel(lvl)
    MONITOR.setLevel(TRACE)
    # aiohttp's access log is noisy and not ours to show by default.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

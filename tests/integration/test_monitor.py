"""`rumor monitor` streams the live log of the agent."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.harness.agents import AgentProcess, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_monitor_streams_new_log_lines(tmp_path: Path) -> None:
    a = AgentProcess("mon", tmp_path).start()
    try:
        p = subprocess.Popen([sys.executable, "-m", "registry.cli", "monitor", "-http-addr",
                              a.http_addr, "-log-level", "debug"], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
        lines: list[str] = []
        t = threading.Thread(target=lambda: [lines.append(x) for x in p.stdout], daemon=True)  # type: ignore[union-attr]
        t.start()
        wait_for(lambda: any("agent started" in x for x in lines), 10, what="backlog")
        # Something that logs: a bad monitor level is refused and not logged, so use a
        # SIGHUP reload, which logs a line at INFO.
        a.signal(__import__("signal").SIGHUP)
        wait_for(lambda: any("reload" in x for x in lines), 10, what="a live line")
        p.terminate()
        p.wait(timeout=5)
    finally:
        a.stop()


def test_monitor_refuses_unknown_level(tmp_path: Path) -> None:
    a = AgentProcess("mon2", tmp_path).start()
    try:
        p = subprocess.run([sys.executable, "-m", "registry.cli", "monitor", "-http-addr",
                            a.http_addr, "-log-level", "shouty"], cwd=ROOT, capture_output=True,
                           text=True, timeout=10)
        assert p.returncode == 1 and "Unknown log level: shouty" in p.stderr
    finally:
        a.stop()

"""What every comparison records besides its figures: the machine, the load, the raw rounds.

A bench opens a :class:`Run` at start. It prints the machine (CPU model, cores, kernel, the
versions of the tools it runs) and the load average, and makes the run's directory:

    bench/results/<UTC date>/<bench>-<UTC time>/     a full run (committed; read by report.py)
    bench/out/quick/<bench>-<UTC time>/              a --quick smoke run (ignored by git)

``run.round(...)`` appends one JSON line per measured run of one side to ``rounds.jsonl``
(the raw per-round figures the headlines are computed from), ``run.keep(name, text)`` keeps a
tool's raw output beside it, and ``run.close()`` records the load average after and the end
time in ``run.json``. ``bench/report.py`` turns the rounds into the RESULTS.md tables (median
of the rounds, with min and max).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
QUICK = ROOT / "bench" / "out" / "quick"

# how to ask each tool its version (first line of the answer is kept)
_VERSION_ARGS = {
    "haproxy": ["-v"], "nginx": ["-v"], "wrk": ["-v"], "dnsmasq": ["--version"],
    "serf": ["version"], "dnsperf": None, "taskset": ["--version"], "openssl": ["version"],
}


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    m = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return m.group(1).strip() if m else (platform.processor() or "unknown")


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def tool_version(tool: str) -> str:
    exe = shutil.which(tool) or next((p for p in (f"/usr/sbin/{tool}", f"/usr/bin/{tool}")
                                      if os.path.exists(p)), None)
    if exe is None:
        return "missing"
    args = _VERSION_ARGS.get(tool, ["--version"])
    if args is None:        # no version flag: ask the package manager
        try:
            out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", tool],
                                 capture_output=True, text=True, timeout=10, check=False).stdout.strip()
            return out or "unknown"
        except (OSError, subprocess.SubprocessError):
            return "unknown"
    try:
        p = subprocess.run([exe, *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    lines = (p.stdout + p.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10, check=False).stdout.strip()
        return out or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine(tools: list[str]) -> dict[str, Any]:
    """CPU, cores, kernel, Python and the tools' versions."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "tools": {t: tool_version(t) for t in tools},
    }


# Environment variables that change what a run measures (bytecode caches, the event loop, hash
# seeds, allocator, CPU pinning done outside the bench); recorded with every run.
ENV_RECORDED = ("PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED", "PYTHONMALLOC", "PYTHONOPTIMIZE",
                "PYTHONASYNCIODEBUG", "PYTHONDEVMODE", "RUMOR_PURE_PYTHON",
                "OMP_NUM_THREADS", "MALLOC_ARENA_MAX")


def shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it, absolute otherwise."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def prometheus_values(text: str) -> dict[str, float]:
    """An agent's ``/v1/agent/metrics?format=prometheus`` text as {series: value} (comments and
    unreadable lines skipped): what the start-pattern benches poll to see convergence."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                pass
    return out


def metrics_converged(m: dict[str, float], nodes: int, instances: int) -> bool:
    """An agent's metrics (:func:`prometheus_values`) show the whole pool: ``nodes`` members
    alive and in the catalog, ``instances`` service instances, and no critical check."""
    return (m.get('rumor_gossip_members{status="alive"}') == nodes
            and m.get("rumor_registry_nodes") == nodes
            and m.get("rumor_registry_instances") == instances
            and m.get('rumor_registry_checks{status="critical"}', 0) == 0)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Run:
    """One bench run's record; see the module docstring."""

    def __init__(self, bench: str, *, tools: list[str], params: dict[str, Any],
                 quick: bool = False, out: Path | None = None) -> None:
        self.bench = bench
        self.quick = quick
        start = _now()
        if out is None:
            base = QUICK if quick else RESULTS / start.strftime("%Y-%m-%d")
            out = base / f"{bench}-{start.strftime('%H%M%S')}"
        out = Path(out).resolve()
        out.mkdir(parents=True, exist_ok=True)
        self.dir = out
        self.info: dict[str, Any] = {
            "bench": bench,
            "quick": quick,
            "argv": sys.argv,
            "params": params,
            "commit": git_commit(),
            "start": start.isoformat(timespec="seconds"),
            "machine": machine(tools),
            "loadavg_before": loadavg(),
            "env": {k: os.environ[k] for k in ENV_RECORDED if k in os.environ},
        }
        self._write_info()
        self._rounds = (out / "rounds.jsonl").open("a")
        m = self.info["machine"]
        print(f"# {bench}: {m['cpu']}, {m['cores']} cores, kernel {m['kernel']}, "
              f"Python {m['python']}", flush=True)
        for t, v in m["tools"].items():
            print(f"#   {t}: {v}", flush=True)
        print(f"# load average before: {self.info['loadavg_before']}; commit "
              f"{self.info['commit']}; raw rounds -> {shown(self.dir)}"
              + ("  (QUICK: a smoke run, not a figure)" if quick else ""), flush=True)

    def _write_info(self) -> None:
        (self.dir / "run.json").write_text(json.dumps(self.info, indent=1) + "\n")

    def round(self, rnd: int, who: str, test: str, figures: dict[str, Any]) -> None:
        """Record one measured run of one side (``who``) of one test, in round ``rnd``."""
        row = {"round": rnd, "who": who, "test": test, **figures}
        self._rounds.write(json.dumps(row) + "\n")
        self._rounds.flush()

    def keep(self, name: str, text: str) -> None:
        """Keep a tool's raw output (``name`` is a file name inside the run directory)."""
        raw = self.dir / "raw"
        raw.mkdir(exist_ok=True)
        (raw / name).write_text(text)

    def note(self, key: str, value: Any) -> None:
        """Record something about the run as a whole (idle memory, response sizes...)."""
        self.info.setdefault("notes", {})[key] = value
        self._write_info()

    def close(self, ok: bool = True) -> None:
        self._rounds.close()
        self.info["end"] = _now().isoformat(timespec="seconds")
        self.info["loadavg_after"] = loadavg()
        self.info["completed"] = ok
        self._write_info()
        print(f"# load average after: {self.info['loadavg_after']}; raw rounds in "
              f"{shown(self.dir)}", flush=True)

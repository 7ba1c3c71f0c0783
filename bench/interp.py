"""Which Python the benchmarks run Rumor's processes under, and with what environment.

Rumor's processes run from a virtualenv of their own, ``bench/.venv-rumor``: Rumor installed
into it the way a user installs it (``pip install .``, not editable: an editable install adds
an import hook that every process loads at start, ~1 MiB), as swim-protocol runs from its own
venv. The processes start in the source tree, so they run the tree's code; the venv provides
the interpreter and the dependencies (``fast`` extra included). The interpreter that runs the
benchmark may carry site-wide start-up hooks of the machine (``.pth`` files that import
modules at every start, ~4 MiB RSS on the bench machine), which would be charged to Rumor.
``RUMOR_BENCH_PYTHON`` overrides the choice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


VENV = ROOT / "bench" / ".venv-rumor"


def rumor_python() -> str:
    """The interpreter for Rumor's processes; makes ``bench/.venv-rumor`` on first use (and
    again when pyproject.toml changed)."""
    override = os.environ.get("RUMOR_BENCH_PYTHON")
    if override:
        return override
    exe = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    if not stamp.exists() or stamp.stat().st_mtime < (ROOT / "pyproject.toml").stat().st_mtime:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(exe), "-m", "pip", "install", "-q", f"{ROOT}[fast]"], check=True)
        stamp.touch()
    return str(exe)


def bench_env() -> dict[str, str]:
    """The environment for the processes a benchmark starts: this one, but allowed to use
    (and write) bytecode caches. A machine may set PYTHONDONTWRITEBYTECODE (the bench
    machine does), which makes every process compile every module from source at start:
    slower to start and ~1 MiB more RSS after the compiler's scratch memory. An installed
    package has its caches (pip writes them), so both kinds run with them."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def precompile(*dirs: Path) -> None:
    """Write the bytecode caches of ``dirs`` now, so no measured process compiles."""
    import compileall

    for d in dirs:
        compileall.compile_dir(str(d), quiet=1, workers=1)


def terminate(proc: subprocess.Popen[bytes], timeout: float = 8.0) -> None:
    """Stop a process the bench started: SIGTERM, then SIGKILL if it has not exited within
    ``timeout`` seconds. Nothing happens when it has exited already."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

"""The examples a person runs must keep working, and must leave nothing behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import need
from tests.harness import netns

ROOT = Path(__file__).resolve().parents[2]


def _ours() -> set[str]:
    """Command lines of processes started from the example (agents and web servers)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], check=True, capture_output=True,
                         text=True).stdout
    return {line.strip() for line in out.splitlines()
            if "rumor-three-hosts" in line or ("http.server 8080" in line and "10.251." in line)}


def _example_namespaces(pattern: str = r"rx[0-9a-f]{4}(sw|h[0-9]+)") -> set[str]:
    """Namespaces an example made (its names match ``pattern``); others' are not our business."""
    names = (line.split()[0] for line in netns.run("ip", "netns", "list").stdout.splitlines()
             if line.strip())
    return {n for n in names if re.fullmatch(pattern, n)}


@pytest.mark.netns
def test_three_hosts_example_check_mode() -> None:
    reason = netns.available()
    if reason:
        pytest.skip(reason)
    need("dig")
    need("curl")
    # Only the example's own namespaces ("rx<run id>sw", "rx<run id>h<N>") count: other
    # programs on the machine may add and remove namespaces of their own meanwhile.
    before_ns = _example_namespaces()
    # The interpreter running the tests (the project's venv in CI) provides `rumor` and
    # `python3` to the script.
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    p = subprocess.run(["bash", str(ROOT / "examples/three-hosts/three-hosts.sh"), "--check"],
                       check=False, capture_output=True, text=True, timeout=240, cwd=ROOT,
                       env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "all good" in p.stdout
    assert "left host3's DNS answers" in p.stdout and "was back" in p.stdout
    after_ns = _example_namespaces()
    assert after_ns <= before_ns, f"namespaces left behind: {after_ns - before_ns}"
    assert not _ours(), f"processes left behind: {_ours()}"


CONTAINERS_NS = r"rumor-containers-[0-9a-f]{4}"


@pytest.mark.netns
def test_containers_example_check_mode() -> None:
    """Two labelled containers on Podman, in DNS and behind a listener; no skip when Podman is
    missing (setup-system.sh installs it): the script fails and says what to install."""
    reason = netns.available()
    if reason:
        pytest.skip(reason)
    before_ns = _example_namespaces(CONTAINERS_NS)
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    p = subprocess.run(["bash", str(ROOT / "examples/containers/containers.sh"), "--check"],
                       check=False, capture_output=True, text=True, timeout=240, cwd=ROOT,
                       env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "all good" in p.stdout and "web1 left DNS and the listener" in p.stdout
    assert "hello from container web1" in p.stdout and "hello from container web2" in p.stdout
    after_ns = _example_namespaces(CONTAINERS_NS)
    assert after_ns <= before_ns, f"namespaces left behind: {after_ns - before_ns}"
    out = subprocess.run(["ps", "-eo", "pid=,args="], check=True, capture_output=True,
                         text=True).stdout
    left = [line for line in out.splitlines() if "rumor-containers." in line]
    assert not left, f"processes left behind: {left}"


@pytest.mark.netns
def test_two_datacenters_example_check_mode() -> None:
    reason = netns.available()
    if reason:
        pytest.skip(reason)
    need("dig")
    need("curl")
    pattern = r"rd[0-9a-f]{4}(sw|h[0-9]+)"
    before_ns = _example_namespaces(pattern)
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    p = subprocess.run(["bash", str(ROOT / "examples/two-datacenters/two-datacenters.sh"),
                        "--check"], check=False, capture_output=True, text=True, timeout=240,
                       cwd=ROOT, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "all good" in p.stdout
    assert "failover and failback: ok" in p.stdout
    assert "keep working through host4" in p.stdout
    assert _example_namespaces(pattern) <= before_ns
    left = subprocess.run(["ps", "-eo", "args="], check=True, capture_output=True,
                          text=True).stdout
    assert "rumor-two-datacenters" not in left, "processes left behind"

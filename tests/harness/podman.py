"""A private Podman for tests: its own storage, image and API socket, removed at the end.

Debian's podman 4.3 runs containers on the CI VMs with the ``runc`` runtime, the cgroupfs
cgroup manager and a containers.conf with ``default_ulimits = []`` (the default open-files
limit is above the VM's hard limit). Everything lives under one temp dir: the storage
(``--root``/``--runroot``), the image (``podman import`` of a rootfs holding Debian's static
busybox, whose ``httpd`` serves ``/www``), and the Docker-compatible API socket of a
``podman system service`` started by :meth:`Podman.start_service`. Container names carry a
prefix unique to the run. :meth:`Podman.close` removes the containers, stops the service (by
its PID), resets the private storage and deletes the dir, on failure too.

Podman runs inside a network namespace of its own (``rumor-pm-<run>``): the bridge, the
containers' veths and the iptables rules netavark writes for published ports all live there
and go away with the namespace, never in the machine's own network. Published ports are
reached from inside it (:meth:`Podman.ns_cmd`); the agent under test only needs the API's
unix socket, which a namespace does not hide.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "httpd", "sleep", "test", "rm", "wget", "cat", "echo", "true", "false",
           "touch", "ls")


class PodmanError(AssertionError):
    """Podman cannot run containers here: the test fails (it must not be skipped in CI)."""


class Podman:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="rumor-podman-"))
        self.prefix = f"rumor-t{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.image = f"localhost/{self.prefix}:busybox"
        self.socket = self.dir / "api.sock"
        self.conf = self.dir / "containers.conf"
        self.conf.write_text("[containers]\ndefault_ulimits = []\n")
        self.service: subprocess.Popen[bytes] | None = None
        self.names: list[str] = []
        self.netns = self.prefix.replace("rumor-t", "rumor-pm-")
        subprocess.run(["ip", "netns", "add", self.netns], check=True, capture_output=True)
        self.ns_cmd("ip", "link", "set", "lo", "up")

    def _enter(self) -> list[str]:
        # nsenter, not `ip netns exec`: the latter remounts /sys for the namespace, which
        # hides the cgroup hierarchy Podman needs
        return ["nsenter", f"--net=/run/netns/{self.netns}"]

    def ns_cmd(self, *argv: str, timeout: float = 30) -> str:
        """Run ``argv`` inside Podman's namespace (e.g. curl to a published port)."""
        p = subprocess.run([*self._enter(), *argv], capture_output=True, check=False,
                           timeout=timeout)
        if p.returncode != 0:
            raise PodmanError(f"{' '.join(argv)} in {self.netns} failed: "
                              f"{p.stderr.decode(errors='replace').strip()}")
        return p.stdout.decode()

    def base(self) -> list[str]:
        exe = shutil.which("podman")
        if exe is None:
            raise PodmanError("podman is not installed; run scripts/setup-system.sh")
        return [*self._enter(), exe, "--root", str(self.dir / "root"), "--runroot", str(self.dir / "run"),
                "--runtime", "runc", "--cgroup-manager", "cgroupfs"]

    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.conf)}

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        p = subprocess.run(self.base() + list(args), capture_output=True, env=self.env(),
                           check=False,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise PodmanError(f"podman {' '.join(args)} failed ({p.returncode}): "
                              f"{p.stderr.decode(errors='replace').strip()}")
        return p.stdout.decode().strip()

    def name(self, short: str) -> str:
        n = f"{self.prefix}-{short}"
        self.names.append(n)
        return n

    def build_image(self) -> str:
        """The test image: busybox-static and its applets, serving /www with httpd."""
        rootfs = self.dir / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        (rootfs / "www").mkdir()
        (rootfs / "tmp").mkdir()
        if not Path(BUSYBOX).exists():
            raise PodmanError(f"{BUSYBOX} missing; install busybox-static (setup-system.sh)")
        shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
        for a in APPLETS:
            (rootfs / "bin" / a).symlink_to("busybox")
        (rootfs / "www" / "index.html").write_text("hello from a container\n")
        tar = self.dir / "rootfs.tar"
        with tarfile.open(tar, "w") as t:
            t.add(rootfs, arcname=".")
        self.run("import", "--change", 'CMD ["/bin/httpd", "-f", "-p", "80", "-h", "/www"]',
                 "--change", "STOPSIGNAL SIGKILL", str(tar), self.image)
        return self.image

    def start_service(self) -> Path:
        """``podman system service`` on the private socket; returns the socket path."""
        if self.socket.exists():
            self.socket.unlink()
        log = open(self.dir / "service.log", "ab")
        self.service = subprocess.Popen(
            self.base() + ["system", "service", "--time=0", f"unix://{self.socket}"],
            stdout=log, stderr=subprocess.STDOUT, env=self.env())
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.service.poll() is not None:
                raise PodmanError("podman system service exited: "
                                  + (self.dir / "service.log").read_text()[-2000:])
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(self.socket))
                    return self.socket
            except OSError:
                time.sleep(0.1)
        raise PodmanError("podman system service did not open its socket in 20 s")

    def stop_service(self) -> None:
        if self.service is not None and self.service.poll() is None:
            os.kill(self.service.pid, signal.SIGTERM)
            try:
                self.service.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.service.pid, signal.SIGKILL)
                self.service.wait(timeout=5)
        self.service = None

    def _container_cgroups(self) -> list[str]:
        """The cgroup names of this Podman's containers (read before ``system reset`` wipes
        the storage that lists them)."""
        store = self.dir / "root" / "overlay-containers"
        return [f"libpod-{d.name}" for d in store.iterdir() if d.is_dir()] if store.is_dir() else []

    def _leftovers(self, ids: list[str]) -> list[int]:
        """PIDs of processes this Podman left: its own (exec sessions' conmon lingers 5
        minutes) by their command line, and the containers' processes by their cgroup, named
        after a container of this Podman's storage (one whose conmon was killed keeps running)."""
        out = []
        mark = str(self.dir).encode()
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    if mark in (d / "cmdline").read_bytes() or (
                            ids and any(i in (d / "cgroup").read_text() for i in ids)):
                        out.append(int(d.name))
                except OSError:
                    continue
        return out

    def _kill_leftovers(self, ids: list[str]) -> None:
        """SIGKILL what this Podman left (a container's PID 1 ignores SIGTERM from outside),
        then remove the network namespaces only those processes were in."""
        pids = self._leftovers(ids)
        spaces = set()
        for pid in pids:
            with contextlib.suppress(OSError):
                spaces.add(os.stat(f"/proc/{pid}/ns/net").st_ino)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        run_netns = Path("/run/netns")
        for f in run_netns.glob("netns-*") if run_netns.is_dir() else ():
            with contextlib.suppress(OSError):
                if f.stat().st_ino in spaces:
                    subprocess.run(["ip", "netns", "delete", f.name], capture_output=True,
                                   check=False)

    def close(self) -> None:
        ids = self._container_cgroups()
        try:
            for n in self.names:
                self.run("rm", "-f", "-t", "0", n, check=False)
            self.stop_service()
            self.run("system", "reset", "-f", check=False, timeout=120)
        finally:
            # also when podman failed or timed out above (seen under heavy load: three
            # containers kept running after their test)
            self._kill_leftovers(ids + self._container_cgroups())
            subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True, check=False)
            shutil.rmtree(self.dir, ignore_errors=True)

"""A TLS listener from the agent's config file, in a real agent process: curl through it, a
real SIGHUP renews the certificate while a keep-alive connection stays open, and a bad
certificate file in ``lb.listeners`` stops start-up with a message naming the file."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.harness.agents import PYTHON, free_port, wait_for
from tests.harness.pki import PKI, make_pki

ROOT = Path(__file__).resolve().parents[2]


def _argv(tmp: Path, config: Path, http_port: int) -> list[str]:
    return [PYTHON, "-m", "registry.cli", "agent", "-node", "lbtls", "-data-dir",
            str(tmp / "data"), "-bind", "127.0.0.1", "-client", "127.0.0.1", "-serf-lan-port",
            str(free_port()), "-http-port", str(http_port), "-dns-port", "-1",
            "-config-file", str(config), "-log-level", "info"]


@pytest.fixture
def backend() -> Iterator[int]:
    p = subprocess.Popen([sys.executable, "-m", "lb.testing", "http-backend", "tlsweb"],
                         stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert p.stdout is not None
        line = p.stdout.readline().decode()
        assert line.startswith("PORT "), line
        yield int(line.split()[1])
    finally:
        p.terminate()
        p.wait(10)


def _serial(port: int, pki: PKI) -> int:
    ctx = ssl.create_default_context(cafile=pki.ca)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="web.example.com") as s:
        der = s.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number


def test_config_listener_sighup_renews_certificate(tmp_path: Path, backend: int) -> None:
    pki = make_pki(tmp_path)
    cert, key, serial1 = pki.issue("web", dns=("web.example.com",))
    http_port, lb_port = free_port(), free_port()
    config = tmp_path / "agent.json"
    config.write_text(json.dumps({
        "services": [{"name": "web", "id": "web1", "address": "127.0.0.1", "port": backend}],
        "lb": {"listeners": [{"Name": "web", "Bind": f"127.0.0.1:{lb_port}", "Mode": "http",
                              "Service": "web", "TLS": {"Certificates": [
                                  {"CertFile": cert, "KeyFile": key}]}}]}}))
    log = tmp_path / "agent.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(_argv(tmp_path, config, http_port), stdout=out,
                                stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        def through() -> str:
            assert proc.poll() is None, log.read_text()
            r = subprocess.run(["curl", "-sS", "--max-time", "3", "--cacert", pki.ca,
                                "--resolve", f"web.example.com:{lb_port}:127.0.0.1",
                                f"https://web.example.com:{lb_port}/"],
                               capture_output=True, text=True, timeout=10, check=False)
            return r.stdout
        assert wait_for(lambda: through() == "tlsweb", 30, what="traffic through the LB")
        assert _serial(lb_port, pki) == serial1
        keep = http.client.HTTPSConnection("127.0.0.1", lb_port, timeout=5,
                                           context=ssl.create_default_context(cafile=pki.ca))
        keep._server_hostname = "web.example.com"  # type: ignore[attr-defined]
        keep.request("GET", "/", headers={"Host": "web.example.com"})
        assert keep.getresponse().read() == b"tlsweb"
        sock_before = keep.sock

        _, _, serial2 = pki.issue("web", dns=("web.example.com",))   # renewed in place
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "lb tls reloaded listener=web" in log.read_text(), 15,
                 what="the LB reload to be logged")
        assert _serial(lb_port, pki) == serial2 != serial1
        keep.request("GET", "/", headers={"Host": "web.example.com"})
        assert keep.getresponse().read() == b"tlsweb" and keep.sock is sock_before
        keep.close()

        Path(key).write_text("garbage\n")                  # a bad file: refused, logged
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "lb tls reload refused" in log.read_text(), 15, what="the refusal")
        assert f"{key}: not a PEM private key" in log.read_text()
        assert _serial(lb_port, pki) == serial2
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("problem", ["missing", "key_mismatch", "expired"])
def test_bad_certificate_in_config_stops_start_up(tmp_path: Path, problem: str) -> None:
    pki = make_pki(tmp_path)
    cert, key, _ = pki.issue("web", dns=("web.example.com",))
    _, other_key, _ = pki.issue("other")
    if problem == "missing":
        cert, want = str(tmp_path / "nope.pem"), "nope.pem: file not found"
    elif problem == "key_mismatch":
        key, want = other_key, "this key does not belong to the certificate"
    else:
        cert, key, _ = pki.issue("old", days=-1, not_before_days=-5)
        want = "expired"
    config = tmp_path / "agent.json"
    config.write_text(json.dumps({"lb": {"listeners": [
        {"Name": "web", "Bind": f"127.0.0.1:{free_port()}", "Mode": "http", "Service": "web",
         "TLS": {"Certificates": [{"CertFile": cert, "KeyFile": key}]}}]}}))
    p = subprocess.run(_argv(tmp_path, config, free_port()), capture_output=True, text=True,
                       timeout=60, cwd=ROOT, check=False)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "listener web: TLS.Certificates[0]" in p.stderr and want in p.stderr, p.stderr

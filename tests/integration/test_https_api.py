"""The HTTPS API: a real agent with certificates made here, driven by curl, the CLI and py-consul;
mutual TLS, reload on SIGHUP without dropping a keep-alive connection, bad files at start-up."""

from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import consul
import pytest
from cryptography import x509

from tests.conftest import need
from tests.harness.agents import PYTHON, free_port, wait_for
from tests.harness.pki import PKI, make_pki

ROOT = Path(__file__).resolve().parents[2]


# --- an agent serving HTTPS ------------------------------------------------------------------

@dataclass
class TLSAgent:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    config: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


def _argv(tmp: Path, config: Path, http_port: int = -1) -> list[str]:
    return [PYTHON, "-m", "registry.cli", "agent", "-node", "tls1", "-data-dir", str(tmp / "data"),
            "-bind", "127.0.0.1", "-client", "127.0.0.1", "-serf-lan-port", str(free_port()),
            "-http-port", str(http_port), "-dns-port", "-1", "-config-file", str(config),
            "-log-level", "debug"]


def _ctx(pki: PKI, cert: tuple[str, str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki.ca)
    if cert:
        ctx.load_cert_chain(*cert)
    return ctx


@pytest.fixture
def start(tmp_path: Path) -> Iterator[object]:
    procs: list[subprocess.Popen[bytes]] = []

    def run(tls: dict[str, object], *, client: tuple[str, str] | None = None,
            pki: PKI) -> TLSAgent:
        port = free_port()
        config = tmp_path / "agent.json"
        config.write_text(json.dumps({"ports": {"https": port}, "tls": {"defaults": tls}}))
        log = tmp_path / "agent.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(_argv(tmp_path, config), stdout=out, stderr=subprocess.STDOUT,
                                    cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        procs.append(proc)
        agent = TLSAgent(proc, port, log, config)

        def up() -> bool:
            assert proc.poll() is None, log.read_text()
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=2,
                                               context=_ctx(pki, client))
            try:
                conn.request("GET", "/v1/agent/self")
                return conn.getresponse().status == 200
            finally:
                conn.close()

        wait_for(up, 30, what="the agent to answer HTTPS")
        return agent

    yield run
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "5", *args], capture_output=True,
                          text=True, timeout=20, check=False)


def test_https_only_with_curl_cli_and_py_consul(tmp_path: Path, start) -> None:  # type: ignore[no-untyped-def]
    need("curl")
    pki = make_pki(tmp_path)
    cert, key, _ = pki.issue("server")
    a = start({"ca_file": pki.ca, "cert_file": cert, "key_file": key}, pki=pki)
    ok = _curl("--cacert", pki.ca, f"{a.url}/v1/agent/self")
    assert ok.returncode == 0, ok.stderr
    ports = json.loads(ok.stdout)["DebugConfig"]["Ports"]
    assert ports["HTTPS"] == a.port and ports["HTTP"] == -1      # -http-port -1: HTTPS only
    # Plain HTTP to the HTTPS port is not served.
    plain = _curl(f"http://127.0.0.1:{a.port}/v1/agent/self")
    assert plain.returncode != 0 or "agent" not in plain.stdout
    # An unknown CA is refused by the client.
    assert _curl(f"{a.url}/v1/agent/self").returncode == 60
    # The CLI: flags, then environment variables as Consul's.
    cli = [PYTHON, "-m", "registry.cli"]
    r = subprocess.run([*cli, "members", "-http-addr", a.url, "-ca-file", pki.ca],
                       capture_output=True, text=True, cwd=ROOT, timeout=30, check=False)
    assert r.returncode == 0 and "tls1" in r.stdout, r.stderr
    r = subprocess.run([*cli, "members"], capture_output=True, text=True, cwd=ROOT, timeout=30,
                       check=False, env={**os.environ, "RUMOR_HTTP_ADDR": a.url,
                                         "RUMOR_CACERT": pki.ca})
    assert r.returncode == 0 and "tls1" in r.stdout, r.stderr
    r = subprocess.run([*cli, "members", "-http-addr", a.url], capture_output=True, text=True,
                       cwd=ROOT, timeout=30, check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "CERTIFICATE" in r.stderr.upper()
    # py-consul, as its users configure it.
    c = consul.Consul(host="127.0.0.1", port=a.port, scheme="https", verify=pki.ca)
    assert c.agent.self()["Config"]["NodeName"] == "tls1"
    c.agent.service.register("web", port=8080)
    assert "web" in c.agent.services()


def test_verify_incoming_requires_a_client_certificate(tmp_path: Path, start) -> None:  # type: ignore[no-untyped-def]
    need("curl")
    pki = make_pki(tmp_path)
    cert, key, _ = pki.issue("server")
    ccert, ckey, _ = pki.issue("client", server=False)
    a = start({"ca_file": pki.ca, "cert_file": cert, "key_file": key, "verify_incoming": True},
              client=(ccert, ckey), pki=pki)
    refused = _curl("--cacert", pki.ca, f"{a.url}/v1/agent/self")
    assert refused.returncode != 0 and "NodeName" not in refused.stdout
    ok = _curl("--cacert", pki.ca, "--cert", ccert, "--key", ckey, f"{a.url}/v1/agent/self")
    assert ok.returncode == 0 and json.loads(ok.stdout)["Config"]["NodeName"] == "tls1"
    # A certificate from another CA is refused too.
    (tmp_path / "other").mkdir()
    other = make_pki(tmp_path / "other")
    ocert, okey, _ = other.issue("intruder", server=False)
    assert _curl("--cacert", pki.ca, "--cert", ocert, "--key", okey,
                 f"{a.url}/v1/agent/self").returncode != 0
    c = consul.Consul(host="127.0.0.1", port=a.port, scheme="https", verify=pki.ca,
                      cert=(ccert, ckey))
    assert c.agent.self()["Config"]["NodeName"] == "tls1"


def _peer_serial(port: int, pki: PKI) -> int:
    ctx = _ctx(pki)
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=ctx)
    try:
        conn.connect()
        der = conn.sock.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number
    finally:
        conn.close()


def test_sighup_reloads_certificates_and_keeps_open_connections(tmp_path: Path, start) -> None:  # type: ignore[no-untyped-def]
    pki = make_pki(tmp_path)
    cert, key, serial_a = pki.issue("server")
    a = start({"ca_file": pki.ca, "cert_file": cert, "key_file": key}, pki=pki)
    assert _peer_serial(a.port, pki) == serial_a
    keep = http.client.HTTPSConnection("127.0.0.1", a.port, timeout=5, context=_ctx(pki))
    keep.request("GET", "/v1/agent/self")
    assert keep.getresponse().read() and keep.sock is not None
    sock_before = keep.sock
    # Renew: new certificate and key in the same files, then SIGHUP.
    _, _, serial_b = pki.issue("server")
    assert serial_b != serial_a
    a.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "tls certificates reloaded" in a.log.read_text(), 15,
             what="the reload to be logged")
    assert _peer_serial(a.port, pki) == serial_b             # new handshakes: new certificate
    keep.request("GET", "/v1/agent/self")                    # the open connection survives
    resp = keep.getresponse()
    assert resp.status == 200 and resp.read() and keep.sock is sock_before
    keep.close()
    # A bad file at reload is refused and the running certificate stays.
    Path(cert).write_text("not a certificate\n")
    a.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "tls reload refused" in a.log.read_text(), 15, what="the refusal")
    assert f"{cert}: not a PEM certificate" in a.log.read_text()
    assert _peer_serial(a.port, pki) == serial_b


@pytest.mark.parametrize("problem", ["missing", "not_pem", "key_mismatch", "expired",
                                     "no_key", "verify_without_ca"])
def test_bad_tls_files_stop_start_up_naming_the_file(tmp_path: Path, problem: str) -> None:
    pki = make_pki(tmp_path)
    cert, key, _ = pki.issue("server")
    tls: dict[str, object] = {"cert_file": cert, "key_file": key}
    expect: str
    if problem == "missing":
        tls["cert_file"] = str(tmp_path / "nope.pem")
        expect = f"{tmp_path / 'nope.pem'}: file not found"
    elif problem == "not_pem":
        Path(cert).write_text("hello\n")
        expect = f"{cert}: not a PEM certificate"
    elif problem == "key_mismatch":
        _, other_key, _ = pki.issue("other")
        tls["key_file"] = other_key
        expect = f"{other_key}: this key does not belong to the certificate in {cert}"
    elif problem == "expired":
        old, old_key, _ = pki.issue("old", days=-1, not_before_days=-10)
        tls.update(cert_file=old, key_file=old_key)
        expect = f"{old}: the certificate for 'CN=old' expired on"
    elif problem == "no_key":
        del tls["key_file"]
        expect = "cert_file and key_file are not"
    else:
        tls["verify_incoming"] = True
        expect = "verify_incoming is on but no ca_file"
    config = tmp_path / "agent.json"
    config.write_text(json.dumps({"ports": {"https": free_port()}, "tls": {"defaults": tls}}))
    r = subprocess.run(_argv(tmp_path, config), capture_output=True, text=True, cwd=ROOT,
                       timeout=60, check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert expect in r.stderr + r.stdout and "Traceback" not in r.stderr + r.stdout


def test_legacy_top_level_keys_are_read(tmp_path: Path) -> None:
    from registry.config import normalize
    from registry.tls import tls_files_from

    s = normalize({"cert_file": "/c.pem", "key_file": "/k.pem", "verify_incoming": True,
                   "ca_file": "/ca.pem", "tls": {"https": {"cert_file": "/h.pem"}}}, source="t")
    files = tls_files_from(s["tls"])
    assert (files.cert_file, files.key_file, files.ca_file, files.verify_incoming) == (
        "/h.pem", "/k.pem", "/ca.pem", True)

#!/usr/bin/env bash
# Install the Debian packages Rumor's tests and benchmarks drive (real peers and clients).
# Installs only what is missing; needs root (or sudo) the first time.
set -euo pipefail

need=()
check() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }
check dig dnsutils
check serf serf
check ip iproute2
check iptables iptables
check ping iputils-ping
check curl curl
check openssl openssl
check dnsmasq dnsmasq-base
check dnsperf dnsperf
check haproxy haproxy
check nginx nginx-light
check wrk wrk
check taskset util-linux
check ps procps
check valgrind valgrind   # bench/lb_instructions.py counts instructions per request
check chromium chromium
check chromedriver chromium-driver
check cc gcc          # builds the optional C extension (gossip/_lzwc.c) at install
# `make` creates the venv with python3's venv module (Debian ships ensurepip separately), and
# the C extension also needs Python's headers: without them the install silently falls back
# to pure Python and CI would test only that.
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
PY_INCLUDE=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
[ -f "$PY_INCLUDE/Python.h" ] || need+=(python3-dev)
# containers that publish themselves (tests/integration/test_containers.py, examples/containers):
# Podman with the runc runtime (crun refuses these VMs' hybrid cgroup layout), its network
# stack, and a static busybox to build the test image from (no registry is reachable)
check podman podman
check runc runc
dpkg -s netavark >/dev/null 2>&1 || need+=(netavark)
check nsenter util-linux
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "missing Debian packages: ${need[*]}; run as root or install them" >&2; exit 1
  fi
fi
echo "==> installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

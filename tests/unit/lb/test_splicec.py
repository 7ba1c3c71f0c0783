"""The C reader of TCP mode's splice pump (lb/_splicec.c: Pump) on real sockets: the common
case moves and counts bytes without calling Python; end of file, a full destination and an
error go to the slow callback, as lb/tcp.py's _SpliceFlow.on_slow expects them."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lb import tcp as lb_tcp
from tests.harness.ci_skips import in_ci

NOT_BUILT = ("the C extension lb/_splicec.c is not built here: it needs gcc and Python's "
             "headers (python3-dev) at install; scripts/setup-system.sh installs both")


def test_the_c_extension_is_built_where_a_compiler_is() -> None:
    """The C reader must not silently go missing (a failed optional build falls back)."""
    if os.environ.get("RUMOR_PURE_PYTHON"):
        pytest.skip("pure Python forced by RUMOR_PURE_PYTHON")
    headers = Path(sysconfig.get_paths()["include"], "Python.h").exists()
    if not in_ci() and not (shutil.which("cc") and headers):
        pytest.skip("no C compiler or Python headers here")
    assert lb_tcp._Pump is not None, NOT_BUILT


@pytest.fixture
def pump_kit() -> Iterator[dict[str, Any]]:
    """src_w -> [src_r -> pipe -> dst_w] -> dst_r, over loopback TCP, all non-blocking."""
    Pump = lb_tcp._Pump
    if Pump is None:
        if in_ci() and not os.environ.get("RUMOR_PURE_PYTHON"):
            pytest.fail(NOT_BUILT)
        pytest.skip(NOT_BUILT)
    socks: list[socket.socket] = []

    def pair() -> tuple[socket.socket, socket.socket]:
        with socket.create_server(("127.0.0.1", 0)) as lsock:
            a = socket.create_connection(lsock.getsockname())
            b, _ = lsock.accept()
        socks.extend((a, b))
        for s in (a, b):
            s.setblocking(False)
        return a, b

    src_w, src_r = pair()
    dst_w, dst_r = pair()
    pr, pw = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    calls: list[tuple[int, int]] = []
    pump = Pump(src_r.fileno(), pw, pr, dst_w.fileno(), 65536,
                lambda n, left: calls.append((n, left)))
    yield {"pump": pump, "calls": calls, "src_w": src_w, "dst_r": dst_r, "dst_w": dst_w,
           "pr": pr}
    for s in socks:
        s.close()
    os.close(pr)
    os.close(pw)


def recv_all(s: socket.socket, n: int) -> bytes:
    s.setblocking(True)
    s.settimeout(5)
    got = b""
    while len(got) < n:
        got += s.recv(n - len(got))
    return got


def test_bytes_go_through_and_are_counted_without_python(pump_kit: dict[str, Any]) -> None:
    k = pump_kit
    k["pump"]()                                  # nothing to read yet: nothing happens
    for msg in (b"hello", b"x" * 3000):
        k["src_w"].send(msg)
        moved = 0
        for _ in range(1000):                    # loopback delivery is immediate, but wait
            k["pump"]()
            moved += k["pump"].take()
            if moved == len(msg):
                break
        assert moved == len(msg)
        assert recv_all(k["dst_r"], len(msg)) == msg
    assert k["calls"] == []
    assert k["pump"].take() == 0


def test_end_of_file_goes_to_the_slow_callback(pump_kit: dict[str, Any]) -> None:
    k = pump_kit
    k["src_w"].shutdown(socket.SHUT_WR)
    for _ in range(100):
        k["pump"]()
        if k["calls"]:
            break
    assert k["calls"] == [(0, 0)]


def test_a_full_destination_leaves_bytes_in_the_pipe(pump_kit: dict[str, Any]) -> None:
    k = pump_kit
    k["dst_w"].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    chunk = b"z" * 60000
    for _ in range(400):                         # dst_r never reads: dst_w fills up
        try:
            k["src_w"].send(chunk)
        except BlockingIOError:
            pass
        k["pump"]()
        if k["calls"]:
            break
    assert k["calls"], "the destination never filled"
    n, left = k["calls"][0]
    assert 0 < left <= n
    assert len(os.read(k["pr"], 1 << 20)) == left      # exactly that much waits in the pipe


def test_an_error_goes_to_the_slow_callback_with_its_errno(pump_kit: dict[str, Any]) -> None:
    k = pump_kit
    k["dst_w"].shutdown(socket.SHUT_WR)          # writing there now fails: EPIPE
    k["src_w"].send(b"data")
    for _ in range(100):
        k["pump"]()
        if k["calls"]:
            break
    assert k["calls"] == [(-1, errno.EPIPE)]

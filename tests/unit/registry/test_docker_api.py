"""The engine client's pure pieces: Docker's multiplexed exec stream and event lines."""

from __future__ import annotations

import struct

from registry.docker_api import _decode_event, _demux, default_socket


def frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + struct.pack(">I", len(data)) + data


def test_demux_whole_and_split_frames() -> None:
    raw = bytearray(frame(1, b"out ") + frame(2, b"err") + frame(1, b"tail")[:6])
    assert _demux(raw, 100) == b"out err"
    assert len(raw) == 6  # the partial frame waits for the rest
    raw.extend(frame(1, b"tail")[6:])
    assert _demux(raw, 100) == b"tail" and raw == bytearray()


def test_demux_caps_and_passes_a_tty_stream_through() -> None:
    raw = bytearray(frame(1, b"x" * 50))
    assert _demux(raw, 10) == b"x" * 10
    raw = bytearray(b"plain text from a tty")
    assert _demux(raw, 100) == b"plain text from a tty"
    assert _demux(bytearray(frame(1, b"abc")), 0) == b""


def test_event_lines() -> None:
    assert _decode_event(b'{"Type": "container", "Action": "start"}\n') == {
        "Type": "container", "Action": "start"}
    for junk in (b"", b"   ", b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe"):
        assert _decode_event(junk) is None


def test_default_socket(monkeypatch: object) -> None:
    import pytest

    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("DOCKER_HOST", "unix:///run/podman/podman.sock")
        assert default_socket() == "/run/podman/podman.sock"
        mp.setenv("DOCKER_HOST", "tcp://10.0.0.1:2375")
        assert default_socket() == "/var/run/docker.sock"
        mp.delenv("DOCKER_HOST")
        assert default_socket() == "/var/run/docker.sock"
    finally:
        mp.undo()

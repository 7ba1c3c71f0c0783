"""gossip's one durable file replacement (keyring file, compacted snapshot)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gossip.atomicfile import atomic_write


def test_replaces_the_whole_file_with_its_mode_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "keyring.json"
    atomic_write(target, b"one\n")
    atomic_write(target, b"two\n", mode=0o640)
    assert target.read_bytes() == b"two\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in target.parent.iterdir()] == ["keyring.json"]


def test_a_failed_write_keeps_the_old_content_and_removes_its_temp(tmp_path: Path) -> None:
    target = tmp_path / "local.snapshot"
    atomic_write(target, b"old\n")
    with pytest.raises(TypeError):
        atomic_write(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["local.snapshot"]


def test_make_temp_makes_a_new_private_file_each_time(tmp_path: Path) -> None:
    import os
    import stat

    from gossip.atomicfile import make_temp
    made = []
    for _ in range(20):
        fd, path = make_temp(tmp_path, ".x.tmp-")
        os.close(fd)
        made.append(path)
        assert os.path.basename(path).startswith(".x.tmp-")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(set(made)) == 20

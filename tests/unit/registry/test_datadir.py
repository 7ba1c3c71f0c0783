from __future__ import annotations

import os
from pathlib import Path

import pytest

from registry.datadir import DataDir, atomic_write, atomic_write_json, read_json
from registry.errors import DataDirError


def test_node_id_is_kept(tmp_path: Path) -> None:
    a = DataDir(tmp_path / "d")
    b = DataDir(tmp_path / "d")
    assert a.node_id == b.node_id and len(a.node_id) == 36


def test_invalid_node_id_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "node-id").write_text("garbage")
    assert len(DataDir(tmp_path).node_id) == 36


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    atomic_write_json(p, {"a": 1})
    atomic_write_json(p, {"a": 2})
    assert read_json(p) == {"a": 2}
    assert [x.name for x in tmp_path.iterdir()] == ["state.json"]


def test_leftover_temp_from_a_crash_is_ignored(tmp_path: Path) -> None:
    atomic_write(tmp_path / "s", b"good")
    (tmp_path / ".tmp-s.abc").write_bytes(b"half-writ")
    DataDir(tmp_path)
    assert (tmp_path / "s").read_bytes() == b"good"
    assert not list(tmp_path.glob(".tmp-*"))


def test_corrupt_file_is_moved_aside(tmp_path: Path) -> None:
    p = tmp_path / "services.json"
    p.write_text("{trunc")
    assert read_json(p) is None
    assert (tmp_path / "services.json.corrupt").read_text() == "{trunc"


def test_unwritable_dir_is_a_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(DataDirError, match="data_dir: cannot create"):
        DataDir(f / "sub")


def test_failed_write_keeps_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "s"
    atomic_write(p, b"old")

    def boom(*a: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write(p, b"new")
    monkeypatch.undo()
    assert p.read_bytes() == b"old"
    assert not list(tmp_path.glob(".tmp-*"))


def test_new_uuid_is_a_canonical_version_4_uuid_and_is_uuid_agrees_with_the_uuid_module() -> None:
    import uuid

    from registry.datadir import is_uuid, new_uuid
    ids = {new_uuid() for _ in range(200)}
    assert len(ids) == 200
    for text in ids:
        u = uuid.UUID(text)
        assert str(u) == text and u.version == 4 and u.variant == uuid.RFC_4122
    for text in ("urn:uuid:12345678-1234-5678-1234-567812345678", "{12345678123456781234567812345678}",
                 "12345678-1234-5678-1234-56781234567", "not-a-uuid", "", "g" * 32):
        try:
            uuid.UUID(text)
            expected = True
        except ValueError:
            expected = False
        assert is_uuid(text) is expected, text

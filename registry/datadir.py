"""The agent's data directory: node ID, atomic file writes, and safe reads.

Writes follow the usual durable-rename recipe: write a temp file in the same directory, fsync it,
rename it over the target, then fsync the directory so the rename itself survives a crash.
Readers therefore see either the old file or the new one, never half of one; a leftover temp
file from a crash is ignored and cleaned up.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from gossip.atomicfile import make_temp

from .errors import DataDirError

log = logging.getLogger(__name__)

_TMP_PREFIX = ".tmp-"


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new content."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = make_temp(directory, _TMP_PREFIX + path.name + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(directory)


def fsync_dir(directory: Path) -> None:
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=1, sort_keys=True).encode() + b"\n")


def read_json(path: Path) -> Any | None:
    """Read a JSON file written by :func:`atomic_write_json`; None when absent or unreadable.

    A file that does not parse is moved aside (``.corrupt``) rather than deleted, and logged, so
    that an operator can look at it; the agent then starts as if it were missing.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        aside = path.with_name(path.name + ".corrupt")
        log.error("unreadable state file moved aside path=%s to=%s", path, aside)
        os.replace(path, aside)
        return None


class DataDir:
    """A data directory owned by one agent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise DataDirError(
                f"data_dir: cannot create {path}: {e.strerror}; choose a writable directory"
            ) from e
        if not os.access(path, os.W_OK):
            raise DataDirError(f"data_dir: {path} is not writable; choose a writable directory")
        for leftover in path.glob(_TMP_PREFIX + "*"):
            # An interrupted atomic write; the real file is intact.
            leftover.unlink(missing_ok=True)
        self.node_id = self._load_node_id()

    def file(self, name: str) -> Path:
        return self.path / name

    def _load_node_id(self) -> str:
        p = self.file("node-id")
        try:
            text = p.read_text().strip()
            if not is_uuid(text):
                raise ValueError(text)
            return text
        except FileNotFoundError:
            pass
        except ValueError:
            log.warning("node-id file is invalid, generating a new one path=%s", p)
        node_id = new_uuid()
        atomic_write(p, node_id.encode() + b"\n")
        return node_id


def new_uuid() -> str:
    """A random (version 4) UUID in its canonical form, as ``str(uuid.uuid4())`` (the uuid
    module imports ``platform``, which a starting agent need not pay for)."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def is_uuid(text: str) -> bool:
    """Whether ``uuid.UUID(text)`` would accept ``text``."""
    h = text.replace("urn:", "").replace("uuid:", "").strip("{}").replace("-", "")
    if len(h) != 32:
        return False
    try:
        int(h, 16)
    except ValueError:
        return False
    return True

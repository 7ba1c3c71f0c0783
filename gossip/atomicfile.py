"""Durable whole-file replacement for the files gossip keeps (keyring, compacted snapshot).

The recipe (as ``hashicorp/consul: lib/file/atomic.go``): write a temp file in the same
directory, fsync it, rename it over the target, then fsync the directory so that the rename
itself survives a crash. A reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` (file mode ``mode``); a crash leaves old or new content."""
    target = Path(path)
    directory = target.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = make_temp(directory, f".{target.name}.tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(directory)


def make_temp(directory: str | os.PathLike[str], prefix: str) -> tuple[int, str]:
    """A new file (mode 0600, opened for writing) in ``directory`` named ``prefix`` + a random
    suffix, as ``tempfile.mkstemp`` makes it (without importing tempfile at every start)."""
    for _ in range(100):
        path = os.path.join(directory, prefix + os.urandom(6).hex())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            continue
        return fd, path
    raise FileExistsError(f"no free temporary name in {directory} after 100 tries")


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

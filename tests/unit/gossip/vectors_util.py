"""Load the captured memberlist/Serf vectors (a copy of shared/reference/vectors/)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VECTORS_DIR = Path(__file__).with_name("vectors_data")


@dataclass(frozen=True)
class Vector:
    file: str
    transport: str
    data: bytes
    key: bytes | None
    expected: dict[str, Any]
    capture: str

    @property
    def name(self) -> str:
        return self.file.removesuffix(".hex")


def read_hex(name: str) -> bytes:
    return bytes.fromhex((VECTORS_DIR / name).read_text().strip())


def load_vectors() -> list[Vector]:
    entries = json.loads((VECTORS_DIR / "vectors.json").read_text())
    out = []
    for e in entries:
        out.append(
            Vector(
                file=e["file"],
                transport=e["transport"],
                data=read_hex(e["file"]),
                key=base64.b64decode(e["key_b64"]) if e["key_b64"] else None,
                expected=e["expected"],
                capture=e["capture"],
            )
        )
    return out


VECTORS = load_vectors()


def by_name(prefix: str) -> Vector:
    for v in VECTORS:
        if v.file.startswith(prefix):
            return v
    raise KeyError(prefix)

"""Memory: a catalog of 100,000 instances with one check each stays within 1 KiB of RSS per
instance (issue 13). Measured in a process of its own (catalog_memory_probe.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BYTES_PER_INSTANCE = 1024


def test_100k_instances_fit_in_1_kib_each() -> None:
    probe = Path(__file__).with_name("catalog_memory_probe.py")
    out = subprocess.run([sys.executable, str(probe), "5000", "20"], check=True,
                         capture_output=True, text=True, timeout=600)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["instances"] == 100_000
    assert result["svc7_instances"] == 1000 and result["svc7_checks"] == 2000
    assert result["bytes_per_instance"] <= BYTES_PER_INSTANCE, result

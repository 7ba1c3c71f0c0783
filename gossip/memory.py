"""Hand start-up garbage back to the operating system.

Importing and setting up a Python service leaves freed memory behind (compiler temporaries,
dataclass code generation, module set-up) that glibc's allocator keeps mapped, so it counts in
the process's RSS although nothing uses it. ``release_free_memory`` collects garbage once and
asks glibc to return free pages (``malloc_trim(0)``), ~2 MiB for a gossip node or an agent.
It is called once the service is up; elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import gc
import logging
from typing import Any

log = logging.getLogger(__name__)

_trim: Any = None   # None: not looked up yet; False: unavailable


def release_free_memory() -> None:
    """Collect garbage and return freed heap pages to the OS (glibc only; never raises)."""
    global _trim
    gc.collect()
    try:
        if _trim is None:
            # the process's own symbols include libc's; ctypes.util.find_library would pull
            # in shutil, tempfile, bz2 and lzma (~1 MiB) just to name it
            _trim = getattr(ctypes.CDLL(None), "malloc_trim", None) or False
        if _trim:
            _trim(0)
    except (OSError, AttributeError) as e:  # not glibc, or no libc found
        _trim = False
        log.debug("malloc_trim unavailable: %s", e)

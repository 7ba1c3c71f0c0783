"""Run aiohttp's package ``__init__`` only when something needs what it exports.

aiohttp is the agent's HTTP *client* (its API is served by registry/web): HTTP checks,
federation and the containers' engine API use it, and only once they run. Importing it costs
~60-80 ms of CPU and ~5.5 MiB of RSS (its connector builds two TLS contexts at import time,
loading the system's CA bundle), which a default agent would pay at every start for nothing
(issues 13 and 18; bench/startup.py). The modules that use the client import ``aiohttp`` at
their top, so the package must be cheap to import until its first real use.

:func:`defer_aiohttp_init` puts a placeholder package in ``sys.modules["aiohttp"]`` with the
real package's ``__path__`` and ``__spec__``. The first read of any attribute of the package
(``aiohttp.ClientSession``, ``from aiohttp import ClientTimeout``) runs the real ``__init__`` in
the placeholder's namespace, as a reload would; submodules already imported are reused, and
from then on the module is the ordinary aiohttp package. ``__version__`` is set beforehand
(read from the ``__init__``'s source) because ``aiohttp.http`` reads it while submodules load.

Only the agent's start installs it (``rumor agent``); a process that imported aiohttp already
keeps what it has.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import re
import sys
import types
from typing import Any

_VERSION = re.compile(r'^__version__\s*=\s*["\']([^"\']+)["\']', re.MULTILINE)


class _DeferredPackage(types.ModuleType):
    """The aiohttp package before its ``__init__`` ran (see the module docstring)."""

    def __getattr__(self, name: str) -> Any:
        spec = self.__dict__.get("__spec__")
        if spec is None or spec.loader is None:
            raise AttributeError(name)
        # ``from aiohttp import web`` asks for the attribute before it imports the submodule:
        # a submodule is imported as such, and the package's __init__ still waits
        if not name.startswith("__") and importlib.machinery.PathFinder.find_spec(
                f"{spec.name}.{name}", self.__dict__.get("__path__")) is not None:
            return importlib.import_module(f"{spec.name}.{name}")
        # From here on an ordinary module: a missing attribute is an AttributeError again
        # (also while the __init__ runs, so that nothing in it comes back here).
        self.__class__ = types.ModuleType  # type: ignore[assignment]
        spec.loader.exec_module(self)
        return getattr(self, name)


def defer_aiohttp_init() -> bool:
    """Install the placeholder; False (and nothing changed) when aiohttp is imported already,
    is not installed, or its ``__init__`` does not look as expected."""
    if "aiohttp" in sys.modules:
        return False
    spec = importlib.util.find_spec("aiohttp")
    if (spec is None or spec.loader is None or spec.origin is None
            or not spec.submodule_search_locations):
        return False
    try:
        with open(spec.origin, encoding="utf-8") as f:
            found = _VERSION.search(f.read())
    except OSError:
        return False
    if found is None:
        return False
    mod = _DeferredPackage(spec.name)
    mod.__spec__ = spec
    mod.__loader__ = spec.loader
    mod.__file__ = spec.origin
    mod.__path__ = list(spec.submodule_search_locations)
    mod.__package__ = spec.name
    mod.__version__ = found.group(1)  # type: ignore[attr-defined]
    sys.modules[spec.name] = mod
    return True

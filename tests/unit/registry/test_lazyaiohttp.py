"""The agent's deferred aiohttp package init (registry/lazyaiohttp.py), in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def run(code: str) -> str:
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_the_server_loads_without_the_client_and_the_client_loads_on_first_use() -> None:
    out = run("""
        import sys
        from registry.lazyaiohttp import defer_aiohttp_init
        assert defer_aiohttp_init()
        from aiohttp import web
        import aiohttp.web_request
        loaded = sorted(k for k in sys.modules if k.startswith("aiohttp"))
        assert "aiohttp.client" not in loaded and "aiohttp.connector" not in loaded, loaded
        assert web.Response(text="x").status == 200
        import aiohttp
        assert aiohttp.__version__
        from aiohttp import ClientTimeout        # the first other name runs the real __init__
        assert "aiohttp.connector" in sys.modules
        assert aiohttp.ClientSession.__module__ == "aiohttp.client"
        assert ClientTimeout(total=1).total == 1
        assert type(aiohttp) is type(sys)       # an ordinary module from then on
        try:
            aiohttp.no_such_name
        except AttributeError:
            print("ok")
    """)
    assert out.strip() == "ok"


def test_nothing_changes_when_aiohttp_is_imported_already() -> None:
    out = run("""
        import sys
        import aiohttp
        from registry.lazyaiohttp import defer_aiohttp_init
        assert not defer_aiohttp_init()
        assert sys.modules["aiohttp"] is aiohttp
        print("ok")
    """)
    assert out.strip() == "ok"

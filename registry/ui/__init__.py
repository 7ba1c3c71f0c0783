"""The agent's web UI: pages rendered from in-process state, static files shipped in the package.

:mod:`registry.ui.model` reads the agent into plain records, :mod:`registry.ui.render` turns them
into HTML, and ``static/rumor.js`` keeps a loaded page live with blocking queries on the JSON API.
The routes live in :mod:`registry.api.ui_routes`.
"""

from __future__ import annotations

from .model import UIState, collect
from .render import Page, document

__all__ = ["Page", "UIState", "collect", "document"]

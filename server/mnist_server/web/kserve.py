"""Placeholder: routes come with issue 13's kserve REST work."""
from __future__ import annotations

from aiohttp import web

from .context import WebContext


def add_routes(router: web.UrlDispatcher, context: WebContext) -> None:
    pass

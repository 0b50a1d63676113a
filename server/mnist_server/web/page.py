"""The draw-a-digit page at / and its static files, shipped in this package (static/): nothing is
loaded from another origin, and the Content-Security-Policy allows only this one."""

from __future__ import annotations

import mimetypes
from importlib import resources

from aiohttp import web

from .context import WebContext

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
STATIC = resources.files(__package__) / "static"


def _load_static() -> dict[str, tuple[bytes, str]]:
    """Every static file, read once at start-up: {name: (bytes, content type)}."""
    files = {}
    for entry in STATIC.iterdir():
        if entry.is_file() and not entry.name.startswith("."):
            content_type = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
            if content_type.startswith("text/") or content_type.endswith(("javascript", "json", "svg+xml")):
                content_type += "; charset=utf-8"
            files[entry.name] = (entry.read_bytes(), content_type)
    return files


def add_routes(router: web.UrlDispatcher, context: WebContext) -> None:
    files = _load_static()

    def serve(name: str) -> web.Response:
        if name not in files:
            raise web.HTTPNotFound(text=f"no static file '{name[:80]}'; the page is at /")
        body, content_type = files[name]
        return web.Response(
            body=body,
            headers={
                "Content-Type": content_type,
                "Content-Security-Policy": CONTENT_SECURITY_POLICY,
                "Cache-Control": "no-cache",
            },
        )

    async def index(request: web.Request) -> web.Response:
        return serve("index.html")

    async def static(request: web.Request) -> web.Response:
        return serve(request.match_info["name"])

    router.add_get("/", index)
    router.add_get("/static/{name}", static)

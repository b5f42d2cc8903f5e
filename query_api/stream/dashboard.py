"""The dashboard: one static page (HTML, CSS, vanilla JS on a canvas) at `/` and `/dashboard`.

Every asset is served from this package (no CDN, no build step) and every URL the page uses is
relative, so it works behind any host name. Its data comes from `GET /stats/stream`. The page
has no inline script or style: the Content-Security-Policy of shared/page_headers.py allows
only its own origin.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from shared.page_headers import page_headers

_ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
_PAGE_HEADERS = {**_HEADERS, **page_headers()}


def dashboard_router() -> APIRouter:
    static = files("query_api.stream") / "static"
    page = (static / "index.html").read_text(encoding="utf-8")
    assets = {name: (static / name).read_bytes() for name in _ASSETS}
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    @router.get("/dashboard")
    async def dashboard() -> HTMLResponse:
        return HTMLResponse(page, headers=_PAGE_HEADERS)

    @router.get("/dashboard/dashboard.js")
    async def script() -> Response:
        return Response(
            assets["dashboard.js"], media_type=_ASSETS["dashboard.js"], headers=_HEADERS
        )

    @router.get("/dashboard/dashboard.css")
    async def style() -> Response:
        return Response(
            assets["dashboard.css"], media_type=_ASSETS["dashboard.css"], headers=_HEADERS
        )

    return router

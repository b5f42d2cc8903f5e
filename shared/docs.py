"""`/docs` without a CDN: FastAPI's Swagger UI page loads its JavaScript and CSS from
jsDelivr, so it is blank on a machine without internet access. The same assets (Swagger UI 5,
which renders OpenAPI 3.1) ship in the pinned `fastapi-offline` package; we serve its files
ourselves, switch off the online validator badge, and send the page with the security headers
of shared/page_headers.py (its one inline script allowed by hash)."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from shared.page_headers import inline_script_hashes, page_headers

ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs/assets"


def install_docs(app: FastAPI) -> None:
    """Serve Swagger UI at `/docs` from local files. The app is built with `docs_url=None,
    redoc_url=None` (FastAPI's own pages point at the CDN)."""
    openapi_url = app.openapi_url
    if openapi_url is None:
        return
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    page = bytes(
        get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API docs",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},
        ).body
    ).decode()
    headers = page_headers(script_hashes=inline_script_hashes(page), data_images=True)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page, headers=headers)

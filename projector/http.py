"""The projector's small HTTP side: `/health`, `/ready` and `/metrics` on its own port."""

from __future__ import annotations

from collections.abc import Mapping

import uvicorn
from fastapi import FastAPI

from projector.metrics import ProjectorMetrics
from shared.errors import install_error_handlers
from shared.web import ReadyCheck, ops_router


def ops_server(
    *, metrics: ProjectorMetrics, checks: Mapping[str, ReadyCheck], host: str, port: int
) -> uvicorn.Server:
    app = FastAPI(title="Projector", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(ops_router(registry=metrics.registry, checks=checks))
    install_error_handlers(app, {})  # a 404 (`/docs` too: none here) is problem+json
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False)
    return uvicorn.Server(config)

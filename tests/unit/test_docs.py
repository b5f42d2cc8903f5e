"""`/docs` renders offline (every asset from our own host), every API documents `/ready`'s 503,
and the projector's HTTP side answers unknown paths with problem+json."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from projector.http import ops_server
from projector.metrics import ProjectorMetrics
from query_api.main import create_app as create_query_app
from tests.doubles.memory_publisher import InMemoryEventPublisher
from tests.doubles.memory_reader import InMemoryProjectionReader
from tests.unit.command_kit import make_app
from tests.unit.test_query_http import config as query_config


def command_app() -> FastAPI:
    return make_app(InMemoryEventPublisher())


def query_app() -> FastAPI:
    return create_query_app(query_config(), reader=InMemoryProjectionReader())


@pytest.fixture(params=[command_app, query_app], ids=["command", "query"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    app = request.param()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


async def test_docs_load_every_asset_from_our_own_host(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    urls += re.findall(r"""url: ?['"]([^'"]+)['"]""", page.text)  # the OpenAPI document
    assert len(urls) >= 4, urls  # favicon, CSS, JS, openapi.json
    for url in urls:
        assert url.startswith("/"), f"{url} leaves the host"
        assert not url.startswith("//"), f"{url} leaves the host"
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
    assert '"validatorUrl": null' in page.text  # Swagger UI's online validator badge: off
    assert (await client.get("/redoc")).status_code == 404  # its page is CDN-only


async def test_ready_documents_its_503(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    responses = spec["paths"]["/ready"]["get"]["responses"]
    assert "application/problem+json" in responses["503"]["content"]
    assert spec["info"].get("description")


async def test_the_projector_answers_unknown_paths_with_problem_json() -> None:
    server = ops_server(
        metrics=ProjectorMetrics(CollectorRegistry()), checks={}, host="127.0.0.1", port=0
    )
    app = server.config.app
    assert isinstance(app, FastAPI)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://projector") as client:
        response = await client.get("/docs")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404


def csp_of(response: httpx.Response) -> dict[str, list[str]]:
    directives = {}
    for part in response.headers["content-security-policy"].split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


def assert_page_is_locked_down(response: httpx.Response) -> dict[str, list[str]]:
    assert response.status_code == 200
    csp = csp_of(response)
    assert csp["default-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["object-src"] == ["'none'"]
    assert csp["style-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    return csp


async def test_docs_allow_only_their_own_origin_and_their_own_inline_script(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/docs")
    csp = assert_page_is_locked_down(page)
    inline = re.findall(r"<script>(.*?)</script>", page.text, re.S)
    assert len(inline) == 1  # Swagger UI's start-up call
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert csp["script-src"] == ["'self'", f"'sha256-{digest}'"]
    assert csp["img-src"] == ["'self'", "data:"]  # Swagger UI's CSS icons


@pytest.mark.parametrize("path", ["/", "/dashboard"])
async def test_the_dashboard_allows_only_its_own_origin(path: str) -> None:
    transport = httpx.ASGITransport(app=query_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        page = await client.get(path)
    csp = assert_page_is_locked_down(page)
    assert csp["script-src"] == ["'self'"]
    assert csp["img-src"] == ["'self'"]
    assert "<script>" not in page.text
    assert "<style" not in page.text
    assert " style=" not in page.text

"""`GET /stats`: parameters in, one service call, DTO or problem+json out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from query_api.consistency import (
    MAX_TOKEN_LENGTH,
    MAX_WAIT_MS,
    REQUEST_LINE_RESPONSE,
    TOKEN_SCHEMA,
)
from query_api.deps import provider
from query_api.stats.models import StatsResponse
from query_api.stats.service import StatsService
from query_api.windows import MAX_WINDOW_SECONDS, MIN_WINDOW_SECONDS
from shared.errors import problem_responses

STATS_RESPONSES = problem_responses(
    {
        401: "Reads are protected (`STATS_REQUIRE_AUTH=true`) and the bearer token is missing, "
        "malformed, expired, badly signed or for another audience/issuer.",
        403: "Reads are protected and the token lacks the scope `stats:read`.",
        422: "`window`, `wait_ms` or `consistency_token` is invalid; `errors` names the field.",
        503: "The statistics store is unavailable, or the projection did not cover the "
        "`consistency_token` within `wait_ms`. Retry after `Retry-After` seconds.",
    }
)

StatsServiceDep = Annotated[StatsService, Depends(provider(StatsService))]
WindowParam = Annotated[
    int | None,
    Query(
        ge=MIN_WINDOW_SECONDS,
        le=MAX_WINDOW_SECONDS,
        description="Sliding window over event time: the last N seconds up to now.",
    ),
]
TokenParam = Annotated[
    str | None,
    TOKEN_SCHEMA,
    Query(
        max_length=MAX_TOKEN_LENGTH,
        description="Wait until the projection covers this POST's token.",
    ),
]
WaitParam = Annotated[
    int | None,
    Query(ge=0, le=MAX_WAIT_MS, description="Longest wait for consistency_token (default 2000)."),
]

router = APIRouter(tags=["stats"])


@router.get(
    "/stats",
    summary="Transaction statistics",
    responses={**STATS_RESPONSES, **REQUEST_LINE_RESPONSE},
)
async def get_stats(
    service: StatsServiceDep,
    window: WindowParam = None,
    consistency_token: TokenParam = None,
    wait_ms: WaitParam = None,
) -> StatsResponse:
    view = await service.stats(
        window_seconds=window, consistency_token=consistency_token, wait_ms=wait_ms
    )
    return StatsResponse.from_view(view)

"""The client's errors: a refusal (a 4xx, or an answer the API does not document), and a
request given up after its retries."""

from __future__ import annotations

import httpx
import msgspec

from client.models import Problem, decode


class TxStatsError(Exception):
    """Base of the client's errors."""


class ApiError(TxStatsError):
    """The API refused the request (never retried): `status` and its problem+json."""

    def __init__(self, status: int, problem: Problem) -> None:
        super().__init__(f"{status}: {problem.describe()}")
        self.status = status
        self.problem = problem

    @classmethod
    def of(cls, response: httpx.Response) -> ApiError:
        return cls(response.status_code, problem_of(response))


class UnavailableError(TxStatsError):
    """Retries ran out (5xx answers, connection errors, timeouts): not confirmed either way."""

    def __init__(self, reason: str, *, attempts: int) -> None:
        super().__init__(f"gave up after {attempts} attempts: {reason}")
        self.reason = reason
        self.attempts = attempts


def problem_of(response: httpx.Response) -> Problem:
    """The problem+json of an error answer, or one made from its status and text (a proxy's
    HTML page, the HTTP server's plain-text 400)."""
    try:
        problem: Problem = decode(Problem, response.content)
    except msgspec.DecodeError:
        text = response.text.strip()[:200]
        return Problem(status=response.status_code, title=response.reason_phrase, detail=text)
    return problem

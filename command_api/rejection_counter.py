"""ASGI middleware counting the 4xx answers to the transaction routes, by reason."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from command_api.metrics import REJECTION_REASONS, CommandMetrics


class RejectionCounter:
    """ASGI middleware: count 4xx answers to the transaction routes, by reason. It sits
    outermost so that it also sees the 413 of the body-size limit."""

    def __init__(self, app: ASGIApp, *, metrics: CommandMetrics, path_prefix: str) -> None:
        self.app = app
        self.metrics = metrics
        self.path_prefix = path_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.path_prefix):
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
                status = message["status"]
                reason = REJECTION_REASONS.get(status, f"http_{status}")
                self.metrics.rejected.labels(reason).inc()
            await send(message)

        await self.app(scope, receive, counting_send)

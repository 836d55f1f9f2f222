"""ASGI plumbing shared by the service's modules: the callable types and the body size limit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

DEFAULT_MAX_BODY_BYTES = 2_000_000

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(
            status_code=413,
            detail=f"request body is over the limit of {limit} bytes (embedtag serve --max-body-bytes)",
        )


class BodyLimitMiddleware:
    """Refuse bodies over `limit` bytes with 413: from Content-Length before reading, and while
    reading for bodies sent without one (chunked) or with a wrong one."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await JSONResponse({"detail": "invalid Content-Length header"}, 400)(scope, receive, send)
                    return
                if declared > self.limit:
                    error = BodyTooLarge(self.limit)
                    response = JSONResponse({"detail": error.detail}, 413, headers={"Connection": "close"})
                    await response(scope, receive, send)
                    return
        received = 0

        async def limited_receive() -> MutableMapping[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited_receive, send)

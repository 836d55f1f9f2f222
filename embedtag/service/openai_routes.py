"""OpenAI-compatible routes for `embedtag serve`: `POST /v1/chat/completions`, `GET /v1/models`.

An app that sends the catalogue's tagging prompt to a chat API switches by changing its base
URL. The last user message is read with `embedtag.prompt.parse_prompt`; its own tag list picks
the index (`IndexCache`: the shipped one when the list is the shipped list, else one built once
for that list). The answer's content is exactly the expected JSON the prompt asks for. Any other
prompt gets a 400 saying what is missing: this endpoint does the tagging task, nothing else.

Errors under /v1 come in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, so
OpenAI clients raise their usual exceptions. With an API key set, every route but /health and
the docs needs `Authorization: Bearer KEY` (compared in constant time).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, MutableMapping
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from embedtag.errors import EmbedtagError
from embedtag.index_cache import SHIPPED, IndexCache, list_fingerprint
from embedtag.prompt import ParsedPrompt, PromptError, parse_prompt
from embedtag.service.batcher import MicroBatcher, ServiceBusy
from embedtag.service.middleware import ASGIApp, Receive, Send
from embedtag.tagger import Document, TagResult

if TYPE_CHECKING:
    from embedtag.tagger import Tagger

ENV_API_KEY = "EMBEDTAG_API_KEY"
# Reachable without the key: liveness and the API description (nothing is tagged there).
OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
INDEX_HEADER = "X-Embedtag-Index"  # shipped | memory | disk | built: where the tag list's index came from

ERROR_TYPES = {401: "invalid_request_error", 404: "invalid_request_error", 413: "invalid_request_error",
               422: "invalid_request_error", 400: "invalid_request_error", 503: "server_error", 500: "server_error"}
ERROR_CODES = {401: "invalid_api_key", 404: "not_found", 413: "request_too_large", 422: "invalid_body",
               400: "invalid_prompt", 503: "service_busy", 500: "internal_error"}


# ---- request shapes (OpenAI's; fields embedtag has no use for are accepted and ignored) ----------


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        kinds = {p.type for p in self.content} - {"text", "input_text"}
        if kinds:
            raise HTTPException(400, f"only text content is supported, got {', '.join(sorted(kinds))}")
        return "\n".join(p.text or "" for p in self.content)


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_object", "json_schema"]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """OpenAI Chat Completions request; sampling fields (temperature, top_p, seed, max_tokens...)
    are accepted and ignored: the answer is deterministic."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [{
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": 'base on {description} {README}", Assign "at most 3 tags" '
                          'to the expected json: {"id":"1977","tags":[]} "only from the tags list I provide: '
                          '[{"id":38,"name":"k8s"}]" returns me the "expected json"'}],
        }]},
    )

    model: str = Field(description="Any model name: embedtag answers, and says so in the response's `model`.")
    messages: list[ChatMessage] = Field(min_length=1, description="The last user message is the prompt.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=16)
    response_format: ResponseFormat | None = None
    tools: list[Any] | None = None


# ---- errors in OpenAI's shape ---------------------------------------------------------------------


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail


def _documented(**statuses: str) -> dict[int | str, dict[str, Any]]:
    return {int(code.removeprefix("s")): {"model": OpenAIError, "description": text} for code, text in statuses.items()}


AUTH_ERRORS = _documented(s401="Wrong or missing API key (when the server has one)", s422="Invalid request")
CHAT_ERRORS = {
    **_documented(
        s400="Not the tagging prompt: the message names what is missing", s401="Wrong or missing API key",
        s413="Body larger than --max-body-bytes", s422="Invalid body", s503="Too many documents queued; retry",
    ),
    200: {"description": "The expected JSON as the message content; with `stream: true`, server-sent chunks "
                         "ending with `data: [DONE]`",
          "content": {"application/json": {}, "text/event-stream": {"schema": {"type": "string"}}}},
}


def error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": ERROR_CODES.get(status)}}


def _openai_error(status: int, body: bytes) -> dict[str, Any]:
    """FastAPI's `{"detail": ...}` (and the 422 handler's `message`) as an OpenAI error."""
    try:
        data = json.loads(body)
    except ValueError:
        return error_body(status, body.decode("utf-8", "replace")[:500] or f"HTTP {status}")
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return data  # already in shape
    detail = data.get("detail") if isinstance(data, dict) else data
    if isinstance(detail, list):  # validation errors: name the field, not the /tag body
        messages, param = [], None
        for item in detail[:5]:
            loc = [str(p) for p in item.get("loc", []) if p != "body"]
            if not loc:
                messages.append('the body must be a JSON object like {"model": "...", "messages": [...]}')
                continue
            param = param or ".".join(loc)
            messages.append(f"{'.'.join(loc)}: {item.get('msg', 'invalid')}")
        return error_body(status, "; ".join(messages) or "invalid request body", param)
    return error_body(status, str(detail if detail is not None else f"HTTP {status}"))


class OpenAIMiddleware:
    """The API key check (all routes but OPEN_PATHS), and OpenAI-shaped errors under /v1."""

    def __init__(self, app: ASGIApp, api_key: str | None = None) -> None:
        self.app = app
        self.api_key = api_key.encode("utf-8") if api_key else None

    def _authorised(self, scope: MutableMapping[str, Any]) -> bool:
        if self.api_key is None or scope.get("path") in OPEN_PATHS or scope.get("method") == "OPTIONS":
            return True
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, token = bytes(value).partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.api_key)
        return False

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        openai_path = str(scope.get("path", "")).startswith("/v1/")
        if not self._authorised(scope):
            message = "invalid or missing API key: send the header Authorization: Bearer KEY"
            body = error_body(401, message) if openai_path else {"detail": message}
            await JSONResponse(body, 401, headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        if not openai_path:
            await self.app(scope, receive, send)
            return
        start: MutableMapping[str, Any] | None = None
        chunks: list[bytes] = []

        async def reshape(message: MutableMapping[str, Any]) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message  # held back until the whole error body is here
                return
            if start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = json.dumps(_openai_error(start["status"], b"".join(chunks))).encode("utf-8")
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in {b"content-length",
                                                                                      b"content-type"}]
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, reshape)


# ---- the routes -----------------------------------------------------------------------------------


def prompt_text(request: ChatRequest) -> str:
    for message in reversed(request.messages):
        if message.role == "user":
            return message.text()
    raise HTTPException(400, "no user message: the last user message must hold the tagging prompt")


def model_id(tagger: Tagger) -> str:
    return f"embedtag-{tagger.index.model_name.rsplit('/', 1)[-1]}"


class ListBatchers:
    """One micro-batcher per tag list in use, so requests for the same list share encode calls.

    The shipped list uses the app's own batcher (shared with /tag)."""

    def __init__(self, shipped: MicroBatcher) -> None:
        self.shipped = shipped
        self._batchers: dict[str, MicroBatcher] = {}
        self._lock = threading.Lock()

    def get(self, fingerprint: str, tagger: Tagger) -> MicroBatcher:
        with self._lock:
            batcher = self._batchers.get(fingerprint)
            if batcher is None or batcher.tagger is not tagger or not batcher.running:
                batcher = MicroBatcher(tagger, max_batch=self.shipped.max_batch,
                                       max_wait_ms=self.shipped.max_wait * 1000)
                batcher.start()
                self._batchers[fingerprint] = batcher
            return batcher

    def drop(self, fingerprint: str, _: Tagger | None = None) -> None:
        with self._lock:
            batcher = self._batchers.pop(fingerprint, None)
        if batcher is not None:
            batcher.stop()

    def stop_all(self) -> None:
        for fingerprint in list(self._batchers):
            self.drop(fingerprint)


def add_openai_routes(
    app: FastAPI,
    tagger: Tagger,
    batcher: MicroBatcher,
    api_key: str | None = None,
    cache: IndexCache | None = None,
) -> IndexCache:
    """Register /v1/models and /v1/chat/completions on the app, and the key check."""
    batchers = ListBatchers(batcher)
    if cache is None:
        cache = IndexCache(tagger, on_evict=batchers.drop)
    elif cache.on_evict is None:
        cache.on_evict = batchers.drop
    app.state.index_cache = cache
    app.state.list_batchers = batchers
    app.add_middleware(OpenAIMiddleware, api_key=api_key)  # type: ignore[arg-type]
    created = int(time.time())
    name = model_id(tagger)
    model_card = {"id": name, "object": "model", "created": created, "owned_by": "embedtag"}

    @app.get("/v1/models", summary="OpenAI-compatible: the one model embedtag serves", responses=AUTH_ERRORS)
    async def models() -> JSONResponse:
        return JSONResponse({"object": "list", "data": [model_card]})

    @app.get("/v1/models/{model}", summary="OpenAI-compatible: one model",
             responses={**AUTH_ERRORS, **_documented(s404="No such model")})
    async def model(model: str) -> JSONResponse:
        if model != name:
            raise HTTPException(404, f"model {model!r} does not exist; this server serves {name!r}")
        return JSONResponse(model_card)

    def prepare(request: ChatRequest) -> tuple[ParsedPrompt, Tagger, str, str, int]:
        """Parse the prompt and find its tag list's tagger (may build an index: run in a thread)."""
        text = prompt_text(request)
        try:
            parsed = parse_prompt(text)
        except PromptError as exc:
            raise HTTPException(
                400, f"{exc}. This endpoint answers the catalogue's tagging prompt only."
            ) from None
        prompt_tokens = sum(tagger.encoder.count_tokens(m.text()) for m in request.messages)
        try:
            list_tagger, source = cache.tagger_for(parsed.tags)
        except EmbedtagError as exc:
            raise HTTPException(400, str(exc)) from None
        return parsed, list_tagger, source, list_fingerprint(parsed.tags), prompt_tokens

    async def tag(parsed: ParsedPrompt, list_tagger: Tagger, source: str, fingerprint: str) -> TagResult:
        doc = Document(parsed.id, parsed.readme, parsed.description)
        chosen = batcher if source == SHIPPED else batchers.get(fingerprint, list_tagger)
        try:
            (result,) = await chosen.tag([doc])
        except ServiceBusy as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from None
        except RuntimeError:  # its batcher was stopped by an eviction just now: tag directly
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(None, lambda: list_tagger.tag(doc.readme, doc.description, doc.id))
        return result

    @app.post(
        "/v1/chat/completions",
        summary="OpenAI-compatible: answer the tagging prompt with its expected JSON",
        responses=CHAT_ERRORS,
    )
    async def chat_completions(request: ChatRequest) -> Response:
        if request.tools:
            raise HTTPException(400, "tools are not supported: this endpoint answers the tagging prompt only")
        loop = asyncio.get_running_loop()
        parsed, list_tagger, source, fingerprint, prompt_tokens = await loop.run_in_executor(
            None, prepare, request
        )
        result = await tag(parsed, list_tagger, source, fingerprint)
        content = json.dumps(parsed.answer(result), ensure_ascii=False)
        completion_tokens = tagger.encoder.count_tokens(content)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        now = int(time.time())
        system_fingerprint = f"fp_{list_tagger.index.texts_fingerprint}"
        headers = {INDEX_HEADER: source, "X-Embedtag-Tag-List": fingerprint}
        if not request.stream:
            return JSONResponse({
                "id": completion_id, "object": "chat.completion", "created": now, "model": name,
                "system_fingerprint": system_fingerprint,
                "choices": [{"index": i, "message": {"role": "assistant", "content": content, "refusal": None},
                             "logprobs": None, "finish_reason": "stop"} for i in range(request.n)],
                "usage": usage,
            }, headers=headers)

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
            body = {"id": completion_id, "object": "chat.completion.chunk", "created": now, "model": name,
                    "system_fingerprint": system_fingerprint, "choices": choices, **extra}
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

        async def events() -> AsyncIterator[str]:
            indexes = range(request.n)
            yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                          "finish_reason": None} for i in indexes])
            yield chunk([{"index": i, "delta": {"content": content}, "logprobs": None, "finish_reason": None}
                         for i in indexes])
            yield chunk([{"index": i, "delta": {}, "logprobs": None, "finish_reason": "stop"} for i in indexes])
            if request.stream_options is not None and request.stream_options.include_usage:
                yield chunk([], usage=usage)
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={**headers, "Cache-Control": "no-cache"})

    return cache

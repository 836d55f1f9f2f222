"""`embedtag serve`: the tagger behind a small HTTP API (FastAPI), for a web app to call.

The model and the index load once, before the server starts. Requests never call the model
themselves: each puts its documents on a queue, and one worker thread takes everything queued
(after waiting a few milliseconds for company, up to a cap) and tags it with a single
`Tagger.tag_many` call, that is one encode call. Under concurrency, requests share encode calls,
so throughput grows with the number of clients instead of each waiting for the one before.

This module imports FastAPI lazily enough to stay importable without loading any model:
`create_app(tagger)` takes a tagger that the caller has loaded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import queue
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Body, FastAPI, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, StrictStr, WithJsonSchema
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException

from embedtag.tagger import Document, TagResult

if TYPE_CHECKING:
    from embedtag.tagger import Tagger

DEFAULT_MAX_BODY_BYTES = 2_000_000
DEFAULT_MAX_BATCH = 32  # documents per encode call
DEFAULT_BATCH_WAIT_MS = 5.0  # how long the first queued request waits for others
MAX_BATCH_ITEMS = 1000  # documents in one POST /tag/batch
MAX_QUEUED = 4096  # documents waiting; past this, new requests get 503

# Environment used to hand the settings to `--workers N` processes (uvicorn spawns them fresh).
ENV_INDEX = "EMBEDTAG_SERVE_INDEX"
ENV_MODEL = "EMBEDTAG_SERVE_MODEL"
ENV_MAX_BODY = "EMBEDTAG_SERVE_MAX_BODY_BYTES"
ENV_MAX_BATCH = "EMBEDTAG_SERVE_MAX_BATCH"
ENV_BATCH_WAIT = "EMBEDTAG_SERVE_BATCH_WAIT_MS"
ENV_THREADS = "EMBEDTAG_SERVE_THREADS"
ENV_ORIGINS = "EMBEDTAG_SERVE_ALLOW_ORIGINS"
ENV_STORE = "EMBEDTAG_SERVE_STORE"
ENV_CACHE = "EMBEDTAG_SERVE_CACHE"  # vector store path; empty: none

TagFormat = Literal["names", "ids", "objects"]

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[MutableMapping[str, Any]]],
     Callable[[MutableMapping[str, Any]], Awaitable[None]]],
    Awaitable[None],
]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


# ---- the micro-batcher ----------------------------------------------------------------------


class ServiceBusy(Exception):
    """The queue is full: the caller should retry later."""


@dataclass
class _Pending:
    doc: Document
    explain: bool
    future: concurrent.futures.Future[TagResult]


_STOP = object()


class MicroBatcher:
    """One worker thread that tags whatever is queued with one `tag_many` call at a time.

    The first document to arrive waits up to `max_wait_ms` for others; everything queued by then
    (at most `max_batch` documents) is tagged together. While the model is busy, new requests
    queue up and form the next batch, so the wait only matters when the service is idle.
    """

    def __init__(
        self,
        tagger: Tagger,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.tagger = tagger
        self.max_batch = max_batch
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.max_queued = max_queued
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.encode_calls = 0  # `tag_many` calls, each with a single encode call
        self.documents = 0
        self.largest_batch = 0

    # -- lifecycle

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="embedtag-batcher", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)
        self._thread = None
        while True:  # anything left behind is answered, not left hanging
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Pending):
                item.future.cancel()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "encode_calls": self.encode_calls,
                "documents": self.documents,
                "largest_batch": self.largest_batch,
                "queued": self._queue.qsize(),
            }

    # -- submitting

    def submit(
        self, docs: list[Document], explain: bool = False
    ) -> list[concurrent.futures.Future[TagResult]]:
        """Queue documents; each future resolves to its `TagResult` (thread-safe)."""
        if not self.running:
            raise RuntimeError("the batcher is not running; call start() first")
        if self._queue.qsize() + len(docs) > self.max_queued:
            raise ServiceBusy(f"{self._queue.qsize()} documents are waiting; retry shortly")
        futures: list[concurrent.futures.Future[TagResult]] = []
        for doc in docs:
            future: concurrent.futures.Future[TagResult] = concurrent.futures.Future()
            self._queue.put(_Pending(doc, explain, future))
            futures.append(future)
        return futures

    async def tag(self, docs: list[Document], explain: bool = False) -> list[TagResult]:
        """Tag documents from an event loop, in order, sharing encode calls with other requests."""
        futures = self.submit(docs, explain)
        try:
            return list(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))
        except BaseException:
            for f in futures:  # the client went away: don't tag what nobody waits for
                f.cancel()
            raise

    # -- the worker

    def _collect(self, first: _Pending) -> tuple[list[_Pending], bool]:
        """The first item plus whatever else arrives within the wait, up to the cap."""
        items = [first]
        deadline = time.monotonic() + self.max_wait
        while len(items) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return items, True
            items.append(item)
        return items, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            items, stop = self._collect(first)
            self._process(items)

    def _process(self, items: list[_Pending]) -> None:
        live = [p for p in items if p.future.set_running_or_notify_cancel()]
        if not live:
            return
        explain = any(p.explain for p in live)  # to_json() drops the extra fields where not asked
        try:
            results = self._tag([p.doc for p in live], explain)
        except Exception:
            if len(live) == 1:
                live[0].future.set_exception(sys.exc_info()[1] or RuntimeError("tagging failed"))
                return
            # one bad document must not fail the others: tag them one by one
            for p in live:
                try:
                    p.future.set_result(self._tag([p.doc], explain)[0])
                except Exception as exc:
                    p.future.set_exception(exc)
            return
        for p, result in zip(live, results, strict=True):
            p.future.set_result(result)

    def _tag(self, docs: list[Document], explain: bool) -> list[TagResult]:
        # batch_size=len(docs): the whole batch goes through one encode call
        results = list(self.tagger.tag_many(docs, batch_size=len(docs), explain=explain))
        with self._lock:
            self.encode_calls += 1
            self.documents += len(docs)
            self.largest_batch = max(self.largest_batch, len(docs))
        return results


# ---- request size limit -----------------------------------------------------------------------


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


# ---- the API's shapes ---------------------------------------------------------------------------


def _valid_unicode(value: Any) -> Any:
    """Lone surrogates are legal JSON escapes (a JavaScript string cut inside a pair), but not
    text: replace them instead of refusing the request."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace").decode("utf-8")
    return value


ID_MAX_CHARS = 1000


def _project_id(value: Any) -> str | int:
    if isinstance(value, str):
        if not value:
            raise PydanticCustomError("id_empty", "must not be empty")
        if len(value) > ID_MAX_CHARS:
            raise PydanticCustomError("id_too_long", f"must be at most {ID_MAX_CHARS} characters")
        return str(_valid_unicode(value))
    if isinstance(value, float) and value.is_integer():  # 1977.0 is an integer to JSON Schema
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise PydanticCustomError("id_type", 'must be a string or an integer, like "1977" or 1977')


ProjectId = Annotated[
    str | int,
    PlainValidator(_project_id),
    WithJsonSchema({
        "anyOf": [
            {"type": "string", "minLength": 1, "maxLength": ID_MAX_CHARS},
            {"type": "integer"},
        ],
        "description": "Your id for the project, echoed back (as a string) in the answer.",
    }),
]
Text = Annotated[StrictStr | None, BeforeValidator(_valid_unicode)]


class TagRequest(BaseModel):
    """One project: the same fields as a line of `embedtag batch` input."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": "1977",
                    "description": "Kubernetes native edge computing framework",
                    "readme": "# KubeEdge\nKubeEdge brings containerized apps to the edge.",
                }
            ]
        },
    )

    id: ProjectId
    description: Text = Field("", description="The project's one-line description.")
    readme: Text = Field("", description="The README text (Markdown, HTML or plain).")

    def document(self) -> Document:
        return Document(str(self.id), self.readme or "", self.description or "")


class TagObject(BaseModel):
    id: int
    name: str


class TagExplanation(BaseModel):
    score: float
    evidence: list[str] = Field(description="The README snippets closest to the tag.")


class TagResponse(BaseModel):
    """Same JSON as `embedtag tag` prints: `tags` are names, ids or {id, name} (`tag_format`)."""

    id: str
    tags: list[str] | list[int] | list[TagObject] = Field(description="At most 3 tags, best first.")
    reason: str | None = Field(None, description="Why `tags` is empty (only then).")
    explain: dict[str, TagExplanation] | None = Field(None, description="With ?explain=true.")
    top_scores: dict[str, float] | None = Field(None, description="With ?explain=true: the 8 best scores.")


class HealthResponse(BaseModel):
    status: str
    model: str
    model_fingerprint: str
    texts_fingerprint: str
    tags: int
    uptime_seconds: float
    encode_calls: int = Field(description="Encode calls so far; under concurrency fewer than documents.")
    documents: int = Field(description="Documents tagged so far.")
    largest_batch: int
    queued: int
    index_cache: dict[str, int] | None = Field(
        None, description="/v1/chat/completions tag lists: shipped, memory_hits, disk_hits, builds, evictions..."
    )


class ValidationMessage(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorResponse(BaseModel):
    detail: list[ValidationMessage]
    message: str = Field(description="The same, as one line.")


class ErrorResponse(BaseModel):
    detail: str


# Module level, so that FastAPI can resolve them from the (postponed) annotations.
ExplainQuery = Annotated[bool, Query(description="Add scores and the README snippets behind each tag.")]
FormatQuery = Annotated[TagFormat, Query(description="Tags as names, ids, or {id, name} objects.")]
BatchBody = Annotated[list[TagRequest], Body(max_length=MAX_BATCH_ITEMS)]


# ---- the app ------------------------------------------------------------------------------------


def _where(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc) or "request"


FIELDS = '{"id": "1977", "description": "...", "readme": "..."}'
WHOLE_BODY = {
    "missing": f"the body is empty; send a JSON object like {FIELDS}",
    "model_attributes_type": f"the body must be a JSON object like {FIELDS}",
    "list_type": f"the body must be a JSON list of objects like {FIELDS}",
}


def _is_json(content_type: str) -> bool:
    kind = content_type.split(";")[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def _message(error: Mapping[str, Any]) -> str:
    msg = str(error.get("msg", ""))
    if error.get("type") == "json_invalid":  # say what is wrong and where
        ctx = error.get("ctx") or {}
        loc = error.get("loc") or ()
        position = f" at character {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
        msg = f"the body is not valid JSON: {ctx.get('error', msg)}{position}"
    return msg


def create_app(
    tagger: Tagger,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_batch: int = DEFAULT_MAX_BATCH,
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
    allow_origins: list[str] | None = None,
    index_path: str | os.PathLike[str] | None = None,
    store_path: str | os.PathLike[str] | None = None,
    api_key: str | None = None,
) -> FastAPI:
    """The HTTP API around an already loaded tagger; the batcher thread runs while the app does.

    `index_path` is where POST /admin/reload loads the index from; `store_path` the corrections store.
    `api_key`: when set, every route but /health and the docs needs `Authorization: Bearer KEY`."""
    from embedtag import __version__

    batcher = MicroBatcher(tagger, max_batch=max_batch, max_wait_ms=batch_wait_ms)
    started = time.monotonic()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, batcher.stop)

    app = FastAPI(
        title="embedtag",
        version=__version__,
        description=(
            "Tags a software project from its description and README: at most 3 tags from the "
            "index's tag list. Concurrent requests share encode calls (micro-batching)."
        ),
        lifespan=lifespan,
    )
    app.state.tagger = tagger
    app.state.batcher = batcher
    corrections = _register_corrections(app, batcher, index_path, store_path)
    app.add_middleware(BodyLimitMiddleware, limit=max_body_bytes)  # type: ignore[arg-type]
    if allow_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,  # type: ignore[arg-type]
            allow_origins=allow_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "Authorization"],
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        not_json = not _is_json(request.headers.get("content-type", ""))
        errors: list[dict[str, Any]] = []
        shown: list[str] = []  # the same, one line
        for e in exc.errors():
            loc = [p if isinstance(p, int) else str(p) for p in e.get("loc", ())]
            kind = str(e.get("type", ""))
            msg = _message(e)
            whole = loc == ["body"] or kind == "json_invalid"  # about the body as a whole
            if loc == ["body"]:
                msg = WHOLE_BODY.get(kind) or msg
                if not_json:
                    msg = "send the body as JSON, with the header Content-Type: application/json"
            errors.append({"loc": loc, "msg": msg, "type": kind})
            if len(shown) < 5:
                shown.append(msg if whole else f"{_where(loc)}: {msg}")
        if len(errors) > 5:
            shown.append(f"and {len(errors) - 5} more")
        return JSONResponse({"detail": errors, "message": "; ".join(shown)}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            exc = HTTPException(400, "the body cannot be read: send JSON encoded as UTF-8", exc.headers)
        return await http_exception_handler(request, exc)

    async def run(docs: list[Document], explain: bool) -> list[TagResult]:
        corrections.recent.add(docs)  # feedback may name a project tagged here by its id
        try:
            return await batcher.tag(docs, explain)
        except ServiceBusy as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from None

    errors: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorResponse, "description": "Body is not UTF-8"},
        413: {"model": ErrorResponse, "description": "Body larger than --max-body-bytes"},
        422: {"model": ValidationErrorResponse, "description": "Invalid body or query"},
        503: {"model": ErrorResponse, "description": "Too many documents queued; retry"},
    }

    @app.post("/tag", response_model=TagResponse, responses=errors, summary="Tag one project")
    async def tag(
        request: Annotated[TagRequest, Body()],
        explain: ExplainQuery = False,
        tag_format: FormatQuery = "names",
    ) -> JSONResponse:
        (result,) = await run([request.document()], explain)
        return JSONResponse(result.to_json(tag_format, explain))

    @app.post(
        "/tag/batch", response_model=list[TagResponse], responses=errors,
        summary="Tag several projects; answers in the same order",
    )
    async def tag_batch(
        requests: BatchBody,
        explain: ExplainQuery = False,
        tag_format: FormatQuery = "names",
    ) -> JSONResponse:
        results = await run([r.document() for r in requests], explain) if requests else []
        return JSONResponse([r.to_json(tag_format, explain) for r in results])

    @app.get("/tags", response_model=list[TagObject], summary="The tag list of the loaded index")
    async def tags() -> JSONResponse:
        return JSONResponse([t.to_json() for t in batcher.tagger.index.tags])

    @app.get("/health", response_model=HealthResponse, summary="Model, index and batching counters")
    async def health() -> JSONResponse:
        index = batcher.tagger.index  # the batcher's: POST /admin/reload replaces it
        body: dict[str, Any] = {
            "status": "ok" if batcher.running else "stopped",
            "model": index.model_name,
            "model_fingerprint": index.model_fingerprint,
            "texts_fingerprint": index.texts_fingerprint,
            "tags": len(index.tags),
            "uptime_seconds": round(time.monotonic() - started, 3),
            **batcher.stats(),
            "index_cache": index_cache.info(),
        }
        return JSONResponse(body, status_code=200 if batcher.running else 503)

    # OpenAI-compatible /v1/chat/completions and /v1/models (and the optional key check)
    from embedtag.openai_api import add_openai_routes

    index_cache = add_openai_routes(app, tagger, batcher, api_key=api_key)
    return app


def _register_corrections(
    app: FastAPI, batcher: MicroBatcher, index_path: str | os.PathLike[str] | None,
    store_path: str | os.PathLike[str] | None,
) -> Any:
    from embedtag.serve_corrections import register

    return register(app, batcher, index_path, store_path)


def create_app_from_env() -> FastAPI:
    """App factory for `--workers N`: each worker process loads its own model and index once."""
    from embedtag.tagger import Tagger

    tagger = Tagger.load(os.environ.get(ENV_INDEX) or None, os.environ.get(ENV_MODEL) or None)
    if os.environ.get(ENV_CACHE):
        from embedtag.vectorstore import cached_tagger, open_store

        tagger = cached_tagger(tagger, open_store(os.environ[ENV_CACHE]))
    threads = int(os.environ.get(ENV_THREADS) or 0)
    set_threads = getattr(tagger.encoder, "set_threads", None)
    if threads and set_threads is not None:  # workers share the cores instead of each taking all
        set_threads(threads)
    origins = [o for o in os.environ.get(ENV_ORIGINS, "").split(",") if o]
    return create_app(
        tagger,
        max_body_bytes=int(os.environ.get(ENV_MAX_BODY) or DEFAULT_MAX_BODY_BYTES),
        max_batch=int(os.environ.get(ENV_MAX_BATCH) or DEFAULT_MAX_BATCH),
        batch_wait_ms=float(os.environ.get(ENV_BATCH_WAIT) or DEFAULT_BATCH_WAIT_MS),
        allow_origins=origins or None,
        index_path=os.environ.get(ENV_INDEX) or None,
        store_path=os.environ.get(ENV_STORE) or None,
        api_key=os.environ.get("EMBEDTAG_API_KEY") or None,
    )

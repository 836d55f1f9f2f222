"""The tagging routes: POST /tag, POST /tag/batch, GET /tags, GET /health, and their shapes.

Every document goes through the micro-batcher (`batcher.py`), so concurrent requests share
encode calls. The shapes are the API's contract: they make the OpenAPI schema at /openapi.json.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Body, FastAPI, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, StrictStr, WithJsonSchema
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException

from embedtag.service.batcher import MicroBatcher, ServiceBusy
from embedtag.tagger import Document, TagResult

if TYPE_CHECKING:
    from embedtag.corrections import RecentDocuments

MAX_BATCH_ITEMS = 1000  # documents in one POST /tag/batch

TagFormat = Literal["names", "ids", "objects"]


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
    encoder: str = Field(description="What reads README chunks: all-MiniLM-L6-v2-int8 by default, "
                         "all-MiniLM-L6-v2 with `embedtag --backend torch serve`")
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


# ---- the routes ---------------------------------------------------------------------------------

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Body is not UTF-8"},
    413: {"model": ErrorResponse, "description": "Body larger than --max-body-bytes"},
    422: {"model": ValidationErrorResponse, "description": "Invalid body or query"},
    503: {"model": ErrorResponse, "description": "Too many documents queued; retry"},
}


def add_tag_routes(app: FastAPI, batcher: MicroBatcher, recent: RecentDocuments) -> None:
    """Register /tag, /tag/batch, /tags and /health; documents tagged are remembered in `recent`."""
    started = time.monotonic()

    async def run(docs: list[Document], explain: bool) -> list[TagResult]:
        recent.add(docs)  # feedback may name a project tagged here by its id
        try:
            return await batcher.tag(docs, explain)
        except ServiceBusy as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from None

    @app.post("/tag", response_model=TagResponse, responses=ERRORS, summary="Tag one project")
    async def tag(
        request: Annotated[TagRequest, Body()],
        explain: ExplainQuery = False,
        tag_format: FormatQuery = "names",
    ) -> JSONResponse:
        (result,) = await run([request.document()], explain)
        return JSONResponse(result.to_json(tag_format, explain))

    @app.post(
        "/tag/batch", response_model=list[TagResponse], responses=ERRORS,
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
        # registered after these routes (openai_routes.py); read when asked, so no import is needed
        cache = getattr(app.state, "index_cache", None)
        body: dict[str, Any] = {
            "status": "ok" if batcher.running else "stopped",
            "model": index.model_name,
            "model_fingerprint": index.model_fingerprint,
            "encoder": batcher.tagger.encoder.name,
            "texts_fingerprint": index.texts_fingerprint,
            "tags": len(index.tags),
            "uptime_seconds": round(time.monotonic() - started, 3),
            **batcher.stats(),
            "index_cache": cache.info() if cache is not None else None,
        }
        return JSONResponse(body, status_code=200 if batcher.running else 503)

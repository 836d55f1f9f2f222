"""`embedtag serve`: the app factory that puts the service together, for a web app to call.

The model and the index load once, before the server starts (`create_app` takes a tagger the
caller has loaded; `create_app_from_env` is the factory each `--workers N` process runs). The
parts, each in its own module, are imported here and never import this one back:

- `batcher.py`: the micro-batcher that lets concurrent requests share encode calls;
- `routes_tag.py`: POST /tag, POST /tag/batch, GET /tags, GET /health;
- `openai_routes.py`: the OpenAI-compatible /v1 routes and the API key check;
- `corrections_routes.py`: POST /feedback, POST /admin/reload, GET /review;
- `reload.py`: how a reload in one worker process reaches the others;
- `middleware.py`: the body size limit.

No module here loads a model at import time.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from embedtag.service.batcher import DEFAULT_BATCH_WAIT_MS, DEFAULT_MAX_BATCH, MicroBatcher
from embedtag.service.corrections_routes import add_corrections_routes
from embedtag.service.middleware import DEFAULT_MAX_BODY_BYTES, BodyLimitMiddleware
from embedtag.service.openai_routes import add_openai_routes
from embedtag.service.reload import ReloadSignal, shared_reload_file
from embedtag.service.routes_tag import add_tag_routes

if TYPE_CHECKING:
    from embedtag.tagger import Tagger

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


# ---- validation errors, said plainly --------------------------------------------------------------


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
    reload_signal: ReloadSignal | None = None,
) -> FastAPI:
    """The HTTP API around an already loaded tagger; the batcher thread runs while the app does.

    `index_path` is where POST /admin/reload loads the index from; `store_path` the corrections store.
    `api_key`: when set, every route but /health and the docs needs `Authorization: Bearer KEY`.
    `reload_signal`: shared by the worker processes of one server, so that a reload reaches them all."""
    from embedtag import __version__

    batcher = MicroBatcher(tagger, max_batch=max_batch, max_wait_ms=batch_wait_ms)

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
    corrections = add_corrections_routes(app, batcher, index_path, store_path, reload_signal)
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

    add_tag_routes(app, batcher, corrections.recent)
    # OpenAI-compatible /v1/chat/completions and /v1/models (and the optional key check)
    add_openai_routes(app, tagger, batcher, api_key=api_key)
    return app


def create_app_from_env() -> FastAPI:
    """App factory for `--workers N`: each worker process loads its own model and index once."""
    from embedtag.tagger import Tagger

    index_path = os.environ.get(ENV_INDEX) or None
    signal = ReloadSignal(shared_reload_file(index_path))  # before the load: see ReloadSignal
    tagger = Tagger.load(index_path, os.environ.get(ENV_MODEL) or None)
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
        index_path=index_path,
        store_path=os.environ.get(ENV_STORE) or None,
        api_key=os.environ.get("EMBEDTAG_API_KEY") or None,
        reload_signal=signal,
    )

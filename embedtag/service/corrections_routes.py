"""The correction loop on `embedtag serve`: POST /feedback, POST /admin/reload and the /review page.

Reload swaps the tagger whole: the new index is loaded (and checked against the running model)
beside the old one, then one attribute assignment hands it to the micro-batcher. A batch
already running finishes with the old tagger; every later batch uses the new one; no request
waits on the load or fails because of it. A failed load keeps the old index and says why.
With `--workers N`, the worker that reloaded tells the others (`reload.py`), and each catches
up before its next answer.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Body, FastAPI
from fastapi.responses import HTMLResponse, JSONResponse

from embedtag.corrections import CorrectionStore, RecentDocuments, parse_correction
from embedtag.errors import EmbedtagError
from embedtag.service.batcher import MicroBatcher
from embedtag.service.reload import ReloadSignal, ReloadWatch
from embedtag.tagger import Document

if TYPE_CHECKING:
    from embedtag.tagger import Tagger

log = logging.getLogger("uvicorn.error")  # the server's own log: where a worker's failed catch-up shows


def review_page() -> str:
    return (resources.files("embedtag") / "data" / "review.html").read_text(encoding="utf-8")


class CorrectionService:
    """What the routes share: the store, recently tagged documents, and the reload lock."""

    def __init__(self, app: FastAPI, batcher: MicroBatcher, index_path: str | os.PathLike[str] | None,
                 store_path: str | os.PathLike[str] | None, signal: ReloadSignal | None = None) -> None:
        self.app = app
        self.batcher = batcher
        self.index_path = index_path
        self.store_path = store_path
        self.signal = signal  # shared with the other worker processes, if any
        self._store: CorrectionStore | None = None
        self.recent = RecentDocuments()
        self._reload_lock = threading.Lock()
        self.reloads = 0

    @property
    def tagger(self) -> Tagger:
        tagger: Tagger = self.batcher.tagger
        return tagger

    def store(self) -> CorrectionStore:
        if self._store is None:  # opened on first use: a server that never gets feedback needs no file
            self._store = CorrectionStore(self.store_path)
        return self._store

    def lookup(self, project_id: str) -> Document | None:
        return self.recent.get(project_id) or self.store().document(project_id)

    def feedback(self, data: Any) -> dict[str, Any]:
        correction = parse_correction(data, self.tagger.index.tags, "feedback", lookup=self.lookup)
        projects = self.store().add([correction])
        return {**correction.to_json(), "stored": True, "projects": projects, "store": str(self.store().path)}

    def reload(self) -> dict[str, Any]:
        with self._reload_lock:  # one reload at a time; tagging goes on meanwhile
            path, new = self._swap()
            if self.signal is not None:  # after the swap: a worker that catches up finds the same files
                self.signal.announce()
            return {
                "reloaded": True,
                "index": str(path),
                "tags": len(new.index.tags),
                "examples": len(new.index.examples),
                "calibrated": new.settings.ranker is not None,
                "reloads": self.reloads,
            }

    def catch_up(self) -> None:
        """Reload because another worker did (its token is in the shared file)."""
        if self.signal is None:
            return
        with self._reload_lock:
            token = self.signal.pending()  # again under the lock: a request before us may have caught up
            if token is None:
                return
            try:
                path, _ = self._swap()
            except EmbedtagError as exc:  # the other worker loaded it; the files changed since
                log.warning("another worker reloaded the index, but it did not load here: %s", exc)
            else:
                log.info("worker %d: index %s reloaded, as another worker was asked to", os.getpid(), path)
            self.signal.seen = token  # not retried on every request; the next reload tries again

    def _swap(self) -> tuple[Path, Tagger]:
        """Load the index beside the old one, then hand it over (the caller holds the lock)."""
        from embedtag.index import default_index_path, load_index
        from embedtag.tagger import Tagger

        path = Path(self.index_path) if self.index_path else default_index_path()
        new = Tagger(load_index(path), self.tagger.encoder)
        self.batcher.tagger = new  # atomic: the next batch uses the new index
        self.app.state.tagger = new
        cache = getattr(self.app.state, "index_cache", None)
        if cache is not None:  # other tag lists carry the new index's ranker and examples over
            cache.rebase(new)
        self.reloads += 1
        return path, new


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message, "message": message}, status_code=status)


def add_corrections_routes(
    app: FastAPI,
    batcher: MicroBatcher,
    index_path: str | os.PathLike[str] | None = None,
    store_path: str | os.PathLike[str] | None = None,
    signal: ReloadSignal | None = None,
) -> CorrectionService:
    """Add /feedback, /admin/reload and /review to the app; with `signal`, a reload in one worker
    process reaches the others (each catches up before its next answer)."""
    service = CorrectionService(app, batcher, index_path, store_path, signal)
    app.state.corrections = service
    if signal is not None:
        app.add_middleware(ReloadWatch, signal=signal, catch_up=service.catch_up)  # type: ignore[arg-type]

    # Out of the OpenAPI schema (documented in the README): the fuzzed contract covers the tagging API.
    @app.post("/feedback", status_code=201, summary="Store a person's final tags", include_in_schema=False)
    async def feedback(
        body: dict[str, Any] = Body(  # noqa: B008 - FastAPI's way of declaring a body
            ...,
            examples=[{"id": "1977", "core": ["k8s", "cloud-native"], "also": ["iot"],
                       "description": "Kubernetes Native Edge Computing Framework", "readme": "# KubeEdge ..."}],
        ),
    ) -> JSONResponse:
        try:
            answer = await asyncio.get_running_loop().run_in_executor(None, service.feedback, body)
        except EmbedtagError as exc:
            return _error(422, str(exc))
        return JSONResponse(answer, status_code=201)

    @app.post("/admin/reload", summary="Load the index again (calibrate --from-store)", include_in_schema=False)
    async def reload() -> JSONResponse:
        try:
            answer = await asyncio.get_running_loop().run_in_executor(None, service.reload)
        except EmbedtagError as exc:
            return _error(409, f"kept the index in use: {exc}")
        return JSONResponse(answer)

    @app.get("/review", response_class=HTMLResponse, summary="A page to review and fix tags", include_in_schema=False)
    async def review() -> HTMLResponse:
        return HTMLResponse(review_page())

    return service

"""The micro-batcher: requests put documents on a queue, one thread tags them together.

Requests never call the model themselves: each puts its documents on a queue, and one worker
thread takes everything queued (after waiting a few milliseconds for company, up to a cap) and
tags it with a single `Tagger.tag_many` call, that is one encode call. Under concurrency,
requests share encode calls, so throughput grows with the number of clients instead of each
waiting for the one before.

This module imports no web framework: the routes import it, never the other way round.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from embedtag.tagger import Document, TagResult

if TYPE_CHECKING:
    from embedtag.tagger import Tagger

DEFAULT_MAX_BATCH = 32  # documents per encode call
DEFAULT_BATCH_WAIT_MS = 5.0  # how long the first queued request waits for others
MAX_QUEUED = 4096  # documents waiting; past this, new requests get 503


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

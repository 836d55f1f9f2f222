"""Reload across `serve --workers N`: the worker that reloads tells the others through a small file.

Each worker process holds its own index, and POST /admin/reload reaches only the worker that
took it. That worker, once its new index is in place, writes a fresh token to a file all the
workers know; every worker reads the file before it answers a request and, when the token is
not the one it last saw, loads the index again before answering. So once the reload has
answered, no worker answers from the old index. Reading a few bytes per request is cheap next
to tagging.

The file only says "reload happened", never what to load: each worker reloads the same index
directory from disk. It is not watched for changes on disk either: an index rebuilt in place is
still only served after POST /admin/reload, as with one worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import uuid
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

from embedtag.service.middleware import ASGIApp, Receive, Send

ENV_RELOAD_FILE = "EMBEDTAG_SERVE_RELOAD_FILE"  # where the workers meet; default: see shared_reload_file


def shared_reload_file(index_path: str | os.PathLike[str] | None) -> Path:
    """A file the worker processes of one server agree on without being told.

    uvicorn spawns the workers from one supervisor process, so they share their parent's pid;
    two servers never do. The index path is in the name too, for servers started another way
    from one shell. A stale file from an earlier server with the same pid does no harm: a
    worker only reacts to a token that changes after it started (`ReloadSignal`)."""
    explicit = os.environ.get(ENV_RELOAD_FILE)
    if explicit:
        return Path(explicit)
    where = hashlib.sha256(os.fsdecode(index_path or "").encode("utf-8")).hexdigest()[:8]
    return Path(tempfile.gettempdir()) / f"embedtag-serve-{os.getppid()}-{where}.reload"


class ReloadSignal:
    """The token in the shared file: `announce` after a reload, `pending` before each request."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Read before the index loads: a reload that lands in between is then seen as pending
        # (one reload too many) rather than missed.
        self.seen = self.read()

    def read(self) -> str | None:
        try:
            return self.path.read_text(encoding="utf-8").strip() or None
        except OSError:  # no reload yet (or the file went away): nothing to catch up with
            return None

    def pending(self) -> str | None:
        """The token of a reload this worker has not caught up with, else None."""
        token = self.read()
        return token if token is not None and token != self.seen else None

    def announce(self) -> None:
        """Tell the other workers this one reloaded: a new token, swapped in whole (os.replace)."""
        token = uuid.uuid4().hex
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(token)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.seen = token


class ReloadWatch:
    """Before each request, catch up with a reload another worker announced.

    The check is a file read in the event loop; the reload itself (`catch_up`, which loads an
    index) runs in a thread, and the request waits for it: it must be answered by the new index."""

    def __init__(self, app: ASGIApp, signal: ReloadSignal, catch_up: Callable[[], None]) -> None:
        self.app = app
        self.signal = signal
        self.catch_up = catch_up

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.signal.pending() is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.catch_up)
        await self.app(scope, receive, send)

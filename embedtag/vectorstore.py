"""A persistent store of chunk vectors, so a re-tag never encodes the same text twice.

Why SQLite (the standard library's `sqlite3`): one file, no server, no new dependency, and it
is the embedded store with the best-understood behaviour under crashes and concurrent
processes. WAL mode lets readers run while one writer commits (two batches, or `serve` and a
batch, on one store); `busy_timeout` makes a second writer wait for the lock instead of
failing. Vectors are raw little-endian float32 blobs, so they come back bit-exact.

A row is keyed by (model fingerprint, encoder settings, sha256 of the chunk text). The
settings string names the encoder, its dimension, its truncation length (the text a model
sees beyond it is cut, so it changes the vector) and the chunk size in tokens. Any difference
in any part is a miss: the store never hands back a vector another model or setting made. The
chunk's weight, position and the tag list are not part of the vector, which is why a re-tag
after a tag-list edit, a gloss edit or a recalibration finds every chunk it has seen.

`CachingEncoder` wraps any `Encoder`: hits come from the store, misses go to the wrapped
encoder in one call and are written back. A corrupt file is moved aside and rebuilt (one
warning line); a store that fails mid-run degrades to encoding, never to a wrong vector.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedtag.encoders import Encoder, cache_home
from embedtag.errors import EmbedtagError
from embedtag.tagger import Document, Tagger, TagResult
from embedtag.text import Chunk, Section, readme_sections

ENV_CACHE = "EMBEDTAG_CACHE"
DEFAULT_MAX_BYTES = 4 << 30  # 4 GiB: about 2 million chunk vectors of 384 dims (2.2 kB each)
SCHEMA_VERSION = 4  # 2: per-vector checksum; 3: rowid table, 8 kB pages; 4: prepared documents
# A hit refreshes its "last used" time at most this often (seconds): pruning needs only a rough
# order, and a re-tag should not rewrite every row it reads.
TOUCH_AFTER_S = 3600.0
BUSY_TIMEOUT_MS = 60_000
# quick_check reads the whole file (10,000 vectors, 22 MB: ~14 ms from the page cache, ~150 ms from
# disk), too much for every cold `tag`. So an open runs it only when the last one that passed is older
# than CHECK_EVERY_S (its time is kept in meta), and only up to QUICK_CHECK_MAX_BYTES; every open still
# reads the header, the schema and meta (a damaged first page fails there), and damage found while
# reading or writing later moves the file aside then (see _broken).
QUICK_CHECK_MAX_BYTES = 64 << 20
CHECK_EVERY_S = 86_400.0


class _OlderFormat(sqlite3.DatabaseError):
    """The file is a store of another schema version (not damage)."""


class StoreError(EmbedtagError):
    """The vector store cannot be opened or written."""


def default_store_path() -> Path:
    """$EMBEDTAG_CACHE, else vectors.sqlite under the cache home ($EMBEDTAG_HOME or ~/.cache/embedtag)."""
    env = os.environ.get(ENV_CACHE)
    return Path(env) if env else cache_home() / "vectors.sqlite"


def _checksum(blob: bytes) -> bytes:
    """SQLite has no page checksums: a flipped bit inside a vector must not pass as a vector."""
    return hashlib.blake2b(blob, digest_size=8).digest()


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def encoder_settings(encoder: Encoder, chunk_tokens: int | None = None) -> str:
    """What besides the text and the weights decides a vector (see the module docstring)."""
    chunk = f";chunk={chunk_tokens}" if chunk_tokens is not None else ""
    return f"{encoder.name};dim={encoder.dimension};trunc={encoder.max_tokens}{chunk}"


@dataclass
class StoreInfo:
    path: Path
    bytes: int
    vectors: int
    namespaces: list[tuple[str, str, int]]  # (model fingerprint, settings, vectors)
    oldest_use: float | None
    newest_use: float | None

    def lines(self) -> list[str]:
        out = [
            f"store       {self.path}",
            f"size        {self.bytes / 1e6:.1f} MB",
            f"vectors     {self.vectors}",
        ]
        for model, settings, n in self.namespaces:
            out.append(f"  {n:>9}  model {model}  {settings}")
        if self.oldest_use is not None and self.newest_use is not None:
            fmt = "%Y-%m-%d %H:%M"
            out.append(
                f"last used   {time.strftime(fmt, time.localtime(self.oldest_use))} .. "
                f"{time.strftime(fmt, time.localtime(self.newest_use))}"
            )
        return out


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class VectorStore:
    """Chunk vectors in one SQLite file; safe to share between threads and processes."""

    def __init__(self, path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()  # one connection, used by serve's batcher and request threads
        self._writes_since_check = 0
        self.failed = False  # set when the store broke mid-run: from then on, everything is a miss
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"vector store {self.path} cannot be created: {exc.strerror}; "
                             "pass --cache PATH or --no-cache") from None
        try:
            try:
                self._conn = self._open()
            except _OlderFormat:  # a store from another embedtag version: a cache, so start afresh quietly
                self._remove_files()
                self._conn = self._open()
        except sqlite3.DatabaseError as exc:
            self._move_aside(exc)
            try:
                self._conn = self._open()
            except sqlite3.Error as again:
                raise StoreError(f"vector store {self.path} cannot be rebuilt ({again}); "
                                 "pass --cache PATH or --no-cache") from None
        except sqlite3.Error as exc:  # OperationalError: unreadable file, read-only directory...
            raise StoreError(f"vector store {self.path} cannot be opened ({exc}); "
                             "pass --cache PATH or --no-cache") from None

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False,
                               isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            # 8 kB pages hold five 1.6 kB vectors each (4 kB pages waste a third); only a new file takes it
            conn.execute("PRAGMA page_size=8192")
            conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a power cut may lose the last commits but never corrupts the file;
            # losing cached vectors only costs re-encoding them.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS vectors (model TEXT NOT NULL, settings TEXT NOT NULL, "
                "key BLOB NOT NULL, dim INTEGER NOT NULL, vector BLOB NOT NULL, checksum BLOB NOT NULL, "
                "used REAL NOT NULL, "
                "PRIMARY KEY (model, settings, key))"  # a rowid table: vectors stay in the row, no overflow pages
            )
            conn.execute("CREATE INDEX IF NOT EXISTS vectors_used ON vectors (used)")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS documents (key BLOB PRIMARY KEY, data BLOB NOT NULL, used REAL NOT NULL)"
            )
            conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            row = conn.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
            if row is None or row[0] != str(SCHEMA_VERSION):
                raise _OlderFormat(f"schema {row[0] if row else '?'} is not {SCHEMA_VERSION}")
            if self._check_due(conn):
                check = conn.execute("PRAGMA quick_check").fetchone()
                if check is None or check[0] != "ok":
                    raise sqlite3.DatabaseError(f"quick_check: {check[0] if check else 'no answer'}")
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('checked', ?)", (repr(time.time()),))
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_due(self, conn: sqlite3.Connection) -> bool:
        """Whether this open runs quick_check (see CHECK_EVERY_S)."""
        if self.size_bytes() > QUICK_CHECK_MAX_BYTES:
            return False
        row = conn.execute("SELECT value FROM meta WHERE name = 'checked'").fetchone()
        try:
            checked = float(row[0]) if row is not None else None
        except ValueError:
            checked = None
        now = time.time()
        return checked is None or not now - CHECK_EVERY_S < checked <= now + 60  # a clock set back: check

    def _remove_files(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.path}{suffix}")

    def _move_aside(self, exc: Exception) -> None:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path, aside)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.path}{suffix}")
        _warn(f"vector store {self.path} is damaged ({exc}); moved to {aside.name}, starting an empty one")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _broken(self, exc: sqlite3.Error) -> None:
        if type(exc) is sqlite3.DatabaseError:  # "malformed", "not a database": damage, not a lock
            try:
                self._conn.close()
                self._move_aside(exc)
                self._conn = self._open()
                return
            except sqlite3.Error as again:
                exc = again
        if not self.failed:
            _warn(f"vector store {self.path} failed ({exc}); encoding without it for the rest of this run")
        self.failed = True

    # ---- reads and writes -----------------------------------------------------------------

    def get_many(self, model: str, settings: str, keys: list[bytes], dim: int) -> dict[bytes, np.ndarray]:
        """Stored vectors for the keys that have one (of exactly `dim` float32s)."""
        if self.failed or not keys:
            return {}
        found: dict[bytes, np.ndarray] = {}
        stale: list[bytes] = []
        now = time.time()
        try:
            with self._lock:
                for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
                    part = keys[start : start + 500]
                    marks = ",".join("?" * len(part))
                    rows = self._conn.execute(
                        f"SELECT key, dim, vector, checksum, used FROM vectors WHERE model = ? AND settings = ? "
                        f"AND key IN ({marks})",
                        (model, settings, *part),
                    ).fetchall()
                    for key, row_dim, blob, checksum, used in rows:
                        if row_dim != dim or len(blob) != 4 * dim or _checksum(blob) != checksum:
                            continue  # never a wrong vector: a miss, rewritten when encoded
                        found[bytes(key)] = np.frombuffer(blob, dtype="<f4")
                        if used < now - TOUCH_AFTER_S:
                            stale.append(bytes(key))
                if stale:
                    self._conn.execute("BEGIN IMMEDIATE")
                    self._conn.executemany(
                        "UPDATE vectors SET used = ? WHERE model = ? AND settings = ? AND key = ?",
                        [(now, model, settings, k) for k in stale],
                    )
                    self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            self._broken(exc)
            return {}
        return found

    def put_many(self, model: str, settings: str, items: list[tuple[bytes, np.ndarray]]) -> None:
        if self.failed or not items:
            return
        now = time.time()
        rows = []
        for key, v in items:
            blob = np.ascontiguousarray(v, dtype="<f4").tobytes()
            rows.append((model, settings, key, int(v.shape[0]), blob, _checksum(blob), now))
        try:
            with self._lock:
                self._conn.execute("BEGIN IMMEDIATE")  # take the write lock now: waits, never deadlocks
                self._conn.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            self._broken(exc)
            return
        self._writes_since_check += len(items)
        if self._writes_since_check >= 10_000:
            self._writes_since_check = 0
            if self.size_bytes() > self.max_bytes:
                self.prune(int(self.max_bytes * 0.9))

    def get_documents(self, keys: list[bytes]) -> dict[bytes, bytes]:
        """Prepared documents (see `StoreTagger`) by key; `used` is not refreshed (pruning goes by vectors)."""
        if self.failed or not keys:
            return {}
        found: dict[bytes, bytes] = {}
        try:
            with self._lock:
                for start in range(0, len(keys), 500):
                    part = keys[start : start + 500]
                    rows = self._conn.execute(
                        f"SELECT key, data FROM documents WHERE key IN ({','.join('?' * len(part))})", part
                    ).fetchall()
                    found.update((bytes(k), bytes(d)) for k, d in rows)
        except sqlite3.Error as exc:
            self._rollback()
            self._broken(exc)
            return {}
        return found

    def put_documents(self, items: list[tuple[bytes, bytes]]) -> None:
        if self.failed or not items:
            return
        now = time.time()
        try:
            with self._lock:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany("INSERT OR REPLACE INTO documents VALUES (?, ?, ?)",
                                       [(k, d, now) for k, d in items])
                self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            self._broken(exc)

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")

    # ---- size ------------------------------------------------------------------------------

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(f"{self.path}{suffix}").st_size
        return total

    def _rebuilt_after(self, exc: sqlite3.DatabaseError) -> bool:
        """A read over the whole store hit damage: moved aside and rebuilt empty (True), or not damage."""
        if type(exc) is not sqlite3.DatabaseError:
            return False
        self._rollback()
        self._broken(exc)
        return not self.failed

    def info(self) -> StoreInfo:
        try:
            return self._info()
        except sqlite3.DatabaseError as exc:
            if self._rebuilt_after(exc):
                return self._info()
            raise

    def _info(self) -> StoreInfo:
        with self._lock:
            spaces = self._conn.execute(
                "SELECT model, settings, COUNT(*) FROM vectors GROUP BY model, settings ORDER BY 3 DESC"
            ).fetchall()
            oldest, newest = self._conn.execute("SELECT MIN(used), MAX(used) FROM vectors").fetchone()
        return StoreInfo(self.path, self.size_bytes(), sum(n for *_, n in spaces),
                         [(str(m), str(s), int(n)) for m, s, n in spaces], oldest, newest)

    def prune(self, max_bytes: int) -> int:
        """Drop the least recently used vectors until the file fits in `max_bytes`; returns
        how many were dropped. The file shrinks (VACUUM) only when something was dropped.
        A damaged store is moved aside and rebuilt empty (0 dropped)."""
        try:
            return self._prune(max_bytes)
        except sqlite3.DatabaseError as exc:
            if self._rebuilt_after(exc):
                return 0
            raise

    def _prune(self, max_bytes: int) -> int:
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            page_size = int(self._conn.execute("PRAGMA page_size").fetchone()[0])
            pages = int(self._conn.execute("PRAGMA page_count").fetchone()[0])
            free = int(self._conn.execute("PRAGMA freelist_count").fetchone()[0])
            used_bytes = (pages - free) * page_size
            count = int(self._conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])
            if pages * page_size <= max_bytes or count == 0:
                return 0
            per_row = used_bytes / count
            keep = max(0, int(max_bytes / per_row * 0.95))  # headroom: indexes do not shrink evenly
            drop = count - keep  # <= 0: only free pages to give back
            if drop > 0:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.execute(
                    "DELETE FROM vectors WHERE rowid IN (SELECT rowid FROM vectors ORDER BY used, key LIMIT ?)",
                    (drop,),
                )
                if used_after := self._conn.execute("SELECT MIN(used) FROM vectors").fetchone()[0]:
                    self._conn.execute("DELETE FROM documents WHERE used < ?", (used_after,))
                else:
                    self._conn.execute("DELETE FROM documents")
                self._conn.execute("COMMIT")
            self._conn.execute("VACUUM")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return max(drop, 0)


class CachingEncoder:
    """An `Encoder` that answers from a `VectorStore` and encodes only what it has not seen."""

    def __init__(self, inner: Encoder, store: VectorStore, chunk_tokens: int | None = None) -> None:
        self.inner = inner
        self.store = store
        self.name = inner.name
        self.dimension = inner.dimension
        self.max_tokens = inner.max_tokens
        self._model = inner.fingerprint()
        self._settings = encoder_settings(inner, chunk_tokens)
        self.hits = 0
        self.misses = 0

    def fingerprint(self) -> str:
        return self._model

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def __getattr__(self, name: str) -> Any:
        # set_threads, torch_module... of the wrapped encoder stay reachable
        return getattr(self.inner, name)

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        keys = [text_key(t) for t in texts]
        found = self.store.get_many(self._model, self._settings, list(dict.fromkeys(keys)), self.dimension)
        missing: dict[bytes, int] = {}  # key -> first row with that text (each new text encoded once)
        for row, key in enumerate(keys):
            vector = found.get(key)
            if vector is not None:
                out[row] = vector
            elif key not in missing:
                missing[key] = row
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        if missing:
            rows = list(missing.values())
            fresh = self.inner.encode([texts[r] for r in rows])
            self.store.put_many(self._model, self._settings, list(zip(missing, fresh, strict=True)))
            by_key = dict(zip(missing, fresh, strict=True))
            for row, key in enumerate(keys):
                if key in by_key:
                    out[row] = by_key[key]
        return out


def open_store(path: str | Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> VectorStore:
    return VectorStore(path if path is not None else default_store_path(), max_bytes)


def cached_tagger(tagger: Tagger, store: VectorStore) -> Tagger:
    """The same index and model, with chunk vectors (and prepared READMEs) kept in `store`."""
    encoder = tagger.encoder.inner if isinstance(tagger.encoder, CachingEncoder) else tagger.encoder
    return StoreTagger.over(tagger, CachingEncoder(encoder, store, tagger.settings.max_tokens))


def _text_code_version() -> str:
    """Cleaning and chunking code changes what a README becomes: part of a prepared document's key."""
    import embedtag.text

    return hashlib.sha256(Path(embedtag.text.__file__).read_bytes()).hexdigest()[:16]


class StoreTagger(Tagger):
    """A Tagger whose READMEs are cleaned and chunked once: a re-tag reads the sections and chunks
    back from the store (keyed by README, description, chunk settings and the cleaning code) and
    then only searches and scores. Cleaning and chunking were over half of a re-tag's time."""

    @classmethod
    def over(cls, tagger: Tagger, encoder: CachingEncoder) -> StoreTagger:
        """`tagger` with its vectors read through `encoder`. It shares what `Tagger.__init__` derived
        from the index (label matrices, patterns) instead of deriving it again: 15-30 ms of a cold
        `tag` with the shipped index."""
        tagger.index.check_encoder(encoder)
        store_tagger = cls.__new__(cls)
        store_tagger.__dict__.update(vars(tagger))
        store_tagger.encoder = encoder
        return store_tagger

    def _doc_settings(self) -> str:
        s = self.settings
        return (f"{s.max_tokens},{s.max_chunks},{s.description_weight},{s.intro_weight},{s.decay},"
                f"{self.encoder.max_tokens},{self.encoder.fingerprint()},{_text_code_version()}")

    def prepared(self, docs: list[Document]) -> list[tuple[list[Section], list[Chunk]]]:
        """Each README's sections and chunks: from the store when prepared before, else cleaned and
        chunked now and written back. `AdaptiveTagger.wrap` takes this over, so `--adaptive` reads
        and writes the same prepared READMEs."""
        store = self.encoder.store if isinstance(self.encoder, CachingEncoder) else None
        settings = self._doc_settings()
        keys = [hashlib.sha256(f"{settings}\0{d.description}\0{d.readme}".encode("utf-8", "surrogatepass")).digest()
                for d in docs]
        found = store.get_documents(list(dict.fromkeys(keys))) if store is not None else {}
        out, fresh = [], []
        for doc, key in zip(docs, keys, strict=True):
            data = found.get(key)
            if data is not None:
                try:  # zlib's checksum: a damaged row is a miss, prepared again and rewritten
                    raw = json.loads(zlib.decompress(data))
                    out.append(([Section(h, t) for h, t in raw["s"]], [Chunk(t, w, src) for t, w, src in raw["c"]]))
                    continue
                except (zlib.error, ValueError, KeyError, TypeError):
                    pass
            sections = readme_sections(doc.readme)
            chunks = self.chunks(doc, sections)
            out.append((sections, chunks))
            raw = {"s": [[x.heading, x.text] for x in sections], "c": [[c.text, c.weight, c.source] for c in chunks]}
            fresh.append((key, zlib.compress(json.dumps(raw).encode("utf-8", "surrogatepass"))))
        if store is not None:
            store.put_documents(fresh)
        return out

    def _tag_batch(self, docs: list[Document], explain: bool) -> list[TagResult]:
        prepared = self.prepared(docs)
        return self._results(docs, [sections for sections, _ in prepared], [chunks for _, chunks in prepared], explain)

"""Corrections: a person's final tags for a project, kept as labelled examples in a local store.

The store is one SQLite file (WAL journal) under the embedtag home ($EMBEDTAG_HOME, else
~/.cache/embedtag). Every correction is appended as a row, in its own transaction: concurrent
writers (threads, server workers, `embedtag learn`) are serialised by SQLite, so none is lost;
the latest row for a project id is the one that counts. `embedtag calibrate --from-store` turns
the latest rows into labelled records.
"""

from __future__ import annotations

import difflib
import json
import os
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from threading import Lock
from typing import Any

from embedtag.errors import EmbedtagError, InputError
from embedtag.index import TagIndex
from embedtag.records import LabelledRecord, parse_record
from embedtag.tagger import Document
from embedtag.tags import Tag

STORE_FILE = "corrections.sqlite3"
MAX_CORE = 3  # a project gets at most three tags, as the tagger gives
MAX_ALSO = 8
BUSY_TIMEOUT_S = 60.0  # how long a writer waits for another's transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS corrections (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id TEXT NOT NULL,
    description TEXT NOT NULL,
    readme TEXT NOT NULL,
    core TEXT NOT NULL,
    also TEXT NOT NULL,
    source TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS corrections_project ON corrections (project_id, seq);
"""


class CorrectionError(EmbedtagError):
    """A correction cannot be stored (bad record) or the store cannot be used."""


def default_store_path() -> Path:
    from embedtag.encoders import cache_home

    return cache_home() / STORE_FILE


@dataclass(frozen=True)
class Correction:
    """A person's final tags (trimmed names) for one project, with the text they are for."""

    id: str
    core: tuple[str, ...]
    also: tuple[str, ...] = ()
    description: str = ""
    readme: str = ""
    source: str = "feedback"

    def labelled(self) -> LabelledRecord:
        return LabelledRecord(Document(self.id, self.readme, self.description), self.core, self.also)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "core": list(self.core), "also": list(self.also), "source": self.source}


# ---- validation ------------------------------------------------------------------------------


def _tag_names(value: Any, field: str, tags: Sequence[Tag], where: str) -> tuple[str, ...]:
    """Tag names (or ids) → trimmed names of the tag list; an unknown tag is an error."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise CorrectionError(f"{where}: '{field}' must be a list of tag names, like [\"k8s\", \"cloud-native\"]")
    by_key = {t.key: t.key for t in tags}
    by_key.update({t.key.casefold(): t.key for t in tags})
    by_id = {t.id: t.key for t in tags}
    out: list[str] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise CorrectionError(f"{where}: '{field}' must hold tag names (or ids), got {item!r}")
        name = by_id.get(item) if isinstance(item, int) else by_key.get(item.strip()) or by_key.get(
            item.strip().casefold()
        )
        if name is None:
            close = difflib.get_close_matches(str(item).strip(), list(by_key.values()), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise CorrectionError(
                f"{where}: {item!r} in '{field}' is not a tag of the index's list{hint}; GET /tags lists them"
            )
        if name not in out:
            out.append(name)
    return tuple(out)


def parse_correction(
    data: Any,
    tags: Sequence[Tag],
    where: str = "correction",
    base_dir: Path | None = None,
    lookup: Callable[[str], Document | None] | None = None,
    source: str = "feedback",
) -> Correction:
    """Validate one correction: `id`, `core` (or `tags`), optional `also`, and the text it is for
    (`description`/`readme`/`readme_path`), or nothing, if `lookup` knows the project's text
    (a record already tagged or corrected)."""
    if not isinstance(data, dict):
        raise CorrectionError(f'{where} must be a JSON object like {{"id": "1977", "core": ["k8s"], "readme": "..."}}')
    raw_id = data.get("id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or not str(raw_id).strip():
        raise CorrectionError(f"{where} needs an 'id' (a string or an integer)")
    project = str(raw_id)
    where = f"{where} (id {project})"
    if "core" not in data and "tags" not in data:
        raise CorrectionError(f"{where} needs 'core': the project's final tags, like [\"k8s\", \"cloud-native\"]")
    core = _tag_names(data["core"] if "core" in data else data["tags"], "core", tags, where)
    if len(core) > MAX_CORE:
        raise CorrectionError(f"{where} has {len(core)} core tags; give at most {MAX_CORE} (put the rest in 'also')")
    also = tuple(t for t in _tag_names(data.get("also"), "also", tags, where) if t not in core)
    if len(also) > MAX_ALSO:
        raise CorrectionError(f"{where} has {len(also)} 'also' tags; give at most {MAX_ALSO}")
    has_text = any(data.get(k) for k in ("description", "readme", "readme_path", "readme_file"))
    if has_text:
        record = parse_record(json.dumps(data), 1, base_dir or Path.cwd())
        if record.document is None:
            message = (record.error or "unusable record").replace("line 1", where, 1)
            raise CorrectionError(message if where in message else f"{where}: {message}")
        document = record.document
    else:
        found = lookup(project) if lookup is not None else None
        if found is None:
            raise CorrectionError(
                f"{where} has no 'description' or 'readme', and no project with that id was tagged or "
                "corrected before; send the text the tags are for"
            )
        document = found
    return Correction(project, core, also, document.description, document.readme, source)


def read_corrections(
    path: str | Path, tags: Sequence[Tag], lookup: Callable[[str], Document | None] | None = None
) -> tuple[list[Correction], list[str]]:
    """Every valid correction of a JSONL file, and one message per bad line (never dropped silently)."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise InputError(f"corrections file {p} cannot be read: {exc.strerror}") from None
    good: list[Correction] = []
    bad: list[str] = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
        except ValueError as exc:
            bad.append(f"{p}: line {number} is not valid JSON ({exc})")
            continue
        try:
            good.append(parse_correction(data, tags, f"{p}: line {number}", p.parent, lookup, source="learn"))
        except CorrectionError as exc:
            bad.append(str(exc))
    if not good and not bad:
        raise InputError(f"corrections file {p} has no records")
    return good, bad


# ---- the store -------------------------------------------------------------------------------


class CorrectionStore:
    """The SQLite file of corrections. Safe to share between threads and processes: each call
    opens its own connection, and each write is one transaction."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connection() as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise CorrectionError(f"corrections store {self.path} cannot be used ({exc}); pass --store PATH") from None
        except OSError as exc:
            raise CorrectionError(f"cannot create {self.path.parent}: {exc.strerror}; pass --store PATH") from None

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)) as db:
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
            yield db

    def add(self, corrections: Sequence[Correction]) -> int:
        """Append corrections in one transaction; returns how many projects the store now holds."""
        now = time.time()
        rows = [
            (c.id, c.description, c.readme, json.dumps(list(c.core)), json.dumps(list(c.also)), c.source, now)
            for c in corrections
        ]
        try:
            with self._connection() as db:
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.executemany(
                        "INSERT INTO corrections (project_id, description, readme, core, also, source, created)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        rows,
                    )
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                (projects,) = db.execute("SELECT COUNT(DISTINCT project_id) FROM corrections").fetchone()
        except sqlite3.Error as exc:
            raise CorrectionError(f"corrections store {self.path}: cannot write ({exc})") from None
        return int(projects)

    def _rows(self, where: str = "", args: tuple[Any, ...] = ()) -> list[Correction]:
        query = (
            "SELECT project_id, core, also, description, readme, source FROM corrections WHERE seq IN "
            f"(SELECT MAX(seq) FROM corrections {where} GROUP BY project_id) ORDER BY seq"
        )
        try:
            with self._connection() as db:
                rows = db.execute(query, args).fetchall()
        except sqlite3.Error as exc:
            raise CorrectionError(f"corrections store {self.path}: cannot read ({exc})") from None
        return [
            Correction(str(r[0]), tuple(json.loads(r[1])), tuple(json.loads(r[2])), str(r[3]), str(r[4]), str(r[5]))
            for r in rows
        ]

    def latest(self) -> list[Correction]:
        """The latest correction of every project, oldest first."""
        return self._rows()

    def get(self, project_id: str) -> Correction | None:
        found = self._rows("WHERE project_id = ?", (project_id,))
        return found[0] if found else None

    def count(self) -> int:
        """Rows written (every correction, including superseded ones)."""
        with self._connection() as db:
            (n,) = db.execute("SELECT COUNT(*) FROM corrections").fetchone()
        return int(n)

    def document(self, project_id: str) -> Document | None:
        found = self.get(project_id)
        return Document(found.id, found.readme, found.description) if found else None


def labelled_from_store(store: CorrectionStore, tags: Sequence[Tag]) -> list[LabelledRecord]:
    """The store's latest corrections as labelled records, checked against today's tag list."""
    keys = {t.key for t in tags}
    out = []
    for c in store.latest():
        unknown = [t for t in (*c.core, *c.also) if t not in keys]
        if unknown:
            raise CorrectionError(
                f"stored correction for {c.id} uses tags no longer in the tag list ({', '.join(unknown)}); "
                "post a new correction for it"
            )
        out.append(c.labelled())
    return out


def merge_records(gold: Sequence[LabelledRecord], corrections: Sequence[LabelledRecord]) -> list[LabelledRecord]:
    """Gold records plus corrections; a correction replaces the gold record with its id."""
    corrected = {r.document.id for r in corrections}
    return [r for r in gold if r.document.id not in corrected] + list(corrections)


class RecentDocuments:
    """The last `size` documents the service tagged, by id: feedback may refer to one by id."""

    def __init__(self, size: int = 2000) -> None:
        self.size = size
        self._docs: OrderedDict[str, Document] = OrderedDict()
        self._lock = Lock()

    def add(self, docs: Sequence[Document]) -> None:
        with self._lock:
            for doc in docs:
                self._docs[doc.id] = doc
                self._docs.move_to_end(doc.id)
            while len(self._docs) > self.size:
                self._docs.popitem(last=False)

    def get(self, project_id: str) -> Document | None:
        with self._lock:
            return self._docs.get(project_id)


# Fewer corrections than this (and no gold file) keep the index's ranker as it is: a logistic
# fit on a handful of READMEs would be noise. The corrections still become examples.
MIN_RECORDS_TO_REFIT = 20


def keep_old_examples(new: TagIndex, old: TagIndex, replaced: set[str]) -> TagIndex:
    """`new` (whose examples are the corrections) plus `old`'s examples for other projects."""
    from dataclasses import replace

    import numpy as np

    if not old.examples or old.example_vectors is None:
        return new
    keep = [i for i, e in enumerate(old.examples) if e.id not in replaced]
    vectors = [old.example_vectors[keep]]
    if new.example_vectors is not None:
        vectors.append(new.example_vectors)
    examples = [old.examples[i] for i in keep] + list(new.examples)
    per_example = old.example_chunk_groups()
    chunk_vectors = [per_example[i] for i in keep] if per_example else []
    if new.example_chunk_vectors is not None:
        chunk_vectors.append(new.example_chunk_vectors)
    n_chunks = sum(e.chunks for e in examples)
    if n_chunks != sum(len(v) for v in chunk_vectors):  # one side kept no chunks: keep none
        examples, chunk_vectors = [replace(e, chunks=0) for e in examples], []
    return replace(
        new,
        examples=examples,
        example_vectors=np.concatenate(vectors).astype(np.float32),
        example_chunk_vectors=np.concatenate(chunk_vectors).astype(np.float32) if chunk_vectors else None,
        _faiss_examples=None,
        _faiss_example_chunks=None,
    )


def mark_corrected(index: TagIndex, corrected: set[str]) -> TagIndex:
    from dataclasses import replace

    return replace(index, examples=[replace(e, corrected=e.id in corrected) for e in index.examples])

"""A tagger for any tag list a request brings: the shipped index when the list is the shipped one,
else an index built for that list on the fly, kept in memory (LRU) and on disk.

A prompt carries its own tag list. Building an index for it means embedding its tag texts
(curated glosses for names embedtag knows, generated ones for the rest): a few seconds for 90
tags on 2 cores, so it is done once per list. What the shipped index learned (exemplars,
labelled examples, the ranker) carries over to the tags the list shares with it: which tags are
the same is `transfer.match_tags`'s call, the carrying `TagIndex.retarget`'s.
The key is a fingerprint of the list's ids and names (and any glosses/aliases it carries),
independent of their order. Two requests for the same new list at the same time build it once:
the second waits on a per-fingerprint lock and then finds it in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from embedtag.encoders import Encoder, cache_home
from embedtag.errors import EmbedtagError
from embedtag.glosses import TagGlosses, load_glosses, tag_texts
from embedtag.index import TagIndex, build_index, gloss_evidence, load_index, texts_fingerprint
from embedtag.tagger import Tagger
from embedtag.tags import Tag
from embedtag.transfer import MIN_SHARED, match_tags

DEFAULT_MAX_ENTRIES = 32
DEFAULT_MAX_BYTES = 64 * 1024 * 1024

# Where an index was found: the shipped one, the memory LRU, the disk cache, or built now.
SHIPPED, MEMORY, DISK, BUILT = "shipped", "memory", "disk", "built"

def list_fingerprint(tags: list[Tag]) -> str:
    """Ids and names as spelled (plus any glosses/aliases), in id order: the same list in another
    order is the same index."""
    payload = sorted([t.id, t.name, list(t.glosses), list(t.aliases)] for t in tags)
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def default_cache_dir() -> Path:
    """$EMBEDTAG_HOME/indexes, else ~/.cache/embedtag/indexes (the cache home the ONNX export uses)."""
    return cache_home() / "indexes"


def index_bytes(index: TagIndex, shared_with: TagIndex | None = None) -> int:
    """Roughly what an index holds in memory: its vectors twice (array + FAISS copy) and its texts;
    arrays it shares with `shared_with` (the shipped index's examples) are not counted."""
    shared = () if shared_with is None else (
        shared_with.example_vectors, shared_with.example_chunk_vectors, shared_with.exemplar_vectors
    )
    arrays = [index.text_vectors, index.example_vectors, index.example_chunk_vectors, index.exemplar_vectors]
    vectors = sum(a.nbytes for a in arrays if a is not None and not any(a is s for s in shared))
    return 2 * vectors + sum(len(t.text) for t in index.texts) + 200 * len(index.tags)


@dataclass
class CacheStats:
    shipped: int = 0
    memory_hits: int = 0
    disk_hits: int = 0
    builds: int = 0
    evictions: int = 0

    def to_json(self) -> dict[str, int]:
        return dict(vars(self))


class IndexCache:
    """Taggers by tag list, sharing one encoder. Thread-safe."""

    def __init__(
        self,
        base: Tagger,
        cache_dir: str | Path | None = None,
        glosses: dict[str, TagGlosses] | None = None,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        min_shared: float = MIN_SHARED,
        on_evict: Callable[[str, Tagger], None] | None = None,
        use_disk: bool = True,
    ) -> None:
        self.base = base
        self.encoder: Encoder = base.encoder
        self.base_fingerprint = list_fingerprint(base.index.tags)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.use_disk = use_disk
        self._glosses = glosses
        self.max_entries = max(1, max_entries)
        self.max_bytes = max_bytes
        # a list sharing at least this share of its tags with the shipped one keeps its ranker and
        # examples (above 1: every other list scores zero-shot plus the exemplars of shared tags)
        self.min_shared = min_shared
        self.on_evict = on_evict
        self.stats = CacheStats()
        self._entries: OrderedDict[str, tuple[Tagger, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # guards the LRU, the counters and the lock table
        self._building: dict[str, threading.Lock] = {}

    @property
    def glosses(self) -> dict[str, TagGlosses]:
        if self._glosses is None:
            self._glosses = load_glosses()
        return self._glosses

    # ---- lookups -----------------------------------------------------------------------------

    def tagger_for(self, tags: list[Tag]) -> tuple[Tagger, str]:
        """The tagger for this tag list and where its index came from (SHIPPED, MEMORY, DISK, BUILT)."""
        fingerprint = list_fingerprint(tags)
        if fingerprint == self.base_fingerprint:
            with self._lock:
                self.stats.shipped += 1
            return self.base, SHIPPED
        found = self._from_memory(fingerprint)
        if found is not None:
            return found, MEMORY
        with self._lock:
            build_lock = self._building.setdefault(fingerprint, threading.Lock())
        with build_lock:  # one build per list; whoever waited here finds it in memory
            found = self._from_memory(fingerprint)
            if found is not None:
                return found, MEMORY
            base = self.base
            tagger, source = self._load_or_build(fingerprint, tags, base)
            if self.base is base:  # not rebased meanwhile: a tagger from the old base is not kept
                self._remember(fingerprint, tagger)
        with self._lock:
            self._building.pop(fingerprint, None)
        return tagger, source

    def _from_memory(self, fingerprint: str) -> Tagger | None:
        with self._lock:
            entry = self._entries.get(fingerprint)
            if entry is None:
                return None
            self._entries.move_to_end(fingerprint)
            self.stats.memory_hits += 1
            return entry[0]

    def _directory(self, fingerprint: str) -> Path:
        # the model is part of the name: another model's vectors never answer for this one
        model = hashlib.sha256(self.encoder.fingerprint().encode("utf-8")).hexdigest()[:8]
        return self.cache_dir / f"{fingerprint}-{model}"

    def _load_or_build(self, fingerprint: str, tags: list[Tag], base: Tagger) -> tuple[Tagger, str]:
        ordered = sorted(tags, key=lambda t: t.id)
        directory = self._directory(fingerprint)
        mapping, glosses = match_tags(base.index.tags, ordered, self.glosses)
        # the disk keeps only the list's embedded texts (the costly part); what the shipped index
        # learned is transferred on every load, so a recalibrated shipped index is never stale here
        own, source = None, BUILT
        if self.use_disk and (directory / "manifest.json").is_file():
            expected = texts_fingerprint(tag_texts(ordered, glosses))
            try:
                loaded = load_index(directory)
                if loaded.texts_fingerprint == expected:
                    own, source = replace(loaded, **gloss_evidence(ordered, glosses)), DISK
            except EmbedtagError:
                pass  # corrupt, stale or another model's: rebuilt below and written over
        if own is None:
            own = build_index(ordered, glosses, self.encoder).without_learning()
            if self.use_disk:
                # a read-only or full cache home costs the next process a rebuild, nothing more
                with contextlib.suppress(OSError):
                    own.save(directory)
        tagger = Tagger(base.index.retarget(own, mapping, self.min_shared), self.encoder)
        with self._lock:
            if source == DISK:
                self.stats.disk_hits += 1
            else:
                self.stats.builds += 1
        return tagger, source

    def _remember(self, fingerprint: str, tagger: Tagger) -> None:
        size = index_bytes(tagger.index, shared_with=self.base.index)
        evicted: list[tuple[str, Tagger]] = []
        with self._lock:
            self._entries[fingerprint] = (tagger, size)
            self._bytes += size
            while len(self._entries) > 1 and (len(self._entries) > self.max_entries or self._bytes > self.max_bytes):
                old, (old_tagger, old_size) = self._entries.popitem(last=False)
                self._bytes -= old_size
                self.stats.evictions += 1
                evicted.append((old, old_tagger))
        if self.on_evict is not None:
            for old, old_tagger in evicted:
                self.on_evict(old, old_tagger)

    def rebase(self, base: Tagger) -> None:
        """Answer from a new shipped index (POST /admin/reload): lists in memory were derived from
        the old one's ranker and examples, so they are dropped (the disk keeps only their texts)."""
        with self._lock:
            self.base = base
            self.base_fingerprint = list_fingerprint(base.index.tags)
            dropped = list(self._entries.items())
            self._entries.clear()
            self._bytes = 0
        if self.on_evict is not None:
            for fingerprint, (tagger, _size) in dropped:
                self.on_evict(fingerprint, tagger)

    def info(self) -> dict[str, int]:
        """Counters and the memory held, for /health."""
        with self._lock:
            return {**self.stats.to_json(), "entries": len(self._entries), "bytes": self._bytes}

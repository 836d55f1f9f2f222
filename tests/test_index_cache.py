"""`IndexCache`: the shipped index for the shipped list, else one index per list, built once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from embedtag.encoders import HashingEncoder
from embedtag.glosses import load_glosses
from embedtag.index_cache import BUILT, DISK, MEMORY, SHIPPED, IndexCache, list_fingerprint
from embedtag.tagger import Tagger
from embedtag.tags import Tag, parse_tags

TEN = [
    Tag(1, "kubernetes"), Tag(2, "edge-computing"), Tag(3, "iot"), Tag(4, "database"), Tag(5, "game "),
    Tag(6, "machine-learning"), Tag(7, "web-framework"), Tag(8, "security"), Tag(9, "compiler"), Tag(10, "k8s"),
]


class CountingEncoder(HashingEncoder):
    """The hashing encoder, counting encode calls and slow enough for threads to overlap."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.calls = 0
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        return super().encode(texts)


@pytest.fixture
def cache(fake_tagger: Tagger, tmp_path: Path) -> IndexCache:
    return IndexCache(fake_tagger, cache_dir=tmp_path / "indexes")


def test_shipped_list_in_any_order_uses_the_shipped_index(cache: IndexCache, fake_tagger: Tagger) -> None:
    tags = list(reversed(fake_tagger.index.tags))
    tagger, source = cache.tagger_for(tags)
    assert (tagger, source) == (fake_tagger, SHIPPED)
    assert cache.info()["shipped"] == 1 and cache.info()["builds"] == 0


def test_a_renamed_tag_is_another_list(cache: IndexCache, fake_tagger: Tagger) -> None:
    tags = [Tag(t.id, t.name.strip()) for t in fake_tagger.index.tags]  # "python " loses its space
    assert list_fingerprint(tags) != list_fingerprint(fake_tagger.index.tags)
    assert cache.tagger_for(tags)[1] == BUILT


def test_new_list_is_built_once_then_served_from_memory_and_disk(
    cache: IndexCache, fake_tagger: Tagger, tmp_path: Path
) -> None:
    first, source = cache.tagger_for(TEN)
    assert source == BUILT
    again, source = cache.tagger_for(list(reversed(TEN)))
    assert (again, source) == (first, MEMORY)
    assert [t.name for t in first.index.tags] == [t.name for t in TEN]  # spelled as the list spells them
    assert first.index.settings.ranker is None and not first.index.examples
    # a new process (a new cache) finds it on disk
    fresh = IndexCache(fake_tagger, cache_dir=tmp_path / "indexes")
    from_disk, source = fresh.tagger_for(TEN)
    assert source == DISK
    np.testing.assert_array_equal(from_disk.index.text_vectors, first.index.text_vectors)
    assert cache.info()["builds"] == 1 and cache.info()["memory_hits"] == 1 and fresh.info()["disk_hits"] == 1


def test_curated_glosses_for_known_names_generated_for_others(cache: IndexCache) -> None:
    tagger, _ = cache.tagger_for(TEN)
    texts = {(t.tag_id, t.text) for t in tagger.index.texts}
    curated = load_glosses()["k8s"].glosses
    assert all((10, g) in texts for g in curated)
    assert any(tag_id == 2 and "edge computing" in text for tag_id, text in texts)


def test_built_tagger_tags_with_the_lists_names(cache: IndexCache) -> None:
    tagger, _ = cache.tagger_for(TEN)
    result = tagger.tag("A video game engine with levels and sprites for players.", "2D game")
    assert result.tags and result.tags[0].name == "game "


def test_corrupt_disk_entry_is_rebuilt(cache: IndexCache, fake_tagger: Tagger, tmp_path: Path) -> None:
    cache.tagger_for(TEN)
    (manifest,) = (tmp_path / "indexes").glob("*/manifest.json")
    manifest.write_text("{not json", encoding="utf-8")
    fresh = IndexCache(fake_tagger, cache_dir=tmp_path / "indexes")
    assert fresh.tagger_for(TEN)[1] == BUILT
    assert IndexCache(fake_tagger, cache_dir=tmp_path / "indexes").tagger_for(TEN)[1] == DISK


def test_lru_is_bounded_by_count_and_bytes(fake_tagger: Tagger, tmp_path: Path) -> None:
    evicted: list[str] = []
    cache = IndexCache(fake_tagger, cache_dir=tmp_path, max_entries=2, use_disk=False,
                       on_evict=lambda fp, _: evicted.append(fp))
    lists = [[Tag(i, f"topic-{i}-{j}") for j in range(3)] for i in range(3)]
    lists = [[Tag(10 * i + j, t.name) for j, t in enumerate(tags)] for i, tags in enumerate(lists)]
    for tags in lists:
        cache.tagger_for(tags)
    assert cache.info()["entries"] == 2 and evicted == [list_fingerprint(lists[0])]
    assert cache.tagger_for(lists[2])[1] == MEMORY
    assert cache.tagger_for(lists[0])[1] == BUILT  # it was evicted
    small = IndexCache(fake_tagger, cache_dir=tmp_path, max_bytes=1, use_disk=False)
    for tags in lists:
        small.tagger_for(tags)
    assert small.info()["entries"] == 1 and small.info()["evictions"] == 2


def test_concurrent_requests_for_a_new_list_build_it_once(fake_tagger: Tagger, tmp_path: Path) -> None:
    encoder = CountingEncoder(delay=0.2)
    base = Tagger(fake_tagger.index, encoder)
    cache = IndexCache(base, cache_dir=tmp_path)
    barrier = threading.Barrier(8)
    got: list[tuple[Tagger, str]] = []

    def request() -> None:
        barrier.wait()
        got.append(cache.tagger_for(TEN))

    threads = [threading.Thread(target=request) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 8
    assert encoder.calls == 1  # the tag texts were embedded once
    assert sorted(source for _, source in got) == [BUILT] + [MEMORY] * 7
    assert len({id(tagger) for tagger, _ in got}) == 1
    assert cache.info()["builds"] == 1


def test_tag_list_entries_with_glosses_are_their_own_list(cache: IndexCache) -> None:
    plain = parse_tags('[{"id": 1, "name": "edge"}]')
    glossed = parse_tags('[{"id": 1, "name": "edge", "gloss": "Edge computing on devices."}]')
    assert list_fingerprint(plain) != list_fingerprint(glossed)
    tagger, _ = cache.tagger_for(glossed)
    assert any(t.text == "Edge computing on devices." for t in tagger.index.texts)


def test_a_new_list_gets_the_shipped_exemplars_of_the_tags_it_shares(fake_tagger: Tagger, tmp_path: Path) -> None:
    from dataclasses import replace

    from embedtag.transfer import transfer_exemplars

    ids = {t.key: t.id for t in fake_tagger.index.tags}
    rows = [(ids["k8s"],), (ids["database"], ids["cli"]), (ids["game"],), (ids["3d"],)]
    vectors = fake_tagger.encoder.encode(["kubernetes pods", "sql tables", "video game levels", "webgl meshes"])
    base = Tagger(replace(fake_tagger.index, exemplar_tags=rows, exemplar_vectors=vectors), fake_tagger.encoder)
    cache = IndexCache(base, cache_dir=tmp_path / "indexes")
    tagger, source = cache.tagger_for(TEN)
    assert source == BUILT
    # k8s (id 10 in TEN), database (4) and game (5, "game " trimmed) are shared; cli and 3d are not
    assert tagger.index.exemplar_tags == [(10,), (4,), (5,)]
    assert tagger.index.exemplar_vectors is not None
    assert np.allclose(tagger.index.exemplar_vectors, vectors[:3])
    assert tagger.settings.exemplar_weight > 0
    again, source = IndexCache(base, cache_dir=tmp_path / "indexes").tagger_for(TEN)
    assert source == DISK and again.index.exemplar_tags == [(10,), (4,), (5,)]
    assert transfer_exemplars(fake_tagger.index, tagger.index) is tagger.index  # no exemplars: unchanged

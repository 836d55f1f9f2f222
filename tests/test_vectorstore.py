"""The vector store: hits never re-encode, mismatches are misses, faults are survived."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedtag.encoders import HashingEncoder
from embedtag.index import TagIndex
from embedtag.tagger import Document, Tagger
from embedtag.tags import parse_tags
from embedtag.vectorstore import CachingEncoder, VectorStore, cached_tagger, text_key
from tests.conftest import FAKE_GLOSSES_JSON, FAKE_TAGS_JSON
from tests.helpers import DATABASE_README, GAME_README, K8S_README, assert_one_line_error, run, write_jsonl


class CountingEncoder(HashingEncoder):
    """HashingEncoder that records every text it is asked to encode."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return super().encode(texts)

    @property
    def encoded(self) -> int:
        return sum(len(c) for c in self.calls)


def random_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_vectors_round_trip_bit_exact(tmp_path: Path) -> None:
    vectors = random_vectors(50, 384)
    vectors[0, 0] = np.float32(1e-45)  # a subnormal survives too
    keys = [text_key(f"text {i}") for i in range(50)]
    with VectorStore(tmp_path / "v.sqlite") as store:
        store.put_many("m", "s", list(zip(keys, vectors, strict=True)))
    with VectorStore(tmp_path / "v.sqlite") as store:  # reopened: from disk
        got = store.get_many("m", "s", keys, 384)
    assert len(got) == 50
    for key, v in zip(keys, vectors, strict=True):
        assert got[key].tobytes() == v.tobytes()


def test_caching_encoder_encodes_each_text_once_and_returns_the_same_vectors(tmp_path: Path) -> None:
    inner = CountingEncoder()
    with VectorStore(tmp_path / "v.sqlite") as store:
        enc = CachingEncoder(inner, store)
        texts = ["alpha beta", "gamma", "alpha beta", "delta epsilon"]
        first = enc.encode(texts)
        assert inner.calls == [["alpha beta", "gamma", "delta epsilon"]]  # one call, duplicates once
        second = enc.encode(["delta epsilon", "new text", "gamma"])
        assert inner.calls[1:] == [["new text"]]  # only the miss
        assert np.array_equal(second[0], first[3]) and np.array_equal(second[2], first[1])
        assert np.array_equal(first, HashingEncoder().encode(texts))
        assert (enc.hits, enc.misses) == (3, 4)
        assert enc.encode([]).shape == (0, inner.dimension)


def test_a_fingerprint_or_settings_mismatch_is_a_miss(tmp_path: Path) -> None:
    with VectorStore(tmp_path / "v.sqlite") as store:
        CachingEncoder(CountingEncoder(), store).encode(["some chunk"])
        other_model = CountingEncoder(name="other-model")  # same dims, another fingerprint
        CachingEncoder(other_model, store).encode(["some chunk"])
        assert other_model.encoded == 1
        other_truncation = CountingEncoder(max_tokens=32)
        CachingEncoder(other_truncation, store).encode(["some chunk"])
        assert other_truncation.encoded == 1
        other_chunking = CountingEncoder()
        CachingEncoder(other_chunking, store, chunk_tokens=128).encode(["some chunk"])
        assert other_chunking.encoded == 1
        same = CountingEncoder()
        CachingEncoder(same, store).encode(["some chunk"])
        assert same.encoded == 0
        # a row whose blob has the wrong length is never returned
        key = text_key("odd")
        store.put_many("m", "s", [(key, np.ones(8, dtype=np.float32))])
        assert store.get_many("m", "s", [key], 16) == {}
        assert store.info().vectors == 5


def _index_with(tags_json: str, encoder: HashingEncoder) -> TagIndex:
    from embedtag.glosses import parse_glosses
    from embedtag.index import build_index

    return build_index(parse_tags(tags_json, "tags"), parse_glosses(FAKE_GLOSSES_JSON), encoder)


def test_retag_after_a_tag_list_change_encodes_no_seen_chunk(tmp_path: Path) -> None:
    docs = [
        Document("1", K8S_README, "Kubernetes operator"),
        Document("2", DATABASE_README, "SQL engine"),
        Document("3", GAME_README, ""),
    ]
    inner = CountingEncoder()
    with VectorStore(tmp_path / "v.sqlite") as store:
        first = Tagger(_index_with(FAKE_TAGS_JSON, inner), inner)
        cached = cached_tagger(first, store)
        before = [r.to_json() for r in cached.tag_many(docs)]
        encoded_first = inner.encoded
        assert encoded_first > 0
        fewer_tags = json.dumps([t for t in json.loads(FAKE_TAGS_JSON) if t["name"] != "database"])
        index = _index_with(fewer_tags, inner)  # build-index encodes tag texts, not READMEs
        inner.calls.clear()
        retag = cached_tagger(Tagger(index, inner), store)

        def no_cleaning(readme: str) -> None:
            raise AssertionError("a prepared README was cleaned again")

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("embedtag.vectorstore.readme_sections", no_cleaning)
            after = [r.to_json() for r in retag.tag_many(docs)]
    assert inner.encoded == 0  # every README chunk came from the store
    assert all("database" not in r["tags"] for r in after)
    uncached = [r.to_json() for r in Tagger(index, HashingEncoder()).tag_many(docs)]
    assert after == uncached  # same answers as encoding afresh
    assert before[0]["tags"] and before[0]["tags"] == after[0]["tags"]


def _writer(path: str, worker: int, n: int) -> None:
    enc = CachingEncoder(HashingEncoder(), VectorStore(path))
    for start in range(0, n, 25):
        # overlapping texts between the workers: both may write the same rows
        enc.encode([f"chunk {i} of the shared catalogue" for i in range(start, start + 25)])
        enc.encode([f"worker {worker} private chunk {i}" for i in range(start, start + 25)])


def test_two_processes_write_one_store_concurrently(tmp_path: Path) -> None:
    path = str(tmp_path / "v.sqlite")
    VectorStore(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 200)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    with VectorStore(path) as store:
        assert store.info().vectors == 200 + 2 * 200
        texts = [f"chunk {i} of the shared catalogue" for i in range(200)] + [
            f"worker 1 private chunk {i}" for i in range(200)
        ]
        check = CountingEncoder()
        got = CachingEncoder(check, store).encode(texts)
    assert check.encoded == 0
    assert np.array_equal(got, HashingEncoder().encode(texts))


def test_a_corrupt_store_is_moved_aside_and_rebuilt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "v.sqlite"
    with VectorStore(path) as store:
        CachingEncoder(HashingEncoder(), store).encode([f"text {i}" for i in range(300)])
        store.prune(10**9)  # checkpoints the WAL into the main file
    data = bytearray(path.read_bytes())
    data[4096:8192] = b"\xde\xad" * 2048  # a damaged page
    path.write_bytes(bytes(data))
    with VectorStore(path) as store:
        assert store.info().vectors == 0
        enc = CachingEncoder(CountingEncoder(), store)
        enc.encode(["text 1"])
        assert enc.misses == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "damaged" in err[0] and "moved to" in err[0]
    assert list(tmp_path.glob("v.sqlite.corrupt-*"))
    # not a database at all
    path.unlink()
    path.write_bytes(b"this is not sqlite" * 100)
    with VectorStore(path) as store:
        assert store.info().vectors == 0
    assert "damaged" in capsys.readouterr().err


def test_damage_found_while_reading_a_large_store_is_rebuilt_and_never_a_wrong_vector(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import embedtag.vectorstore as vs

    path = tmp_path / "v.sqlite"
    texts = [f"text number {i}" for i in range(3000)]
    with VectorStore(path) as store:
        CachingEncoder(HashingEncoder(), store).encode(texts)
        store.prune(10**9)  # checkpoint into the main file
        # one vector's bytes flipped inside a valid page: the checksum turns it into a miss
        key = text_key(texts[7])
        store._conn.execute("UPDATE vectors SET vector = ? WHERE key = ?", (b"\x00" * 256, key))
        assert store.get_many(*store_namespace(store), [key], 64) == {}
    monkeypatch.setattr(vs, "QUICK_CHECK_MAX_BYTES", 0)  # as for a store too big to check on open
    data = bytearray(path.read_bytes())
    middle = len(data) // 2 // 4096 * 4096
    data[middle : middle + 8192] = b"\xde\xad" * 4096
    path.write_bytes(bytes(data))
    with VectorStore(path) as store:
        enc = CachingEncoder(CountingEncoder(), store)
        got = enc.encode(texts)
        assert np.array_equal(got, HashingEncoder().encode(texts))  # correct vectors whatever happened
        assert enc.encode(texts[:5]) is not None and store.info().vectors > 0
    assert "damaged" in capsys.readouterr().err


def _filled_store(path: Path, n: int = 3000) -> list[str]:
    """A store of `n` hashing vectors, all in the main file (no WAL); returns their texts."""
    texts = [f"text number {i}" for i in range(n)]
    with VectorStore(path) as store:
        CachingEncoder(HashingEncoder(), store).encode(texts)
        store.prune(10**9)  # checkpoints the WAL into the main file
    return texts


def _damage_middle_page(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2 // 8192 * 8192
    data[middle : middle + 8192] = b"\xde\xad" * 4096
    path.write_bytes(bytes(data))


def _last_check_days_ago(path: Path, days: float) -> None:
    import sqlite3
    import time

    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('checked', ?)", (repr(time.time() - days * 86_400),))


def _statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL statement the store's connections run from now on."""
    import sqlite3

    seen: list[str] = []
    connect = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)
        conn.set_trace_callback(seen.append)
        return conn

    monkeypatch.setattr("embedtag.vectorstore.sqlite3.connect", traced)
    return seen


def test_quick_check_runs_on_open_once_a_day_not_on_every_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "v.sqlite"
    statements = _statements(monkeypatch)
    _filled_store(path)
    assert statements.count("PRAGMA quick_check") == 1  # the new file, checked once
    statements.clear()
    for _ in range(3):  # a cold `tag` after another: no scan of the whole file
        VectorStore(path).close()
    assert "PRAGMA quick_check" not in statements
    _last_check_days_ago(path, 1.5)
    VectorStore(path).close()
    VectorStore(path).close()
    assert statements.count("PRAGMA quick_check") == 1  # due again once, then recorded
    _last_check_days_ago(path, -1)  # a check "tomorrow": the clock went back; check now
    VectorStore(path).close()
    assert statements.count("PRAGMA quick_check") == 2


def test_damage_is_found_on_open_when_the_check_is_due(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "v.sqlite"
    texts = _filled_store(path)
    _last_check_days_ago(path, 2)
    _damage_middle_page(path)  # a page the open itself does not read
    with VectorStore(path) as store:
        assert len(list(tmp_path.glob("v.sqlite.corrupt-*"))) == 1  # on open, before any read
        assert store.info().vectors == 0
        enc = CachingEncoder(CountingEncoder(), store)
        assert np.array_equal(enc.encode(texts[:10]), HashingEncoder().encode(texts[:10]))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "damaged" in err[0] and "moved to" in err[0]


def test_damage_between_checks_is_found_when_read_or_pruned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "v.sqlite"
    texts = _filled_store(path)
    _damage_middle_page(path)
    with VectorStore(path) as store:  # checked today: the open does not scan, and does not see it
        assert capsys.readouterr().err == ""
        assert store.prune(0) == 0  # VACUUM reads every page: moved aside, rebuilt empty
        assert store.info().vectors == 0
        enc = CachingEncoder(CountingEncoder(), store)
        assert np.array_equal(enc.encode(texts[:10]), HashingEncoder().encode(texts[:10]))
        assert store.info().vectors == 10
    assert "damaged" in capsys.readouterr().err
    assert len(list(tmp_path.glob("v.sqlite.corrupt-*"))) == 1


def test_a_damaged_prepared_readme_is_prepared_again(
    fake_index: TagIndex, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = [Document("1", K8S_README, "Kubernetes operator"), Document("2", DATABASE_README, "")]
    expected = [r.to_json() for r in Tagger(fake_index, HashingEncoder()).tag_many(docs)]
    with VectorStore(tmp_path / "v.sqlite") as store:
        tagger = cached_tagger(Tagger(fake_index, HashingEncoder()), store)
        assert [r.to_json() for r in tagger.tag_many(docs)] == expected
        rows = store._conn.execute("SELECT key, data FROM documents").fetchall()
        assert len(rows) == 2
        for key, data in rows:  # a flipped byte inside each compressed row
            damaged = bytearray(data)
            damaged[len(damaged) // 2] ^= 0xFF
            store._conn.execute("UPDATE documents SET data = ? WHERE key = ?", (bytes(damaged), key))
        assert [r.to_json() for r in tagger.tag_many(docs)] == expected
        assert sorted(store._conn.execute("SELECT data FROM documents").fetchall()) == sorted(
            (data,) for _, data in rows)  # prepared again and rewritten
        assert not store.failed
    assert capsys.readouterr().err == ""


def store_namespace(store: VectorStore) -> tuple[str, str]:
    model, settings, _ = store.info().namespaces[0]
    return model, settings


def test_a_store_of_another_format_version_is_replaced_quietly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "v.sqlite"
    with VectorStore(path) as store:
        CachingEncoder(HashingEncoder(), store).encode(["old text"])
        store._conn.execute("UPDATE meta SET value = '1' WHERE name = 'schema'")
    with VectorStore(path) as store:
        assert store.info().vectors == 0
    assert capsys.readouterr().err == "" and not list(tmp_path.glob("*.corrupt-*"))


def test_a_store_failing_mid_run_degrades_to_encoding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = VectorStore(tmp_path / "v.sqlite")
    enc = CachingEncoder(CountingEncoder(), store)
    enc.encode(["a b"])
    store._conn.close()  # the file handle goes away under it
    got = enc.encode(["a b", "c d"])
    assert np.array_equal(got, HashingEncoder().encode(["a b", "c d"]))
    assert capsys.readouterr().err.count("warning:") == 1


def test_prune_drops_least_recently_used_first(tmp_path: Path) -> None:
    with VectorStore(tmp_path / "v.sqlite") as store:
        vectors = random_vectors(2000, 384)
        old = [text_key(f"old {i}") for i in range(1000)]
        new = [text_key(f"new {i}") for i in range(1000)]
        store.put_many("m", "s", list(zip(old, vectors[:1000], strict=True)))
        store._conn.execute("UPDATE vectors SET used = used - 86400")
        store.put_many("m", "s", list(zip(new, vectors[1000:], strict=True)))
        full = store.size_bytes()
        dropped = store.prune(full // 2)
        assert 0 < dropped <= 1200
        assert store.size_bytes() <= full // 2
        assert len(store.get_many("m", "s", new, 384)) == 1000  # the recent half is kept
        assert len(store.get_many("m", "s", old, 384)) == 1000 - dropped
        assert store.prune(full) == 0


def test_cli_cache_options_and_commands(fake_index_dir: Path, tmp_path: Path) -> None:
    items = write_jsonl(tmp_path / "in.jsonl", [
        {"id": "1", "readme": K8S_README}, {"id": "2", "readme": DATABASE_README}, "not json",
    ])
    cache = tmp_path / "c.sqlite"
    out1, out2, out3 = (tmp_path / f"out{i}.jsonl" for i in range(3))
    r1 = run("batch", items, "-o", out1, "--index", fake_index_dir, "--model", "hashing", "--cache", cache)
    assert r1.exit_code == 1, r1.output  # the broken line
    assert cache.exists()
    r2 = run("batch", items, "-o", out2, "--index", fake_index_dir, "--model", "hashing", "--cache", cache)
    assert out1.read_text() == out2.read_text()
    assert r2.stderr.strip() == "embedtag batch: 3 records tagged; 1 failed"
    rows = run("cache", "info", "--cache", cache).output
    cache.unlink()
    run("batch", items, "-o", out3, "--index", fake_index_dir, "--model", "hashing", "--no-cache")
    assert out3.read_text() == out1.read_text() and not cache.exists()
    run("batch", items, "-o", out3, "--index", fake_index_dir, "--model", "hashing", "--cache", cache)
    def count(info: str) -> str:
        return next(line for line in info.splitlines() if line.startswith("vectors"))

    assert count(run("cache", "info", "--cache", cache).output) == count(rows)
    (tmp_path / "afile").write_text("x")
    unusable = tmp_path / "afile" / "v.sqlite"
    bad = run("batch", items, "--index", fake_index_dir, "--model", "hashing", "--cache", unusable)
    assert_one_line_error(bad, 1, "vector store", "--no-cache")
    info = run("cache", "info", "--cache", cache)
    assert info.exit_code == 0 and "vectors" in info.output and "hashing" in info.output
    pruned = run("cache", "prune", "--cache", cache, "--max-mb", "0")
    assert pruned.exit_code == 0, pruned.output
    assert "vectors     0" in run("cache", "info", "--cache", cache).output
    tagged = run("tag", "-", "--index", fake_index_dir, "--model", "hashing", "--cache", cache, input=K8S_README)
    assert json.loads(tagged.stdout)["tags"][0] == "k8s"
    assert "vectors     0" not in run("cache", "info", "--cache", cache).output
    missing = run("cache", "info", "--cache", tmp_path / "nope.sqlite")
    assert missing.exit_code == 1 and "no vector store" in missing.stderr


def test_cached_tagger_shares_what_the_tagger_derived_from_its_index(
    fake_index: TagIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = [Document("1", K8S_README, "Kubernetes operator"), Document("2", GAME_README, "")]
    tagger = Tagger(fake_index, HashingEncoder())
    expected = [r.to_json(explain=True) for r in tagger.tag_many(docs)]

    def no_init(*args: object) -> None:
        raise AssertionError("Tagger.__init__ ran again: a cold `tag` derives the index's tables twice")

    monkeypatch.setattr(Tagger, "__init__", no_init)
    with VectorStore(tmp_path / "v.sqlite") as store:
        cached = cached_tagger(tagger, store)
        assert cached.index is tagger.index and cached._example_label_matrix is tagger._example_label_matrix
        assert isinstance(cached.encoder, CachingEncoder) and tagger.encoder is cached.encoder.inner
        assert [r.to_json(explain=True) for r in cached.tag_many(docs)] == expected
        assert [r.to_json(explain=True) for r in cached.tag_many(docs)] == expected  # from the store
    assert not isinstance(tagger.encoder, CachingEncoder)  # the tagger itself is left as it was

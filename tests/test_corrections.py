"""Corrections: validation, a store that loses no concurrent write, learn and calibrate --from-store."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import threading
from pathlib import Path

import pytest

from embedtag.corrections import CorrectionError, CorrectionStore, parse_correction
from embedtag.index import load_index
from embedtag.tagger import Document, Tagger
from embedtag.tags import Tag
from tests.helpers import DATABASE_README, GAME_README, K8S_README, assert_one_line_error, run, write_jsonl


def test_valid_correction_is_normalised(fake_tags: list[Tag]) -> None:
    c = parse_correction({"id": 7, "core": ["k8s", "Database", 16, "k8s"], "also": ["k8s", "cli"],
                          "readme": "x"}, fake_tags)
    assert c.id == "7" and c.core == ("k8s", "database", "game") and c.also == ("cli",)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"core": ["k8s"], "readme": "x"}, "needs an 'id'"),
        ({"id": "1", "readme": "x"}, "needs 'core'"),
        ({"id": "1", "core": ["kubernetes"], "readme": "x"}, "'kubernetes' in 'core' is not a tag"),
        ({"id": "1", "core": ["databse"], "readme": "x"}, "did you mean database?"),
        ({"id": "1", "core": ["k8s", "cli", "game", "3d"], "readme": "x"}, "at most 3"),
        ({"id": "1", "core": "k8s", "readme": "x"}, "must be a list"),
        ({"id": "1", "core": ["k8s"]}, "no 'description' or 'readme'"),
        ({"id": "1", "core": ["k8s"], "readme": 5}, "'readme' must be a string"),
        (["k8s"], "must be a JSON object"),
    ],
)
def test_bad_corrections_are_refused_clearly(fake_tags: list[Tag], data: object, fragment: str) -> None:
    with pytest.raises(CorrectionError) as info:
        parse_correction(data, fake_tags)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_reference_to_a_known_record(fake_tags: list[Tag]) -> None:
    known = {"p1": Document("p1", "a README", "desc")}
    c = parse_correction({"id": "p1", "tags": ["cli"]}, fake_tags, lookup=known.get)
    assert (c.readme, c.description, c.core) == ("a README", "desc", ("cli",))


def test_latest_correction_wins(tmp_path: Path) -> None:
    store = CorrectionStore(tmp_path / "s.sqlite3")
    store.add([parse_correction({"id": "a", "core": ["cli"], "readme": "r"}, [Tag(1, "cli"), Tag(2, "game")])])
    store.add([parse_correction({"id": "a", "core": ["game"], "readme": "r2"}, [Tag(1, "cli"), Tag(2, "game")])])
    (latest,) = store.latest()
    assert latest.core == ("game",) and latest.readme == "r2" and store.count() == 2


def _write_many(path: str, worker: int, n: int) -> None:
    store = CorrectionStore(path)
    tags = [Tag(1, "cli"), Tag(2, "game")]
    for i in range(n):
        store.add([parse_correction({"id": f"w{worker}-{i}", "core": ["cli"], "readme": f"r {i}"}, tags)])


def test_no_lost_writes_under_concurrency(tmp_path: Path) -> None:
    path = str(tmp_path / "store.sqlite3")
    CorrectionStore(path)
    threads = [threading.Thread(target=_write_many, args=(path, w, 20)) for w in range(6)]
    processes = [multiprocessing.get_context("spawn").Process(target=_write_many, args=(path, 100 + w, 20))
                 for w in range(3)]
    for p in processes:
        p.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in processes:
        p.join(120)
        assert p.exitcode == 0
    store = CorrectionStore(path)
    assert store.count() == 9 * 20
    assert len({c.id for c in store.latest()}) == 9 * 20


def _copy_index(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_learn_stores_good_lines_and_reports_bad_ones(fake_index_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "kube.md").write_text(K8S_README, encoding="utf-8")
    corrections = write_jsonl(tmp_path / "c.jsonl", [
        {"id": "k", "core": ["k8s"], "readme_path": "kube.md"},
        {"id": "bad", "core": ["nope"], "readme": "x"},
        "{broken",
        {"id": "d", "core": ["database"], "description": "An SQL database"},
    ])
    store = tmp_path / "store.sqlite3"
    result = run("learn", corrections, "--index", fake_index_dir, "--store", store)
    assert result.exit_code == 1, result.output
    assert "line 2" in result.stderr and "line 3" in result.stderr and "2 refused" in result.stderr
    stored = {c.id: c for c in CorrectionStore(store).latest()}
    assert set(stored) == {"k", "d"} and "Kubernetes operator" in stored["k"].readme


def test_calibrate_from_an_empty_store_is_one_line(fake_index_dir: Path, tmp_path: Path) -> None:
    index = _copy_index(fake_index_dir, tmp_path / "index")
    result = run("calibrate", "--from-store", "--index", index, "--model", "hashing", "--store", tmp_path / "s.db")
    assert_one_line_error(result, 1, "store is empty")
    assert_one_line_error(run("calibrate", "--index", index, "--model", "hashing"), 2, "--from-store")


def test_one_correction_changes_that_project_only(fake_index_dir: Path, fake_encoder: object, tmp_path: Path) -> None:
    index = _copy_index(fake_index_dir, tmp_path / "index")
    store = tmp_path / "store.sqlite3"
    before = Tagger(load_index(index), fake_encoder)  # type: ignore[arg-type]
    assert [t.key for t in before.tag(DATABASE_README).tags] == ["database"]
    others = {r: [t.key for t in before.tag(r).tags] for r in (K8S_README, GAME_README)}
    write_jsonl(tmp_path / "c.jsonl", [{"id": "tabula", "core": ["cli", "python"], "readme": DATABASE_README}])
    assert run("learn", tmp_path / "c.jsonl", "--index", index, "--store", store).exit_code == 0
    result = run("calibrate", "--from-store", "--index", index, "--model", "hashing", "--store", store)
    assert result.exit_code == 0, result.output
    after = Tagger(load_index(index), fake_encoder)  # type: ignore[arg-type]
    assert [t.key for t in after.tag(DATABASE_README, id="tabula").tags] == ["cli", "python"]
    manifest = json.loads((index / "manifest.json").read_text())
    assert manifest["examples"] == [{"id": "tabula", "core": [14, 15], "also": [], "chunks": 1, "corrected": True}]
    # a different text is scored as before: one correction on a zero-shot index does not vote on it
    assert [t.key for t in after.tag(DATABASE_README + "\nWith indexes and joins.").tags] == ["database"]
    for readme, tags in others.items():
        assert [t.key for t in after.tag(readme).tags] == tags


def test_corrections_keep_the_other_examples_chunk_vectors(fake_index_dir: Path, fake_encoder: object) -> None:
    """`calibrate --from-store` on an index with examples: the corrected project's example is
    replaced, the others keep their document and chunk vectors, row for row."""
    import numpy as np

    from embedtag.build import with_examples
    from embedtag.corrections import keep_old_examples
    from embedtag.records import LabelledRecord

    base = Tagger(load_index(fake_index_dir), fake_encoder)  # type: ignore[arg-type]
    gold = [
        LabelledRecord(Document("k", K8S_README), ("k8s",)),
        LabelledRecord(Document("d", DATABASE_README), ("database",)),
        LabelledRecord(Document("g", GAME_README), ("game",)),
    ]
    old = with_examples(base.index, base, gold)
    fixed = LabelledRecord(Document("d", "A tiny tool.\n\nIt does one thing."), ("cli",))
    merged = keep_old_examples(with_examples(base.index, base, [fixed]), old, {"d"})
    assert [e.id for e in merged.examples] == ["k", "g", "d"]
    assert merged.example_chunk_vectors is not None and old.example_chunk_vectors is not None
    assert len(merged.example_chunk_vectors) == sum(e.chunks for e in merged.examples)
    counts = [e.chunks for e in old.examples]
    k_rows = old.example_chunk_vectors[: counts[0]]
    g_rows = old.example_chunk_vectors[counts[0] + counts[1] :]
    np.testing.assert_array_equal(merged.example_chunk_vectors[: counts[0] + counts[2]], np.vstack([k_rows, g_rows]))
    owners = merged.example_chunk_owners()
    assert owners.tolist() == [0] * counts[0] + [1] * counts[2] + [2] * merged.examples[2].chunks

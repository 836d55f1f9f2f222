"""Exemplars: reading the file, their votes, and an index that keeps vectors and tag ids only."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from embedtag.build import with_exemplars
from embedtag.cli import cli
from embedtag.encoders import HashingEncoder
from embedtag.errors import IndexError_, InputError
from embedtag.exemplars import Exemplar, exemplar_votes, read_exemplars
from embedtag.index import EXEMPLAR_VECTORS, MANIFEST, TagIndex, load_index
from embedtag.tagger import Document, Tagger

EXEMPLARS = [
    {"text": "Kubernetes operator that reconciles pods on clusters", "tags": ["k8s"]},
    {"text": "Helm charts to deploy containers on Kubernetes clusters", "tags": ["K8S ", "cli"]},
    {"text": "A SQL database engine with tables and queries", "tags": ["database"]},
    {"text": "Postgres migrations and indexes for your database", "tags": ["database", "not-a-tag"]},
    {"text": "A roguelike video game with levels", "tags": ["game"]},
    {"text": "Only tags the list does not have", "tags": ["nope"]},
]
KEYS = {"k8s", "database", "machine-learning", "cli", "python", "game", "3d"}


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_reading_matches_names_drops_unknown_tags_and_skips_lines_left_without_one(tmp_path: Path) -> None:
    found = read_exemplars(write_jsonl(tmp_path / "ex.jsonl", EXEMPLARS), KEYS)
    assert [e.tags for e in found.exemplars] == [("k8s",), ("k8s", "cli"), ("database",), ("database",), ("game",)]
    assert found.skipped_no_known_tag == 1
    assert found.unknown_tags == {"not-a-tag": 1, "nope": 1}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"ex.jsonl:2 is not valid JSON"),
        ('["a list"]', r"ex.jsonl:2 must be a JSON object"),
        ('{"tags": ["k8s"]}', r"ex.jsonl:2 has no 'text'"),
        ('{"text": "  ", "tags": ["k8s"]}', r"ex.jsonl:2 has no 'text'"),
        ('{"text": "x y", "tags": "k8s"}', r"ex.jsonl:2: 'tags' must be a list"),
    ],
)
def test_a_malformed_line_is_named_with_its_number(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "ex.jsonl"
    path.write_text(json.dumps(EXEMPLARS[0]) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=message):
        read_exemplars(path, KEYS)


def test_missing_or_useless_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_exemplars(tmp_path / "nope.jsonl", KEYS)
    with pytest.raises(InputError, match="no exemplar with a tag from the tag list"):
        read_exemplars(write_jsonl(tmp_path / "ex.jsonl", [EXEMPLARS[-1]]), KEYS)


def test_votes_come_from_the_nearest_exemplars_and_are_scaled_per_readme() -> None:
    exemplar_vectors = np.eye(4, dtype=np.float32)
    labels = [(0,), (1, 2), (2,), (3,)]
    doc = np.array([[0.9, 0.3, 0.0, 0.0]], dtype=np.float32)
    votes = exemplar_votes(doc, exemplar_vectors, labels, n_tags=4, k=2)
    assert votes[0].tolist() == pytest.approx([1.0, 0.3**2 / 0.9**2, 0.3**2 / 0.9**2, 0.0])
    assert exemplar_votes(np.zeros((1, 4), np.float32), exemplar_vectors, labels, 4).tolist() == [[0, 0, 0, 0]]
    assert exemplar_votes(doc, exemplar_vectors[:0], [], 4).shape == (1, 4)


def exemplar_index(fake_index: TagIndex, fake_encoder: HashingEncoder, tmp_path: Path) -> TagIndex:
    found = read_exemplars(write_jsonl(tmp_path / "ex.jsonl", EXEMPLARS), KEYS)
    return with_exemplars(fake_index, fake_encoder, found.exemplars, "ex.jsonl")


def test_an_index_keeps_exemplar_vectors_and_tag_ids_but_not_their_text(
    fake_index: TagIndex, fake_encoder: HashingEncoder, tmp_path: Path
) -> None:
    built = exemplar_index(fake_index, fake_encoder, tmp_path)
    out = built.save(tmp_path / "index")
    manifest = (out / MANIFEST).read_text(encoding="utf-8")
    assert all(e["text"] not in manifest for e in EXEMPLARS)
    loaded = load_index(out)
    assert loaded.exemplar_tags == [(11,), (11, 14), (12,), (12,), (16,)]
    assert loaded.exemplar_vectors is not None
    assert np.abs(loaded.exemplar_vectors - built.exemplar_vectors).max() < 1e-3  # stored as float16
    assert loaded.settings.exemplar_weight > 0  # no ranker yet: the vote is added to the score


def test_the_tagger_uses_the_exemplars_vote(
    fake_index: TagIndex, fake_encoder: HashingEncoder, tmp_path: Path
) -> None:
    tagger = Tagger(load_index(exemplar_index(fake_index, fake_encoder, tmp_path).save(tmp_path / "i")), fake_encoder)
    readme = "A roguelike video game with levels.\n\nMore levels every week."
    doc = Document("x", readme)
    chunks = tagger.chunks(doc)
    evidence = tagger.score(doc, chunks, fake_encoder.encode([c.text for c in chunks]))
    assert evidence.exemplars is not None
    assert tagger.index.tags[int(np.argmax(evidence.exemplars))].key == "game"
    plain = Tagger(fake_index, fake_encoder).score(doc, chunks, fake_encoder.encode([c.text for c in chunks]))
    assert plain.exemplars is None


def test_an_index_whose_exemplars_do_not_fit_is_refused(
    fake_index: TagIndex, fake_encoder: HashingEncoder, tmp_path: Path
) -> None:
    out = exemplar_index(fake_index, fake_encoder, tmp_path).save(tmp_path / "index")
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    manifest["exemplars"]["tags"][0] = "999"
    (out / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexError_, match="exemplar tags that are not in its tag list"):
        load_index(out)
    manifest["exemplars"]["tags"] = manifest["exemplars"]["tags"][1:]
    manifest["exemplars"]["tags"][0] = "11"
    (out / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexError_, match="does not match the manifest"):
        load_index(out)
    (out / EXEMPLAR_VECTORS).write_bytes(b"garbage")
    with pytest.raises(IndexError_, match="corrupt"):
        load_index(out)


def test_build_index_cli_with_exemplars(tmp_path: Path) -> None:
    tags = tmp_path / "tags.json"
    tags.write_text(json.dumps([{"id": 1, "name": "k8s"}, {"id": 2, "name": "game"}]), encoding="utf-8")
    ex = write_jsonl(tmp_path / "ex.jsonl", EXEMPLARS)
    runner = CliRunner()
    result = runner.invoke(
        cli, ["build-index", "--tags", str(tags), "--model", "hashing", "--exemplars", str(ex), "--out",
              str(tmp_path / "idx")]
    )
    assert result.exit_code == 0, result.output
    assert "3 exemplars" in result.output
    assert load_index(tmp_path / "idx").exemplar_tags == [(1,), (1,), (2,)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n", encoding="utf-8")
    result = runner.invoke(
        cli, ["build-index", "--tags", str(tags), "--model", "hashing", "--exemplars", str(bad), "--out",
              str(tmp_path / "idx2")]
    )
    assert result.exit_code != 0
    assert "bad.jsonl:1 is not valid JSON" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "idx2").exists()


def test_a_shipped_name_in_the_file_counts_for_the_lists_spelling_of_it(tmp_path: Path) -> None:
    """The shared exemplar file says `k8s`; a list calling it `Kubernetes` keeps those exemplars."""
    ex = write_jsonl(tmp_path / "ex.jsonl", EXEMPLARS)
    found = read_exemplars(ex, {"Kubernetes"}, {"k8s": "Kubernetes"})
    assert [e.tags for e in found.exemplars] == [("Kubernetes",), ("Kubernetes",)]
    assert [e.tags for e in read_exemplars(ex, {"Kubernetes", "game"}).exemplars] == [("game",)]  # no mapping
    tags = tmp_path / "tags.json"
    tags.write_text(json.dumps([{"id": 1, "name": "Kubernetes"}, {"id": 2, "name": "game"}]), encoding="utf-8")
    args = ["build-index", "--tags", str(tags), "--model", "hashing", "--exemplars", str(ex),
            "--out", str(tmp_path / "ix")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert load_index(tmp_path / "ix").exemplar_tags == [(1,), (1,), (2,)]


def test_exemplar_dataclass_is_plain() -> None:
    assert replace(Exemplar("a b", ("k8s",)), tags=()).tags == ()


ANNOTATED = [
    # an annotator's labels: `core` wins over the section's `tags`; `also` counts apart
    {"text": "kubectl plugin for pods", "tags": ["game"], "core": ["k8s", "cli"], "also": ["python", "nope"]},
    {"text": "Database of games", "core": ["database"], "also": ["game", "database"]},
    {"text": "Only secondary tags known", "core": ["nope"], "also": ["game"]},
    {"text": "Section labels still work", "tags": ["3d"]},
]


def test_core_and_also_labels_are_read_and_section_tags_still_work(tmp_path: Path) -> None:
    found = read_exemplars(write_jsonl(tmp_path / "ex.jsonl", ANNOTATED), KEYS)
    assert [(e.tags, e.also) for e in found.exemplars] == [
        (("k8s", "cli"), ("python",)),
        (("database",), ("game",)),  # a tag in both lists counts once, as core
        (("3d",), ()),
    ]
    assert found.skipped_no_known_tag == 1  # no known core tag: an also tag alone does not make an exemplar
    assert found.unknown_tags == {"nope": 2}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"text": "x y", "core": "k8s"}', r"ex.jsonl:2: 'core' must be a list"),
        ('{"text": "x y", "core": ["k8s"], "also": "cli"}', r"ex.jsonl:2: 'also' must be a list"),
    ],
)
def test_malformed_core_or_also_is_named_with_its_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "ex.jsonl"
    path.write_text(json.dumps(ANNOTATED[0]) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=message):
        read_exemplars(path, KEYS)


def test_also_tags_vote_with_their_weight() -> None:
    vectors = np.eye(2, dtype=np.float32)
    doc = np.array([[1.0, 0.0]], dtype=np.float32)
    core, also = [(0,), (1,)], [(2,), ()]
    half = exemplar_votes(doc, vectors, core, 3, k=1, exemplar_also=also, also_weight=0.5)
    assert half[0].tolist() == pytest.approx([1.0, 0.0, 0.5])
    none = exemplar_votes(doc, vectors, core, 3, k=1, exemplar_also=also, also_weight=0.0)
    assert none[0].tolist() == pytest.approx([1.0, 0.0, 0.0])
    assert exemplar_votes(doc, vectors, core, 3, k=1)[0].tolist() == pytest.approx([1.0, 0.0, 0.0])


def test_an_index_keeps_exemplars_also_tags_and_the_tagger_weighs_them(
    fake_index: TagIndex, fake_encoder: HashingEncoder, tmp_path: Path
) -> None:
    found = read_exemplars(write_jsonl(tmp_path / "ex.jsonl", ANNOTATED), KEYS)
    built = with_exemplars(fake_index, fake_encoder, found.exemplars, "ex.jsonl")
    loaded = load_index(built.save(tmp_path / "index"))
    ids = {t.key: t.id for t in loaded.tags}
    assert loaded.exemplar_tags == [(ids["k8s"], ids["cli"]), (ids["database"],), (ids["3d"],)]
    assert loaded.exemplar_also == [(ids["python"],), (ids["game"],), ()]
    tagger = Tagger(loaded, fake_encoder)
    vector = fake_encoder.encode(["kubectl plugin for pods"])
    votes = tagger.exemplar_votes_for(vector)
    assert votes is not None
    position = {t.key: i for i, t in enumerate(loaded.tags)}
    assert votes[0, position["k8s"]] == pytest.approx(1.0)
    assert votes[0, position["python"]] == pytest.approx(loaded.settings.exemplar_also_weight)
    # an index written before `also` existed loads with none
    manifest = json.loads((tmp_path / "index" / MANIFEST).read_text(encoding="utf-8"))
    del manifest["exemplars"]["also"]
    (tmp_path / "index" / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    assert load_index(tmp_path / "index").exemplar_also == []

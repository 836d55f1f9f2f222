"""The tagger pipeline on the tiny hashing index: wiring, result shape, settings, examples."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from helpers import DATABASE_README, GAME_README, K8S_README

from embedtag.build import with_examples
from embedtag.encoders import HashingEncoder
from embedtag.index import TagIndex
from embedtag.records import LabelledRecord
from embedtag.scoring import ScoringSettings
from embedtag.tagger import Document, Tagger, TagResult
from embedtag.tags import Tag


def names(result: TagResult) -> list[str]:
    return [t.name for t in result.tags]


def test_obvious_documents_get_their_tag_first(fake_tagger: Tagger) -> None:
    assert names(fake_tagger.tag(K8S_README))[0] == "k8s"
    assert names(fake_tagger.tag(DATABASE_README))[0] == "database"
    assert names(fake_tagger.tag(GAME_README))[0] == "game"
    assert names(fake_tagger.tag("", description="A Python library installable with pip")) == ["python "]


def test_result_shape(fake_tagger: Tagger, fake_tags: list[Tag]) -> None:
    result = fake_tagger.tag(K8S_README, description="Kubernetes operator", id="42")
    assert result.to_json() == {"id": "42", "tags": ["k8s"]}
    assert result.to_json("ids") == {"id": "42", "tags": [11]}
    assert result.to_json("objects") == {"id": "42", "tags": [{"id": 11, "name": "k8s"}]}
    assert all(t in fake_tags for t in result.tags)


def test_name_with_trailing_space_is_repeated_verbatim(fake_tagger: Tagger) -> None:
    result = fake_tagger.tag("", description="A Python library installable with pip for python scripts")
    assert result.to_json() == {"id": "", "tags": ["python "]}
    assert result.to_json("objects")["tags"] == [{"id": 15, "name": "python "}]


def test_explain(fake_tagger: Tagger) -> None:
    data = fake_tagger.tag(K8S_README, explain=True).to_json(explain=True)
    assert list(data["explain"]) == data["tags"]
    k8s = data["explain"]["k8s"]
    assert k8s["score"] == max(data["top_scores"].values())
    assert any("Kubernetes operator" in snippet for snippet in k8s["evidence"])
    assert all(len(s) <= 200 for s in k8s["evidence"])
    assert len(data["top_scores"]) <= 8
    assert list(data["top_scores"].values()) == sorted(data["top_scores"].values(), reverse=True)
    assert "explain" not in fake_tagger.tag(K8S_README).to_json()


def test_nothing_to_tag(fake_tagger: Tagger) -> None:
    result = fake_tagger.tag("", description="", id="e")
    assert result.to_json() == {
        "id": "e",
        "tags": [],
        "reason": "no text to tag: the README and description are empty",
    }
    badges_only = "[![ci](https://ci.example/badge.svg)](https://ci.example)\n"
    assert fake_tagger.tag(badges_only).tags == []


def test_threshold_from_the_index_settings(fake_index: TagIndex, fake_encoder: HashingEncoder) -> None:
    strict = Tagger(replace(fake_index, settings=ScoringSettings(threshold=0.99, min_tags=0)), fake_encoder)
    result = strict.tag(K8S_README, id="x")
    assert result.to_json() == {"id": "x", "tags": [], "reason": "no tag scored above the threshold"}
    at_least_one = Tagger(replace(fake_index, settings=ScoringSettings(threshold=0.99)), fake_encoder)
    assert at_least_one.tag(K8S_README, id="x").to_json() == {"id": "x", "tags": ["k8s"]}


def test_wide_margin_gives_at_most_three(fake_index: TagIndex, fake_encoder: HashingEncoder) -> None:
    wide = Tagger(replace(fake_index, settings=ScoringSettings(threshold=-1.0, margin=5.0)), fake_encoder)
    result = wide.tag(K8S_README)
    assert len(result.tags) == 3
    assert names(result)[0] == "k8s"


def test_tag_bias_from_the_index_settings(fake_index: TagIndex, fake_encoder: HashingEncoder) -> None:
    biased = Tagger(
        replace(fake_index, settings=ScoringSettings(margin=0.07, tag_bias={11: 1.0})), fake_encoder
    )
    assert "k8s" not in names(biased.tag(K8S_README))


def test_keyword_in_the_opening_adds_its_weight(fake_index: TagIndex, fake_encoder: HashingEncoder) -> None:
    with_keywords = Tagger(fake_index, fake_encoder)
    without = Tagger(
        replace(fake_index, settings=replace(fake_index.settings, keyword_weight=0.0)), fake_encoder
    )
    doc = Document("d", "A tool that runs on k8s for cluster work and more.")
    chunks = with_keywords.chunks(doc)
    vectors = fake_encoder.encode([c.text for c in chunks])
    scores_kw = with_keywords.score(doc, chunks, vectors).scores
    scores_plain = without.score(doc, chunks, vectors).scores
    diff = scores_kw - scores_plain
    k8s = [t.id for t in fake_index.tags].index(11)
    assert diff[k8s] == pytest.approx(fake_index.settings.keyword_weight)
    assert np.count_nonzero(np.delete(diff, k8s)) == 0


def test_tag_many_keeps_order_and_is_independent_of_batch_size(fake_tagger: Tagger) -> None:
    docs = [
        Document(str(i), readme, desc)
        for i, (readme, desc) in enumerate(
            [
                (K8S_README, ""),
                ("", ""),
                (DATABASE_README, "SQL"),
                (GAME_README, ""),
                ("", "pip python library"),
            ]
            * 3
        )
    ]
    reference = [r.to_json(explain=True) for r in fake_tagger.tag_many(docs, batch_size=64, explain=True)]
    assert [r["id"] for r in reference] == [d.id for d in docs]
    for size in (1, 2, 7):
        assert [
            r.to_json(explain=True) for r in fake_tagger.tag_many(docs, batch_size=size, explain=True)
        ] == reference
    assert [fake_tagger.tag(d.readme, d.description, d.id).to_json() for d in docs] == [
        {k: v for k, v in r.items() if k not in ("explain", "top_scores", "language")} for r in reference
    ]


def test_examples_vote(fake_index: TagIndex, fake_encoder: HashingEncoder) -> None:
    """Labelled examples (prototypes) pull a similar README towards their tags."""
    base = Tagger(fake_index, fake_encoder)
    odd = LabelledRecord(
        Document("ex1", "A Kubernetes operator for clusters, secretly a game."), core=("game",)
    )
    index = with_examples(fake_index, base, [odd])
    assert index.settings.example_weight > 0
    assert [e.core for e in index.examples] == [(16,)]
    strong = Tagger(replace(index, settings=replace(index.settings, example_weight=2.0)), fake_encoder)
    assert names(strong.tag("A Kubernetes operator for clusters."))[0] == "game"
    assert names(base.tag("A Kubernetes operator for clusters."))[0] == "k8s"


def test_chunk_votes_come_from_the_nearest_chunks_of_labelled_readmes(
    fake_index: TagIndex, fake_encoder: HashingEncoder
) -> None:
    """A README whose one section reads like a labelled README's section gets that README's
    tags from a ranker that weighs only the chunk-level vote, in a batch as alone."""
    from embedtag.scoring import Ranker

    base = Tagger(fake_index, fake_encoder)
    labelled = [
        LabelledRecord(Document("g", "Levels and players, rendered at sixty frames per second."), core=("game",)),
        LabelledRecord(Document("d", "Tables and rows, indexed for fast queries."), core=("database",)),
    ]
    index = with_examples(fake_index, base, labelled)
    assert [e.chunks for e in index.examples] == [1, 1]
    only_chunks = Ranker({"chunk_examples_first": 10.0}, intercept=-5.0, threshold=0.5)
    tagger = Tagger(replace(index, settings=replace(index.settings, ranker=only_chunks)), fake_encoder)
    readmes = ["# Intro\n\nTables and rows, indexed for fast queries.", "Levels and players at sixty frames a second."]
    assert [names(tagger.tag(r)) for r in readmes] == [["database"], ["game"]]
    assert [names(r) for r in tagger.tag_many(Document(str(i), r) for i, r in enumerate(readmes))] == [
        ["database"], ["game"],
    ]
    no_chunks = replace(
        index, examples=[replace(e, chunks=0) for e in index.examples], example_chunk_vectors=None,
        _faiss_example_chunks=None, settings=replace(tagger.settings, min_tags=0),
    )
    plain = Tagger(no_chunks, fake_encoder)
    assert [names(plain.tag(r)) for r in readmes] == [[], []]  # no chunk vectors, no vote

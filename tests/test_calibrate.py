"""The ranker: its features, selection, fitting, and use by the tagger (no model needed)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from embedtag.calibrate import (
    ScoredSet,
    calibrate,
    cross_validate,
    fit_ranker,
    micro_f1,
    predict,
)
from embedtag.encoders import HashingEncoder
from embedtag.exemplars import Exemplar
from embedtag.index import TagIndex, load_index
from embedtag.records import LabelledRecord
from embedtag.scoring import RANKER_FEATURES, Ranker, ScoringSettings, choose_tags, ranker_features
from embedtag.tagger import Document, Tagger

TOPICS = {
    "k8s": "a Kubernetes operator that manages pods and clusters",
    "database": "a SQL database engine storing tables and rows",
    "game": "a video game with levels and players",
    "cli": "a command-line tool you run in the terminal",
}


def topic_records() -> list[LabelledRecord]:
    """Twelve labelled READMEs, each about one fake tag with a mention of the next one."""
    return [
        LabelledRecord(Document(f"{tag}-{n}", f"Project {n} is {text}. Release {n} adds {other}.", ""), (tag,))
        for n, (tag, text) in enumerate(list(TOPICS.items()) * 3)
        for other in [TOPICS[list(TOPICS)[(n + 1) % len(TOPICS)]]]
    ]


def topic_exemplars() -> list[Exemplar]:
    """One-line descriptions under the fake tags (one with two tags)."""
    return [
        Exemplar("Kubernetes operator for pods on clusters", ("k8s",)),
        Exemplar("SQL database engine with tables", ("database",)),
        Exemplar("Video game with levels and players", ("game",)),
        Exemplar("Command-line tool for the terminal", ("cli",)),
        Exemplar("Terminal tool that manages Kubernetes pods", ("cli", "k8s")),
    ]


def new_records() -> list[LabelledRecord]:
    """Unlabelled READMEs mixing the topics."""
    return [
        LabelledRecord(Document("a", "A Kubernetes tool for the command line and SQL tables.", "a k8s cli"), ()),
        LabelledRecord(Document("b", "A game about databases, with players and rows of levels.", ""), ()),
        LabelledRecord(Document("c", "Operators for clusters; pods run a video game.", "games on k8s"), ()),
    ]


def f32(rows: list[list[float]]) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


def test_features_are_relative_to_the_readme() -> None:
    scores = f32([[0.1, 0.3, 0.2, 0.0]])
    examples = f32([[0.0, 0.0, 0.0, 0.0]])
    features = ranker_features(scores, f32([[0, 1, 0, 0]]), f32([[0, 0, 0.5, 0]]), examples)
    assert features.shape == (1, 4, len(RANKER_FEATURES))
    column = {name: features[0, :, i].tolist() for i, name in enumerate(RANKER_FEATURES)}
    assert column["gap"] == pytest.approx([-0.2, 0.0, -0.1, -0.3])
    assert column["first"] == [0, 1, 0, 0]
    assert column["second"] == [0, 0, 1, 0]
    assert column["third"] == [1, 0, 0, 0]
    assert column["keyword"] == [0, 1, 0, 0]
    assert column["cue"] == [0, 0, 0.5, 0]
    assert column["examples_first"] == [0, 0, 0, 0]  # no votes: nobody leads
    votes = ranker_features(scores, scores * 0, scores * 0, f32([[0.2, 0.0, 0.6, 0.0]]))
    assert votes[0, :, RANKER_FEATURES.index("examples_first")].tolist() == [0, 0, 1, 0]
    assert votes[0, :, RANKER_FEATURES.index("examples_gap")].tolist() == pytest.approx([-0.4, -0.6, 0.0, -0.6])


def test_group_gap_ranks_forms_among_forms_and_subjects_among_subjects() -> None:
    scores = f32([[0.5, 0.4, 0.3, 0.1]])
    votes = f32([[0.2, 0.6, 0.3, 0.0]])
    form = np.array([True, True, False, False])  # e.g. lib, cli | database, game
    none = np.zeros_like(scores)
    features = ranker_features(scores, none, none, votes, form=form)
    assert features[0, :, RANKER_FEATURES.index("group_gap")].tolist() == pytest.approx([0.0, -0.1, 0.0, -0.2])
    examples_gap = features[0, :, RANKER_FEATURES.index("examples_group_gap")].tolist()
    assert examples_gap == pytest.approx([-0.4, 0.0, 0.0, -0.3])
    # without forms (an index from before them, or a list with none) it is the plain gap
    for no_forms in (None, np.zeros(4, dtype=bool), np.ones(4, dtype=bool)):
        plain = ranker_features(scores, none, none, votes, form=no_forms)
        gap, group = (plain[..., RANKER_FEATURES.index(name)] for name in ("gap", "group_gap"))
        np.testing.assert_allclose(group, gap)
    # a ranker that weighs the group gap keeps the best form and the best subject
    settings = ScoringSettings(ranker=Ranker({"group_gap": 50.0}, intercept=1.0, threshold=0.5))
    assert choose_tags(scores, none, none, votes, settings, form=form)[0] == [[0, 2]]
    assert choose_tags(scores, none, none, votes, settings)[0] == [[0]]


KEYWORD_RANKER = Ranker({"keyword": 10.0, "score": 5.0}, intercept=-5.0, threshold=0.5, order_example_weight=0.1)


def test_ranker_keeps_likely_tags_and_orders_them_by_score() -> None:
    settings = ScoringSettings(ranker=KEYWORD_RANKER)
    scores = f32([[0.5, 0.3, 0.4, 0.2]])
    keyword = f32([[0, 1, 1, 1]])
    none = np.zeros_like(scores)
    chosen, chances = choose_tags(scores, keyword, none, none, settings)
    assert chosen == [[2, 1, 3]]  # tag 0 has the best score but no keyword: unlikely, dropped
    assert chances[0, 0] < 0.1 < 0.99 < chances[0, 1]
    votes = f32([[0.0, 0.0, 0.0, 3.0]])  # neighbours' votes lift tag 3 to the front
    assert choose_tags(scores, keyword, none, votes, settings)[0] == [[3, 2, 1]]
    assert choose_tags(scores, keyword, none, none, replace(settings, max_tags=1))[0] == [[2]]
    # no keyword, so no tag is likely: the best chance is given anyway (min_tags 1, the default),
    # or nothing with min_tags 0
    assert choose_tags(scores, none, none, none, settings)[0] == [[0]]
    assert choose_tags(scores, none, none, none, replace(settings, min_tags=0))[0] == [[]]
    assert choose_tags(scores, none, none, none, replace(settings, min_tags=2))[0] == [[0, 2]]


def test_min_tags_holds_without_a_ranker_and_old_manifests_keep_none() -> None:
    settings = ScoringSettings(threshold=0.6, margin=0.05)
    scores = f32([[0.50, 0.40, 0.45]])
    none = np.zeros_like(scores)
    assert choose_tags(scores, none, none, none, settings)[0] == [[0]]
    assert choose_tags(scores, none, none, none, replace(settings, min_tags=0))[0] == [[]]
    assert choose_tags(scores, none, none, none, replace(settings, min_tags=2))[0] == [[0, 2]]
    assert ScoringSettings.from_json({"threshold": 0.6}).min_tags == 0  # written before min_tags
    assert ScoringSettings.from_json(settings.to_json()).min_tags == 1


def test_without_a_ranker_examples_add_their_weight() -> None:
    settings = ScoringSettings(threshold=0.0, margin=0.05, example_weight=0.25)
    scores = f32([[0.50, 0.40]])
    none = np.zeros_like(scores)
    assert choose_tags(scores, none, none, none, settings)[0] == [[0]]
    assert choose_tags(scores, none, none, f32([[0.0, 1.0]]), settings)[0] == [[1]]


def test_settings_with_a_ranker_survive_json() -> None:
    settings = ScoringSettings(ranker=Ranker({"score": 3.5, "keyword": 1.25}, -4.0, 0.35))
    data = json.loads(json.dumps(settings.to_json()))
    assert ScoringSettings.from_json(data) == settings
    assert ScoringSettings.from_json(ScoringSettings().to_json()).ranker is None


def synthetic(
    n_docs: int = 150, n_tags: int = 6, seed: int = 0, core_tags: tuple[int, ...] = (1, 2, 3, 4)
) -> ScoredSet:
    """READMEs whose one true tag has its name in the opening but only a slightly higher score,
    while tag 0 (think `lib`) scores highest everywhere and is never right."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(0.30, 0.02, (n_docs, n_tags)).astype(np.float32)
    keyword = np.zeros_like(scores)
    truth = rng.choice(core_tags, n_docs)
    scores[:, 0] += 0.08
    scores[np.arange(n_docs), truth] += 0.03
    keyword[np.arange(n_docs), truth] = 1.0
    vectors = rng.normal(size=(n_docs, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return ScoredSet(
        ids=[str(i) for i in range(n_docs)],
        zero_shot=scores,
        keyword=keyword,
        cue=np.zeros_like(scores),
        doc_vectors=vectors,
        core=[(int(t),) for t in truth],
        also=[() for _ in truth],
    )


def test_fitted_ranker_learns_which_evidence_counts() -> None:
    train, test = synthetic(seed=0), synthetic(seed=1)
    zero_shot = ScoringSettings(threshold=0.0, margin=0.07)
    before = micro_f1(predict(test, None, zero_shot)[0], test.core)
    ranker = fit_ranker(train, zero_shot, use_examples=False)
    assert ranker.weights["keyword"] > 1.0
    after = micro_f1(predict(test, None, replace(zero_shot, ranker=ranker))[0], test.core)
    assert before < 0.5 and after > 0.9, (before, after)


def test_a_tag_without_examples_can_still_be_picked() -> None:
    train = synthetic(core_tags=(1, 2, 3, 4))  # tag 5 is never a gold tag while fitting
    settings = calibrate(train, ScoringSettings(), use_examples=True)
    new = synthetic(n_docs=40, seed=3, core_tags=(5,))
    preds, _ = predict(new, train, settings)
    assert micro_f1(preds, new.core) > 0.8


def test_cross_validation_scores_every_readme_with_a_model_that_never_saw_it() -> None:
    data = synthetic(n_docs=100)
    preds, final = cross_validate(data, ScoringSettings(), n_folds=5, use_examples=True, calibrated=True)
    assert len(preds) == 100 and final.shape == data.zero_shot.shape
    assert micro_f1(preds, data.core) > 0.9
    zero, _ = cross_validate(data, ScoringSettings(), n_folds=5, use_examples=False, calibrated=False)
    assert micro_f1(zero, data.core) < 0.5
    with pytest.raises(ValueError, match="--folds"):
        cross_validate(data, ScoringSettings(), n_folds=101)


def test_tagger_selects_with_the_ranker_in_the_index(
    fake_index: TagIndex, fake_encoder: HashingEncoder, tmp_path: Path
) -> None:
    ranked = replace(fake_index, settings=replace(fake_index.settings, ranker=KEYWORD_RANKER))
    ranked.save(tmp_path / "ranked")
    tagger = Tagger(load_index(tmp_path / "ranked"), fake_encoder)
    assert tagger.settings.ranker == KEYWORD_RANKER
    result = tagger.tag("A Python client for k8s clusters.\n\nIt runs queries and more.")
    assert sorted(t.key for t in result.tags) == ["k8s", "python"]
    nothing = "Nothing here names any tag at all, only words."
    assert len(tagger.tag(nothing).tags) == 1  # min_tags 1: its best tag, though unlikely
    strict = Tagger(replace(tagger.index, settings=replace(tagger.settings, min_tags=0)), fake_encoder)
    empty = strict.tag(nothing)
    assert empty.tags == [] and empty.reason == "no tag scored above the threshold"


def assert_predict_agrees_with_tagger(base: Tagger, index: TagIndex, settings: ScoringSettings) -> None:
    """`predict` with `settings` on the score matrices of new READMEs picks what a tagger on
    `index` outputs."""
    from embedtag.calibrate import examples_from_index, score_labelled

    new = new_records()
    tagger = Tagger(index, base.encoder)
    expected = [[t.key for t in r.tags] for r in tagger.tag_many(r.document for r in new)]
    got, _ = predict(score_labelled(base, new), examples_from_index(index), settings)
    names = [t.key for t in index.tags]
    assert [[names[t] for t in p] for p in got] == expected
    assert any(expected)


def test_chunk_votes_weigh_neighbours_by_similarity_squared_and_chunk_weight() -> None:
    from embedtag.scoring import chunk_example_votes, label_matrix

    labels = label_matrix([((0,), (2,)), ((1,), ())], n_tags=3)
    assert labels.tolist() == [[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]]
    # chunk 0 (weight 2) is near example 0; chunk 1 (weight 1) near example 1; -1: no neighbour
    sims = f32([[0.9, 0.5], [0.8, -0.3]])
    owners = np.array([[0, 1], [1, -1]])
    votes = chunk_example_votes(sims, owners, f32([2.0, 1.0]), labels)
    raw = np.array([2 * 0.81, 2 * 0.25 + 0.64, 2 * 0.81 * 0.5])
    assert votes == pytest.approx(raw / raw.max())
    assert chunk_example_votes(sims, np.full((2, 2), -1), f32([1.0, 1.0]), labels).tolist() == [0, 0, 0]


def test_chunk_example_matrix_leaves_each_readme_out_of_its_own_votes() -> None:
    from embedtag.calibrate import chunk_example_matrix

    same = f32([[1.0, 0.0]])
    other = f32([[0.0, 1.0]])
    docs = ScoredSet(
        ["a", "b", "c"], *(np.zeros((3, 3), dtype=np.float32),) * 3, np.eye(3, 2, dtype=np.float32),
        core=[(0,), (1,), (2,)], also=[(), (), ()],
        chunk_vectors=[same, same, other], chunk_weights=[f32([1.0])] * 3,
    )
    with_self = chunk_example_matrix(docs, docs, k=1, n_tags=3)
    without = chunk_example_matrix(docs, docs, k=1, n_tags=3, exclude_self=True)
    assert with_self is not None and without is not None
    assert with_self[2].tolist() == [0, 0, 1]  # its own chunk is its nearest
    assert without[2].tolist() == [0, 0, 0]  # the others' chunks are orthogonal to it
    assert without[0].tolist() == [0, 1, 0] and without[1].tolist() == [1, 0, 0]  # each other's twin
    assert chunk_example_matrix(replace(docs, chunk_vectors=None), docs, 1, 3) is None


def test_vectorised_predictions_equal_what_the_tagger_outputs(
    fake_index: TagIndex, fake_encoder: HashingEncoder
) -> None:
    """Cross-validation and `calibrate` score with `predict` on matrices; the tagger must agree,
    or the measured figures would not be the product's."""
    from embedtag.build import with_examples
    from embedtag.calibrate import score_labelled

    records = topic_records()
    base = Tagger(fake_index, fake_encoder)
    scored = score_labelled(base, records)
    settings = calibrate(scored, base.settings, use_examples=True)
    index = with_examples(
        replace(fake_index, settings=settings), base, records, scored.doc_vectors, scored.chunk_vectors
    )
    assert settings.ranker is not None and settings.ranker.weights["chunk_examples"] != 0
    assert index.example_chunk_vectors is not None and len(index.example_chunk_vectors) == len(records)
    assert_predict_agrees_with_tagger(base, index, settings)


def test_per_tag_biases_are_fitted_only_for_tags_with_examples() -> None:
    """Tags 0-4 are gold somewhere in training and get a bias each; tag 5 has no example, so it
    gets none and still competes on its evidence."""
    train = replace(synthetic(core_tags=(1, 2, 3, 4)), tag_ids=(100, 101, 102, 103, 104, 105))
    train = replace(train, core=[(*c, 0) if i % 10 == 0 else c for i, c in enumerate(train.core)])
    ranker = fit_ranker(train, ScoringSettings(), use_examples=False)
    assert set(ranker.tag_bias) == {100, 101, 102, 103, 104}  # no bias for 105 (no example)
    settings = ScoringSettings(ranker=ranker)
    loaded = ScoringSettings.from_json(json.loads(json.dumps(settings.to_json()))).ranker
    assert loaded is not None and loaded.tag_bias == pytest.approx(ranker.tag_bias, abs=1e-6)
    new = replace(synthetic(n_docs=40, seed=3, core_tags=(5,)), tag_ids=train.tag_ids)
    preds, _ = predict(new, None, settings)
    assert sum(5 in p for p in preds) >= 36
    # the biases are keyed by tag id: another column order moves them with their tags
    chances = choose_tags(new.zero_shot, new.keyword, new.cue, new.cue, settings, tag_ids=train.tag_ids)[1]
    flipped = choose_tags(
        new.zero_shot[:, ::-1], new.keyword[:, ::-1], new.cue, new.cue, settings, tag_ids=train.tag_ids[::-1]
    )[1]
    assert np.allclose(chances, flipped[:, ::-1])


def test_exemplar_votes_are_ranker_features() -> None:
    scores = f32([[0.3, 0.3, 0.3]])
    none = np.zeros_like(scores)
    features = ranker_features(scores, none, none, none, f32([[0.2, 1.0, 0.5]]))
    column = {name: features[0, :, i].tolist() for i, name in enumerate(RANKER_FEATURES)}
    assert column["exemplars"] == pytest.approx([0.2, 1.0, 0.5])
    assert column["exemplars_first"] == [0, 1, 0]
    assert column["exemplars_top3"] == [1, 1, 1]
    without = ranker_features(scores, none, none, none)
    assert without[0, :, RANKER_FEATURES.index("exemplars_top3")].tolist() == [0, 0, 0]


def test_vectorised_predictions_with_exemplars_equal_what_the_tagger_outputs(
    fake_index: TagIndex, fake_encoder: HashingEncoder
) -> None:
    """The same agreement with exemplar votes and per-tag biases in the ranker."""
    from embedtag.build import with_examples, with_exemplars
    from embedtag.calibrate import score_labelled

    exemplars = topic_exemplars()
    records = topic_records()
    base = Tagger(with_exemplars(fake_index, fake_encoder, exemplars), fake_encoder)
    scored = score_labelled(base, records)
    assert scored.exemplars is not None and scored.exemplars.max() == 1.0
    settings = calibrate(scored, base.settings, use_examples=True)
    assert settings.ranker is not None and settings.ranker.tag_bias  # biases for the labelled tags
    index = with_examples(
        replace(base.index, settings=settings), base, records, scored.doc_vectors, scored.chunk_vectors
    )
    assert_predict_agrees_with_tagger(base, index, settings)


def test_tags_new_to_the_ranker_are_lifted_to_its_threshold_where_the_zero_shot_rule_keeps_them() -> None:
    from embedtag.scoring import lift_new_tags

    settings = ScoringSettings(threshold=0.0, margin=0.07, ranker=Ranker({}, 0.0, threshold=0.4))
    chances = f32([[0.9, 0.1, 0.05, 0.2, 0.6]])
    scores = f32([[0.50, 0.48, 0.30, 0.47, 0.49]])
    new = np.array([False, True, True, False, True])
    lifted = lift_new_tags(chances, scores, new, settings)
    # tag 1 is within the margin and among the best three: lifted; tag 2 is far behind; tag 3 is
    # one the ranker knows (its chance stands); tag 4's chance is already above the threshold
    np.testing.assert_allclose(lifted, [[0.9, 0.4, 0.05, 0.2, 0.6]], rtol=1e-6)
    ids = [10, 11, 12, 13, 14]
    zeros = 0 * scores
    knows_all = replace(settings, ranker=KEYWORD_RANKER)
    assert 11 not in [ids[t] for t in choose_tags(scores, zeros, zeros, zeros, knows_all, tag_ids=ids)[0][0]]
    knows_some = replace(settings, ranker=replace(KEYWORD_RANKER, fitted_tags=(10, 13)))
    assert 11 in [ids[t] for t in choose_tags(scores, zeros, zeros, zeros, knows_some, tag_ids=ids)[0][0]]
    assert Ranker.from_json(knows_some.ranker.to_json()) == knows_some.ranker  # type: ignore[union-attr]
    assert "fitted_tags" not in KEYWORD_RANKER.to_json()  # old manifests read back as they were

"""The trained tag head: training, saving, use by the ranker and the tagger (tiny heads only)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from embedtag.calibrate import (
    HeadTraining,
    ScoredSet,
    calibrate_with_head,
    cross_validate,
    micro_f1,
    predict,
    score_labelled,
)
from embedtag.encoders import HashingEncoder
from embedtag.errors import IndexError_
from embedtag.head import HEAD_FILE, HeadSettings, TagHead, exemplar_inputs, head_inputs, train_head
from embedtag.index import TagIndex, load_index
from embedtag.scoring import RANKER_FEATURES, ScoringSettings, ranker_features
from embedtag.tagger import Tagger
from tests.test_calibrate import new_records, synthetic, topic_exemplars, topic_records

TINY = HeadSettings(hidden=16, epochs=40, finetune_epochs=20, batch_size=8, learning_rate=1e-2, seed=3)


def clusters(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points around three directions; the label is the direction."""
    rng = np.random.default_rng(seed)
    centres = np.eye(3, 8, dtype=np.float32) * 3
    labels = rng.integers(0, 3, n)
    x = centres[labels] + rng.normal(0, 0.5, (n, 8)).astype(np.float32)
    y = np.zeros((n, 3), dtype=np.float32)
    y[np.arange(n), labels] = 1.0
    return x, y


def test_a_head_learns_which_tag_an_input_stands_for() -> None:
    x, y = clusters()
    head = train_head(x, y, np.ones(len(x)), (10, 11, 12), TINY)
    test_x, test_y = clusters(30, seed=1)
    probs = head.probabilities(test_x)
    assert (probs.argmax(axis=1) == test_y.argmax(axis=1)).mean() > 0.9
    untrained = train_head(x, y, np.ones(len(x)), (10, 11, 12), replace(TINY, epochs=0))
    assert (untrained.probabilities(test_x).argmax(axis=1) == test_y.argmax(axis=1)).mean() < 0.9


def test_training_is_seeded_and_reproducible() -> None:
    x, y = clusters()
    one = train_head(x, y, np.ones(len(x)), (1, 2, 3), TINY)
    two = train_head(x, y, np.ones(len(x)), (1, 2, 3), TINY)
    other = train_head(x, y, np.ones(len(x)), (1, 2, 3), replace(TINY, seed=4))
    assert np.array_equal(one.w1, two.w1) and np.array_equal(one.b2, two.b2)
    assert not np.array_equal(one.w1, other.w1)


def test_a_head_survives_safetensors_and_answers_in_an_index_column_order() -> None:
    x, y = clusters()
    head = train_head(x, y, np.ones(len(x)), (10, 11, 12), TINY, trained_on={"exemplars": 60, "readmes": 0})
    back = TagHead.from_bytes(head.to_bytes())
    assert back.tag_ids == (10, 11, 12) and back.trained_on == {"exemplars": 60, "readmes": 0}
    assert back.settings == TINY
    # float16 weights: the same probabilities to a few thousandths
    assert np.abs(back.probabilities(x) - head.probabilities(x)).max() < 5e-3
    # an index with tags 12, 99, 10: the head answers for 12 and 10, 0 for the tag it never saw
    in_index = back.for_tags(x, [12, 99, 10])
    probs = back.probabilities(x)
    assert np.array_equal(in_index[:, 0], probs[:, 2]) and np.array_equal(in_index[:, 2], probs[:, 0])
    assert not in_index[:, 1].any()
    remapped = back.remapped({10: 7, 12: 9})
    assert remapped is not None and remapped.tag_ids == (7, 9)
    assert np.array_equal(remapped.probabilities(x), probs[:, [0, 2]])
    assert back.remapped({55: 1}) is None
    with pytest.raises(ValueError, match="not a tag head"):
        TagHead.from_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")


def test_head_inputs_read_the_weighted_mean_and_the_first_chunk() -> None:
    chunks = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    got = head_inputs(chunks, np.array([3.0, 1.0]))
    mean = np.array([3.0, 1.0]) / np.linalg.norm([3.0, 1.0])
    assert got == pytest.approx(np.concatenate([mean, chunks[0]]))
    assert exemplar_inputs(chunks).tolist() == [[1, 0, 1, 0], [0, 1, 0, 1]]
    assert head_inputs(np.zeros((0, 2), dtype=np.float32), np.zeros(0)).tolist() == [0, 0, 0, 0]


def test_head_probabilities_are_ranker_features() -> None:
    scores = np.full((1, 3), 0.3, dtype=np.float32)
    none = np.zeros_like(scores)
    head = np.array([[0.1, 0.9, 0.5]], dtype=np.float32)
    features = ranker_features(scores, none, none, none, head=head, cjk=np.array([1.0]))
    column = {name: features[0, :, i].tolist() for i, name in enumerate(RANKER_FEATURES)}
    assert column["head"] == pytest.approx([0.1, 0.9, 0.5])
    assert column["head_gap"] == pytest.approx([-0.8, 0.0, -0.4])
    assert column["head_first"] == [0, 1, 0] and column["head_top3"] == [1, 1, 1]
    assert column["cjk_head"] == pytest.approx([0.1, 0.9, 0.5])
    english = ranker_features(scores, none, none, none, head=head, cjk=np.array([0.0]))
    assert not english[0, :, RANKER_FEATURES.index("cjk_head")].any()


def with_head_inputs(n_docs: int = 60) -> tuple[ScoredSet, HeadTraining]:
    """`synthetic` README evidence plus head inputs that say the gold tag (noisily), and
    exemplars that say it too."""
    data = synthetic(n_docs=n_docs)
    n_tags = data.zero_shot.shape[1]
    rng = np.random.default_rng(5)
    inputs = rng.normal(0, 1, (n_docs, 2 * n_tags)).astype(np.float32)
    for row, core in enumerate(data.core):
        inputs[row, list(core)] += 3.0
    data = replace(data, head_inputs=inputs, tag_ids=tuple(range(100, 100 + n_tags)))
    ex_labels = rng.integers(0, n_tags, 200)
    ex_vectors = rng.normal(0, 1, (200, n_tags)).astype(np.float32)
    ex_vectors[np.arange(200), ex_labels] += 3.0
    quick = replace(TINY, batch_size=64, epochs=30, finetune_epochs=15)  # 13 heads per cross-validation
    training = HeadTraining(ex_vectors, [(int(t),) for t in ex_labels], [() for _ in ex_labels], quick, inner_folds=2)
    return data, training


@pytest.mark.parametrize("nested", [False, True])
def test_cross_validation_never_trains_a_readmes_head_on_that_readme(
    monkeypatch: pytest.MonkeyPatch, nested: bool
) -> None:
    import embedtag.calibrate as cal

    data, training = with_head_inputs()
    seen: list[set[str]] = []
    real = cal.fit_head

    def recording(training: HeadTraining, train: ScoredSet, seed: int = 0) -> TagHead:
        seen.append(set(train.ids))
        return real(training, train, seed)

    monkeypatch.setattr(cal, "fit_head", recording)
    scored_by: list[tuple[set[str], set[str]]] = []
    real_probs = cal.head_probabilities

    def probs(head: TagHead, scored: ScoredSet) -> np.ndarray:
        scored_by.append((seen[-1], set(scored.ids)))
        return real_probs(head, scored)

    monkeypatch.setattr(cal, "head_probabilities", probs)
    preds, _ = cross_validate(data, ScoringSettings(), n_folds=3, head=replace(training, nested=nested))
    assert len(preds) == len(data.ids)
    assert scored_by and all(not (trained & scored) for trained, scored in scored_by)
    # one head per fold; nested: one more per inner fold of each fold's training READMEs
    assert len(seen) == (3 * (1 + training.inner_folds) if nested else 3)
    assert sum(len(scored) for _, scored in scored_by) == (len(data.ids) * (1 + 2) if nested else len(data.ids))


def test_the_head_lifts_cross_validated_f1_when_its_inputs_carry_the_answer() -> None:
    data, training = with_head_inputs()
    # the zero-shot evidence alone is made weak: the head has to carry the answer
    weak = replace(data, zero_shot=np.zeros_like(data.zero_shot), keyword=np.zeros_like(data.keyword))
    without, _ = cross_validate(weak, cal_settings(), n_folds=3, use_examples=False)
    with_head, _ = cross_validate(weak, cal_settings(), n_folds=3, use_examples=False, head=training)
    assert micro_f1(with_head, data.core) > micro_f1(without, data.core) + 0.3


def test_held_out_evidence_is_what_the_held_out_folds_are_scored_on() -> None:
    data, training = with_head_inputs()
    head = training
    fitted: list[ScoringSettings] = []
    plain, plain_values = cross_validate(data, cal_settings(), n_folds=3, use_examples=False, head=head)
    same, same_values = cross_validate(data, cal_settings(), n_folds=3, use_examples=False, head=head,
                                       held_out=data, fitted_out=fitted)
    assert same == plain and np.array_equal(same_values, plain_values)  # the same evidence: the same answers
    assert len(fitted) == 3 and all(f.ranker is not None for f in fitted)
    # held-out READMEs that lost their head inputs and evidence are scored on that, by the same models
    blank = replace(data, zero_shot=np.zeros_like(data.zero_shot), keyword=np.zeros_like(data.keyword),
                    head_inputs=np.zeros_like(data.head_inputs))
    weak, _ = cross_validate(data, cal_settings(), n_folds=3, use_examples=False, head=head, held_out=blank)
    assert micro_f1(weak, data.core) < micro_f1(plain, data.core) - 0.3
    with pytest.raises(ValueError, match="same READMEs"):
        cross_validate(data, cal_settings(), n_folds=3, head=head, held_out=data.subset([0, 1, 2]))


def cal_settings() -> ScoringSettings:
    return ScoringSettings()


def head_index(fake_index: TagIndex, fake_encoder: HashingEncoder) -> tuple[Tagger, TagIndex]:
    """The fake index with exemplars (core and also), calibrated with a tiny head."""
    from embedtag.build import with_examples, with_exemplars
    from embedtag.exemplars import Exemplar

    exemplars = [*topic_exemplars(), Exemplar("SQL tables for a video game", ("database",), ("game",))]
    base = Tagger(with_exemplars(fake_index, fake_encoder, exemplars), fake_encoder)
    records = topic_records()
    scored = score_labelled(base, records)
    training = HeadTraining.from_index(base.index, TINY)
    settings, head = calibrate_with_head(scored, base.without_examples().settings, training)
    index = with_examples(
        replace(base.index, settings=settings, head=head), base, records, scored.doc_vectors, scored.chunk_vectors
    )
    return base, index


def test_an_index_keeps_its_head_and_the_tagger_uses_it_as_predict_does(
    fake_index: TagIndex, fake_encoder: HashingEncoder, tmp_path: Path
) -> None:
    from embedtag.calibrate import examples_from_index


    _, index = head_index(fake_index, fake_encoder)
    assert index.exemplar_also and any(index.exemplar_also)
    index.save(tmp_path / "headed")
    manifest = json.loads((tmp_path / "headed" / "manifest.json").read_text())
    assert manifest["head"]["file"] == HEAD_FILE and HEAD_FILE in manifest["files"]
    loaded = load_index(tmp_path / "headed")
    assert loaded.head is not None and loaded.head.tag_ids == tuple(t.id for t in fake_index.tags)
    assert loaded.exemplar_also == index.exemplar_also
    tagger = Tagger(loaded, fake_encoder)
    new = new_records()
    expected = [[t.key for t in r.tags] for r in tagger.tag_many(r.document for r in new)]
    scored = score_labelled(tagger, new)
    assert scored.head is not None and scored.head.max() > 0
    got, _ = predict(scored, examples_from_index(loaded), loaded.settings)
    names = [t.key for t in loaded.tags]
    assert [[names[t] for t in p] for p in got] == expected and any(expected)
    # a head file that changed after the manifest was written is refused
    (tmp_path / "headed" / HEAD_FILE).write_bytes(b"not the head")
    with pytest.raises(IndexError_, match="checksum"):
        load_index(tmp_path / "headed")


def test_a_retargeted_index_keeps_the_head_for_the_tags_it_shares(
    fake_index: TagIndex, fake_encoder: HashingEncoder
) -> None:
    _, index = head_index(fake_index, fake_encoder)
    assert index.head is not None
    first, second = index.tags[0], index.tags[1]
    onto = replace(index.without_learning(), tags=[first, second])
    moved = index.retarget(onto, {first.id: first.id, second.id: second.id}, min_shared=0.5)
    assert moved.head is not None and moved.head.tag_ids == (first.id, second.id)
    assert index.without_learning().head is None


def test_tagging_with_a_head_never_imports_torch(
    fake_index: TagIndex, fake_encoder: HashingEncoder, tmp_path: Path
) -> None:
    _, index = head_index(fake_index, fake_encoder)
    index.save(tmp_path / "headed")
    code = (
        "import sys\n"
        "from embedtag.encoders import HashingEncoder\n"
        "from embedtag.index import load_index\n"
        "from embedtag.tagger import Tagger\n"
        f"t = Tagger(load_index({str(tmp_path / 'headed')!r}), HashingEncoder())\n"
        "r = t.tag('A Kubernetes operator for pods.')\n"
        "assert t.index.head is not None and r.tags, r\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

"""Learning from labelled READMEs without a training loop.

Two things are fitted on labelled data: kNN prototypes (each labelled README's vector votes
for its tags) and per-tag score biases (a tag that wins too often is pushed down, one that is
missed is pulled up). Everything works on precomputed score matrices, so cross-validation
encodes each README once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embedtag.records import LabelledRecord
from embedtag.scoring import ScoringSettings
from embedtag.tagger import Tagger, document_vector

# Weight of labelled neighbours' votes (5-fold CV on the dev set: benchmarks/quality.md).
EXAMPLE_WEIGHT = 0.25


@dataclass
class ScoredSet:
    """Per-document zero-shot scores, document vectors and gold labels (as tag positions)."""

    ids: list[str]
    zero_shot: np.ndarray  # (docs x tags), keyword evidence included, no bias, no examples
    doc_vectors: np.ndarray  # (docs x dim), L2-normalised
    core: list[tuple[int, ...]]
    also: list[tuple[int, ...]]

    def subset(self, rows: Sequence[int]) -> ScoredSet:
        rows = list(rows)
        return ScoredSet(
            [self.ids[i] for i in rows],
            self.zero_shot[rows],
            self.doc_vectors[rows],
            [self.core[i] for i in rows],
            [self.also[i] for i in rows],
        )


def score_labelled(tagger: Tagger, records: Sequence[LabelledRecord], batch_size: int = 64) -> ScoredSet:
    """Encode each labelled README once and keep what calibration needs."""
    position = {tag.key: i for i, tag in enumerate(tagger.index.tags)}
    n_tags = len(tagger.index.tags)
    zero = np.zeros((len(records), n_tags), dtype=np.float32)
    vectors = np.zeros((len(records), tagger.encoder.dimension), dtype=np.float32)
    no_examples = tagger.without_examples()
    for start in range(0, len(records), batch_size):
        part = records[start : start + batch_size]
        per_doc = [tagger.chunks(r.document) for r in part]
        encoded = tagger.encoder.encode([c.text for chunks in per_doc for c in chunks])
        offset = 0
        for row, (record, chunks) in enumerate(zip(part, per_doc, strict=True)):
            v = encoded[offset : offset + len(chunks)]
            offset += len(chunks)
            if not chunks:
                continue
            scores, _ = no_examples.score(record.document, chunks, v)
            zero[start + row] = scores
            vectors[start + row] = document_vector(chunks, v)
    return ScoredSet(
        ids=[r.document.id for r in records],
        zero_shot=zero,
        doc_vectors=vectors,
        core=[tuple(position[t] for t in r.core if t in position) for r in records],
        also=[tuple(position[t] for t in r.also if t in position) for r in records],
    )


def example_matrix(
    queries: np.ndarray, examples: ScoredSet, k: int, n_tags: int, exclude_self: bool = False
) -> np.ndarray:
    """kNN votes (docs x tags) from labelled examples; `exclude_self` skips identical rows
    (scoring the training set against itself)."""
    sims = queries @ examples.doc_vectors.T
    if exclude_self:
        np.fill_diagonal(sims, -np.inf)
    k = min(k, sims.shape[1] - (1 if exclude_self else 0))
    out = np.zeros((len(queries), n_tags), dtype=np.float32)
    if k <= 0:
        return out
    top = np.argsort(-sims, axis=1)[:, :k]
    for row in range(len(queries)):
        total = 0.0
        for j in top[row]:
            weight = max(float(sims[row, j]), 0.0) ** 2
            total += weight
            for t in examples.core[j]:
                out[row, t] += weight
            for t in examples.also[j]:
                out[row, t] += 0.5 * weight
        if total > 0:
            out[row] /= total
    return out


def predict(scores: np.ndarray, settings: ScoringSettings, bias: np.ndarray) -> list[list[int]]:
    """The same selection as `scoring.select_tags`, vectorised over documents."""
    adjusted = scores - bias[None, :]
    k = min(settings.max_tags, adjusted.shape[1])
    order = np.argsort(-adjusted, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(adjusted, order, axis=1)
    keep = (top >= settings.threshold) & (top >= top[:, :1] - settings.margin)
    return [[int(t) for t, ok in zip(o, m, strict=True) if ok] for o, m in zip(order, keep, strict=True)]


def micro_f1(preds: list[list[int]], core: Sequence[tuple[int, ...]]) -> float:
    tp = sum(len(set(p) & set(c)) for p, c in zip(preds, core, strict=True))
    n_pred = sum(len(p) for p in preds)
    n_gold = sum(len(c) for c in core)
    return 2 * tp / (n_pred + n_gold) if n_pred + n_gold else 0.0


def fit_biases(
    scores: np.ndarray,
    core: Sequence[tuple[int, ...]],
    settings: ScoringSettings,
    grid: Sequence[float] = (-0.08, -0.05, -0.03, -0.015, 0.0, 0.015, 0.03, 0.05, 0.08),
    rounds: int = 2,
    min_gain: float = 0.002,
) -> np.ndarray:
    """Per-tag biases by coordinate ascent on training micro-F1.

    A bias moves from 0 only when it gains at least `min_gain` F1, so tags with one or two
    examples are rarely touched (less overfitting on a small labelled set).
    """
    n_tags = scores.shape[1]
    bias = np.zeros(n_tags, dtype=np.float32)
    best = micro_f1(predict(scores, settings, bias), core)
    for _ in range(rounds):
        improved = False
        for tag in range(n_tags):
            current = bias[tag]
            for value in grid:
                if value == current:
                    continue
                bias[tag] = value
                f1 = micro_f1(predict(scores, settings, bias), core)
                threshold = min_gain if value != 0.0 else 0.0
                if f1 > best + threshold:
                    best, current, improved = f1, value, True
            bias[tag] = current
        if not improved:
            break
    return bias


def fit_selection(
    scores: np.ndarray, core: Sequence[tuple[int, ...]], settings: ScoringSettings, bias: np.ndarray
) -> tuple[float, float]:
    """Global threshold and margin that maximise training micro-F1."""
    best = (-1.0, settings.threshold, settings.margin)
    for threshold in (-1.0, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45):
        for margin in (0.03, 0.05, 0.07, 0.1, 0.13, 0.16, 0.2):
            trial = ScoringSettings(max_tags=settings.max_tags, threshold=threshold, margin=margin)
            f1 = micro_f1(predict(scores, trial, bias), core)
            if f1 > best[0] + 1e-9:
                best = (f1, threshold, margin)
    return best[1], best[2]


@dataclass
class Calibration:
    example_weight: float
    threshold: float
    margin: float
    bias: np.ndarray


def calibrate(
    train: ScoredSet,
    settings: ScoringSettings,
    use_examples: bool = True,
    example_weight: float = EXAMPLE_WEIGHT,
) -> Calibration:
    """Fit selection settings and per-tag biases on labelled data.

    With examples, training scores use leave-self-out neighbours so a README never votes for
    itself (that would make every tag look easy).
    """
    n_tags = train.zero_shot.shape[1]
    scores = train.zero_shot
    weight = example_weight if use_examples else 0.0
    if weight:
        votes = example_matrix(train.doc_vectors, train, settings.example_k, n_tags, exclude_self=True)
        scores = scores + weight * votes
    zero_bias = np.zeros(n_tags, dtype=np.float32)
    threshold, margin = fit_selection(scores, train.core, settings, zero_bias)
    tuned = ScoringSettings(max_tags=settings.max_tags, threshold=threshold, margin=margin)
    bias = fit_biases(scores, train.core, tuned)
    threshold, margin = fit_selection(scores, train.core, settings, bias)
    return Calibration(weight, threshold, margin, bias)


def apply(
    scores: ScoredSet, examples: ScoredSet | None, settings: ScoringSettings, cal: Calibration
) -> list[list[int]]:
    """Predictions for `scores` with a calibration and (optionally) examples."""
    total = scores.zero_shot
    if examples is not None and cal.example_weight:
        votes = example_matrix(scores.doc_vectors, examples, settings.example_k, total.shape[1])
        total = total + cal.example_weight * votes
    tuned = ScoringSettings(max_tags=settings.max_tags, threshold=cal.threshold, margin=cal.margin)
    return predict(total, tuned, cal.bias)


def folds(n: int, k: int, seed: int = 0) -> list[list[int]]:
    """k disjoint folds of range(n), shuffled with a fixed seed."""
    order = np.random.default_rng(seed).permutation(n)
    return [sorted(int(i) for i in order[f::k]) for f in range(k)]


def calibrated_settings(settings: ScoringSettings, cal: Calibration, tag_ids: Sequence[int]) -> ScoringSettings:
    """Scoring settings with a calibration written in (what the manifest stores)."""
    from dataclasses import replace

    return replace(
        settings,
        example_weight=cal.example_weight,
        threshold=cal.threshold,
        margin=cal.margin,
        tag_bias={int(t): float(b) for t, b in zip(tag_ids, cal.bias, strict=True) if b != 0.0},
    )


def cross_validate(
    scored: ScoredSet,
    settings: ScoringSettings,
    n_folds: int = 5,
    use_examples: bool = True,
    calibrate_biases: bool = True,
    seed: int = 0,
) -> tuple[list[list[int]], np.ndarray]:
    """Fit on k-1 folds, predict the held-out fold; returns predictions (tag positions) for
    every document and the final scores behind them (for precision-recall curves)."""
    n = len(scored.ids)
    if n_folds < 2 or n_folds > n:
        raise ValueError(f"--folds must be between 2 and the number of items ({n})")
    preds: list[list[int]] = [[] for _ in range(n)]
    final = np.zeros_like(scored.zero_shot)
    for fold in folds(n, n_folds, seed):
        held = set(fold)
        train = scored.subset([i for i in range(n) if i not in held])
        test = scored.subset(fold)
        cal = calibrate(train, settings, use_examples=use_examples, example_weight=EXAMPLE_WEIGHT)
        if not calibrate_biases:
            cal.bias[:] = 0.0
        for row, p in zip(fold, apply(test, train if use_examples else None, settings, cal), strict=True):
            preds[row] = p
        total = test.zero_shot
        if use_examples:
            total = total + cal.example_weight * example_matrix(
                test.doc_vectors, train, settings.example_k, total.shape[1]
            )
        final[fold] = total - cal.bias[None, :]
    return preds, final

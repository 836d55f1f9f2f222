"""How much better could the shipped ranker's evidence tag? Bounds on the dev set.

    python scripts/ranking_headroom.py ../shared/data/dev/items.jsonl --out benchmarks/headroom.md

Scores each labelled README once the way `embedtag calibrate` does (the shipped index's tag texts
and exemplars; its labelled examples and ranker are refitted per fold), then, under the same k-fold
cross-validation as `scripts/quality_benchmark.py`, asks of the ranker's held-out chances:

- recall@k: how many gold tags are among a README's k likeliest tags;
- how many tags to keep: the fitted threshold against always 1, 2 or 3 tags, and an oracle that
  keeps exactly as many as the gold has (what a perfect tag-count rule would give);
- whether a non-linear ranker (gradient-boosted trees over the same features and the tag itself,
  threshold from an inner cross-validation) or its average with the logistic ranker ranks better.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier  # type: ignore[import-untyped]  # via sentence-transformers

from embedtag.calibrate import (
    EXAMPLE_WEIGHT,
    THRESHOLD_GRID,
    ScoredSet,
    calibrate,
    chunk_example_matrix,
    example_matrix,
    folds,
    micro_f1,
    predict,
    score_labelled,
)
from embedtag.records import read_labelled
from embedtag.scoring import RANKER_FEATURES, ScoringSettings, likeliest_tags, ranker_features
from embedtag.tagger import Tagger

SHIPPED = "shipped ranker, fitted threshold (at most 3 tags, at least 1)"
ORACLE = "same chances, oracle count (exactly as many tags as the gold has)"
TREES_ROW = "gradient-boosted trees on the same features + the tag, fitted threshold"
TREES = {"max_iter": 400, "learning_rate": 0.03, "max_leaf_nodes": 7, "min_samples_leaf": 80, "l2_regularization": 1.0}


def features(queries: ScoredSet, examples: ScoredSet, settings: ScoringSettings, exclude_self: bool) -> np.ndarray:
    """(docs x tags x features) ranker features, with the tag's column position appended."""
    n_tags = queries.zero_shot.shape[1]
    votes = example_matrix(queries.doc_vectors, examples, settings.example_k, n_tags, exclude_self)
    chunk_votes = chunk_example_matrix(queries, examples, settings.chunk_example_k, n_tags, exclude_self)
    f = ranker_features(
        queries.zero_shot, queries.keyword, queries.cue, votes, queries.exemplars, chunk_votes, queries.form
    )
    tag = np.broadcast_to(np.arange(n_tags, dtype=np.float64)[None, :, None], (*f.shape[:2], 1))
    return np.concatenate([f, tag], axis=-1)


def tree_chances(train: ScoredSet, test: ScoredSet, settings: ScoringSettings) -> np.ndarray:
    """Held-out chances of gradient-boosted trees fitted on `train` (votes leave-self-out, as the ranker's)."""
    x_train = features(train, train, settings, True)
    target = np.zeros(x_train.shape[:2])
    for row, core in enumerate(train.core):
        target[row, list(core)] = 1.0
    model = HistGradientBoostingClassifier(categorical_features=[len(RANKER_FEATURES)], random_state=0, **TREES)
    model.fit(x_train.reshape(-1, x_train.shape[-1]), target.reshape(-1))
    x_test = features(test, train, settings, False)
    chances: np.ndarray = model.predict_proba(x_test.reshape(-1, x_test.shape[-1]))[:, 1].reshape(x_test.shape[:2])
    return chances


def keep(chances: np.ndarray, threshold: float, settings: ScoringSettings) -> list[list[int]]:
    """The shipped rule (`likeliest_tags`) for every README."""
    return [likeliest_tags(row, threshold, settings) for row in chances]


def top(chances: np.ndarray, counts: Sequence[int]) -> list[list[int]]:
    return [[int(t) for t in np.argsort(-row, kind="stable")[:k]] for row, k in zip(chances, counts, strict=True)]


def best_threshold(chances: np.ndarray, core: Sequence[tuple[int, ...]], settings: ScoringSettings) -> float:
    return max(THRESHOLD_GRID, key=lambda t: micro_f1(keep(chances, t, settings), core))


def one_seed(
    scored: ScoredSet, settings: ScoringSettings, n_folds: int, seed: int
) -> tuple[np.ndarray, dict[str, list[list[int]]]]:
    """Held-out chances of the logistic ranker, and the predictions of it, the trees and their blend."""
    n = len(scored.ids)
    base = replace(settings, ranker=None, tag_bias={}, example_weight=EXAMPLE_WEIGHT)
    logistic = np.zeros_like(scored.zero_shot, dtype=np.float64)
    trees = np.zeros_like(logistic)
    shipped: list[list[int]] = [[] for _ in range(n)]
    tree_preds: list[list[int]] = [[] for _ in range(n)]
    blend_preds: list[list[int]] = [[] for _ in range(n)]
    for fold in folds(n, n_folds, seed):
        held = set(fold)
        rows = [i for i in range(n) if i not in held]
        train, test = scored.subset(rows), scored.subset(fold)
        picked, chances = predict(test, train, calibrate(train, base, True))
        logistic[fold] = chances
        # the trees' threshold (and the blend's) from an inner cross-validation: in-sample chances of
        # trees are far too sure of themselves
        inner_trees = np.zeros((len(rows), scored.zero_shot.shape[1]))
        inner_logistic = np.zeros_like(inner_trees)
        for inner in folds(len(rows), 3, seed + 100):
            inner_held = set(inner)
            fit_on = train.subset([i for i in range(len(rows)) if i not in inner_held])
            judged = train.subset(inner)
            inner_trees[inner] = tree_chances(fit_on, judged, base)
            inner_logistic[inner] = predict(judged, fit_on, calibrate(fit_on, base, True))[1]
        trees[fold] = tree_chances(train, test, base)
        tree_threshold = best_threshold(inner_trees, train.core, settings)
        blend_threshold = best_threshold((inner_trees + inner_logistic) / 2, train.core, settings)
        for row, i in enumerate(fold):
            shipped[i] = picked[row]
        for row, p in zip(fold, keep(trees[fold], tree_threshold, settings), strict=True):
            tree_preds[row] = p
        for row, p in zip(fold, keep((trees[fold] + logistic[fold]) / 2, blend_threshold, settings), strict=True):
            blend_preds[row] = p
    return logistic, {"shipped": shipped, "trees": tree_preds, "blend": blend_preds}


def recall_at(chances: np.ndarray, core: Sequence[tuple[int, ...]], k: int) -> float:
    found = sum(len(set(p) & set(c)) for p, c in zip(top(chances, [k] * len(core)), core, strict=True))
    return found / sum(len(c) for c in core)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("gold", type=Path, help="labelled JSONL (the dev set's items.jsonl)")
    parser.add_argument("--index", type=Path, default=Path("index"), help="index with exemplars (default: shipped)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the report here (default: print it)")
    args = parser.parse_args()

    started = time.time()
    # score_labelled keeps only the index's tag texts and exemplars: labels come back fold by fold
    tagger = Tagger.load(args.index)
    records = read_labelled(args.gold, {t.key for t in tagger.index.tags})
    scored = score_labelled(tagger, records)
    core = scored.core
    counts = [len(c) for c in core]

    rows: dict[str, list[float]] = {}
    recalls: dict[int, list[float]] = {}
    for seed in range(args.seeds):
        chances, result = one_seed(scored, tagger.settings, args.folds, seed)
        figures = {
            SHIPPED: micro_f1(result["shipped"], core),
            "same chances, always the top 1": micro_f1(top(chances, [1] * len(core)), core),
            "same chances, always the top 2": micro_f1(top(chances, [2] * len(core)), core),
            "same chances, always the top 3": micro_f1(top(chances, [3] * len(core)), core),
            ORACLE: micro_f1(top(chances, counts), core),
            TREES_ROW: micro_f1(result["trees"], core),
            "average of the trees' and the logistic ranker's chances": micro_f1(result["blend"], core),
        }
        for label, value in figures.items():
            rows.setdefault(label, []).append(value)
        for k in (1, 2, 3, 5, 10):
            recalls.setdefault(k, []).append(recall_at(chances, core, k))

    gold_counts = np.bincount(counts, minlength=4)
    lines = [
        "# Ranking headroom: how far the shipped evidence can go",
        "",
        f"Dev set: {len(records)} READMEs, {sum(counts)} core tags "
        f"({', '.join(f'{gold_counts[k]} with {k}' for k in (1, 2, 3))}). "
        f"{args.folds}-fold cross-validation x {args.seeds} seeds; mean (per-seed values). "
        f"Ran in {time.time() - started:.0f} s.",
        "",
        "```bash",
        f"python scripts/ranking_headroom.py {args.gold} --folds {args.folds} --seeds {args.seeds}"
        + (f" --out {args.out}" if args.out else ""),
        "```",
        "",
        "Scored as `embedtag calibrate` scores labelled READMEs (sections-aware cues), so the shipped "
        "row can differ from benchmarks/quality.md's by the spread between CV splits.",
        "",
        "| strict micro-F1 on held-out folds | mean | per seed |",
        "|---|---:|---|",
    ]
    for label, values in rows.items():
        lines.append(f"| {label} | {np.mean(values):.3f} | {' / '.join(f'{v:.3f}' for v in values)} |")
    lines += [
        "",
        "Recall@k of the shipped ranker's held-out chances (share of core tags among each README's k likeliest):",
        "",
        "| k | " + " | ".join(str(k) for k in recalls) + " |",
        "|---|" + "---:|" * len(recalls),
        "| recall | " + " | ".join(f"{np.mean(v):.3f}" for v in recalls.values()) + " |",
        "",
        f"Reading: a perfect tag-count rule on these chances would reach {np.mean(rows[ORACLE]):.3f} "
        f"(the fitted threshold: {np.mean(rows[SHIPPED]):.3f}), and trees over the same evidence reach "
        f"{np.mean(rows[TREES_ROW]):.3f}: the lever is evidence that puts the right tags first, not the "
        "decision over the evidence there is.",
    ]
    report = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()

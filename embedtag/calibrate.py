"""Learning from labelled READMEs without a training loop.

Two things come from labelled data: kNN prototypes (each labelled README's vector votes for its
tags) and a ranker, a logistic layer that turns a README's evidence for a tag (zero-shot score,
its rank, keyword and cue hits, the neighbours' votes: `scoring.RANKER_FEATURES`) into the chance the tag
is one an annotator would pick. Everything works on precomputed score matrices, so
cross-validation encodes each README once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from embedtag.head import HeadSettings, TagHead, head_inputs, train_head, training_set
from embedtag.index import TagIndex
from embedtag.language import mostly_cjk
from embedtag.records import LabelledRecord
from embedtag.scoring import (
    RANKER_FEATURES,
    Ranker,
    ScoringSettings,
    choose_tags,
    chunk_example_votes,
    label_matrix,
    ranker_features,
)
from embedtag.tagger import Tagger, document_vector
from embedtag.text import readme_sections

# Weight of labelled neighbours' votes in an index with examples but no ranker (before
# `embedtag calibrate`); a calibrated ranker weighs the votes itself.
EXAMPLE_WEIGHT = 0.25
# L2 penalty of the ranker's logistic fit; 0.1 to 10 give the same CV F1 on the dev set.
RANKER_L2 = 1.0
THRESHOLD_GRID = tuple(round(0.1 + 0.025 * i, 3) for i in range(21))  # 0.1 .. 0.6


@dataclass
class ScoredSet:
    """Per-document zero-shot evidence, document vectors and gold labels (as tag positions)."""

    ids: list[str]
    zero_shot: np.ndarray  # (docs x tags) zero-shot scores: chunk votes + keyword + cue weights
    keyword: np.ndarray  # (docs x tags) keyword hits
    cue: np.ndarray  # (docs x tags) cue shares
    doc_vectors: np.ndarray  # (docs x dim), L2-normalised
    core: list[tuple[int, ...]]
    also: list[tuple[int, ...]]
    exemplars: np.ndarray | None = None  # (docs x tags) nearest exemplars' votes; None: no exemplars
    tag_ids: tuple[int, ...] = ()  # the index's tag ids in column order (keys of per-tag biases)
    # per document: its chunks' vectors and vote weights (None: not kept, no chunk-level votes)
    chunk_vectors: list[np.ndarray] | None = None
    chunk_weights: list[np.ndarray] | None = None
    form: np.ndarray | None = None  # per tag column: names a project form (TagIndex.form_mask)
    head_inputs: np.ndarray | None = None  # (docs x head input size): `head.head_inputs` of each
    head: np.ndarray | None = None  # (docs x tags) tag head probabilities (None: no head)
    cjk: np.ndarray | None = None  # (docs,) 1 where a README is mostly CJK (`language.mostly_cjk`)

    def subset(self, rows: Sequence[int]) -> ScoredSet:
        rows = list(rows)
        return ScoredSet(
            [self.ids[i] for i in rows],
            self.zero_shot[rows],
            self.keyword[rows],
            self.cue[rows],
            self.doc_vectors[rows],
            [self.core[i] for i in rows],
            [self.also[i] for i in rows],
            self.exemplars[rows] if self.exemplars is not None else None,
            self.tag_ids,
            [self.chunk_vectors[i] for i in rows] if self.chunk_vectors is not None else None,
            [self.chunk_weights[i] for i in rows] if self.chunk_weights is not None else None,
            self.form,
            self.head_inputs[rows] if self.head_inputs is not None else None,
            self.head[rows] if self.head is not None else None,
            self.cjk[rows] if self.cjk is not None else None,
        )


def score_labelled(tagger: Tagger, records: Sequence[LabelledRecord], batch_size: int = 64) -> ScoredSet:
    """Encode each labelled README once and keep what calibration needs."""
    position = {tag.key: i for i, tag in enumerate(tagger.index.tags)}
    n_tags = len(tagger.index.tags)
    zero = np.zeros((len(records), n_tags), dtype=np.float32)
    keyword = np.zeros_like(zero)
    cue = np.zeros_like(zero)
    vectors = np.zeros((len(records), tagger.encoder.dimension), dtype=np.float32)
    chunk_vectors = [np.zeros((0, tagger.encoder.dimension), dtype=np.float32) for _ in records]
    chunk_weights = [np.zeros(0, dtype=np.float32) for _ in records]
    head_rows = np.zeros((len(records), 2 * tagger.encoder.dimension), dtype=np.float32)
    cjk = np.zeros(len(records), dtype=np.float32)
    no_examples = tagger.without_examples()
    for start in range(0, len(records), batch_size):
        part = records[start : start + batch_size]
        per_doc_sections = [readme_sections(r.document.readme) for r in part]
        per_doc = [tagger.chunks(r.document, x) for r, x in zip(part, per_doc_sections, strict=True)]
        encoded = tagger.encoder.encode([c.text for chunks in per_doc for c in chunks])
        offset = 0
        for row, (record, sections, chunks) in enumerate(zip(part, per_doc_sections, per_doc, strict=True)):
            v = encoded[offset : offset + len(chunks)]
            offset += len(chunks)
            if not chunks:
                continue
            evidence = no_examples.score(record.document, chunks, v, sections)
            zero[start + row] = evidence.scores
            keyword[start + row] = evidence.keyword
            cue[start + row] = evidence.cue
            vectors[start + row] = document_vector(chunks, v)
            chunk_vectors[start + row] = np.array(v, dtype=np.float32)
            chunk_weights[start + row] = np.array([c.weight for c in chunks], dtype=np.float32)
            head_rows[start + row] = head_inputs(chunk_vectors[start + row], chunk_weights[start + row])
            cjk[start + row] = float(mostly_cjk(evidence.cjk))
    index = tagger.index
    exemplars = tagger.exemplar_votes_for(vectors)  # None without exemplars
    return ScoredSet(
        ids=[r.document.id for r in records],
        zero_shot=zero,
        keyword=keyword,
        cue=cue,
        doc_vectors=vectors,
        core=[tuple(position[t] for t in r.core if t in position) for r in records],
        also=[tuple(position[t] for t in r.also if t in position) for r in records],
        exemplars=exemplars,
        tag_ids=tuple(tag.id for tag in index.tags),
        chunk_vectors=chunk_vectors,
        chunk_weights=chunk_weights,
        form=index.form_mask(),
        head_inputs=head_rows,
        head=tagger.head_for(head_rows),
        cjk=cjk,
    )


def examples_from_index(index: TagIndex) -> ScoredSet | None:
    """An index's labelled examples as a ScoredSet (vectors and labels only), for `predict`."""
    if not index.examples or index.example_vectors is None:
        return None
    position = {tag.id: i for i, tag in enumerate(index.tags)}
    empty = np.zeros((len(index.examples), len(index.tags)), dtype=np.float32)
    chunk_vectors = index.example_chunk_groups() if index.example_chunk_vectors is not None else None
    return ScoredSet(
        ids=[e.id for e in index.examples],
        zero_shot=empty,
        keyword=empty,
        cue=empty,
        doc_vectors=index.example_vectors,
        core=[tuple(position[t] for t in e.core if t in position) for e in index.examples],
        also=[tuple(position[t] for t in e.also if t in position) for e in index.examples],
        tag_ids=tuple(tag.id for tag in index.tags),
        chunk_vectors=chunk_vectors,
        form=index.form_mask(),
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


def chunk_example_matrix(
    queries: ScoredSet, examples: ScoredSet, k: int, n_tags: int, exclude_self: bool = False
) -> np.ndarray | None:
    """Chunk-level kNN votes (docs x tags), as `Tagger` computes them one README at a time;
    `exclude_self` skips each document's own chunks (scoring the training set against itself).
    None when either side keeps no chunk vectors."""
    if queries.chunk_vectors is None or queries.chunk_weights is None or examples.chunk_vectors is None:
        return None
    counts = np.array([len(v) for v in examples.chunk_vectors])
    if not counts.sum():
        return None
    bank = np.concatenate(examples.chunk_vectors).astype(np.float32)
    bank_owners = np.repeat(np.arange(len(counts)), counts)
    labels = label_matrix(list(zip(examples.core, examples.also, strict=True)), n_tags)
    out = np.zeros((len(queries.chunk_vectors), n_tags), dtype=np.float32)
    for row, (vectors, weights) in enumerate(zip(queries.chunk_vectors, queries.chunk_weights, strict=True)):
        available = len(bank) - (int(counts[row]) if exclude_self else 0)
        top_k = min(k, available)
        if not len(vectors) or top_k <= 0:
            continue
        sims = vectors.astype(np.float32) @ bank.T
        if exclude_self:
            sims[:, bank_owners == row] = -np.inf
        top = np.argpartition(-sims, top_k - 1, axis=1)[:, :top_k]
        out[row] = chunk_example_votes(np.take_along_axis(sims, top, axis=1), bank_owners[top], weights, labels)
    return out


def predict(
    scored: ScoredSet, examples: ScoredSet | None, settings: ScoringSettings, exclude_self: bool = False
) -> tuple[list[list[int]], np.ndarray]:
    """What `Tagger` would pick for each scored README (tag positions), and the values it
    selected on; `examples` are the labelled neighbours (None: no examples)."""
    n_tags = scored.zero_shot.shape[1]
    if examples is not None and len(examples.ids):
        votes = example_matrix(scored.doc_vectors, examples, settings.example_k, n_tags, exclude_self)
    else:
        votes = np.zeros_like(scored.zero_shot)
    chunk_votes = None
    if examples is not None:
        chunk_votes = chunk_example_matrix(scored, examples, settings.chunk_example_k, n_tags, exclude_self)
    return choose_tags(
        scored.zero_shot, scored.keyword, scored.cue, votes, settings, scored.exemplars, scored.tag_ids or None,
        chunk_votes, scored.form, scored.head, scored.cjk,
    )


def micro_f1(preds: list[list[int]], core: Sequence[tuple[int, ...]]) -> float:
    tp = sum(len(set(p) & set(c)) for p, c in zip(preds, core, strict=True))
    n_pred = sum(len(p) for p in preds)
    n_gold = sum(len(c) for c in core)
    return 2 * tp / (n_pred + n_gold) if n_pred + n_gold else 0.0


def _logistic(x: np.ndarray, y: np.ndarray, l2: float, iterations: int = 50) -> np.ndarray:
    """Weights (intercept first) of an L2-penalised logistic regression, by Newton's method."""
    x = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(x.shape[1])
    penalty = l2 * np.diag([0.0] + [1.0] * (x.shape[1] - 1))
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -30.0, 30.0)))
        gradient = x.T @ (p - y) + penalty @ w
        hessian = (x * (p * (1.0 - p))[:, None]).T @ x + penalty + 1e-6 * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-7:
            break
    return w


def fit_ranker(train: ScoredSet, settings: ScoringSettings, use_examples: bool = True) -> Ranker:
    """Fit the ranker's weights on labelled READMEs, then the chance threshold that gives the
    best micro-F1 on them.

    With examples, each training README's votes come from the other training READMEs
    (leave-self-out), as they will for a new README.
    """
    n_docs, n_tags = train.zero_shot.shape
    chunk_votes = None
    if use_examples:
        votes = example_matrix(train.doc_vectors, train, settings.example_k, n_tags, exclude_self=True)
        chunk_votes = chunk_example_matrix(train, train, settings.chunk_example_k, n_tags, exclude_self=True)
    else:
        votes = np.zeros_like(train.zero_shot)
    features = ranker_features(
        train.zero_shot, train.keyword, train.cue, votes, train.exemplars, chunk_votes, train.form, train.head,
        train.cjk,
    )
    target = np.zeros((n_docs, n_tags))
    for row, core in enumerate(train.core):
        target[row, list(core)] = 1.0
    # one bias column per tag that annotators picked at least once here (see Ranker.tag_bias)
    biased = [t for t in range(n_tags) if target[:, t].any()] if train.tag_ids else []
    columns = features.reshape(-1, len(RANKER_FEATURES))
    if biased:
        indicator = np.zeros((n_docs, n_tags, len(biased)))
        indicator[:, biased, np.arange(len(biased))] = 1.0
        columns = np.hstack([columns, indicator.reshape(-1, len(biased))])
    w = _logistic(columns, target.reshape(-1), RANKER_L2)
    n_features = len(RANKER_FEATURES)
    ranker = Ranker(
        dict(zip(RANKER_FEATURES, (float(v) for v in w[1 : n_features + 1]), strict=True)),
        float(w[0]),
        0.5,
        tag_bias={train.tag_ids[t]: float(v) for t, v in zip(biased, w[n_features + 1 :], strict=True)},
    )
    best = (-1.0, ranker.threshold)
    for threshold in THRESHOLD_GRID:
        trial = replace(settings, ranker=replace(ranker, threshold=threshold))
        chosen = choose_tags(
            train.zero_shot, train.keyword, train.cue, votes, trial, train.exemplars, train.tag_ids or None,
            chunk_votes, train.form, train.head, train.cjk,
        )[0]
        f1 = micro_f1(chosen, train.core)
        if f1 > best[0] + 1e-9:
            best = (f1, threshold)
    return replace(ranker, threshold=best[1])


@dataclass(frozen=True)
class HeadTraining:
    """What a tag head learns from besides the labelled READMEs it is calibrated with: the
    index's exemplars (vectors, core and also tag positions) and how it is trained."""

    exemplar_vectors: np.ndarray | None
    exemplar_core: Sequence[tuple[int, ...]]
    exemplar_also: Sequence[tuple[int, ...]]
    settings: HeadSettings = field(default_factory=HeadSettings)
    readmes: bool = True  # learn from the labelled READMEs too (False: exemplars only)
    inner_folds: int = 5  # for the ranker's training features, see `out_of_fold_head`
    # cross-validation: train heads inside each fold's training READMEs too (see `cross_validate`)
    nested: bool = False
    base: TagHead | None = None  # the head trained on exemplars alone (`with_base`)

    @classmethod
    def from_index(
        cls, index: TagIndex, settings: HeadSettings | None = None, readmes: bool = True
    ) -> HeadTraining:
        position = {tag.id: i for i, tag in enumerate(index.tags)}
        return cls(
            index.exemplar_vectors,
            [tuple(position[t] for t in tags if t in position) for tags in index.exemplar_tags],
            [tuple(position[t] for t in tags if t in position) for tags in index.exemplar_also],
            settings or HeadSettings(),
            readmes,
        )


    def with_base(self, tag_ids: Sequence[int], progress: Callable[[int, int], None] | None = None) -> HeadTraining:
        """This training with its base head: trained on the exemplars alone (no labelled README),
        so every fold and README head can start from the same one."""
        if self.base is not None or self.exemplar_vectors is None or not len(self.exemplar_vectors):
            return self  # without exemplars each head learns from the READMEs alone
        x, y, w = training_set(
            self.exemplar_vectors, self.exemplar_core, self.exemplar_also, None, [], [], len(tag_ids), self.settings
        )
        n_exemplars = len(self.exemplar_vectors) if self.exemplar_vectors is not None else 0
        base = train_head(x, y, w, tag_ids, self.settings, {"exemplars": n_exemplars, "readmes": 0}, progress)
        return replace(self, base=base)


def fit_head(training: HeadTraining, train: ScoredSet, seed: int = 0) -> TagHead:
    """A tag head for `train`'s tag columns: the base head (exemplars only), then, unless
    `training.readmes` is off, trained further on `train`'s READMEs with a sample of exemplars
    mixed in (so it does not forget the tags the READMEs seldom show)."""
    n_tags = train.zero_shot.shape[1]
    tag_ids = train.tag_ids or tuple(range(n_tags))
    training = training.with_base(tag_ids)
    rows = list(range(len(train.ids))) if training.readmes else []
    if not rows:
        if training.base is None:
            raise ValueError("a tag head needs exemplars or labelled READMEs to learn from")
        return training.base
    if train.head_inputs is None:
        raise ValueError("the labelled READMEs have no head inputs; score them with `score_labelled`")
    settings = replace(training.settings, seed=training.settings.seed + seed)
    vectors = training.exemplar_vectors
    sample: list[int] = []
    if vectors is not None and len(vectors):
        rng = np.random.default_rng(settings.seed)
        sample = sorted(rng.permutation(len(vectors))[: settings.finetune_exemplars].tolist())
    x, y, w = training_set(
        vectors[sample] if vectors is not None and sample else None,
        [training.exemplar_core[i] for i in sample],
        [training.exemplar_also[i] for i in sample] if training.exemplar_also else [],
        train.head_inputs[rows], [train.core[i] for i in rows], [train.also[i] for i in rows], n_tags, settings,
    )
    n_exemplars = len(vectors) if vectors is not None else 0
    return train_head(
        x, y, w, tag_ids, settings, {"exemplars": n_exemplars, "readmes": len(rows)},
        start=training.base, epochs=settings.finetune_epochs if training.base is not None else settings.epochs,
    )


def calibrate_with_head(
    scored: ScoredSet, settings: ScoringSettings, training: HeadTraining, use_examples: bool = True, seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> tuple[ScoringSettings, TagHead]:
    """`calibrate` with a tag head: the ranker is fitted on out-of-fold head probabilities
    (`out_of_fold_head`), then the head that ships is trained on every labelled README."""
    say = progress or (lambda _: None)
    tag_ids = scored.tag_ids or tuple(range(scored.zero_shot.shape[1]))
    if training.base is None and training.exemplar_vectors is not None and len(training.exemplar_vectors):
        say(f"training the tag head on {len(training.exemplar_vectors)} exemplars")
        training = training.with_base(tag_ids)
    say(f"out-of-fold head probabilities for {len(scored.ids)} READMEs ({training.inner_folds} folds)")
    fitted = calibrate(replace(scored, head=out_of_fold_head(training, scored, seed)), settings, use_examples)
    say("training the tag head on every labelled README")
    return fitted, fit_head(training, scored, seed)


def head_probabilities(head: TagHead, scored: ScoredSet) -> np.ndarray:
    """(docs x tags) probabilities of `head` for scored READMEs, in their tag column order."""
    if scored.head_inputs is None:
        raise ValueError("the READMEs have no head inputs; score them with `score_labelled`")
    return head.for_tags(scored.head_inputs, scored.tag_ids or tuple(range(scored.zero_shot.shape[1])))


def out_of_fold_head(training: HeadTraining, train: ScoredSet, seed: int = 0) -> np.ndarray:
    """Head probabilities for each README of `train` from a head that never learned from it
    (trained on the exemplars and the other `inner_folds` - 1 folds): the ranker is then fitted on
    head evidence as good as a new README's, not on the head's memory of its training set."""
    if not training.readmes:  # a head on exemplars alone never saw these READMEs
        return head_probabilities(fit_head(training, train, seed), train)
    n = len(train.ids)
    out = np.zeros_like(train.zero_shot)
    for fold in folds(n, min(training.inner_folds, n), seed + 1):
        held = set(fold)
        head = fit_head(training, train.subset([i for i in range(n) if i not in held]), seed)
        out[fold] = head_probabilities(head, train.subset(fold))
    return out


def calibrate(train: ScoredSet, settings: ScoringSettings, use_examples: bool = True) -> ScoringSettings:
    """Scoring settings with a ranker fitted on `train` (what the manifest stores).

    Tag biases are dropped: the ranker is fitted on unbiased scores.
    """
    ranker = fit_ranker(train, settings, use_examples)
    return replace(settings, ranker=ranker, tag_bias={}, example_weight=EXAMPLE_WEIGHT if use_examples else 0.0)


def folds(n: int, k: int, seed: int = 0) -> list[list[int]]:
    """k disjoint folds of range(n), shuffled with a fixed seed."""
    order = np.random.default_rng(seed).permutation(n)
    return [sorted(int(i) for i in order[f::k]) for f in range(k)]


def cross_validate(
    scored: ScoredSet,
    settings: ScoringSettings,
    n_folds: int = 5,
    use_examples: bool = True,
    calibrated: bool = True,
    seed: int = 0,
    head: HeadTraining | None = None,
    train_share: float = 1.0,
    held_out: ScoredSet | None = None,
    fitted_out: list[ScoringSettings] | None = None,
) -> tuple[list[list[int]], np.ndarray]:
    """Fit on k-1 folds, predict the held-out fold; returns predictions (tag positions) for
    every document and the values they were selected on (for precision-recall curves).

    Without `calibrated` the fold uses `settings` as they are (zero-shot, or examples added
    with `EXAMPLE_WEIGHT`, as an index built with --examples and not calibrated would).
    With `head`, each fold trains its own tag head on the exemplars and the training folds'
    READMEs only (never on the held-out ones). The ranker's training READMEs get their head
    probabilities from the heads of the folds that held them out (which learned from the
    held-out fold's READMEs, but never from the README they score), or with `head.nested` from
    heads trained inside the training folds (`out_of_fold_head`: 5x the heads, the same figures
    within 0.002 F1 on the dev set, benchmarks/quality.md). `train_share` < 1 learns from that
    share of each fold's training READMEs only (a seeded sample: the learning curve), the held-out
    fold scored as always. `held_out` (the same READMEs, other evidence: e.g. only their first
    chunks, as `--adaptive` reads them) is what the held-out folds are scored on, by models fitted on
    `scored`; `fitted_out` receives each fold's fitted settings, in `folds(n, n_folds, seed)` order."""
    n = len(scored.ids)
    if held_out is not None and len(held_out.ids) != n:
        raise ValueError("held_out must score the same READMEs as scored")
    tested = scored if held_out is None else held_out
    if n_folds < 2 or n_folds > n:
        raise ValueError(f"--folds must be between 2 and the number of items ({n})")
    preds: list[list[int]] = [[] for _ in range(n)]
    final = np.zeros_like(scored.zero_shot)
    base = replace(settings, ranker=None, tag_bias={}, example_weight=EXAMPLE_WEIGHT if use_examples else 0.0)
    splits = []
    for fold in folds(n, n_folds, seed):
        held = set(fold)
        rest = [i for i in range(n) if i not in held]
        if train_share < 1.0:
            keep = max(2, round(train_share * len(rest)))
            rest = sorted(int(i) for i in np.random.default_rng(seed + 7919).permutation(rest)[:keep])
        splits.append((fold, rest))
    if head is not None:
        head = head.with_base(scored.tag_ids or tuple(range(scored.zero_shot.shape[1])))
        if not head.nested:
            # one head per fold, trained on the other folds: it scores its fold's READMEs, both as the
            # held-out ones and as the ranker's training READMEs of the other folds
            shared = np.zeros_like(scored.zero_shot)
            tested_head = np.zeros_like(scored.zero_shot)
            for fold, rest in splits:
                fold_head = fit_head(head, scored.subset(rest), seed)
                shared[fold] = head_probabilities(fold_head, scored.subset(fold))
                tested_head[fold] = head_probabilities(fold_head, tested.subset(fold)) if held_out else shared[fold]
            scored = replace(scored, head=shared)
            tested = replace(tested, head=tested_head)
    for fold, rest in splits:
        train = scored.subset(rest)
        test = tested.subset(fold)
        if head is not None and head.nested:
            fold_head = fit_head(head, train, seed)
            test = replace(test, head=head_probabilities(fold_head, test))
            train = replace(train, head=out_of_fold_head(head, train, seed))
        fitted = calibrate(train, base, use_examples) if calibrated else base
        if fitted_out is not None:
            fitted_out.append(fitted)
        fold_preds, values = predict(test, train if use_examples else None, fitted)
        for row, p in zip(fold, fold_preds, strict=True):
            preds[row] = p
        final[fold] = values
    return preds, final

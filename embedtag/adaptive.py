"""Adaptive compute: embed the description and the README's first chunks, and the rest only
where the ranker's decision is close.

Most READMEs are decided by their description and opening: the later chunks weigh less (they
decay) and rarely move a tag across the threshold. `AdaptiveTagger` scores every README on its
head chunks first; a README whose decision is close (a tag's chance within `band` of the
threshold, or the 3rd and 4th tags within `band` of each other near it) gets its remaining
chunks embedded and is scored again on all of them. It uses only the ranker's outputs
(`Tagger.decide` values and the threshold), never its features, so it follows the ranker as the
ranker changes. `scripts/scale_benchmark.py` measures tokens per README against CV F1 for a
grid of settings; the chosen defaults are there.

`AdaptiveTagger.wrap` keeps what the wrapped tagger brings: its encoder (a vector store's
`CachingEncoder` reads and writes the head and rest chunks like any other) and, when it has
one, its `prepared` (the vector store's cleaned-and-chunked READMEs), so `--adaptive` with the
store neither cleans a README twice nor encodes a chunk the store holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from embedtag.scoring import ScoringSettings
from embedtag.tagger import Document, Tagger, TagResult
from embedtag.text import Chunk, Section, readme_sections

Prepared = list[tuple[list[Section], list[Chunk]]]  # each README's cleaned sections and its chunks

# Defaults picked by scripts/scale_benchmark.py (benchmarks/scale.md): README chunks embedded
# up front (besides the description), and how close to the threshold counts as "close".
# Dev CV (3 splits) with chunk-level votes and min_tags 1 (benchmarks/scale.md, run 9): band 0.05
# kept F1 (+0.0011) at 75% of the tokens where 0.02 lost 0.0053 at 66%; with project-form groups
# (run 10) 0.05 gives -0.0016 at 74%, 0.02 -0.0018 at 65%, and band 0 (never extend) -0.0078 at
# 55%, as the chunk vote then sees the README's head only. With the tag head and the int8 encoder
# (benchmarks/adaptive_quality.md, scripts/adaptive_quality.py) first 6 / band 0.05 lost 0.0048 F1
# and 0.0085 hit@1 against reading every chunk, first 6 / band 0.1 0.0023 and 0.0050, first 8 /
# band 0.1 none (+0.0006, 0) at 88% of the tokens: the default since.
FIRST_CHUNKS = 8
CHANCE_BAND = 0.1  # with a ranker: chance units
SCORE_BAND = 0.03  # without a ranker (zero-shot): score units; not tuned (the grid uses the ranker)


@dataclass(frozen=True)
class AdaptivePolicy:
    first_chunks: int = FIRST_CHUNKS
    chance_band: float = CHANCE_BAND
    score_band: float = SCORE_BAND

    @classmethod
    def with_band(cls, band: float | None) -> AdaptivePolicy:
        """The default policy, or one whose chance and score bands are both `band` (`--adaptive-band`)."""
        return cls() if band is None else cls(chance_band=band, score_band=band)


def head_length(chunks: list[Chunk], first_chunks: int) -> int:
    """How many leading chunks are the description plus the first `first_chunks` README chunks."""
    described = sum(1 for c in chunks if c.source == "description")
    return min(len(chunks), described + first_chunks)


def decision_is_close(values: np.ndarray, settings: ScoringSettings, policy: AdaptivePolicy) -> bool:
    """Whether more text could change which tags `choose_tags` picks, judged from the values it
    selected on (one README's row)."""
    if len(values) == 0:
        return False
    order = np.sort(values)[::-1]
    k = settings.max_tags
    if settings.ranker is not None:
        cuts = [settings.ranker.threshold]
        band = policy.chance_band
    else:
        cuts = [settings.threshold, float(order[0]) - settings.margin]
        band = policy.score_band
    cut = max(cuts)
    # a tag near the threshold: a little more evidence would add or drop it
    if any(bool(np.any(np.abs(order[: k + 1] - c) < band)) for c in cuts):
        return True
    # no tag clears the cut and the best is given anyway (min_tags): the runner-up could swap in
    if settings.min_tags and order[0] < cut and len(order) > 1 and order[0] - order[1] < band:
        return True
    # the cap of three: a 4th tag above the cut, close behind the 3rd, could swap in
    return len(order) > k and order[k] >= cut - band and order[k - 1] - order[k] < band


@runtime_checkable
class PreparesDocuments(Protocol):
    """A tagger that hands out its READMEs' sections and chunks (e.g. `vectorstore.StoreTagger`)."""

    def prepared(self, docs: list[Document]) -> Prepared: ...


class AdaptiveTagger(Tagger):
    """A Tagger that embeds the rest of a README only when its head leaves the decision close."""

    policy: AdaptivePolicy = AdaptivePolicy()
    extended = 0  # READMEs that needed their remaining chunks
    embedded_chunks = 0
    _prepare: Callable[[list[Document]], Prepared] | None = None  # the wrapped tagger's `prepared`

    @classmethod
    def wrap(cls, tagger: Tagger, policy: AdaptivePolicy | None = None) -> AdaptiveTagger:
        """`tagger`'s index and encoder, and its `prepared` READMEs when it keeps them."""
        adaptive = cls(tagger.index, tagger.encoder)
        adaptive.policy = policy or AdaptivePolicy()
        if isinstance(tagger, PreparesDocuments):
            adaptive._prepare = tagger.prepared
        return adaptive

    def prepared(self, docs: list[Document]) -> Prepared:
        """Each README's sections and chunks: the wrapped tagger's when it prepares them (the
        vector store's), else cleaned and chunked here."""
        if self._prepare is not None:
            return self._prepare(docs)
        out = []
        for doc in docs:
            sections = readme_sections(doc.readme)
            out.append((sections, self.chunks(doc, sections)))
        return out

    @property
    def may_extend(self) -> bool:
        """Band 0 never extends: skip scoring the heads twice."""
        return self.policy.chance_band > 0 if self.settings.ranker is not None else self.policy.score_band > 0

    def _tag_batch(self, docs: list[Document], explain: bool) -> list[TagResult]:
        prepared = self.prepared(docs)
        per_doc_sections = [sections for sections, _ in prepared]
        per_doc = [chunks for _, chunks in prepared]
        heads = [chunks[: head_length(chunks, self.policy.first_chunks)] for chunks in per_doc]
        head_vectors = self.encoder.encode([c.text for chunks in heads for c in chunks])
        head_evidence = self.evidence_batch(docs, per_doc_sections, heads, head_vectors)
        more = [
            i
            for i, (chunks, head, ev) in enumerate(zip(per_doc, heads, head_evidence, strict=True))
            if ev is not None
            and len(head) < len(chunks)
            and self.may_extend
            and decision_is_close(self.decide(ev)[1], self.settings, self.policy)
        ]
        results = [
            self._result(doc, head, ev, explain) for doc, head, ev in zip(docs, heads, head_evidence, strict=True)
        ]
        self.embedded_chunks += len(head_vectors)
        if not more:
            return results
        # the close READMEs: the rest of each in one encode call, then scored on all their chunks
        rest = self.encoder.encode([c.text for i in more for c in per_doc[i][len(heads[i]) :]])
        head_start = np.cumsum([0] + [len(h) for h in heads])
        full, start = [], 0
        for i in more:
            n = len(per_doc[i]) - len(heads[i])
            full.append(head_vectors[head_start[i] : head_start[i + 1]])
            full.append(rest[start : start + n])
            start += n
        evidence = self.evidence_batch(
            [docs[i] for i in more], [per_doc_sections[i] for i in more], [per_doc[i] for i in more], np.vstack(full)
        )
        for i, ev in zip(more, evidence, strict=True):
            results[i] = self._result(docs[i], per_doc[i], ev, explain)
        self.extended += len(more)
        self.embedded_chunks += len(rest)
        return results

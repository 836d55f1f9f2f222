"""The tagger: description + README in, at most three tags out. Model and index load once."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embedtag.encoders import Encoder, load_encoder
from embedtag.exemplars import exemplar_votes
from embedtag.head import head_inputs
from embedtag.index import TagIndex, load_index
from embedtag.language import language_note, mostly_cjk, readme_counts
from embedtag.scoring import (
    CuePattern,
    KeywordPattern,
    aggregate_votes,
    choose_tags,
    chunk_example_votes,
    cue_hits,
    cue_patterns,
    example_votes,
    keyword_hits,
    keyword_pattern,
    label_matrix,
    tag_similarities,
)
from embedtag.tags import Tag
from embedtag.text import MAX_DESCRIPTION_CHARS, Chunk, Section, document_chunks, opening_text, readme_sections

# FAISS returns this many nearest tag texts per chunk; the rest count as "far".
SEARCH_K = 1024
# A README whose vector is this close to a corrected example is that example's text: the
# person's tags are the answer (one correction changes that project's tags, and only those).
SAME_TEXT = 0.995


def document_vector(chunks: list[Chunk], vectors: np.ndarray) -> np.ndarray:
    """One vector per README: its chunk vectors averaged with the chunks' vote weights."""
    weights = np.array([c.weight for c in chunks], dtype=np.float32)
    doc: np.ndarray = (weights[:, None] * vectors).sum(axis=0)
    return doc / max(float(np.linalg.norm(doc)), 1e-9)


@dataclass(frozen=True)
class Document:
    """One project to tag."""

    id: str
    readme: str = ""
    description: str = ""


@dataclass
class Evidence:
    """What one README says about every tag (arrays over the index's tags)."""

    scores: np.ndarray  # zero-shot: chunk votes + keyword + cue weights, tag bias taken off
    keyword: np.ndarray  # 1 where the tag's name or an alias is in the description/opening
    cue: np.ndarray  # share of the tag's README cues that match
    examples: np.ndarray  # labelled neighbours' votes (zeros without examples)
    tag_sims: np.ndarray  # (chunks x tags) similarities, for explanations
    corrected: tuple[int, ...] | None = None  # tag positions of a corrected example with this text
    exemplars: np.ndarray | None = None  # nearest exemplars' votes (None without exemplars)
    chunk_examples: np.ndarray | None = None  # labelled READMEs' chunk votes (None without chunk vectors)
    # share of CJK characters against CJK characters + English words in the prose (embedtag.language):
    # near 1 for a README written in Chinese, where similarity to the (English) tag texts is weak
    cjk: float = 0.0
    chinese: bool = False  # mostly Chinese (not Japanese or Korean): `language.mostly_chinese`
    head: np.ndarray | None = None  # the tag head's probabilities (None: the index has no head)


@dataclass
class TagResult:
    """Tags for one document, best first, with the evidence behind them."""

    id: str
    tags: list[Tag]
    scores: dict[str, float] = field(default_factory=dict)
    evidence: dict[str, list[str]] = field(default_factory=dict)
    reason: str | None = None
    # with explain: the README's language (`embedtag.language`), e.g. {"cjk": 0.91, "mostly_chinese": true, "note": ...}
    language: dict[str, Any] | None = None

    def to_json(self, tag_format: str = "names", explain: bool = False) -> dict[str, Any]:
        if tag_format == "ids":
            tags: list[Any] = [t.id for t in self.tags]
        elif tag_format == "objects":
            tags = [t.to_json() for t in self.tags]
        else:
            tags = [t.name for t in self.tags]
        out: dict[str, Any] = {"id": self.id, "tags": tags}
        if self.reason and not self.tags:
            out["reason"] = self.reason
        if explain:
            out["explain"] = {
                t.name: {"score": round(self.scores.get(t.name, 0.0), 4), "evidence": self.evidence.get(t.name, [])}
                for t in self.tags
            }
            out["top_scores"] = {k: round(v, 4) for k, v in self.scores.items()}
            if self.language is not None:
                out["language"] = self.language
        return out


class Tagger:
    """Holds one encoder and one index; `tag()` and `tag_many()` reuse both."""

    def __init__(self, index: TagIndex, encoder: Encoder) -> None:
        index.check_encoder(encoder)
        self.index = index
        self.encoder = encoder
        self.settings = index.settings
        self._text_rows = index.tag_rows()
        self._patterns = [keyword_pattern(index.keywords.get(tag.id, [])) for tag in index.tags]
        self._cues = [cue_patterns(index.cues.get(tag.id, [])) for tag in index.tags]
        # for READMEs that are mostly CJK: CJK terms and cues too (glosses.zh.json), no word
        # boundaries; compiled at the first such README (a few tenths of a second), not at start
        self._dense: tuple[list[KeywordPattern | None], list[list[CuePattern]]] | None = None
        position = {tag.id: i for i, tag in enumerate(index.tags)}
        self._example_labels = [
            (tuple(position[t] for t in e.core if t in position), tuple(position[t] for t in e.also if t in position))
            for e in index.examples
        ]
        self._example_label_matrix = label_matrix(self._example_labels, len(index.tags))
        self._example_chunk_owners = index.example_chunk_owners()
        self._exemplar_labels = [tuple(position[t] for t in tags if t in position) for tags in index.exemplar_tags]
        self._exemplar_also = [tuple(position[t] for t in tags if t in position) for tags in index.exemplar_also]
        self._tag_ids = [tag.id for tag in index.tags]
        self._form = index.form_mask()
        self._bias = np.array([self.settings.tag_bias.get(t.id, 0.0) for t in index.tags], dtype=np.float32)

    def without_examples(self) -> Tagger:
        """The same model and tag texts scoring zero-shot (no prototypes, biases or ranker)."""
        from embedtag.transfer import without_learning

        return Tagger(without_learning(self.index), self.encoder)

    @classmethod
    def load(cls, index_path: str | Path | None = None, model: str | Path | None = None) -> Tagger:
        index = load_index(index_path)
        encoder = load_encoder(model, max_tokens=index.settings.max_tokens, adapter=index.adapter)
        return cls(index, encoder)

    # ---- the pipeline -------------------------------------------------------------------------

    def chunks(self, doc: Document, sections: list[Section] | None = None) -> list[Chunk]:
        """What gets embedded; `sections` are `readme_sections(doc.readme)` when already cleaned."""
        s = self.settings
        if sections is None:
            sections = readme_sections(doc.readme)
        dense = mostly_cjk(readme_counts(doc.description, doc.readme, sections).share)
        return document_chunks(
            doc.description,
            doc.readme,
            max_tokens=min(s.max_tokens, self.encoder.max_tokens),
            max_chunks=s.max_chunks,
            count_tokens=self.encoder.count_tokens,
            description_weight=s.description_weight,
            intro_weight=s.intro_weight,
            decay=s.decay,
            sections=sections,
            dense=dense,
        )

    def _search(self, vectors: np.ndarray) -> np.ndarray:
        """(chunks x texts) similarity matrix from a FAISS inner-product search."""
        n_texts = len(self.index.texts)
        k = min(SEARCH_K, n_texts)
        sims = np.full((len(vectors), n_texts), np.nan, dtype=np.float32)
        if len(vectors) == 0:
            return sims
        distances, ids = self.index.faiss_texts().search(np.ascontiguousarray(vectors), k)
        rows = np.repeat(np.arange(len(vectors)), k)
        valid = ids.reshape(-1) >= 0
        sims[rows[valid], ids.reshape(-1)[valid]] = distances.reshape(-1)[valid]
        return sims

    def search_example_chunks(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Each chunk's nearest example chunks: (similarities, example rows), chunks x k; None
        when the index keeps no example chunks."""
        found = self.index.faiss_example_chunks()
        if found is None or len(vectors) == 0:
            return None
        k = min(self.settings.chunk_example_k, len(self._example_chunk_owners))
        sims, ids = found.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
        owners = np.where(ids >= 0, self._example_chunk_owners[np.maximum(ids, 0)], -1)
        return sims, owners

    def score(
        self,
        doc: Document,
        chunks: list[Chunk],
        vectors: np.ndarray,
        sections: list[Section] | None = None,
        exemplars: np.ndarray | None = None,
        text_sims: np.ndarray | None = None,
        example_chunks: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Evidence:
        """Every tag's evidence for one document (`sections` as for `chunks`). `exemplars` (its
        exemplar votes), `text_sims` (its chunks' similarities to the tag texts) and
        `example_chunks` (its chunks' nearest example chunks) are passed when already computed
        for a whole batch."""
        s = self.settings
        n_tags = len(self.index.tags)
        if text_sims is None:
            text_sims = self._search(vectors)
        tag_sims = tag_similarities(text_sims, self._text_rows, n_tags, s.text_top_k)
        weights = np.array([c.weight for c in chunks], dtype=np.float32)
        scores = aggregate_votes(tag_sims, weights, s.mean_weight) - self._bias
        keyword = np.zeros(n_tags, dtype=np.float32)
        cue = np.zeros(n_tags, dtype=np.float32)
        examples = np.zeros(n_tags, dtype=np.float32)
        doc_vector = document_vector(chunks, vectors) if len(vectors) else None
        if exemplars is None and doc_vector is not None:
            exemplars = self.exemplar_votes_for(doc_vector[None, :])
            exemplars = exemplars[0] if exemplars is not None else None
        if sections is None:
            sections = readme_sections(doc.readme)
        head = None
        if self.index.head is not None:
            weights = np.array([c.weight for c in chunks], dtype=np.float32)
            head = self.head_for(head_inputs(np.asarray(vectors, dtype=np.float32), weights)[None, :])
        script = readme_counts(doc.description, doc.readme, sections)
        dense = mostly_cjk(script.share)  # mostly CJK: CJK keywords and cues count too
        if s.keyword_weight:
            # the opening holds as many words in Chinese as in English (`text.opening_text`)
            opening = f"{doc.description[:MAX_DESCRIPTION_CHARS]}\n{opening_text(sections, s.keyword_chars, dense)}"
            keyword = keyword_hits(opening, self._dense_evidence()[0] if dense else self._patterns)
            scores = scores + s.keyword_weight * keyword
        cues = self._dense_evidence()[1] if dense else self._cues
        if s.cue_weight and any(cues):
            raw = f"{doc.description[:MAX_DESCRIPTION_CHARS]}\n{doc.readme[: s.cue_chars]}"
            cue = cue_hits(raw, cues)
            scores = scores + s.cue_weight * cue
        chunk_examples = None
        if example_chunks is None and self.index.example_chunk_vectors is not None:
            example_chunks = self.search_example_chunks(vectors)
        if example_chunks is not None:
            chunk_examples = chunk_example_votes(*example_chunks, weights, self._example_label_matrix)
        if self.index.examples and doc_vector is not None:
            k = min(s.example_k, len(self.index.examples))
            sims, ids = self.index.faiss_examples().search(doc_vector[None, :].astype(np.float32), k)
            labels = [self._example_labels[i] for i in ids[0] if i >= 0]
            examples = example_votes(sims[0][: len(labels)], labels, n_tags)
            if labels and sims[0][0] >= SAME_TEXT and self.index.examples[ids[0][0]].corrected:
                return Evidence(
                    scores, keyword, cue, examples, tag_sims, labels[0][0], exemplars, chunk_examples,
                    cjk=script.share, chinese=script.chinese, head=head[0] if head is not None else None,
                )
        return Evidence(
            scores, keyword, cue, examples, tag_sims, None, exemplars, chunk_examples,
            cjk=script.share, chinese=script.chinese, head=head[0] if head is not None else None,
        )

    def _dense_evidence(self) -> tuple[list[KeywordPattern | None], list[list[CuePattern]]]:
        """Keyword and cue patterns for READMEs that are mostly CJK, compiled once."""
        if self._dense is None:
            tags = self.index.tags
            self._dense = (
                [keyword_pattern(self.index.keywords.get(tag.id, []), dense=True) for tag in tags],
                [cue_patterns(self.index.cues.get(tag.id, []), dense=True) for tag in tags],
            )
        return self._dense

    def head_for(self, inputs: np.ndarray) -> np.ndarray | None:
        """(docs x tags) tag head probabilities for `head.head_inputs` rows, in the index's tag
        order (0 for tags the head was not trained on); None when the index has no head."""
        if self.index.head is None:
            return None
        return self.index.head.for_tags(inputs, self._tag_ids)

    def exemplar_votes_for(self, doc_vectors: np.ndarray) -> np.ndarray | None:
        """(docs x tags) votes of the index's exemplars for these README vectors; None without exemplars."""
        if self.index.exemplar_vectors is None:
            return None
        return exemplar_votes(
            doc_vectors, self.index.exemplar_vectors, self._exemplar_labels, len(self.index.tags),
            exemplar_also=self._exemplar_also or None, also_weight=self.settings.exemplar_also_weight,
        )

    def decide(self, ev: Evidence) -> tuple[list[int], np.ndarray]:
        """The tags one README's evidence picks (positions, best first) and the per-tag values
        they were picked on (the ranker's chances, else the combined scores)."""
        picked, values = choose_tags(
            ev.scores[None, :],
            ev.keyword[None, :],
            ev.cue[None, :],
            ev.examples[None, :],
            self.settings,
            exemplars=ev.exemplars[None, :] if ev.exemplars is not None else None,
            tag_ids=self._tag_ids,
            chunk_examples=ev.chunk_examples[None, :] if ev.chunk_examples is not None else None,
            form=self._form,
            head=ev.head[None, :] if ev.head is not None else None,
            cjk=np.array([float(mostly_cjk(ev.cjk))]),
        )
        return picked[0], values[0]

    def _result(self, doc: Document, chunks: list[Chunk], ev: Evidence | None, explain: bool) -> TagResult:
        """The tags one README's evidence picks (None: the README had no text to embed)."""
        if not chunks or ev is None:
            return TagResult(doc.id, [], reason="no text to tag: the README and description are empty")
        chosen, selected_on = self.decide(ev)
        if ev.corrected is not None:  # a person tagged this very text
            chosen = list(ev.corrected)
        tags = [self.index.tags[i] for i in chosen]
        result = TagResult(doc.id, tags)
        if not tags:
            result.reason = "no tag scored above the threshold"
        if explain:
            for i in np.argsort(-selected_on)[:8]:
                result.scores[self.index.tags[i].name] = float(selected_on[i])
            for i in chosen:
                best = np.argsort(-ev.tag_sims[:, i])[:2]
                result.evidence[self.index.tags[i].name] = [chunks[j].text[:200] for j in best]
            result.language = {"cjk": round(ev.cjk, 3), "mostly_chinese": ev.chinese}
            note = language_note(ev.cjk, ev.chinese)
            if note:
                result.language["note"] = note
        return result

    def tag(self, readme: str, description: str = "", id: str = "", explain: bool = False) -> TagResult:
        return next(self.tag_many([Document(id, readme, description)], explain=explain))

    def tag_many(self, docs: Iterable[Document], batch_size: int = 64, explain: bool = False) -> Iterator[TagResult]:
        """Tag documents in order; chunks of `batch_size` documents share one encode call."""
        batch: list[Document] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) >= batch_size:
                yield from self._tag_batch(batch, explain)
                batch = []
        if batch:
            yield from self._tag_batch(batch, explain)

    def _tag_batch(self, docs: list[Document], explain: bool) -> list[TagResult]:
        # Clean each README once: chunking and the keyword opening both read the sections.
        per_doc_sections = [readme_sections(doc.readme) for doc in docs]
        per_doc = [self.chunks(doc, sections) for doc, sections in zip(docs, per_doc_sections, strict=True)]
        return self._results(docs, per_doc_sections, per_doc, explain)

    def _results(
        self, docs: list[Document], per_doc_sections: list[list[Section]], per_doc: list[list[Chunk]], explain: bool
    ) -> list[TagResult]:
        """Encode a batch's chunks in one call and tag each document."""
        vectors = self.encoder.encode([c.text for chunks in per_doc for c in chunks])
        evidence = self.evidence_batch(docs, per_doc_sections, per_doc, vectors)
        return [
            self._result(doc, chunks, ev, explain) for doc, chunks, ev in zip(docs, per_doc, evidence, strict=True)
        ]

    def evidence_batch(
        self,
        docs: list[Document],
        per_doc_sections: list[list[Section]],
        per_doc: list[list[Chunk]],
        vectors: np.ndarray,
    ) -> list[Evidence | None]:
        """Each document's evidence from its chunks' vectors (`vectors` are all chunks in order);
        None for a document with no chunk. One FAISS search and one pass over the exemplars serve
        the whole batch, not one per README."""
        spans, start = [], 0
        doc_vectors = np.zeros((len(docs), self.encoder.dimension), dtype=np.float32)
        for row, chunks in enumerate(per_doc):
            spans.append((start, start + len(chunks)))
            if chunks:
                doc_vectors[row] = document_vector(chunks, vectors[start : start + len(chunks)])
            start += len(chunks)
        votes = self.exemplar_votes_for(doc_vectors)
        text_sims = self._search(vectors)
        neighbours = self.search_example_chunks(vectors)
        out: list[Evidence | None] = []
        for row, (doc, sections, chunks) in enumerate(zip(docs, per_doc_sections, per_doc, strict=True)):
            a, b = spans[row]
            if not chunks:
                out.append(None)
                continue
            exemplars = votes[row] if votes is not None else None
            near = (neighbours[0][a:b], neighbours[1][a:b]) if neighbours is not None else None
            out.append(self.score(doc, chunks, vectors[a:b], sections, exemplars, text_sims[a:b], near))
        return out

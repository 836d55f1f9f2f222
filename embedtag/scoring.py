"""Turning similarities into tags: per-tag votes over chunks, keyword evidence, thresholds."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np


@dataclass
class ScoringSettings:
    """Every knob of scoring; stored in the index manifest so a result can be reproduced."""

    max_tags: int = 3
    # text: chunks and their weights
    max_tokens: int = 128
    max_chunks: int = 12
    description_weight: float = 3.0
    intro_weight: float = 2.0
    decay: float = 0.85
    # a tag's similarity to a chunk: mean of its `text_top_k` most similar texts
    text_top_k: int = 2
    # a tag's score: `mean_weight` x weighted mean over chunks + the rest x best chunk
    mean_weight: float = 0.8
    # the tag's name or an alias written in the description or README opening
    keyword_weight: float = 0.06
    keyword_chars: int = 600
    # README cues (install commands, usage lines...): weight of a tag's share of matching cues
    cue_weight: float = 0.06
    cue_chars: int = 30_000
    # labelled examples (prototypes): weight of the neighbours' tag votes, and how many
    example_weight: float = 0.0
    example_k: int = 10
    # selection
    threshold: float = 0.0
    margin: float = 0.07
    tag_bias: dict[int, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["tag_bias"] = {str(k): round(v, 6) for k, v in sorted(self.tag_bias.items())}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScoringSettings:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["tag_bias"] = {int(k): float(v) for k, v in data.get("tag_bias", {}).items()}
        return cls(**values)


def tag_similarities(chunk_text_sims: np.ndarray, text_tag_rows: np.ndarray, n_tags: int, top_k: int) -> np.ndarray:
    """(chunks x texts) similarities → (chunks x tags): mean of each tag's `top_k` best texts.

    Texts a FAISS search did not return carry NaN and count as the lowest similarity seen.
    """
    n_chunks = chunk_text_sims.shape[0]
    sims = np.where(np.isnan(chunk_text_sims), np.nanmin(chunk_text_sims, initial=0.0), chunk_text_sims)
    out = np.zeros((n_chunks, n_tags), dtype=np.float32)
    order = np.argsort(text_tag_rows, kind="stable")
    rows_sorted = text_tag_rows[order]
    starts = np.searchsorted(rows_sorted, np.arange(n_tags), side="left")
    ends = np.searchsorted(rows_sorted, np.arange(n_tags), side="right")
    for tag in range(n_tags):
        cols = order[starts[tag] : ends[tag]]
        if len(cols) == 0:
            out[:, tag] = -1.0
            continue
        block = sims[:, cols]
        k = min(top_k, block.shape[1])
        best = -np.partition(-block, k - 1, axis=1)[:, :k] if k < block.shape[1] else block
        out[:, tag] = best.mean(axis=1)
    return out


def aggregate_votes(tag_sims: np.ndarray, chunk_weights: np.ndarray, mean_weight: float) -> np.ndarray:
    """Each chunk votes its similarity to every tag; votes are weighted by chunk position.

    The weighted mean rewards tags the whole README is about; the max lets one clear
    sentence ("X is a Kubernetes operator") count even in a long README.
    """
    if tag_sims.shape[0] == 0:
        return np.zeros(tag_sims.shape[1], dtype=np.float32)
    weights = chunk_weights.astype(np.float32)
    mean = (weights[:, None] * tag_sims).sum(axis=0) / max(float(weights.sum()), 1e-9)
    out: np.ndarray = mean_weight * mean + (1.0 - mean_weight) * tag_sims.max(axis=0)
    return out


def keyword_pattern(terms: list[str]) -> re.Pattern[str] | None:
    """A case-insensitive whole-word pattern for a tag's name and aliases."""
    clean = sorted({t.strip().lower() for t in terms if len(t.strip()) >= 2}, key=len, reverse=True)
    if not clean:
        return None
    body = "|".join(re.escape(t) for t in clean)
    return re.compile(rf"(?<![\w-])(?:{body})(?![\w-])", re.IGNORECASE)


def keyword_hits(text: str, patterns: list[re.Pattern[str] | None]) -> np.ndarray:
    return np.array([1.0 if p is not None and p.search(text) else 0.0 for p in patterns], dtype=np.float32)


def cue_patterns(cues: list[str]) -> list[re.Pattern[str]]:
    return [re.compile(c, re.IGNORECASE | re.MULTILINE) for c in cues]


def cue_hits(text: str, patterns: list[list[re.Pattern[str]]], saturation: int = 3) -> np.ndarray:
    """Per tag, how many of its cues match, as a share of `saturation` (capped at 1)."""
    out = np.zeros(len(patterns), dtype=np.float32)
    for tag, pats in enumerate(patterns):
        if pats:
            out[tag] = min(sum(1 for p in pats if p.search(text)), saturation) / saturation
    return out


def example_votes(
    neighbour_sims: np.ndarray, neighbour_labels: list[tuple[tuple[int, ...], tuple[int, ...]]], n_tags: int
) -> np.ndarray:
    """Tag votes from the most similar labelled READMEs, weighted by similarity.

    `neighbour_labels` holds (core, also) tag positions; an `also` tag counts half.
    """
    votes = np.zeros(n_tags, dtype=np.float32)
    total = 0.0
    for sim, (core, also) in zip(neighbour_sims, neighbour_labels, strict=True):
        weight = max(float(sim), 0.0) ** 2
        total += weight
        for tag in core:
            votes[tag] += weight
        for tag in also:
            votes[tag] += 0.5 * weight
    return votes / total if total > 0 else votes


def select_tags(scores: np.ndarray, settings: ScoringSettings, bias: np.ndarray | None = None) -> list[int]:
    """At most `max_tags` tag positions, best first: above the threshold and near the best."""
    adjusted = scores - bias if bias is not None else scores
    order = np.argsort(-adjusted, kind="stable")[: settings.max_tags]
    if len(order) == 0:
        return []
    best = float(adjusted[order[0]])
    return [int(i) for i in order if adjusted[i] >= settings.threshold and adjusted[i] >= best - settings.margin]

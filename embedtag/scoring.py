"""Turning similarities into tags: per-tag votes over chunks, keyword evidence, thresholds,
and the calibrated ranker that weighs them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from embedtag.exemplars import ALSO_WEIGHT
from embedtag.text import CJK_CHARS


@dataclass
class ScoringSettings:
    """Every knob of scoring; stored in the index manifest so a result can be reproduced."""

    max_tags: int = 3
    # like the LLM it replaces, give every README with text at least this many tags (its best ones)
    # even when none clears the threshold; 0 lets a README get none (with a reason)
    min_tags: int = 1
    # text: chunks and their weights
    # 12 chunks of 64 tokens: F1 as good as 128-token chunks at 1.4x the speed (benchmarks/speed.md)
    max_tokens: int = 64
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
    cue_chars: int = 10_000  # cues past the first 10k characters changed no CV figure (dev set)
    # labelled examples (prototypes): weight of the neighbours' tag votes, and how many
    example_weight: float = 0.0
    example_k: int = 10
    # and per README chunk: its nearest chunks of labelled READMEs vote, this many each
    chunk_example_k: int = 30
    # exemplars without a ranker (a zero-shot index built with --exemplars): weight of their vote
    exemplar_weight: float = 0.0
    # an exemplar's secondary (`also`) tags vote with this share of its weight (core tags: 1)
    exemplar_also_weight: float = ALSO_WEIGHT
    # the tag head's probabilities without a ranker (an index with a head but not calibrated)
    head_weight: float = 0.0
    # selection
    threshold: float = 0.0
    margin: float = 0.07
    tag_bias: dict[int, float] = field(default_factory=dict)
    # fitted by `embedtag calibrate`; when present it replaces threshold and margin
    ranker: Ranker | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["tag_bias"] = {str(k): round(v, 6) for k, v in sorted(self.tag_bias.items())}
        data["ranker"] = self.ranker.to_json() if self.ranker is not None else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScoringSettings:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["tag_bias"] = {int(k): float(v) for k, v in data.get("tag_bias", {}).items()}
        values.setdefault("min_tags", 0)  # indexes written before min_tags existed: as they were
        ranker = data.get("ranker")
        values["ranker"] = Ranker.from_json(ranker) if ranker is not None else None
        return cls(**values)


# What the ranker sees of each (README, tag) pair. All are relative to the README itself, so one
# small set of weights serves any tag list, and tags without labelled examples still compete.
RANKER_FEATURES = (
    "score",  # zero-shot score: chunk votes + keyword + cue evidence (minus any tag bias)
    "gap",  # score minus the README's best score
    "first",  # the tag has the best score (1/0)
    "second",
    "third",
    "keyword",  # name or alias in the description or opening
    "cue",  # share of the tag's README cues that match
    "examples",  # labelled neighbours' vote
    "examples_gap",  # vote minus the README's best vote
    "examples_first",  # the tag has the neighbours' best vote (and a vote at all)
    "exemplars",  # nearest exemplars' vote, scaled to the README's best-voted tag (embedtag.exemplars)
    "exemplars_first",  # the tag has the exemplars' best vote
    "exemplars_top3",  # the tag is among the exemplars' three best votes
    # each README chunk's nearest chunks of labelled READMEs vote (see chunk_example_votes)
    "chunk_examples",  # the vote, scaled to the README's best-voted tag
    "chunk_examples_gap",  # vote minus the README's best vote
    "chunk_examples_first",  # the tag has the best vote
    "chunk_examples_top3",  # the tag is among the three best votes
    # a README is mostly one project form (lib, cli, web-app...: `TagGlosses.form`) with one or two
    # subjects: form tags compete with form tags, subjects with subjects
    "group_gap",  # score minus the best score of the tag's group (forms or subjects)
    "examples_group_gap",  # neighbours' vote minus the best vote of the tag's group
    # the trained tag head's probability (embedtag.head), 0 for tags it was not trained on
    "head",
    "head_gap",  # probability minus the README's best
    "head_first",  # the tag has the head's best probability
    "head_top3",  # the tag is among the head's three best
    # a README mostly in Chinese (or another CJK language: embedtag.language) is read poorly by the
    # English encoder: these let the ranker trust similarity less and keywords and the head more there
    "cjk_gap",  # mostly CJK x (score minus the README's best)
    "cjk_keyword",  # mostly CJK x keyword
    "cjk_head",  # mostly CJK x head
)


def _ranks(values: np.ndarray) -> np.ndarray:
    """Each entry's rank within its row (0 = largest; ties keep column order)."""
    ranks: np.ndarray = np.argsort(np.argsort(-values, axis=1, kind="stable"), axis=1, kind="stable")
    return ranks


def group_gap(values: np.ndarray, form: np.ndarray | None) -> np.ndarray:
    """(docs x tags) values minus the best value of each tag's group: the tags `form` marks, or
    the others (all one group when `form` is None)."""
    if form is None or not form.any() or form.all():
        gap: np.ndarray = values - values.max(axis=1, keepdims=True)
        return gap
    out = np.empty_like(values)
    for members in (form, ~form):
        out[:, members] = values[:, members] - values[:, members].max(axis=1, keepdims=True)
    return out


def ranker_features(
    scores: np.ndarray,
    keyword: np.ndarray,
    cue: np.ndarray,
    examples: np.ndarray,
    exemplars: np.ndarray | None = None,
    chunk_examples: np.ndarray | None = None,
    form: np.ndarray | None = None,
    head: np.ndarray | None = None,
    cjk: np.ndarray | None = None,
) -> np.ndarray:
    """(docs x tags) evidence → (docs x tags x features), in RANKER_FEATURES order; `form` marks
    the tag columns that name a project form (`TagIndex.form_mask`), `head` holds the tag head's
    probabilities (docs x tags) and `cjk` per README whether it is mostly CJK (1/0)."""
    rank = _ranks(scores)
    votes_rank = _ranks(examples)
    if exemplars is None:
        exemplars = np.zeros_like(scores)
    exemplar_rank = _ranks(exemplars)
    if chunk_examples is None:
        chunk_examples = np.zeros_like(scores)
    chunk_rank = _ranks(chunk_examples)
    if head is None:
        head = np.zeros_like(scores)
    head_rank = _ranks(head)
    dense = np.zeros((len(scores), 1)) if cjk is None else np.asarray(cjk, dtype=np.float64).reshape(-1, 1)
    gap = scores - scores.max(axis=1, keepdims=True)
    columns = [
        scores,
        gap,
        rank == 0,
        rank == 1,
        rank == 2,
        keyword,
        cue,
        examples,
        examples - examples.max(axis=1, keepdims=True),
        (votes_rank == 0) & (examples > 0),
        exemplars,
        (exemplar_rank == 0) & (exemplars > 0),
        (exemplar_rank < 3) & (exemplars > 0),
        chunk_examples,
        chunk_examples - chunk_examples.max(axis=1, keepdims=True),
        (chunk_rank == 0) & (chunk_examples > 0),
        (chunk_rank < 3) & (chunk_examples > 0),
        group_gap(scores, form),
        group_gap(examples, form),
        head,
        head - head.max(axis=1, keepdims=True),
        (head_rank == 0) & (head > 0),
        (head_rank < 3) & (head > 0),
        dense * gap,
        dense * keyword,
        dense * head,
    ]
    return np.stack([np.asarray(c, dtype=np.float64) for c in columns], axis=-1)


@dataclass
class Ranker:
    """A logistic layer over RANKER_FEATURES: the chance that a tag is one the annotator would pick.

    Tags whose chance reaches `threshold` are kept (at most `max_tags`), then shown best first by
    score + `order_example_weight` x examples: similarity orders them better than the chance does
    (the chance favours tags that are often right, the similarity the one this README is about).
    """

    weights: dict[str, float]
    intercept: float
    threshold: float
    order_example_weight: float = 0.1
    # per tag id: how much more (or less) often annotators pick the tag than its evidence says;
    # fitted only for tags with labelled examples, so a tag without any competes on evidence alone
    tag_bias: dict[int, float] = field(default_factory=dict)
    # ids of the tags it was fitted with (None: every tag of its index). A tag outside them is new
    # to it (a list it was carried over to, `embedtag/transfer.py`): see `lift_new_tags`
    fitted_tags: tuple[int, ...] | None = None

    def new_tags(self, tag_ids: Sequence[int]) -> np.ndarray:
        """Per tag id, whether it is new to the ranker (not among `fitted_tags`)."""
        if self.fitted_tags is None:
            return np.zeros(len(tag_ids), dtype=bool)
        fitted = set(self.fitted_tags)
        return np.array([t not in fitted for t in tag_ids], dtype=bool)

    def bias_vector(self, tag_ids: Sequence[int] | None, n_tags: int) -> np.ndarray:
        if tag_ids is None or not self.tag_bias:
            return np.zeros(n_tags)
        return np.array([self.tag_bias.get(t, 0.0) for t in tag_ids])

    def probabilities(self, features: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
        w = np.array([self.weights.get(name, 0.0) for name in RANKER_FEATURES])
        logits = features @ w + self.intercept
        if bias is not None:
            logits = logits + bias
        logits = np.clip(logits, -30.0, 30.0)
        out: np.ndarray = 1.0 / (1.0 + np.exp(-logits))
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "weights": {k: round(v, 6) for k, v in self.weights.items()},
            "intercept": round(self.intercept, 6),
            "threshold": round(self.threshold, 6),
            "order_example_weight": self.order_example_weight,
            "tag_bias": {str(k): round(v, 6) for k, v in sorted(self.tag_bias.items())},
            **({"fitted_tags": list(self.fitted_tags)} if self.fitted_tags is not None else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Ranker:
        unknown = sorted(set(data["weights"]) - set(RANKER_FEATURES))
        if unknown:  # fitted by another version: ignoring a weight would silently change the tags
            raise ValueError(f"ranker weights for unknown features {unknown}; run `embedtag calibrate` again")
        return cls(
            weights={str(k): float(v) for k, v in data["weights"].items()},
            intercept=float(data["intercept"]),
            threshold=float(data["threshold"]),
            order_example_weight=float(data.get("order_example_weight", 0.1)),
            tag_bias={int(k): float(v) for k, v in data.get("tag_bias", {}).items()},
            fitted_tags=tuple(int(t) for t in data["fitted_tags"]) if "fitted_tags" in data else None,
        )


def tag_similarities(chunk_text_sims: np.ndarray, text_tag_rows: np.ndarray, n_tags: int, top_k: int) -> np.ndarray:
    """(chunks x texts) similarities → (chunks x tags): mean of each tag's `top_k` best texts.

    Texts a FAISS search did not return carry NaN and count as the lowest similarity seen;
    a tag with no text gets -1.
    """
    n_chunks, n_texts = chunk_text_sims.shape
    sims = np.where(np.isnan(chunk_text_sims), np.nanmin(chunk_text_sims, initial=0.0), chunk_text_sims)
    counts = np.bincount(text_tag_rows, minlength=n_tags)[:n_tags]
    width = max(int(counts.max(initial=0)), 1)
    # (tags x width) table of each tag's text columns, padded with a column of -inf
    order = np.argsort(text_tag_rows, kind="stable")
    rows_sorted = text_tag_rows[order]
    slot = np.arange(len(order)) - np.searchsorted(rows_sorted, rows_sorted, side="left")
    layout = np.full((n_tags, width), n_texts)
    layout[rows_sorted, slot] = order
    padded = np.concatenate([sims, np.full((n_chunks, 1), -np.inf, dtype=sims.dtype)], axis=1)
    grouped = padded[:, layout]  # chunks x tags x width
    k = min(top_k, width)
    best = -np.partition(-grouped, k - 1, axis=2)[:, :, :k] if k < width else grouped
    taken = np.minimum(counts, top_k)
    total = np.where(np.isfinite(best), best, 0.0).sum(axis=2)
    out = np.where(taken > 0, total / np.maximum(taken, 1), -1.0).astype(np.float32)
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


@dataclass(frozen=True)
class KeywordPattern:
    """A tag's name and aliases as one whole-word, case-insensitive regex; the regex only runs
    when one of the casefolded terms occurs in the text at all (most tags are absent)."""

    regex: re.Pattern[str]
    terms: tuple[str, ...]

    def matches(self, text: str, folded: str) -> bool:
        """`folded` is `text.casefold()`, computed once for all tags."""
        return any(term in folded for term in self.terms) and self.regex.search(text) is not None

    def search(self, text: str) -> bool:
        return self.matches(text, text.casefold())


# In text that is mostly CJK, a character that continues a Latin word: an ASCII letter, digit,
# underscore or hyphen. Chinese and Japanese write no spaces, so a CJK neighbour ends a word
# ("基于Kubernetes的"). ASCII only: a class holding the CJK ranges would cost ~15 ms of regex
# compilation per term, seconds per index.
_DENSE_WORD_CHAR = r"[A-Za-z0-9_-]"
_CJK = re.compile(f"[{CJK_CHARS}]")
# a space between a Latin and a CJK part of a term ("HTTP 客户端"), which Chinese text often leaves out
_MIXED_SPACE = re.compile(rf"(?<=[{CJK_CHARS}])\\ (?=[A-Za-z0-9])|(?<=[A-Za-z0-9])\\ (?=[{CJK_CHARS}])")


def _dense_whole_word(term: str) -> str:
    """`term` as a regex that cannot match inside a longer word of mostly-CJK text; an edge that
    is a CJK character needs no boundary (CJK words run together: 权限认证 in 轻量级权限认证框架),
    and a space between its Latin and CJK parts may be left out (HTTP客户端)."""
    left = "" if _CJK.match(term[0]) else rf"(?<!{_DENSE_WORD_CHAR})"
    right = "" if _CJK.match(term[-1]) else rf"(?!{_DENSE_WORD_CHAR})"
    body = _MIXED_SPACE.sub(r"\\s?", re.escape(term))
    return f"{left}{body}{right}"


def keyword_pattern(terms: list[str], dense: bool = False) -> KeywordPattern | None:
    """A case-insensitive whole-word pattern for a tag's name and aliases.

    `dense`: the pattern for READMEs that are mostly CJK (`embedtag.language.mostly_cjk`), where
    CJK terms (鉴权) count and need no word boundary. Otherwise CJK terms are left out, so an
    English README that quotes a Chinese word keeps the tags it had before CJK support.
    """
    clean = sorted({t.strip().lower() for t in terms if len(t.strip()) >= 2}, key=len, reverse=True)
    if not dense:
        clean = [t for t in clean if not _CJK.search(t)]
    if not clean:
        return None
    if dense:
        regex = re.compile("|".join(_dense_whole_word(t) for t in clean), re.IGNORECASE)
        # the quick check must pass "HTTP客户端" for the term "HTTP 客户端" too
        unspaced = [_MIXED_SPACE.sub("", re.escape(t)).replace("\\", "") for t in clean if " " in t]
        folded = tuple(dict.fromkeys(t.casefold() for t in [*clean, *unspaced]))
        return KeywordPattern(regex, folded)
    body = "|".join(re.escape(t) for t in clean)
    regex = re.compile(rf"(?<![\w-])(?:{body})(?![\w-])", re.IGNORECASE)
    return KeywordPattern(regex, tuple(t.casefold() for t in clean))


def keyword_hits(text: str, patterns: list[KeywordPattern | None]) -> np.ndarray:
    folded = text.casefold()
    return np.array([1.0 if p is not None and p.matches(text, folded) else 0.0 for p in patterns], dtype=np.float32)


@dataclass(frozen=True)
class CuePattern:
    """A README cue regex and a literal every match must contain (casefolded; "" if none known).

    Checking the literal with `in` first skips most regex scans: 44 cue regexes over 10,000
    characters were a third of the time spent outside the encoder.
    """

    regex: re.Pattern[str]
    literal: str


_REGEX_SPECIAL = set("\\.^$*+?{}[]|()")


def required_literal(pattern: str) -> str:
    """The plain text a match of `pattern` must start with, after leading anchors (\\b, ^, \\s*).

    Conservative: "" whenever the pattern could match without it (alternation at the top
    level, a group or class at the start)."""
    depth, i, in_class = 0, 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2  # an escaped character
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return ""  # a top-level alternation: any branch may match
        i += 1
    rest = pattern
    for anchor in ("^", "\\s*", "\\b"):
        if rest.startswith(anchor):
            rest = rest[len(anchor) :]
    literal = ""
    for char in rest:
        if char in _REGEX_SPECIAL:
            if char in "?*{" and literal:
                literal = literal[:-1]  # the character before is optional
            break
        literal += char
    return literal.casefold() if len(literal) >= 3 else ""


def cue_patterns(cues: list[str], dense: bool = False) -> list[CuePattern]:
    """Compiled cues; `dense`: for READMEs that are mostly CJK, the only ones CJK cues (命令行)
    are kept for, as `keyword_pattern` keeps CJK terms."""
    if not dense:
        cues = [c for c in cues if not _CJK.search(c)]
    return [CuePattern(re.compile(c, re.IGNORECASE | re.MULTILINE), required_literal(c)) for c in cues]


def cue_hits(text: str, patterns: list[list[CuePattern]], saturation: int = 3) -> np.ndarray:
    """Per tag, how many of its cues match, as a share of `saturation` (capped at 1)."""
    out = np.zeros(len(patterns), dtype=np.float32)
    folded = text.casefold()
    for tag, cues in enumerate(patterns):
        if cues:
            found = sum(1 for c in cues if (not c.literal or c.literal in folded) and c.regex.search(text))
            out[tag] = min(found, saturation) / saturation
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


def label_matrix(labels: Sequence[tuple[tuple[int, ...], tuple[int, ...]]], n_tags: int) -> np.ndarray:
    """(examples x tags): 1 for a core tag, 0.5 for an `also` tag."""
    out = np.zeros((len(labels), n_tags), dtype=np.float32)
    for row, (core, also) in enumerate(labels):
        out[row, list(also)] = 0.5
        out[row, list(core)] = 1.0
    return out


def chunk_example_votes(
    sims: np.ndarray, owners: np.ndarray, chunk_weights: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """Tag votes of labelled READMEs' chunks nearest to each chunk of one README.

    `sims` and `owners` are (chunks x k): the similarity of each neighbour chunk and the row of
    the labelled README it belongs to (-1: none); `labels` is `label_matrix`. Each neighbour votes
    its README's tags with weight similarity², each chunk with its position weight; the result
    is scaled so the best-voted tag has 1. Chunks catch what a README-level vote averages away:
    one section that reads like a CLI's usage, another like a library's API.
    """
    n_tags = labels.shape[1]
    valid = owners >= 0
    if not valid.any():
        return np.zeros(n_tags, dtype=np.float32)
    weight = np.where(valid, np.maximum(sims, 0.0) ** 2, 0.0) * chunk_weights[:, None]
    votes = (weight[valid][:, None] * labels[owners[valid]]).sum(axis=0)
    best = float(votes.max(initial=0.0))
    out: np.ndarray = (votes / best if best > 0 else votes).astype(np.float32)
    return out


def choose_tags(
    scores: np.ndarray,
    keyword: np.ndarray,
    cue: np.ndarray,
    examples: np.ndarray,
    settings: ScoringSettings,
    exemplars: np.ndarray | None = None,
    tag_ids: Sequence[int] | None = None,
    chunk_examples: np.ndarray | None = None,
    form: np.ndarray | None = None,
    head: np.ndarray | None = None,
    cjk: np.ndarray | None = None,
) -> tuple[list[list[int]], np.ndarray]:
    """The tags for each README (rows of docs x tags evidence), best first, and the per-tag
    values they were selected on (the ranker's chances, else the combined scores).

    `scores` are zero-shot scores with any tag bias already taken off; `tag_ids` (the index's
    tag ids, in column order) place the ranker's per-tag biases and mark the tags new to it;
    `form` marks the tags that name a project form; `head` holds the tag head's probabilities
    and `cjk` per README whether it is mostly CJK (1/0).
    """
    ranker = settings.ranker
    if ranker is None:
        combined = scores + settings.example_weight * examples
        if exemplars is not None:
            combined = combined + settings.exemplar_weight * exemplars
        if head is not None:
            combined = combined + settings.head_weight * head
        return [select_tags(row, settings) for row in combined], combined
    features = ranker_features(scores, keyword, cue, examples, exemplars, chunk_examples, form, head, cjk)
    chances = ranker.probabilities(features, ranker.bias_vector(tag_ids, scores.shape[1]))
    if tag_ids is not None:
        new = ranker.new_tags(tag_ids)
        if new.any():
            chances = lift_new_tags(chances, scores, new, settings)
    order_by = scores + ranker.order_example_weight * examples
    chosen = []
    for row_chances, row_order in zip(chances, order_by, strict=True):
        kept = likeliest_tags(row_chances, ranker.threshold, settings)
        chosen.append(sorted(kept, key=lambda t: -row_order[t]))
    return chosen, chances


def likeliest_tags(chances: np.ndarray, threshold: float, settings: ScoringSettings) -> list[int]:
    """One README's tag positions, likeliest first: at most `max_tags` with a chance at or above
    `threshold`, and at least the likeliest `min_tags` whatever their chances."""
    best = np.argsort(-chances, kind="stable")[: min(settings.max_tags, len(chances))]
    kept = [int(t) for t in best if chances[t] >= threshold]
    return kept if len(kept) >= settings.min_tags else [int(t) for t in best[: settings.min_tags]]


def lift_new_tags(chances: np.ndarray, scores: np.ndarray, new: np.ndarray, settings: ScoringSettings) -> np.ndarray:
    """Chances with the `new` tags (ones the ranker was not fitted with: new to a list it was
    carried over to) raised to the ranker's threshold where the zero-shot rule keeps them (among
    the best `max_tags` scores, above `threshold`, within `margin` of the best).

    Such a tag has no labelled examples, votes or bias, so the ranker alone would never pick it;
    at the threshold it is kept after the tags the ranker is surer of.
    """
    assert settings.ranker is not None
    best = scores.max(axis=1, keepdims=True)
    kept = (_ranks(scores) < settings.max_tags) & (scores >= settings.threshold) & (scores >= best - settings.margin)
    lifted: np.ndarray = np.where(new[None, :] & kept, np.maximum(chances, settings.ranker.threshold), chances)
    return lifted


def select_tags(scores: np.ndarray, settings: ScoringSettings, bias: np.ndarray | None = None) -> list[int]:
    """At most `max_tags` tag positions, best first: above the threshold and near the best (and
    at least the best `min_tags`, whatever their scores)."""
    adjusted = scores - bias if bias is not None else scores
    order = np.argsort(-adjusted, kind="stable")[: settings.max_tags]
    if len(order) == 0:
        return []
    best = float(adjusted[order[0]])
    kept = [int(i) for i in order if adjusted[i] >= settings.threshold and adjusted[i] >= best - settings.margin]
    return kept if len(kept) >= settings.min_tags else [int(i) for i in order[: settings.min_tags]]

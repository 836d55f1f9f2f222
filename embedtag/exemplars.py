"""Exemplars: one-line descriptions of real projects with the tags they stand under.

Curated "awesome" lists put thousands of projects under sections that map to tags; their
descriptions are cheap, plentiful (silver) evidence of what a project with a tag looks like.
An index keeps only their vectors and tag ids, never their text. A README's nearest exemplars
vote for their tags, which is one of the ranker's features.

File format (JSONL, one object per line), either annotator labels as in a labelled README file,
`{"text": "A tool for ...", "core": ["cli", "git"], "also": ["dev-tool"]}` (`core`: the tags the
project stands under, `also`: defensible but secondary ones, whose vote weighs less:
`ScoringSettings.exemplar_also_weight`), or plain section labels, `{"text": "...", "tags": ["cli"]}`
(taken as `core`). A line with `core` ignores its `tags`; other fields are ignored. Tag names are
matched after trimming, case-insensitively; tags not in the list are dropped, and a line left with
no core tag is skipped (counted, not an error).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedtag.errors import InputError

# How many nearest exemplars vote for a README (5-fold CV on the dev set: 10 ≥ 30 ≥ 100).
EXEMPLAR_K = 10
# Weight of their vote in an index with exemplars but no ranker (a calibrated ranker weighs it itself).
EXEMPLAR_WEIGHT = 0.05
# Weight of an exemplar's `also` tags in its vote, against 1 for its core tags (the default of
# `ScoringSettings.exemplar_also_weight`). 5-fold CV on the dev set (one split): strict F1 0.656 at 0,
# 0.657 at 0.25, 0.658 at 0.5; the section labels (`tags`) gave 0.645.
ALSO_WEIGHT = 0.5


@dataclass(frozen=True)
class Exemplar:
    """A project description and the tag keys it stands under (`tags`: core, `also`: secondary)."""

    text: str
    tags: tuple[str, ...]
    also: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExemplarFile:
    """What `read_exemplars` found: the usable exemplars and what it left out."""

    exemplars: list[Exemplar]
    skipped_no_known_tag: int
    unknown_tags: dict[str, int]


def read_exemplars(path: str | Path, tag_keys: set[str], other_names: Mapping[str, str] | None = None) -> ExemplarFile:
    """Read an exemplar JSONL file; a malformed line stops with its line number. `other_names`
    maps names the file may use (a shipped tag's, `k8s`) to the list's name for that tag."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"exemplar file {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"exemplar file {p} cannot be read ({exc}); pass a UTF-8 JSONL file") from None
    by_folded = {key.casefold(): key for key in tag_keys}
    for other, list_key in (other_names or {}).items():
        if list_key in tag_keys:
            by_folded.setdefault(other.strip().casefold(), list_key)
    exemplars: list[Exemplar] = []
    skipped = 0
    unknown: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{p}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where} is not valid JSON ({exc.msg}); each line must be one JSON object") from None
        if not isinstance(item, dict):
            raise InputError(f"{where} must be a JSON object with 'text' and 'core' (or 'tags')")
        text = item.get("text")
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{where} has no 'text' (a non-empty string): each exemplar needs its description")
        field = "core" if "core" in item else "tags"
        names = item.get(field)
        also_names = item.get("also", []) if field == "core" else []
        for what, value in ((field, names), ("also", also_names)):
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise InputError(f"{where}: '{what}' must be a list of tag names")
        known: list[str] = []
        also: list[str] = []
        assert isinstance(names, list) and isinstance(also_names, list)  # checked just above
        for name, into in [*((n, known) for n in names), *((n, also) for n in also_names)]:
            key = by_folded.get(name.strip().casefold())
            if key is None:
                unknown[name.strip()] = unknown.get(name.strip(), 0) + 1
            elif key not in known and key not in also:
                into.append(key)
        if not known:
            skipped += 1
            continue
        exemplars.append(Exemplar(text.strip(), tuple(known), tuple(also)))
    if not exemplars:
        raise InputError(f"exemplar file {p} has no exemplar with a tag from the tag list")
    return ExemplarFile(exemplars, skipped, unknown)


def exemplar_votes(
    doc_vectors: np.ndarray, exemplar_vectors: np.ndarray, exemplar_tags: Sequence[tuple[int, ...]], n_tags: int,
    k: int = EXEMPLAR_K, exemplar_also: Sequence[tuple[int, ...]] | None = None, also_weight: float = ALSO_WEIGHT,
) -> np.ndarray:
    """(docs x tags) votes of each README's `k` nearest exemplars, weighted by similarity²,
    scaled so the README's best-voted tag has 1 (`exemplar_tags` are tag positions; an exemplar's
    `exemplar_also` tags vote with `also_weight` of its weight).

    Scaling per README rather than per tag is what keeps the many `lib` and `julian` exemplars
    from outvoting the rest: a tag wins only where its exemplars are the nearest ones.
    """
    out = np.zeros((len(doc_vectors), n_tags), dtype=np.float32)
    if len(doc_vectors) == 0 or len(exemplar_vectors) == 0:
        return out
    k = min(k, len(exemplar_vectors))
    # exemplars x docs: one pass over the (large) exemplar matrix for the whole batch
    sims = (exemplar_vectors @ doc_vectors.astype(np.float32).T).T
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    for row in range(len(doc_vectors)):
        weights = np.maximum(sims[row, top[row]], 0.0) ** 2
        for weight, j in zip(weights, top[row], strict=True):
            for tag in exemplar_tags[j]:
                out[row, tag] += weight
            if exemplar_also is not None and also_weight:
                for tag in exemplar_also[j]:
                    out[row, tag] += also_weight * weight
    best = out.max(axis=1, keepdims=True)
    scaled: np.ndarray = np.where(best > 0, out / np.maximum(best, 1e-9), 0.0).astype(np.float32)
    return scaled

"""Carrying what an index has learned over to another tag list.

A prompt (or an admin editing the list) may bring a tag list that differs from the shipped one by
a tag or two. Everything the shipped index learned is kept for the tags the new list shares with
it, matched by name (trimmed, case-folded), else by another spelling of the name or of its
expansion (`kubernetes` for `k8s`, `databases` for `database`); ids may differ:

- exemplars: those standing under a shared tag, with their tags mapped to the new ids;
- labelled examples: all of them (their vectors shared, not copied), labels mapped, labels of
  tags the new list lacks dropped: such a README still tells its neighbours "not these tags";
- the ranker: its weights read evidence, not tags, so they hold for any list; the per-tag biases
  follow their tags. A tag new to the list gets no bias and no votes, so it is kept where the
  zero-shot rule would keep it (`scoring.lift_new_tags`).

Without this, any other list was scored zero-shot: with three tags added to the shipped list,
strict F1 0.550 instead of 0.668 on the dev set (benchmarks/tag_lists.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace

from embedtag.exemplars import EXEMPLAR_WEIGHT
from embedtag.glosses import TagGlosses
from embedtag.index import TagIndex
from embedtag.scoring import ScoringSettings
from embedtag.tags import Tag, load_tags

# Share of a new list's tags that must be the source's (by name) for the ranker and examples to
# carry over; below it the list is scored zero-shot. On the dev set, with half the tags renamed
# to new names carrying over won (strict F1 0.552 vs 0.481); with three quarters renamed the two
# tied (0.390 vs 0.392; `scripts/tag_list_benchmark.py --min-shared 0`).
MIN_SHARED = 0.5


def name_key(text: str) -> str:
    """A tag name (or expansion) as compared across lists: case, separators and a plural s aside."""
    words = [w for w in re.split(r"[-_\s/.]+", text.strip().casefold()) if w]
    if words and len(words[-1]) > 3 and words[-1].endswith("s") and not words[-1].endswith("ss"):
        words[-1] = words[-1][:-1]
    return " ".join(words)


def id_map(source: list[Tag], target: list[Tag], expansions: Mapping[str, str] | None = None) -> dict[int, int]:
    """Source tag id → target tag id for the tags both lists name: the same trimmed, case-folded
    name first; then, one to one, another spelling of a source tag's name or of its expansion
    (`expansions`, by source name): `kubernetes` for `k8s`, `library` for `lib`, `databases` for
    `database`. A spelling that could be two tags maps to neither."""
    new_id = {tag.key.casefold(): tag.id for tag in target}
    mapping = {tag.id: new_id[tag.key.casefold()] for tag in source if tag.key.casefold() in new_id}
    spellings: dict[str, set[int]] = {}
    for tag in source:
        if tag.id not in mapping:
            keys = {name_key(tag.key)}
            if expansions and tag.key in expansions:
                keys.add(name_key(expansions[tag.key]))
            for key in keys:
                spellings.setdefault(key, set()).add(tag.id)
    taken = set(mapping.values())
    claims: dict[int, list[int]] = {}
    for tag in target:
        olds = spellings.get(name_key(tag.key), set())
        if tag.id not in taken and len(olds) == 1:
            claims.setdefault(next(iter(olds)), []).append(tag.id)
    mapping.update({old: news[0] for old, news in claims.items() if len(news) == 1})
    return mapping


def carried_glosses(
    source: list[Tag], target: list[Tag], mapping: dict[int, int], glosses: Mapping[str, TagGlosses]
) -> dict[str, TagGlosses]:
    """`glosses` plus, for each target tag mapped to a source tag under another name, the source
    tag's glosses under the target's name (a name with glosses of its own keeps them)."""
    out = dict(glosses)
    new_key = {tag.id: tag.key for tag in target}
    for tag in source:
        key = new_key[mapping[tag.id]] if tag.id in mapping else None
        if key is not None and key not in out and tag.key in glosses:
            out[key] = glosses[tag.key]
    return out


def match_tags(
    source: list[Tag], target: list[Tag], glosses: Mapping[str, TagGlosses]
) -> tuple[dict[int, int], dict[str, TagGlosses]]:
    """`id_map` with the gloss file's expansions, and the glosses to embed `target` with
    (`carried_glosses`): a tag spelt another way (`kubernetes` for `k8s`) is the source tag,
    curated glosses and all."""
    mapping = id_map(source, target, {key: g.expansion for key, g in glosses.items()})
    return mapping, carried_glosses(source, target, mapping, glosses)


def curated_for(tags: list[Tag], glosses: Mapping[str, TagGlosses]) -> dict[str, TagGlosses]:
    """`glosses` plus, for each tag of `tags` that spells a shipped tag another way (`kubernetes`,
    `library`), that tag's glosses under its name: a list of one's own starts from the curated
    glosses (and project forms) wherever it names a shipped tag."""
    return match_tags(load_tags(), tags, glosses)[1]


def shipped_names(tags: list[Tag], glosses: Mapping[str, TagGlosses]) -> dict[str, str]:
    """Shipped tag name → the name `tags` gives that tag where it spells it another way (`k8s` →
    `kubernetes`): an exemplar file written for the shipped list still counts for such a tag."""
    shipped = load_tags()
    mapping = id_map(shipped, tags, {key: g.expansion for key, g in glosses.items()})
    name = {tag.id: tag.key for tag in tags}
    return {
        tag.key: name[mapping[tag.id]]
        for tag in shipped
        if tag.id in mapping and name[mapping[tag.id]].casefold() != tag.key.casefold()
    }


def transfer_exemplars(source: TagIndex, target: TagIndex, mapping: dict[int, int] | None = None) -> TagIndex:
    """`target` plus the exemplars of `source` that stand under a tag `target`'s list also has
    (ids mapped to the new list's by `mapping`, default `id_map`). An exemplar none of whose tags
    is in the new list is left out."""
    if source.exemplar_vectors is None or not source.exemplar_tags:
        return target
    mapping = id_map(source.tags, target.tags) if mapping is None else mapping
    rows: list[int] = []
    labels: list[tuple[int, ...]] = []
    for row, ids in enumerate(source.exemplar_tags):
        mapped = tuple(mapping[t] for t in ids if t in mapping)
        if mapped:
            rows.append(row)
            labels.append(mapped)
    if not rows:
        return target
    # every exemplar kept: share the array rather than copy 20 MB per list
    vectors = source.exemplar_vectors if len(rows) == len(source.exemplar_tags) else source.exemplar_vectors[rows]
    return replace(target, exemplar_tags=labels, exemplar_vectors=vectors, exemplar_source=source.exemplar_source)


def transfer_examples(source: TagIndex, target: TagIndex, mapping: dict[int, int] | None = None) -> TagIndex:
    """`target` plus all of `source`'s labelled examples, labels mapped to the new ids. Their
    vectors (and FAISS indexes) are shared with `source`, not copied."""
    if not source.examples or source.example_vectors is None:
        return target
    mapping = id_map(source.tags, target.tags) if mapping is None else mapping
    examples = [
        replace(
            e,
            core=tuple(mapping[t] for t in e.core if t in mapping),
            also=tuple(mapping[t] for t in e.also if t in mapping),
        )
        for e in source.examples
    ]
    return replace(
        target,
        examples=examples,
        example_vectors=source.example_vectors,
        example_chunk_vectors=source.example_chunk_vectors,
        _faiss_examples=source.faiss_examples(),
        _faiss_example_chunks=source.faiss_example_chunks(),
    )


def zero_shot_settings(settings: ScoringSettings, exemplars: bool) -> ScoringSettings:
    """`settings` without anything fitted to a tag list: no ranker, biases or example weight (the
    exemplars' vote, where there are exemplars, is added with its fixed weight)."""
    return replace(
        settings, example_weight=0.0, tag_bias={}, ranker=None, exemplar_weight=EXEMPLAR_WEIGHT if exemplars else 0.0
    )


def transfer_settings(settings: ScoringSettings, mapping: dict[int, int], source_ids: list[int]) -> ScoringSettings:
    """`settings` with per-tag biases (of the ranker and of the zero-shot score) moved to the new
    ids, biases of tags the new list lacks dropped, and the ranker's fitted tags (default: all of
    `source_ids`) mapped, so that it knows which tags are new to it."""
    tag_bias = {mapping[t]: v for t, v in settings.tag_bias.items() if t in mapping}
    ranker = settings.ranker
    if ranker is not None:
        fitted = ranker.fitted_tags if ranker.fitted_tags is not None else tuple(source_ids)
        ranker = replace(
            ranker,
            tag_bias={mapping[t]: v for t, v in ranker.tag_bias.items() if t in mapping},
            fitted_tags=tuple(sorted(mapping[t] for t in fitted if t in mapping)),
        )
    return replace(settings, tag_bias=tag_bias, ranker=ranker)


def shares_enough(mapping: dict[int, int], target: list[Tag], min_shared: float = MIN_SHARED) -> bool:
    """Whether `target` names enough of the source's tags (`mapping`) for its ranker and examples
    to carry over."""
    return bool(target) and len(mapping) >= min_shared * len(target)


def without_learning(index: TagIndex) -> TagIndex:
    """Only the tag list and its embedded texts: no examples, exemplars or fitted settings."""
    return replace(
        index,
        settings=zero_shot_settings(index.settings, exemplars=False),
        examples=[],
        example_vectors=None,
        example_chunk_vectors=None,
        exemplar_tags=[],
        exemplar_vectors=None,
        exemplar_source="",
        _faiss_examples=None,
        _faiss_example_chunks=None,
    )


def transfer(
    source: TagIndex, target: TagIndex, min_shared: float = MIN_SHARED, mapping: dict[int, int] | None = None
) -> TagIndex:
    """`target`'s tag texts with what `source` learned that applies to its list: the exemplars of
    shared tags always; the labelled examples and the fitted ranker when at least `min_shared` of
    the list's tags are `source`'s (else it scores zero-shot). Anything `target` held is replaced.
    `mapping`: source id → target id (default `id_map` by name)."""
    mapping = id_map(source.tags, target.tags) if mapping is None else mapping
    index = transfer_exemplars(source, without_learning(target), mapping)
    if shares_enough(mapping, target.tags, min_shared):
        index = transfer_examples(source, index, mapping)
        settings = transfer_settings(source.settings, mapping, [tag.id for tag in source.tags])
    else:
        settings = zero_shot_settings(source.settings, index.exemplar_vectors is not None)
    return replace(index, settings=settings)

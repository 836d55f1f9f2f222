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

This module is the policy (which tags are the same across lists, how many must be shared); the
carrying itself is `TagIndex.retarget`, so nothing here reaches into an index's arrays.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import replace

from embedtag.glosses import TagGlosses
from embedtag.index import TagIndex
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


def transfer(
    source: TagIndex, target: TagIndex, min_shared: float = MIN_SHARED, mapping: dict[int, int] | None = None
) -> TagIndex:
    """`source.retarget(target, ...)` with this module's policy: tags matched by name (`id_map`)
    unless `mapping` (source id → target id) says otherwise, and `MIN_SHARED` of them needed for
    the labelled examples and the ranker to carry over."""
    return source.retarget(target, id_map(source.tags, target.tags) if mapping is None else mapping, min_shared)


def transfer_exemplars(source: TagIndex, target: TagIndex, mapping: dict[int, int] | None = None) -> TagIndex:
    """`target` plus the exemplars of `source` that stand under a tag `target`'s list also has
    (ids mapped by `mapping`, default `id_map`); `target`'s other learning is kept."""
    mapping = id_map(source.tags, target.tags) if mapping is None else mapping
    carried = source.retarget(target, mapping, min_shared=math.inf)  # no list shares that much: exemplars only
    if carried.exemplar_vectors is None:
        return target  # none to carry: the very same index, not a copy
    return replace(
        target, exemplar_tags=carried.exemplar_tags, exemplar_also=carried.exemplar_also,
        exemplar_vectors=carried.exemplar_vectors, exemplar_source=carried.exemplar_source,
    )


def without_learning(index: TagIndex) -> TagIndex:
    """Only the tag list and its embedded texts (`TagIndex.without_learning`)."""
    return index.without_learning()

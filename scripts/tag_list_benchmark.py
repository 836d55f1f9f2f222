"""How well embedtag tags with a tag list other than the shipped one (a prompt's own list, or an
admin's edited list): tags added, removed or renamed, under k-fold CV on a labelled set.

    .venv/bin/python scripts/tag_list_benchmark.py ../shared/data/dev/items.jsonl --out benchmarks/tag_lists.md
    .venv/bin/python scripts/tag_list_benchmark.py ../shared/data/dev/items.jsonl --limit 30 --folds 2 --out /tmp/t.md

Per fold, an index is calibrated on the other folds exactly as `embedtag calibrate` does (ranker,
labelled examples, the shipped exemplars); each list's tagger then comes from `IndexCache`, the
code the prompt path and the OpenAI-compatible API run, and tags the held-out READMEs. Two
regimes side by side:

- transfer: the list keeps the ranker, examples and exemplars of the tags it shares (by name)
  with the calibrated list, when it shares at least MIN_SHARED of its tags;
- zero-shot: the list is scored zero-shot plus the exemplars of shared tags (what every list
  other than the shipped one got before `embedtag/transfer.py`).

Gold follows each list: a renamed tag's gold is renamed, a removed tag's gold dropped (an item
left with no gold tag is not scored). New tags are never gold, so a list with new tags can only
lose precision to them. Names here are the script's own, not data.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from harness import REPO, load_avg, md_head, md_row

sys.path.insert(0, str(REPO))

from embedtag.build import with_examples
from embedtag.calibrate import calibrate, folds, score_labelled
from embedtag.encoders import Encoder, load_encoder
from embedtag.evaluate import GoldItem, Report, evaluate
from embedtag.glosses import expand_name
from embedtag.index import default_index_path, load_index
from embedtag.index_cache import IndexCache
from embedtag.records import LabelledRecord, read_labelled
from embedtag.tagger import Tagger
from embedtag.tags import Tag
from embedtag.transfer import MIN_SHARED

# how another catalogue might spell some of the same tags
SYNONYMS = {
    "k8s": "kubernetes", "lib": "library", "cli": "command-line", "dev-tool": "developer-tools",
    "ai": "artificial-intelligence", "web-app": "web-application", "frontend": "front-end",
    "backend": "back-end", "learning-resource": "tutorials", "database": "databases",
}
NEW_TAGS = ["self-hosted", "rust", "llm"]  # tags a catalogue might add


class MemoEncoder:
    """The real encoder, remembering each text's vector: every list and fold re-tags the same
    READMEs, and their chunks need encoding once."""

    def __init__(self, encoder: Encoder) -> None:
        self._encoder = encoder
        self._memo: dict[str, np.ndarray] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)

    def encode(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._memo))
        if missing:
            for text, vector in zip(missing, self._encoder.encode(missing), strict=True):
                self._memo[text] = vector
        if not texts:
            return np.zeros((0, self._encoder.dimension), dtype=np.float32)
        return np.stack([self._memo[t] for t in texts])


def variants(tags: list[Tag], seed: int) -> list[tuple[str, list[Tag], dict[str, str | None]]]:
    """(label, tag list, old name → new name or None if removed) for each list measured."""
    rng = random.Random(seed)
    keys = [t.key for t in tags]
    out: list[tuple[str, list[Tag], dict[str, str | None]]] = [("the shipped list (control)", tags, {})]
    top = max(t.id for t in tags)
    added = tags + [Tag(top + 1 + i, name) for i, name in enumerate(NEW_TAGS)]
    out.append((f"{len(NEW_TAGS)} tags added ({', '.join(NEW_TAGS)})", added, {}))
    removed = set(rng.sample(keys, 15))
    out.append(("15 random tags removed", [t for t in tags if t.key not in removed], dict.fromkeys(removed)))
    out.append((f"{len(SYNONYMS)} tags renamed to synonyms (k8s → kubernetes, lib → library, ...)",
                [Tag(t.id, SYNONYMS.get(t.key, t.name)) for t in tags], dict(SYNONYMS)))
    for share in (0.25, 0.5, 0.75, 1.0):
        chosen = set(rng.sample(keys, round(share * len(keys))))
        renames = {k: f"{expand_name(k)} projects" for k in chosen}
        out.append((f"{share:.0%} of tags respelt ('lib' → 'library projects')",
                    [Tag(t.id, renames.get(t.key, t.name)) for t in tags], dict(renames)))
    return out


def mapped_gold(record: LabelledRecord, renames: dict[str, str | None]) -> GoldItem:
    def move(names: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(n for n in (renames.get(k, k) for k in names) if n is not None)

    return GoldItem(record.document.id, move(record.core), move(record.also))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("gold", type=Path)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/tag_lists.md"))
    parser.add_argument("--index", type=Path, default=None, help="index whose tag list and exemplars to start from")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="only the first N labelled items (quick runs)")
    parser.add_argument("--min-shared", type=float, default=MIN_SHARED,
                        help="the transfer regime's least share of shared tags [default: the shipped MIN_SHARED]")
    args = parser.parse_args()
    started, load_start = time.time(), load_avg()
    shipped = load_index(args.index or default_index_path())
    encoder = MemoEncoder(load_encoder(None, max_tokens=shipped.max_tokens))
    records = read_labelled(args.gold, {t.key for t in shipped.tags})[: args.limit]
    # the shipped tag texts and exemplars, with none of the dev labels (its examples and ranker)
    unlabelled = replace(
        shipped, settings=replace(shipped.settings, ranker=None, tag_bias={}, example_weight=0.0), examples=[],
        example_vectors=None, example_chunk_vectors=None, _faiss_examples=None, _faiss_example_chunks=None,
    )
    start = Tagger(unlabelled, encoder)  # type: ignore[arg-type]
    lists = variants(shipped.tags, args.seed)
    predictions: dict[tuple[str, str], list[list[str]]] = {}
    for fold in folds(len(records), args.folds, args.seed):
        held = set(fold)
        train = [r for i, r in enumerate(records) if i not in held]
        test = [records[i] for i in fold]
        # as `embedtag calibrate GOLD.jsonl` does
        scored = score_labelled(start, train)
        zero = start.without_examples()
        settings = calibrate(scored, zero.settings, use_examples=True)
        fitted = with_examples(replace(unlabelled, settings=settings), zero, train, scored.doc_vectors,
                               scored.chunk_vectors)
        base = Tagger(fitted, encoder)  # type: ignore[arg-type]
        for regime, min_shared in (("transfer", args.min_shared), ("zero-shot", 2.0)):
            cache = IndexCache(base, use_disk=False, min_shared=min_shared)
            for label, tags, _ in lists:
                tagger, _source = cache.tagger_for(tags)
                results = tagger.tag_many(r.document for r in test)
                got = predictions.setdefault((label, regime), [[] for _ in records])
                for row, result in zip(fold, results, strict=True):
                    got[row] = [t.key for t in result.tags]
        print(f"fold done in {time.time() - started:.0f}s", file=sys.stderr, flush=True)

    lines = [
        "# Tag lists other than the shipped one",
        "",
        f"Data: `{args.gold.name}` ({len(records)} READMEs), {args.folds}-fold CV (seed {args.seed}): each fold's "
        "index is calibrated on the other folds; each list's tagger comes from `IndexCache` (the prompt path and "
        f"the OpenAI-compatible API). Transfer carries the ranker and examples over when a list shares at least "
        f"{args.min_shared:.0%} of its tags with the calibrated one (`embedtag/transfer.py`); zero-shot is what every "
        "other list got before. Gold follows the list (renamed tags renamed, removed ones dropped; items left "
        "with no gold tag are not scored).",
        "",
        "Reproduce:",
        "",
        "```",
        f"python scripts/tag_list_benchmark.py {args.gold} --folds {args.folds} --seed {args.seed}"
        + (f" --min-shared {args.min_shared}" if args.min_shared != MIN_SHARED else "")
        + (f" --limit {args.limit}" if args.limit else ""),
        "```",
        "",
        *md_head(["tag list", "scored items", "regime", "strict P", "strict R", "strict F1", "lenient P", "hit@1",
                  "tags/item", "changed tags: predicted / right / gold"], right=[1]),
    ]
    shipped_names = {t.key for t in shipped.tags}
    for label, tags, renames in lists:
        gold = [mapped_gold(r, renames) for r in records]
        keep = [i for i, g in enumerate(gold) if g.core]
        changed = {t.key for t in tags} - shipped_names  # added or renamed: no shipped tag by that name
        for regime in ("transfer", "zero-shot"):
            if label.startswith("the shipped list") and regime == "zero-shot":
                continue  # the shipped list always gets the shipped index
            got = predictions[(label, regime)]
            report: Report = evaluate([got[i] for i in keep], [gold[i] for i in keep])
            stats = [report.per_tag[name] for name in changed if name in report.per_tag]
            counts = (f"{sum(s.predicted for s in stats)} / {sum(s.correct for s in stats)} / "
                      f"{sum(s.support for s in stats)}" if changed else "-")
            lines.append(md_row([
                label, len(keep), regime, f"{report.strict_precision:.3f}", f"{report.strict_recall:.3f}",
                f"**{report.strict_f1:.3f}**", f"{report.lenient_precision:.3f}", f"{report.hit_at_1:.3f}",
                f"{report.tags_per_item:.2f}", counts,
            ]))
    lines += [
        "",
        "Reading the table:",
        "",
        "- *changed tags*: names the shipped list does not have (added, or renamed; a synonym matched to a shipped "
        "tag counts too). Added tags are never gold here, so each prediction of one counts against precision.",
        "- Removing tags drops their gold, but an annotator with the shorter list would have picked other tags for "
        "those READMEs: precision in those rows is understated.",
        "- A tag new to a list (one the carried-over ranker was not fitted with) is kept where the zero-shot rule "
        "would keep it (`lift_new_tags` in `embedtag/scoring.py`); without that the ranker never picked one.",
        "",
        f"Run time: {time.time() - started:.0f} s on this machine (1-minute load average {load_start} at the "
        f"start, {load_avg()} at the end: the machine is shared).",
        "",
    ]
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

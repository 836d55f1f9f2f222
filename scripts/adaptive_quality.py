"""`--adaptive` on the shipped setting (ranker + examples + exemplars + tag head), cross-validated:
does reading only the first chunks of clear-cut READMEs keep quality?

    python scripts/adaptive_quality.py ../shared/data/dev/items.jsonl --seeds 3 --out benchmarks/adaptive_quality.md

Per fold, the models (head and ranker) are fitted on full evidence, as the shipped index is; each
held-out README is first scored on its description and first `--first` README chunks (as
`embedtag.adaptive` reads it), and keeps that decision unless `decision_is_close` says more text
could change it, in which case it gets the full-evidence decision. Index and README encoder as in
scripts/encoder_quality.py (the default: the static int8 model; `--backend torch` for float).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from harness import replace_section
from quality_benchmark import exemplar_index

from embedtag.adaptive import AdaptivePolicy, decision_is_close, head_length
from embedtag.calibrate import HeadTraining, cross_validate, folds, score_labelled
from embedtag.encoders import SentenceTransformerEncoder, load_encoder
from embedtag.evaluate import GoldItem, evaluate
from embedtag.records import read_labelled
from embedtag.scoring import ScoringSettings
from embedtag.tagger import Document, Tagger
from embedtag.tags import load_tags
from embedtag.text import Chunk, Section


class HeadOnlyTagger(Tagger):
    """Reads a README as the adaptive tagger does first: the description and the first chunks."""

    first_chunks = 6

    def chunks(self, doc: Document, sections: list[Section] | None = None) -> list[Chunk]:
        found = super().chunks(doc, sections)
        return found[: head_length(found, self.first_chunks)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gold", type=Path)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first", type=int, default=AdaptivePolicy().first_chunks)
    parser.add_argument("--band", type=float, default=AdaptivePolicy().chance_band)
    parser.add_argument("--backend", default="onnx-int8")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    started = time.time()
    tags = load_tags()
    float_encoder = SentenceTransformerEncoder()
    index = exemplar_index(float_encoder)
    encoder = load_encoder(max_tokens=index.settings.max_tokens, backend=args.backend)
    records = read_labelled(args.gold, {t.key for t in tags})
    gold = [GoldItem(r.document.id, r.core, r.also) for r in records]
    names = [t.key for t in tags]
    tagger = Tagger(index, encoder)
    head_only = HeadOnlyTagger(index, encoder)
    head_only.first_chunks = args.first
    full = score_labelled(tagger, records)
    heads = score_labelled(head_only, records)
    # tokens the encoder reads per README, special tokens included
    head_tokens = [sum(encoder.count_tokens(c.text) + 2 for c in head_only.chunks(r.document)) for r in records]
    all_tokens = [sum(encoder.count_tokens(c.text) + 2 for c in tagger.chunks(r.document)) for r in records]
    full_tokens = float(np.mean(all_tokens))
    training = HeadTraining.from_index(index).with_base(full.tag_ids)
    policy = AdaptivePolicy(first_chunks=args.first, chance_band=args.band)
    rows = []
    for seed in range(args.seeds):
        full_preds, _ = cross_validate(full, index.settings, args.folds, seed=seed, head=training)
        fitted: list[ScoringSettings] = []
        head_preds, head_values = cross_validate(full, index.settings, args.folds, seed=seed, head=training,
                                                 held_out=heads, fitted_out=fitted)
        chosen = list(head_preds)
        extended = np.zeros(len(records), dtype=bool)
        for fold, settings in zip(folds(len(records), args.folds, seed), fitted, strict=True):
            for row in fold:
                if decision_is_close(head_values[row], settings, policy):
                    extended[row] = True
                    chosen[row] = full_preds[row]
        tokens = float(np.mean(np.where(extended, all_tokens, head_tokens)))
        rows.append((evaluate([[names[t] for t in p] for p in full_preds], gold),
                     evaluate([[names[t] for t in p] for p in head_preds], gold),
                     evaluate([[names[t] for t in p] for p in chosen], gold), int(extended.sum()), tokens))

    def mean(i: int, field: str) -> float:
        return float(np.mean([getattr(r[i], field) for r in rows]))

    lines = [
        "| reading | strict F1 | hit@1 | lenient P | READMEs extended | tokens/README | F1 per split |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| every chunk (up to 12) | {mean(0, 'strict_f1'):.4f} | {mean(0, 'hit_at_1'):.4f} | "
        f"{mean(0, 'lenient_precision'):.4f} | all | {full_tokens:.0f} | {[round(r[0].strict_f1, 4) for r in rows]} |",
        f"| description + first {args.first} chunks only | {mean(1, 'strict_f1'):.4f} | {mean(1, 'hit_at_1'):.4f} | "
        f"{mean(1, 'lenient_precision'):.4f} | none | {np.mean(head_tokens):.0f} | "
        f"{[round(r[1].strict_f1, 4) for r in rows]} |",
        f"| adaptive (first {args.first}, band {args.band}) | {mean(2, 'strict_f1'):.4f} | {mean(2, 'hit_at_1'):.4f} | "
        f"{mean(2, 'lenient_precision'):.4f} | {np.mean([r[3] for r in rows]):.0f} of {len(records)} | "
        f"{np.mean([r[4] for r in rows]):.0f} | {[round(r[2].strict_f1, 4) for r in rows]} |",
    ]
    text = [
        f"Dev set `{args.gold}` ({len(records)} READMEs), {args.folds}-fold CV × {args.seeds} splits, README "
        f"encoder `{args.backend}`, the shipped setting with the tag head; {time.time() - started:.0f} s:",
        "",
        "```",
        f"python scripts/adaptive_quality.py {args.gold} --folds {args.folds} --seeds {args.seeds} "
        f"--first {args.first} --band {args.band} --backend {args.backend}",
        "```",
        "",
        *lines,
    ]
    print("\n".join(text))
    if args.out:  # one section per setting: runs with other settings stay in the file
        key = f"adaptive-quality {args.backend} first={args.first} band={args.band}"
        replace_section(args.out, "\n".join([f"<!-- {key}:begin -->", *text, f"<!-- {key}:end -->"]),
                        f"<!-- {key}:begin -->", f"<!-- {key}:end -->", "Adaptive reading on the shipped setting")


if __name__ == "__main__":
    main()

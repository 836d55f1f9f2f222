"""Does the faster encoder keep quality? The shipped setting (ranker + examples + exemplars + tag
head), cross-validated on the dev set with README chunks from each encoder, side by side.

    python scripts/encoder_quality.py ../shared/data/dev/items.jsonl --seeds 3 --out benchmarks/encoder_quality.md

As in scripts/quality_benchmark.py the index is built here from the shipped tag list and glosses
plus the shipped index's exemplar vectors, with the float encoder, as the shipped index is; only
the READMEs' chunks are encoded by the encoder under test (the shipped default runs so: an index's
vectors from float MiniLM, README chunks from the int8 model). Each configuration is scored once
(`calibrate.score_labelled`) and cross-validated with the same fold splits.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from quality_benchmark import exemplar_index

from embedtag.calibrate import HeadTraining, cross_validate, score_labelled
from embedtag.encoders import Encoder, OnnxEncoder, SentenceTransformerEncoder
from embedtag.evaluate import GoldItem, Report, evaluate
from embedtag.records import read_labelled
from embedtag.scoring import ScoringSettings
from embedtag.tagger import Tagger
from embedtag.tags import load_tags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gold", type=Path)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    started = time.time()
    float_encoder = SentenceTransformerEncoder()
    tags = load_tags()
    index = exemplar_index(float_encoder)
    records = read_labelled(args.gold, {t.key for t in tags})
    gold = [GoldItem(r.document.id, r.core, r.also) for r in records]
    names = [t.key for t in tags]
    int8 = OnnxEncoder(max_tokens=index.settings.max_tokens, quantize=True)
    configurations: list[tuple[str, Encoder, ScoringSettings]] = [
        ("float MiniLM (torch), 12 chunks", float_encoder, index.settings),
        ("static int8 MiniLM (onnxruntime), 12 chunks: the new default", int8, index.settings),
        ("static int8, 8 chunks", int8, replace(index.settings, max_chunks=8)),
        ("static int8, 6 chunks", int8, replace(index.settings, max_chunks=6)),
    ]
    lines = [
        "| configuration | strict F1 | hit@1 | lenient P | tags/item | F1 per split | encode s | tokens/README |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    reference: list[Report] | None = None
    for label, encoder, settings in configurations:
        tagger = Tagger(replace(index, settings=settings), encoder)
        encode_started = time.time()
        scored = score_labelled(tagger, records)
        encode_s = time.time() - encode_started
        tokens = np.mean([sum(encoder.count_tokens(c.text) + 2 for c in tagger.chunks(r.document)) for r in records])
        training = HeadTraining.from_index(tagger.index).with_base(scored.tag_ids)
        reports = []
        for seed in range(args.seeds):
            predictions, _ = cross_validate(scored, settings, args.folds, seed=seed, head=training)
            reports.append(evaluate([[names[t] for t in p] for p in predictions], gold))
        reference = reference or reports

        def mean(field: str, reports: list[Report] = reports) -> float:
            return float(np.mean([getattr(r, field) for r in reports]))

        delta = "" if reports is reference else (
            f" (Δ F1 {mean('strict_f1') - float(np.mean([r.strict_f1 for r in reference])):+.4f}, "
            f"Δ hit@1 {mean('hit_at_1') - float(np.mean([r.hit_at_1 for r in reference])):+.4f})")
        lines.append(
            f"| {label}{delta} | {mean('strict_f1'):.4f} | {mean('hit_at_1'):.4f} | {mean('lenient_precision'):.4f} "
            f"| {mean('tags_per_item'):.2f} | {[round(r.strict_f1, 4) for r in reports]} | {encode_s:.0f} "
            f"| {tokens:.0f} |"
        )
        print(lines[-1], file=sys.stderr, flush=True)
    text = [
        f"Dev set `{args.gold}` ({len(records)} READMEs), {args.folds}-fold CV × {args.seeds} splits, the shipped "
        "setting with the tag head; `encode s` is the whole scoring pass (chunking, encoding, evidence) on 2 "
        f"cores, in one run of {time.time() - started:.0f} s:",
        "",
        "```",
        f"python scripts/encoder_quality.py {args.gold} --folds {args.folds} --seeds {args.seeds}",
        "```",
        "",
        *lines,
    ]
    print("\n".join(text))
    if args.out:
        args.out.write_text("# Encoder quality: float vs static int8\n\n" + "\n".join(text) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

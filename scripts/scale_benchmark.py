"""Catalogue-scale benchmark: vector store, adaptive compute and Ray, side by side in one run.

    python scripts/scale_benchmark.py [../shared/data/dev/items.jsonl] --out benchmarks/scale.md
    python scripts/scale_benchmark.py --sections adaptive        # only the tokens-vs-F1 grid

Sections (all on the shipped default index and the bundled model, this machine's cores):
  size      bytes on disk per stored vector
  store     first pass (empty store) vs re-tag with a warm store, after a recalibration and after
            a tag-list change
  adaptive  tokens per README vs strict F1 (5-fold CV, 3 splits) for a grid of head sizes and
            bands, and measured READMEs/s of the chosen setting vs the full budget
  big       --big READMEs (default 10,000) re-tagged after a tag-list change from a warm store
  timed     READMEs/s of the full budget vs `embedtag.adaptive`'s defaults and band 0 (no grid)
  ray       `run_ray_batch` with 1 and 2 actors on a local 2-CPU Ray vs the local batch
Every figure is printed with the load average at the time (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from harness import DEV_ITEMS, REPO, md_head, md_row, timed
from harness import load_label as load

sys.path.insert(0, str(REPO))

from embedtag.adaptive import AdaptivePolicy, AdaptiveTagger, decision_is_close, head_length
from embedtag.batch import run_batch
from embedtag.calibrate import EXAMPLE_WEIGHT, ScoredSet, calibrate, folds, micro_f1, predict
from embedtag.glosses import load_glosses
from embedtag.index import TagIndex, build_index
from embedtag.records import LabelledRecord, read_labelled
from embedtag.tagger import Tagger, document_vector
from embedtag.text import readme_sections
from embedtag.vectorstore import CachingEncoder, VectorStore, cached_tagger, encoder_settings, text_key

LINES: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


def write_jsonl(path: Path, records: list[LabelledRecord], copies: int = 1) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for c in range(copies):
            for r in records:
                d = r.document
                rid = d.id if copies == 1 else f"{d.id}#{c}"
                handle.write(json.dumps({"id": rid, "description": d.description, "readme": d.readme}) + "\n")
    return path


def changed_tag_list(tagger: Tagger) -> TagIndex:
    """The shipped index with one tag dropped from the list: tag texts embedded again (not timed),
    ranker kept, examples kept without the dropped tag. What a catalogue's tag-list edit gives."""
    index = tagger.index
    dropped = index.tags[-1]
    tags = index.tags[:-1]
    encoder = tagger.encoder.inner if isinstance(tagger.encoder, CachingEncoder) else tagger.encoder
    new = build_index(tags, load_glosses(), encoder, index.settings)
    examples = [
        replace(e, core=tuple(t for t in e.core if t != dropped.id), also=tuple(t for t in e.also if t != dropped.id))
        for e in index.examples
    ]
    return replace(new, examples=examples, example_vectors=index.example_vectors,
                   example_chunk_vectors=index.example_chunk_vectors)


def timed_batch(tagger: Tagger, items: Path, out: Path) -> float:
    _, seconds = timed(lambda: run_batch(tagger, items, out))
    return float(seconds)


# ---- store ---------------------------------------------------------------------------------


def section_store(base: Tagger, records: list[LabelledRecord], work: Path, store_path: Path) -> None:
    say("## Vector store: first pass vs re-tag\n")
    items = write_jsonl(work / "dev.jsonl", records)
    n = len(records)
    say(f"{n} dev READMEs, `run_batch` (JSONL in, JSONL out), model warm, store in a fresh file.\n")
    for line in md_head(["pass", "encoded chunks", "chunks from store", "seconds", "READMEs/s", "load"]):
        say(line)
    store_path.unlink(missing_ok=True)
    store = VectorStore(store_path)
    first = cached_tagger(base, store)
    t1 = timed_batch(first, items, work / "first.jsonl")
    enc = first.encoder
    assert isinstance(enc, CachingEncoder)
    say(md_row(["first pass, empty store", enc.misses, enc.hits, f"{t1:.1f}", f"{n / t1:.1f}", load()]))
    recal = Tagger(replace(base.index, settings=replace(
        base.settings, ranker=replace(base.settings.ranker, threshold=base.settings.ranker.threshold + 0.05)
    )) if base.settings.ranker else base.index, enc.inner)
    again = cached_tagger(recal, store)
    t2 = timed_batch(again, items, work / "recal.jsonl")
    e2 = again.encoder
    assert isinstance(e2, CachingEncoder)
    say(md_row(["re-tag after a recalibration (threshold +0.05)", e2.misses, e2.hits, f"{t2:.2f}", f"{n / t2:.0f}",
                load()]))
    changed = cached_tagger(Tagger(changed_tag_list(base), enc.inner), store)
    t3 = timed_batch(changed, items, work / "changed.jsonl")
    e3 = changed.encoder
    assert isinstance(e3, CachingEncoder)
    say(md_row(["re-tag after a tag-list change (one tag dropped)", e3.misses, e3.hits, f"{t3:.2f}", f"{n / t3:.0f}",
                load()]))
    say(f"\nSpeed-up of the re-tag over the first pass: {t1 / t2:.0f}x (recalibration), {t1 / t3:.0f}x "
        f"(tag-list change). Target: >= 20x.\n")

    store.close()


def section_big(base: Tagger, records: list[LabelledRecord], work: Path, big: int, store_path: Path) -> None:
    """Many READMEs re-tagged after a tag-list change, from a store that holds the dev set's chunks."""
    n = len(records)
    copies = -(-big // n)
    big_items = work / "big.jsonl"
    write_jsonl(big_items, records, copies)
    total = n * copies
    say(f"### {total:,} READMEs re-tagged after a tag-list change\n")
    say(f"The dev set repeated {copies} times with distinct ids ({total:,} records), re-tagged from a store "
        "that holds the dev set's chunks (filled by the first pass above, or `--store`). Identical texts give "
        "identical keys, so to make the look-ups honest the store is first padded with random vectors under "
        "random keys (same model and settings) to the number of rows that many distinct READMEs leave.\n")
    with VectorStore(store_path) as filled, sqlite3.connect(work / "big.sqlite") as copy:
        filled._conn.backup(copy)
    store_big = VectorStore(work / "big.sqlite")
    probe = cached_tagger(base, store_big)
    enc = probe.encoder
    assert isinstance(enc, CachingEncoder)
    chunks_per_readme = sum(len(probe.chunks(r.document)) for r in records) / n
    pad_rows = int(chunks_per_readme * total) - store_big.info().vectors
    rng = np.random.default_rng(0)
    settings_key = encoder_settings(enc.inner, base.settings.max_tokens)
    for start in range(0, pad_rows, 20_000):
        m = min(20_000, pad_rows - start)
        vectors = rng.standard_normal((m, enc.dimension)).astype(np.float32)
        store_big.put_many(enc.fingerprint(), settings_key,
                           [(text_key(f"pad {start + i}"), v) for i, v in enumerate(vectors)])
    info = store_big.info()
    say(f"Store: {info.vectors:,} vectors, {info.bytes / 1e6:.0f} MB.\n")
    retag = cached_tagger(Tagger(changed_tag_list(base), enc.inner), store_big)
    tr = timed_batch(retag, big_items, work / "big-retag.jsonl")
    for line in md_head(["what", "READMEs", "encoded chunks", "seconds", "READMEs/s", "load"]):
        say(line)
    misses = retag.encoder.misses  # type: ignore[attr-defined]
    say(md_row(["re-tag after a tag-list change, warm store", f"{total:,}", misses, f"{tr:.1f}", f"{total / tr:.1f}",
                load()]))
    say(f"\nAt this rate 10,000 READMEs take {10_000 / (total / tr):.0f} s (target: under 60 s).\n")
    store_big.close()


def section_size(work: Path, n: int = 20_000) -> None:
    """Bytes on disk per stored vector (384 float32s, random keys as real text hashes are)."""
    rng = np.random.default_rng(0)
    with VectorStore(work / "size.sqlite") as store:
        for start in range(0, n, 5000):
            vectors = rng.standard_normal((5000, 384)).astype(np.float32)
            store.put_many("0123456789abcdef", "all-MiniLM-L6-v2;dim=384;trunc=64;chunk=64",
                           [(text_key(f"size {start + i}"), v) for i, v in enumerate(vectors)])
        store.prune(1 << 40)  # checkpoints the WAL into the file
        say(f"Store size: {n:,} vectors of 384 dims take {store.size_bytes() / 1e6:.1f} MB, "
            f"{store.size_bytes() / n / 1e3:.2f} kB per vector.\n")


# ---- adaptive ------------------------------------------------------------------------------


def scored_rows(tagger: Tagger, records: list[LabelledRecord], heads: list[int] | None) -> tuple[ScoredSet, list[int]]:
    """Evidence per README from its first `heads[i]` chunks (None: all); tokens embedded per README."""
    position = {tag.key: i for i, tag in enumerate(tagger.index.tags)}
    n_tags = len(tagger.index.tags)
    zero = np.zeros((len(records), n_tags), dtype=np.float32)
    keyword, cue = np.zeros_like(zero), np.zeros_like(zero)
    vectors = np.zeros((len(records), tagger.encoder.dimension), dtype=np.float32)
    tokens = []
    chunk_vectors = [np.zeros((0, tagger.encoder.dimension), dtype=np.float32) for _ in records]
    chunk_weights = [np.zeros(0, dtype=np.float32) for _ in records]
    plain = tagger.without_examples()
    for i, r in enumerate(records):
        sections = readme_sections(r.document.readme)
        chunks = tagger.chunks(r.document, sections)
        if heads is not None:
            chunks = chunks[: heads[i]]
        tokens.append(sum(tagger.encoder.count_tokens(c.text) for c in chunks))
        if not chunks:
            continue
        v = tagger.encoder.encode([c.text for c in chunks])  # from the store: encoded once
        ev = plain.score(r.document, chunks, v, sections)
        zero[i], keyword[i], cue[i] = ev.scores, ev.keyword, ev.cue
        vectors[i] = document_vector(chunks, v)
        chunk_vectors[i] = v
        chunk_weights[i] = np.array([c.weight for c in chunks], dtype=np.float32)
    index = tagger.index
    exemplars = tagger.exemplar_votes_for(vectors)  # as the tagger uses them; None without exemplars
    return ScoredSet([r.document.id for r in records], zero, keyword, cue, vectors,
                     [tuple(position[t] for t in r.core if t in position) for r in records],
                     [tuple(position[t] for t in r.also if t in position) for r in records],
                     exemplars, tuple(tag.id for tag in index.tags), chunk_vectors, chunk_weights,
                     index.form_mask()), tokens


class Folds:
    """The CV fits, done once: per split and fold, the fitted settings, the training set and the
    full-budget predictions (the ranker is fitted on full evidence, as the shipped index is)."""

    def __init__(self, full: ScoredSet, settings: Any, seeds: tuple[int, ...]) -> None:
        base = replace(settings, ranker=None, tag_bias={}, example_weight=EXAMPLE_WEIGHT)
        n = len(full.ids)
        self.full = full
        self.splits = []
        for seed in seeds:
            parts = []
            for fold in folds(n, 5, seed):
                held = set(fold)
                train = full.subset([i for i in range(n) if i not in held])
                fitted = calibrate(train, base, True)
                full_preds, _ = predict(full.subset(fold), train, fitted)
                parts.append((fold, train, fitted, full_preds))
            self.splits.append(parts)

    def f1_full(self) -> float:
        f1s = []
        for parts in self.splits:
            preds: list[list[int]] = [[] for _ in self.full.ids]
            for fold, _, _, full_preds in parts:
                for row, p in zip(fold, full_preds, strict=True):
                    preds[row] = p
            f1s.append(micro_f1(preds, self.full.core))
        return float(np.mean(f1s))

    def head_predictions(self, heads_set: ScoredSet) -> list[list[tuple[list[list[int]], np.ndarray]]]:
        return [[predict(heads_set.subset(fold), train, fitted) for fold, train, fitted, _ in parts]
                for parts in self.splits]

    def adaptive(self, head_preds: list[list[tuple[list[list[int]], np.ndarray]]],
                 policy: AdaptivePolicy) -> tuple[float, list[bool]]:
        """Mean strict F1 when a README keeps its head decision unless it is close; and which
        READMEs were extended (first split)."""
        f1s: list[float] = []
        extended_first: list[bool] = []
        for parts, heads in zip(self.splits, head_preds, strict=True):
            preds: list[list[int]] = [[] for _ in self.full.ids]
            extended = [False] * len(self.full.ids)
            for (fold, _, fitted, full_preds), (h_preds, h_values) in zip(parts, heads, strict=True):
                for j, row in enumerate(fold):
                    close = decision_is_close(h_values[j], fitted, policy)
                    extended[row] = close
                    preds[row] = full_preds[j] if close else h_preds[j]
            f1s.append(micro_f1(preds, self.full.core))
            if not extended_first:
                extended_first = extended
        return float(np.mean(f1s)), extended_first


def section_adaptive(base: Tagger, records: list[LabelledRecord], timed: list[LabelledRecord], work: Path,
                     measure: bool, store_path: Path) -> None:
    say("## Adaptive compute: tokens per README vs F1\n")
    store = VectorStore(store_path)  # the CV reads vectors from here: each chunk encoded once ever
    tagger = cached_tagger(base, store)
    seeds = (0, 1, 2)
    full, full_tokens = scored_rows(tagger, records, None)
    cv = Folds(full, base.settings, seeds)
    f1_full = cv.f1_full()
    per_doc = [tagger.chunks(r.document) for r in records]
    say(f"Strict micro-F1, 5-fold CV averaged over splits {seeds} (ranker and examples fitted on the "
        f"training folds with full evidence), {len(records)} dev READMEs. Full budget: F1 {f1_full:.4f}, "
        f"{np.mean(full_tokens):.0f} tokens/README. `first` = README chunks embedded up front besides "
        "the description; `band` = how close a chance must be to the threshold (or the 3rd to the 4th "
        "tag) for the rest to be embedded. band 0 never embeds more.\n")
    for line in md_head(["first", "band", "extended READMEs", "tokens/README", "share of full", "strict F1",
                         "ΔF1 vs full"]):
        say(line)
    best: tuple[float, int, float] | None = None
    for first in (2, 3, 4, 5, 6, 8):
        heads = [head_length(c, first) for c in per_doc]
        head_set, head_tokens = scored_rows(tagger, records, heads)
        head_preds = cv.head_predictions(head_set)
        for band in (0.0, 0.02, 0.03, 0.05, 0.1, 0.2):
            policy = AdaptivePolicy(first_chunks=first, chance_band=band)
            f1, extended = cv.adaptive(head_preds, policy)
            tokens = float(np.mean([f if e else h for f, h, e in zip(full_tokens, head_tokens, extended, strict=True)]))
            share = tokens / float(np.mean(full_tokens))
            say(md_row([first, band, sum(extended), f"{tokens:.0f}", f"{share:.2f}", f"{f1:.4f}",
                        f"{f1 - f1_full:+.4f}"]))
            if f1 >= f1_full - 0.005 and (best is None or tokens < best[0]):
                best = (tokens, first, band)
    if best is None:
        say("\nNo setting stays within 0.005 F1 of the full budget.\n")
        return
    tokens, first, band = best
    say(f"\nCheapest setting within 0.005 F1 of the full budget: first={first}, band={band}: "
        f"{tokens:.0f} tokens/README ({tokens / np.mean(full_tokens):.2f} of full). "
        f"`embedtag.adaptive` defaults: first={AdaptivePolicy().first_chunks}, band={AdaptivePolicy().chance_band}.\n")
    if measure:
        section_timed(base, timed, work, [AdaptivePolicy(first_chunks=first, chance_band=band)])


def section_timed(base: Tagger, records: list[LabelledRecord], work: Path, policies: list[AdaptivePolicy]) -> None:
    """READMEs/s of the full budget and of adaptive policies."""
    items = write_jsonl(work / "dev-adaptive.jsonl", records)
    plain = Tagger(base.index, base.encoder)
    timed_batch(plain, items, work / "warm.jsonl")  # warm-up: threads, allocator
    rows = []
    runs = [("full budget", plain)] + [
        (f"adaptive (first={p.first_chunks}, band={p.chance_band})", AdaptiveTagger.wrap(plain, p)) for p in policies
    ]
    for name, t in runs:
        seconds = timed_batch(t, items, work / "a.jsonl")
        rows.append(md_row([name, f"{len(records) / seconds:.2f}", f"{seconds:.1f}", load()]))
    say(f"Measured on the first {len(records)} dev READMEs, no store, model warm (`run_batch`):\n")
    for line in md_head(["configuration", "READMEs/s", "seconds", "load"]):
        say(line)
    for r in rows:
        say(r)
    say("")


# ---- ray -----------------------------------------------------------------------------------


def section_ray(base: Tagger, records: list[LabelledRecord], work: Path) -> None:
    import ray

    from embedtag.ray_engine import RayOptions, run_ray_batch

    say("## Ray: 1 and 2 actors on a local 2-CPU Ray vs the local batch\n")
    items = write_jsonl(work / "dev-ray.jsonl", records)
    n = len(records)
    local = timed_batch(Tagger(base.index, base.encoder), items, work / "local.jsonl")
    _, t_init = timed(lambda: ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False))
    for line in md_head(["engine", "seconds", "READMEs/s", "vs local", "load"]):
        say(line)
    say(md_row(["local `run_batch` (model already loaded)", f"{local:.1f}", f"{n / local:.2f}", "1.00", load()]))
    expected = (work / "local.jsonl").read_text(encoding="utf-8")
    for actors, cpus in ((1, 2.0), (2, 1.0)):
        out = work / f"ray{actors}.jsonl"
        options = RayOptions(actors=actors, cpus_per_actor=cpus, batch_size=16)
        _, seconds = timed(lambda o=options, f=out: run_ray_batch(None, None, items, f, o))
        same = out.read_text(encoding="utf-8") == expected
        say(md_row([f"Ray, {actors} actor(s) x {cpus:g} CPU (incl. actor start + model load)", f"{seconds:.1f}",
                    f"{n / seconds:.2f}", f"{seconds / local:.2f}", load()]) + f"  same output: {same}")
    ray.shutdown()
    say(f"\n`ray.init` of the local 2-CPU cluster took {t_init:.1f} s (not in the rows above).\n")
    estimate(n / local)


def estimate(rate_2cpu: float, total: int = 10_000_000) -> None:
    """A paper estimate for a catalogue from one measured 2-CPU rate (READMEs/s)."""
    actor_hours = total / rate_2cpu / 3600
    say(f"### On paper: {total:,} READMEs\n")
    say(f"One 2-CPU actor tags {rate_2cpu:.2f} READMEs/s here (the local batch row above; Ray adds only "
        f"start-up), so {total:,} READMEs take {actor_hours:,.0f} actor-hours of full-budget encoding. "
        f"On 16-core nodes (8 actors each) that is {actor_hours / 8:,.0f} node-hours: "
        f"{actor_hours / 8 / 24:,.0f} nodes for a 24-hour run, {actor_hours / 8 / 6:,.0f} nodes for 6 hours. "
        "The driver only parses JSONL and writes lines (tens of thousands per second), so it is not the limit at "
        "that size. A re-tag with warm stores costs scoring only (the store rows above), and --adaptive cuts the "
        "tokens per README as in the grid.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("items", nargs="?", default=str(DEV_ITEMS))
    parser.add_argument("--out", help="Markdown file to write")
    parser.add_argument("--sections", default="size,store,big,adaptive,ray")
    parser.add_argument("--big", type=int, default=10_000, help="READMEs in the large re-tag")
    parser.add_argument("--no-measure", action="store_true", help="adaptive: grid only, no timed passes")
    parser.add_argument("--timed-items", type=int, default=120, help="READMEs in the timed adaptive and Ray runs")
    parser.add_argument("--store", default=None,
                        help="vector store for the CV's vectors (kept between runs; default: a temp file)")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    base = Tagger.load(REPO / "index")
    records = read_labelled(args.items, {t.key for t in base.index.tags})
    say(f"# Scale benchmark\n\nCommand: `python scripts/scale_benchmark.py {' '.join(sys.argv[1:])}`; "
        f"{os.cpu_count()} CPUs, started at {load()}, {time.strftime('%Y-%m-%d %H:%M')}.\n")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        store_path = Path(args.store) if args.store else work / "store.sqlite"
        timed = records[: args.timed_items]
        if "store" in sections:
            section_store(base, records, work, work / "store.sqlite")
            if args.store:
                with VectorStore(work / "store.sqlite") as filled, sqlite3.connect(store_path) as copy:
                    filled._conn.backup(copy)
        if "size" in sections:
            section_size(work)
        if "big" in sections:
            section_big(base, records, work, args.big, store_path)
        if "adaptive" in sections:
            section_adaptive(base, records, timed, work, not args.no_measure, store_path)
        if "timed" in sections:  # adaptive READMEs/s only: the module's defaults and never-extend
            section_timed(base, timed, work, [AdaptivePolicy(), replace(AdaptivePolicy(), chance_band=0.0)])
        if "ray" in sections:
            section_ray(base, timed, work)
    if args.out:
        Path(args.out).write_text("\n".join(LINES) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

"""What the exemplars' vote, the chunk-level vote and the tag head cost per README: the shipped
index, without its exemplars, without its example chunk vectors and without its tag head, side by
side in one process (interleaved rounds), on the same READMEs.

    python scripts/exemplar_overhead.py ../shared/data/dev/items.jsonl --limit 120 --rounds 3
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from harness import load_avg, timed

from embedtag.records import read_labelled
from embedtag.scoring import chunk_example_votes, label_matrix
from embedtag.tagger import Tagger, document_vector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("gold", type=Path)
    parser.add_argument("--limit", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with_exemplars = Tagger.load()
    without = Tagger(replace(with_exemplars.index, exemplar_tags=[], exemplar_vectors=None), with_exemplars.encoder)
    no_chunks = replace(
        with_exemplars.index,
        examples=[replace(e, chunks=0) for e in with_exemplars.index.examples],
        example_chunk_vectors=None,
        _faiss_example_chunks=None,
    )
    without_chunk_votes = Tagger(no_chunks, with_exemplars.encoder)
    without_head = Tagger(replace(with_exemplars.index, head=None), with_exemplars.encoder)
    variants = {
        "shipped": with_exemplars, "without exemplars": without, "without chunk votes": without_chunk_votes,
        "without the tag head": without_head,
    }
    records = read_labelled(args.gold, {t.key for t in with_exemplars.index.tags})[: args.limit]
    docs = [r.document for r in records]
    per_doc = [with_exemplars.chunks(d) for d in docs]
    vectors = with_exemplars.encoder.encode([c.text for chunks in per_doc for c in chunks])
    spans, start = [], 0
    for chunks in per_doc:
        spans.append((start, start + len(chunks)))
        start += len(chunks)
    doc_vectors = np.stack([document_vector(c, vectors[a:b]) for c, (a, b) in zip(per_doc, spans, strict=True) if c])
    list(with_exemplars.tag_many(docs[:8]))  # warm up (torch, FAISS)
    load_start = load_avg()
    votes_ms: list[float] = []
    chunk_ms: list[float] = []
    index = with_exemplars.index
    position = {tag.id: i for i, tag in enumerate(index.tags)}
    labels = label_matrix(
        [(tuple(position[t] for t in e.core), tuple(position[t] for t in e.also)) for e in index.examples],
        len(index.tags),
    )
    score_ms: dict[str, list[float]] = {name: [] for name in variants}
    rate: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, tagger in variants.items():
            _, seconds = timed(lambda t=tagger: [
                t.score(doc, chunks, vectors[a:b])
                for doc, chunks, (a, b) in zip(docs, per_doc, spans, strict=True) if chunks
            ])
            score_ms[name].append(1000 * seconds / len(docs))
            _, seconds = timed(lambda t=tagger: list(t.tag_many(docs)))
            rate[name].append(len(docs) / seconds)
        for start in range(0, len(doc_vectors), 64):  # the batch path of tag_many: 64 READMEs a pass
            block = doc_vectors[start : start + 64]
            _, seconds = timed(lambda b=block: with_exemplars.exemplar_votes_for(b))
            votes_ms.append(1000 * seconds / len(block))
        for start in range(0, len(docs), 64):  # chunk votes as evidence_batch computes them
            batch = [(c, spans[i]) for i, c in enumerate(per_doc[start : start + 64], start) if c]
            first, last = batch[0][1][0], batch[-1][1][1]
            t0 = time.perf_counter()
            found = with_exemplars.search_example_chunks(vectors[first:last])
            assert found is not None, "the index keeps no example chunk vectors"
            sims, owners = found
            for chunks, (a, b) in batch:
                weights = np.array([c.weight for c in chunks], dtype=np.float32)
                chunk_example_votes(sims[a - first : b - first], owners[a - first : b - first], weights, labels)
            chunk_ms.append(1000 * (time.perf_counter() - t0) / len(batch))
    print(f"{len(docs)} READMEs, {args.rounds} interleaved rounds, load average {load_start:.1f} at the start, "
          f"{load_avg():.1f} at the end")
    for name in variants:
        print(
            f"{name}: scoring one README at a time {min(score_ms[name]):.2f} ms/README (best), "
            f"tag_many {max(rate[name]):.2f} READMEs/s (best; all {[round(r, 2) for r in rate[name]]})"
        )
    print(f"exemplar votes in batches of 64: {min(votes_ms):.2f} ms/README (best)")
    print(f"chunk-level votes in batches of 64: {min(chunk_ms):.2f} ms/README (best)")
    for name in ("without exemplars", "without chunk votes", "without the tag head"):
        print(f"throughput ratio shipped / {name} (best rounds): {max(rate['shipped']) / max(rate[name]):.3f}")


if __name__ == "__main__":
    main()

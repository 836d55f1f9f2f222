"""Throughput, start-up, memory and quality of embedtag, measured side by side in one run.

    python scripts/speed_benchmark.py                      # full run, rewrites benchmarks/speed.md
    python scripts/speed_benchmark.py --limit 40 --out /tmp/speed.md --sections main   # a quick look

Every configuration runs in its own fresh process (`--worker`), one after another, so each gets
its own peak RSS (from `/usr/bin/time -v`, else getrusage) and none inherits another's warm caches.
Repeated configurations are interleaved (A B C A B C) and the best of the rounds is reported;
the 1-minute load average before each run is recorded because a busy machine (other jobs on
2 cores) slows everything and OpenMP/OpenBLAS thread pools suffer most.

Strict micro-F1 comes from embedtag.evaluate on the same run, against a zero-shot index that the
run builds with `embedtag build-index --out TMP` (the shipped index may be calibrated on dev).
The generated tables replace the part of --out between the `speed-benchmark` markers; the text
around them is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness import (
    DEV_ITEMS,
    GNU_TIME,
    REPO,
    embedtag_cmd,
    load_avg,
    machine,
    md_table,
    replace_section,
    run_command,
    timed,
    write_json,
)

DEFAULT_OUT = REPO / "benchmarks" / "speed.md"
COLD_README = REPO / "examples" / "kubeedge.md"
BEGIN, END = "<!-- speed-benchmark:begin -->", "<!-- speed-benchmark:end -->"
SECTIONS = ("cold", "main", "options", "curve")


# ---- worker side: one configuration in this process ----------------------------------------------


def load_data(path: str, limit: int | None) -> tuple[list[Any], list[Any]]:
    from embedtag.evaluate import GoldItem
    from embedtag.tagger import Document

    docs, gold = [], []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            item = json.loads(line)
            docs.append(Document(str(item["id"]), item.get("readme") or "", item.get("description") or ""))
            gold.append(GoldItem(str(item["id"]), tuple(item.get("core", [])), tuple(item.get("also", []))))
            if limit and len(docs) >= limit:
                break
    return docs, gold


class NumpyEncoder:
    """The torch backend's encoder forced onto its numpy path for every call (1 BLAS thread)."""

    def __init__(self, batch_size: int) -> None:
        from embedtag.encoders import SentenceTransformerEncoder

        self.inner = SentenceTransformerEncoder(batch_size=batch_size)
        self.name, self.dimension, self.max_tokens = self.inner.name, self.inner.dimension, self.inner.max_tokens

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def encode(self, texts: list[str]) -> Any:
        import numpy as np

        from embedtag.encoders.bert import _batches, _one_blas_thread, _padded, bert_numpy

        inner = self.inner
        ids = inner._tokens.ids(texts)
        out = np.empty((len(texts), inner.dimension), dtype=np.float32)
        with _one_blas_thread():
            for rows in _batches(ids, inner.batch_size, inner.sort_by_length):
                input_ids, mask = _padded(ids, rows, inner._tokens.pad_id)
                out[rows] = bert_numpy(inner._spec, inner._weights, input_ids, mask)
        return out


class Model2VecEncoder:
    """A static model2vec model distilled here from the bundled MiniLM; chunks are counted with
    MiniLM's tokenizer so that it embeds exactly the chunks the default encoder embeds."""

    def __init__(self, directory: Path, counter: Any) -> None:
        from model2vec import StaticModel  # type: ignore[import-not-found,import-untyped]

        started = time.perf_counter()
        if not (directory / "config.json").is_file():
            from model2vec.distill import distill  # type: ignore[import-not-found,import-untyped]

            from embedtag.encoders import bundled_model_path

            distill(str(bundled_model_path()), device="cpu", pca_dims=256).save_pretrained(str(directory))
        self.distill_seconds = time.perf_counter() - started
        self.model = StaticModel.from_pretrained(str(directory))
        self.counter = counter
        self.name = "model2vec-minilm"
        self.dimension = int(self.model.dim)
        self.max_tokens = counter.max_tokens

    def fingerprint(self) -> str:
        return "model2vec-minilm-256"

    def count_tokens(self, text: str) -> int:
        return int(self.counter.count_tokens(text))

    def encode(self, texts: list[str]) -> Any:
        import numpy as np

        vectors = np.asarray(self.model.encode(texts, max_length=None, use_multiprocessing=False), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return vectors / norms


def make_encoder(cfg: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    from embedtag.encoders import OnnxEncoder, SentenceTransformerEncoder

    backend = cfg.get("backend", "torch")
    extra: dict[str, Any] = {}
    started = time.perf_counter()
    if backend in {"torch", "sentence-transformers"}:
        encoder: Any = SentenceTransformerEncoder(
            batch_size=cfg.get("batch_size", 32), threads=cfg.get("threads"), backend=backend,
            sort_by_length=cfg.get("sort", True),
        )
        if backend == "torch":
            encoder.torch_module()  # benchmarks measure the batch path: torch, loaded once
    elif backend in {"onnx", "onnx-int8"}:
        encoder = OnnxEncoder(
            batch_size=cfg.get("batch_size", 32), threads=cfg.get("threads"), quantize=backend == "onnx-int8",
            cache_dir=cfg["onnx_cache"], sort_by_length=cfg.get("sort", True),
        )
    elif backend == "numpy":
        encoder = NumpyEncoder(cfg.get("batch_size", 32))
    elif backend == "model2vec":
        encoder = Model2VecEncoder(Path(cfg["m2v_dir"]), SentenceTransformerEncoder())
        extra["distill_s"] = round(encoder.distill_seconds, 2)
    else:
        raise SystemExit(f"unknown backend {backend}")
    extra["load_s"] = round(time.perf_counter() - started, 2)
    return encoder, extra


def make_index(cfg: dict[str, Any], encoder: Any) -> Any:
    from embedtag.index import load_index

    if cfg.get("index") == "build":  # vectors unlike the default model's: a zero-shot index of its own
        from embedtag.glosses import load_glosses
        from embedtag.index import build_index
        from embedtag.tags import load_tags

        return build_index(load_tags(), load_glosses(), encoder)
    return load_index(cfg["index"])


def clear_memo(encoder: Any) -> None:
    """Forget token counts remembered from an earlier pass, so each timed pass starts cold."""
    for holder in (encoder, getattr(encoder, "inner", None), getattr(encoder, "counter", None)):
        tokens = getattr(holder, "_tokens", None)
        if tokens is not None:
            tokens._counts.clear()
            tokens._last = ""


def token_count(encoder: Any, texts: list[str]) -> int:
    """Tokens the model runs, special tokens included, after truncation."""
    for holder in (encoder, getattr(encoder, "inner", None), getattr(encoder, "counter", None)):
        tokens = getattr(holder, "_tokens", None)
        if tokens is not None:
            return sum(len(ids) for ids in tokens.ids(texts))
    return sum(min(encoder.count_tokens(t), encoder.max_tokens) + 2 for t in texts)


def f1_of(results: list[Any], gold: list[Any]) -> dict[str, float]:
    from embedtag.evaluate import evaluate

    report = evaluate([[t.key for t in r.tags] for r in results], gold)
    return {"f1": round(report.strict_f1, 4), "p": round(report.strict_precision, 4),
            "r": round(report.strict_recall, 4), "tags_per_item": round(report.tags_per_item, 3)}


def run_pipeline(cfg: dict[str, Any]) -> dict[str, Any]:
    """Warm throughput of Tagger.tag_many (and of the bare encoder on the same chunks)."""
    import numpy as np

    from embedtag.tagger import Tagger

    docs, gold = load_data(cfg["data"], cfg.get("limit"))
    encoder, out = make_encoder(cfg)
    index = make_index(cfg, encoder)
    settings = {k: cfg[k] for k in ("max_chunks", "max_tokens") if k in cfg}
    if settings:
        index = replace(index, settings=replace(index.settings, **settings))
    tagger = Tagger(index, encoder)
    list(tagger.tag_many(docs[:4]))  # warm-up: first calls allocate, import, JIT nothing else
    clear_memo(encoder)
    per_doc, out["chunk_s"] = timed(lambda: [tagger.chunks(d) for d in docs])
    texts = [c.text for chunks in per_doc for c in chunks]
    out["chunks"] = len(texts)
    out["tokens"] = token_count(encoder, texts)
    out["docs"] = len(docs)
    raw_times, tag_times = [], []
    results: list[Any] = []
    vectors = None
    block_size = cfg.get("doc_batch", 64)
    starts = list(range(0, len(docs), block_size))
    for round_number in range(cfg.get("repeats", 1)):
        if not cfg.get("raw"):
            clear_memo(encoder)
            results, seconds = timed(lambda: list(tagger.tag_many(docs, batch_size=block_size)))
            tag_times.append(seconds)
            continue
        # raw encode and tag_many of the same block back to back, alternating which goes first,
        # so that a change in the machine's load hits both alike
        raw_total = tag_total = 0.0
        results, pieces = [], []
        for number, first in enumerate(starts):
            block = docs[first : first + block_size]
            block_texts = [c.text for chunks in per_doc[first : first + block_size] for c in chunks]
            for step in (("raw", "tag") if (number + round_number) % 2 == 0 else ("tag", "raw")):
                if step == "raw":
                    got, seconds = timed(lambda t=block_texts: encoder.encode(t))
                    raw_total += seconds
                    pieces.append(got)
                else:
                    clear_memo(encoder)
                    got, seconds = timed(lambda b=block: list(tagger.tag_many(b, batch_size=len(b))))
                    tag_total += seconds
                    results.extend(got)
        raw_times.append(raw_total)
        tag_times.append(tag_total)
        vectors = np.concatenate(pieces)
    out["tag_many_s"] = round(min(tag_times), 3)
    out["tag_many_all_s"] = [round(t, 2) for t in tag_times]
    if raw_times:
        out["raw_encode_s"] = round(min(raw_times), 3)
        out["raw_encode_all_s"] = [round(t, 2) for t in raw_times]
        # each round's raw/pipeline ratio: both halves of a round saw the same load
        out["ratio_rounds"] = [round(r / t, 3) for r, t in zip(raw_times, tag_times, strict=True)]
        from embedtag.text import readme_sections

        per_doc_sections = [readme_sections(d.readme) for d in docs]
        start, score_started = 0, time.perf_counter()
        for doc, sections, chunks in zip(docs, per_doc_sections, per_doc, strict=True):
            v = vectors[start : start + len(chunks)]  # type: ignore[index]
            tagger._result(doc, chunks, tagger.score(doc, chunks, v, sections) if chunks else None, False)
            start += len(chunks)
        out["score_s"] = round(time.perf_counter() - score_started, 3)
        out.update(score_breakdown(tagger, docs, per_doc, vectors))
    out.update(f1_of(results, gold))
    return out


def score_breakdown(tagger: Any, docs: list[Any], per_doc: list[Any], vectors: Any) -> dict[str, float]:
    """Seconds over all docs of the parts of Tagger.score (the same calls, timed one by one)."""
    from embedtag.scoring import cue_hits, keyword_hits, tag_similarities
    from embedtag.text import readme_sections, sections_text

    s = tagger.settings
    parts = {"score_faiss_s": 0.0, "score_votes_s": 0.0, "score_keyword_s": 0.0, "score_cues_s": 0.0}
    start = 0
    for doc, chunks in zip(docs, per_doc, strict=True):
        doc_vectors = vectors[start : start + len(chunks)]
        start += len(chunks)
        if not chunks:
            continue
        sims, seconds = timed(lambda v=doc_vectors: tagger._search(v))
        parts["score_faiss_s"] += seconds
        _, seconds = timed(lambda m=sims: tag_similarities(m, tagger._text_rows, len(tagger.index.tags), s.text_top_k))
        parts["score_votes_s"] += seconds
        sections = readme_sections(doc.readme)  # chunking's, reused by the tagger: not timed here
        _, seconds = timed(
            lambda d=doc, x=sections: keyword_hits(
                f"{d.description}\n{sections_text(x, s.keyword_chars)}", tagger._patterns
            )
        )
        parts["score_keyword_s"] += seconds
        _, seconds = timed(lambda d=doc: cue_hits(f"{d.description}\n{d.readme[: s.cue_chars]}", tagger._cues))
        parts["score_cues_s"] += seconds
    return {k: round(v, 3) for k, v in parts.items()}


def run_naive(cfg: dict[str, Any]) -> dict[str, Any]:
    """One SentenceTransformer.encode call per README (its chunks), no cross-README batching."""
    from embedtag.encoders import SentenceTransformerEncoder
    from embedtag.index import load_index
    from embedtag.tagger import Tagger

    docs, gold = load_data(cfg["data"], cfg.get("limit"))
    started = time.perf_counter()
    encoder = SentenceTransformerEncoder(backend="sentence-transformers", threads=cfg.get("threads"))
    out: dict[str, Any] = {"load_s": round(time.perf_counter() - started, 2), "docs": len(docs)}
    tagger = Tagger(load_index(cfg["index"]), encoder)
    model = encoder.model

    def one(doc: Any) -> Any:
        chunks = tagger.chunks(doc)
        vectors = model.encode([c.text for c in chunks], batch_size=32, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
        return tagger._result(doc, chunks, tagger.score(doc, chunks, vectors) if chunks else None, False)

    [one(d) for d in docs[:4]]
    times = []
    results: list[Any] = []
    for _ in range(cfg.get("repeats", 1)):
        results, seconds = timed(lambda: [one(d) for d in docs])
        times.append(seconds)
    out["tag_many_s"] = round(min(times), 3)
    out["tag_many_all_s"] = [round(t, 2) for t in times]
    out.update(f1_of(results, gold))
    return out


def run_curve(cfg: dict[str, Any]) -> dict[str, Any]:
    """F1 (all items) and warm READMEs/s (first `speed_limit` items) for several max_chunks at one
    max_tokens, in one process. F1 comes from one encode at the largest max_chunks: a smaller
    max_chunks keeps a prefix of the same chunks (checked chunk by chunk; others are encoded)."""
    from embedtag.tagger import Tagger

    docs, gold = load_data(cfg["data"], cfg.get("limit"))
    encoder, out = make_encoder(cfg)
    index = make_index(cfg, encoder)
    list(Tagger(index, encoder).tag_many(docs[:4]))

    def tagger_for(max_chunks: int) -> Tagger:
        settings = replace(index.settings, max_chunks=max_chunks, max_tokens=cfg["max_tokens"])
        return Tagger(replace(index, settings=settings), encoder)

    widest = tagger_for(max(cfg["max_chunks_list"]))
    per_doc = [widest.chunks(d) for d in docs]
    vectors = encoder.encode([c.text for chunks in per_doc for c in chunks])
    spans, start = [], 0
    for chunks in per_doc:
        spans.append(start)
        start += len(chunks)
    speed_docs = docs[: cfg.get("speed_limit") or len(docs)]
    points = []
    for max_chunks in cfg["max_chunks_list"]:
        tagger = tagger_for(max_chunks)
        results, chunk_total, token_total, not_prefix = [], 0, 0, 0
        for doc, wide, begin in zip(docs, per_doc, spans, strict=True):
            chunks = tagger.chunks(doc)
            if chunks == wide[: len(chunks)]:
                doc_vectors = vectors[begin : begin + len(chunks)]
            else:
                not_prefix += 1
                doc_vectors = encoder.encode([c.text for c in chunks])
            evidence = tagger.score(doc, chunks, doc_vectors) if chunks else None
            results.append(tagger._result(doc, chunks, evidence, False))
            chunk_total += len(chunks)
            token_total += token_count(encoder, [c.text for c in chunks])
        clear_memo(encoder)
        load = load_avg()
        _, seconds = timed(lambda t=tagger: list(t.tag_many(speed_docs)))
        speed_chunks = sum(len(tagger.chunks(d)) for d in speed_docs)
        point = {"max_chunks": max_chunks, "docs": len(docs), "chunks": chunk_total, "tokens": token_total,
                 "not_prefix": not_prefix, "speed_docs": len(speed_docs), "speed_chunks": speed_chunks,
                 "tag_many_s": round(seconds, 3), "load": round(load, 2)}
        point.update(f1_of(results, gold))
        points.append(point)
        print(json.dumps(point), file=sys.stderr, flush=True)
    out["points"] = points
    return out


def run_options(cfg: dict[str, Any]) -> dict[str, Any]:
    """Every encoding option in ONE process, interleaved block by block (rotating the order), so
    that the machine's load hits all of them alike: ratios are fair even when seconds are not."""
    import torch

    from embedtag.encoders import OnnxEncoder, SentenceTransformerEncoder
    from embedtag.glosses import load_glosses
    from embedtag.index import build_index, load_index
    from embedtag.tagger import Tagger
    from embedtag.tags import load_tags

    docs, gold = load_data(cfg["data"], cfg.get("limit"))
    index = load_index(cfg["index"])
    shared = SentenceTransformerEncoder()
    shared.torch_module()
    cores = os.cpu_count() or 2
    variants: list[tuple[str, Any, dict[str, Any]]] = []  # name, run(block) -> results, facts

    def tag_with(tagger: Any, setup: Any = None) -> Any:
        def run(block: list[Any]) -> list[Any]:
            if setup:
                setup()
            else:
                torch.set_num_threads(cores)
            clear_memo(tagger.encoder)
            return list(tagger.tag_many(block))
        return run

    def torch_variant(name: str, batch: int = 32, sort: bool = True, threads: int = cores) -> None:
        def setup() -> None:
            shared.batch_size, shared.sort_by_length = batch, sort
            torch.set_num_threads(threads)
        variants.append((name, tag_with(Tagger(index, shared), setup), {}))

    torch_variant(f"torch, batch 32, sorted, {cores} threads (default)")
    torch_variant("torch, sorting off", sort=False)
    for size in (8, 16, 64, 128):
        torch_variant(f"torch, batch {size}", batch=size)
    torch_variant("torch, 1 thread", threads=1)
    numpy_encoder = NumpyEncoder(32)
    variants.append(("numpy path for everything (1 BLAS thread)", tag_with(Tagger(index, numpy_encoder)), {}))
    st = SentenceTransformerEncoder(backend="sentence-transformers")
    st_tagger = Tagger(index, st)
    variants.append(("before: sentence-transformers encoder, cross-README batches", tag_with(st_tagger), {}))

    def naive(block: list[Any]) -> list[Any]:
        torch.set_num_threads(cores)
        out = []
        for doc in block:
            chunks = st_tagger.chunks(doc)
            vectors = st.model.encode([c.text for c in chunks], batch_size=32, normalize_embeddings=True,
                                      convert_to_numpy=True, show_progress_bar=False)
            out.append(st_tagger._result(doc, chunks, st_tagger.score(doc, chunks, vectors) if chunks else None, False))
        return out

    variants.append(("naive: one SentenceTransformer.encode per README", naive, {}))
    tags, glosses = load_tags(), load_glosses()
    if cfg.get("onnx"):
        fp32 = OnnxEncoder(cache_dir=cfg["onnx_cache"])
        variants.append(("onnxruntime float32", tag_with(Tagger(index, fp32)), {}))
        int8 = OnnxEncoder(cache_dir=cfg["onnx_cache"], quantize=True)
        int8_index = build_index(tags, glosses, int8)  # its own zero-shot index (own fingerprint)
        variants.append(("onnxruntime int8 (own zero-shot index)", tag_with(Tagger(int8_index, int8)), {}))
        int8_one = OnnxEncoder(cache_dir=cfg["onnx_cache"], quantize=True, threads=1)
        variants.append(("onnxruntime int8, 1 thread", tag_with(Tagger(int8_index, int8_one)), {}))
    if cfg.get("m2v_dir"):
        m2v = Model2VecEncoder(Path(cfg["m2v_dir"]), shared)
        variants.append(("model2vec static, distilled here (own zero-shot index)",
                         tag_with(Tagger(build_index(tags, glosses, m2v), m2v)),
                         {"distill_s": round(m2v.distill_seconds, 1)}))
    for _, run, _ in variants:  # warm-up
        run(docs[:2])
    block_size = cfg.get("block", 8)
    blocks = [docs[i : i + block_size] for i in range(0, len(docs), block_size)]
    seconds = {name: 0.0 for name, _, _ in variants}
    results: dict[str, list[Any]] = {name: [] for name, _, _ in variants}
    for number, block in enumerate(blocks):
        turn = variants[number % len(variants):] + variants[: number % len(variants)]
        for name, run, _ in turn:
            got, took = timed(lambda r=run, b=block: r(b))
            seconds[name] += took
            results[name].extend(got)
        print(f"block {number + 1}/{len(blocks)}", file=sys.stderr, flush=True)
    chunk_total = sum(len(st_tagger.chunks(d)) for d in docs)
    out: dict[str, Any] = {"docs": len(docs), "chunks": chunk_total, "blocks": len(blocks), "variants": {}}
    for name, _, facts in variants:
        out["variants"][name] = {"tag_many_s": round(seconds[name], 2), **f1_of(results[name], gold), **facts}
    return out


def run_export(cfg: dict[str, Any]) -> dict[str, Any]:
    """One-time cost of the ONNX path: export float32, then quantize to int8, into an empty cache."""
    from embedtag.encoders import OnnxEncoder

    out: dict[str, Any] = {}
    _, out["export_fp32_s"] = timed(lambda: OnnxEncoder(cache_dir=cfg["onnx_cache"]))
    _, out["quantize_int8_s"] = timed(lambda: OnnxEncoder(cache_dir=cfg["onnx_cache"], quantize=True))
    _, out["load_cached_int8_s"] = timed(lambda: OnnxEncoder(cache_dir=cfg["onnx_cache"], quantize=True))
    return out


def run_equivalence(cfg: dict[str, Any]) -> dict[str, Any]:
    """Max abs difference between each encoder's vectors and sentence-transformers' on real chunks."""
    import numpy as np

    from embedtag.encoders import SentenceTransformerEncoder
    from embedtag.index import load_index
    from embedtag.tagger import Tagger

    docs, _ = load_data(cfg["data"], cfg.get("limit") or 40)
    reference = SentenceTransformerEncoder(backend="sentence-transformers")
    tagger = Tagger(load_index(cfg["index"]), reference)
    texts = [c.text for d in docs[:40] for c in tagger.chunks(d)]
    expected = reference.encode(texts)
    out: dict[str, Any] = {"texts": len(texts)}
    for backend in cfg["backends"]:
        encoder, _ = make_encoder({**cfg, "backend": backend})
        got = encoder.encode(texts)
        out[backend] = {"max_abs_diff": float(np.abs(got - expected).max()),
                        "min_cosine": float((got * expected).sum(axis=1).min()),
                        "mean_cosine": float((got * expected).sum(axis=1).mean())}
    return out


STARTUP_SNIPPET = r"""
import json, sys, time
t0 = time.perf_counter()
stages = {}
if "{force}" == "torch":
    import torch
    stages["import torch"] = time.perf_counter() - t0
t = time.perf_counter()
from embedtag.tagger import Tagger
from embedtag.records import read_readme
stages["import embedtag (numpy, faiss, click)"] = time.perf_counter() - t
t = time.perf_counter()
from embedtag.index import load_index
index = load_index("{index}")
stages["load index"] = time.perf_counter() - t
t = time.perf_counter()
from embedtag.encoders import load_encoder
encoder = load_encoder(None, max_tokens=index.settings.max_tokens)
stages["load encoder"] = time.perf_counter() - t
t = time.perf_counter()
tagger = Tagger(index, encoder)
result = tagger.tag(read_readme("{readme}"), description="Kubernetes Native Edge Computing Framework")
stages["tag one README"] = time.perf_counter() - t
stages["torch imported"] = "torch" in sys.modules
stages["sentence_transformers imported"] = "sentence_transformers" in sys.modules
print("RESULT " + json.dumps({"stages": stages, "tags": [t.key for t in result.tags]}))
"""


def worker_main(cfg: dict[str, Any]) -> None:
    for name in ("TOKENIZERS_PARALLELISM",):
        os.environ.setdefault(name, "false")
    mode = cfg["mode"]
    fn = {"pipeline": run_pipeline, "naive": run_naive, "curve": run_curve, "export": run_export,
          "equivalence": run_equivalence, "options": run_options}[mode]
    out = fn(cfg)
    out["worker_maxrss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print("RESULT " + json.dumps(out), flush=True)


# ---- orchestrator side --------------------------------------------------------------------------


def run_child(argv: list[str], env: dict[str, str] | None = None, timeout: float = 3600,
              expect: int | None = 0, stdin: str | None = None) -> dict[str, Any]:
    """A command measured (`harness.run_command`) as this script's results keep it: wall seconds,
    peak RSS (MB), exit code, the worker's parsed RESULT line, the load average at its start."""
    run = run_command(argv, env=env, timeout=timeout, stdin=stdin)
    result = None
    for line in run.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
    if expect is not None and run.returncode != expect:
        print(f"! {' '.join(argv[:6])}... exited {run.returncode}\n{run.stderr[-3000:]}", file=sys.stderr)
    return {"wall_s": run.wall_s, "rss_mb": run.peak_rss_mb, "rc": run.returncode, "result": result,
            "load": run.load_start, "stdout": run.stdout[-2000:], "stderr": run.stderr[-2000:]}


def worker(cfg: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    child = run_child([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(cfg)], env=env)
    out = dict(child["result"] or {"error": child["stderr"][-500:]})
    out["process_wall_s"], out["rss_mb"], out["load"] = child["wall_s"], child["rss_mb"], child["load"]
    print(f"  {cfg.get('label', cfg['mode'])}: {json.dumps({k: v for k, v in out.items() if k != 'points'})}",
          file=sys.stderr, flush=True)
    return out


def imports_torch(args: list[str], env: dict[str, str] | None = None) -> bool:
    """Whether a command imports torch (from `python -X importtime`)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "embedtag", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, cwd=REPO, timeout=600)
    return bool(re.search(r"\|\s+torch$", proc.stderr, re.MULTILINE))


def have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def cold_section(ctx: dict[str, Any], rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    index = ctx["index"]
    readme = str(COLD_README)
    tag_args = ["tag", readme, "--description", "Kubernetes Native Edge Computing Framework", "--index", index]
    variants: list[tuple[str, list[str], dict[str, str]]] = [
        ("embedtag tag (default: numpy for one README, no torch)", embedtag_cmd(*tag_args), {}),
        ("embedtag tag with torch imported first", [sys.executable, "-c",
         "import sys, torch; from embedtag.cli import main; sys.argv[0] = 'embedtag'; main()", *tag_args], {}),
        ("embedtag tag, EMBEDTAG_BACKEND=sentence-transformers (before this change)", embedtag_cmd(*tag_args),
         {"EMBEDTAG_BACKEND": "sentence-transformers"}),
    ]
    if ctx["onnx"]:
        variants.append(("embedtag tag, EMBEDTAG_BACKEND=onnx (cached export)", embedtag_cmd(*tag_args),
                         {"EMBEDTAG_BACKEND": "onnx", "EMBEDTAG_HOME": ctx["home"]}))
    variants += [
        ("embedtag --help", embedtag_cmd("--help"), {}),
        ("embedtag tag (no README: usage error, exit 2)", embedtag_cmd("tag"), {}),
    ]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in variants}
    for _ in range(rounds):
        for name, argv, env in variants:
            expect = 2 if "usage error" in name else 0
            runs[name].append(run_child(argv, env=env, expect=expect))
    for name, _argv, _env in variants:
        walls = [r["wall_s"] for r in runs[name]]
        out[name] = {"wall_median_s": round(statistics.median(walls), 3), "wall_min_s": min(walls),
                     "walls": walls, "rss_mb": max(r["rss_mb"] or 0 for r in runs[name]),
                     "rc": runs[name][-1]["rc"], "load": [r["load"] for r in runs[name]],
                     "stdout": runs[name][-1]["stdout"].strip()[:200]}
        print(f"  {name}: {out[name]['walls']} rss {out[name]['rss_mb']}", file=sys.stderr, flush=True)
    out["torch imported by --help"] = imports_torch(["--help"])
    out["torch imported by a usage error"] = imports_torch(["tag"])
    out["torch imported by tag (one README)"] = imports_torch(tag_args)
    # where the time of a cold `tag` goes, stage by stage, in fresh processes
    stages = {}
    for label, force, env in (("numpy (default)", "", {}), ("torch first", "torch", {}),
                              ("sentence-transformers", "", {"EMBEDTAG_BACKEND": "sentence-transformers"})):
        snippet = STARTUP_SNIPPET.replace("{force}", force).replace("{index}", index).replace("{readme}", readme)
        child = run_child([sys.executable, "-c", snippet], env=env)
        stages[label] = {"wall_s": child["wall_s"], "rss_mb": child["rss_mb"],
                         **((child["result"] or {}).get("stages") or {})}
    out["stages"] = stages
    imports = {}
    for label, code in (("python (nothing)", "pass"), ("import numpy, faiss", "import numpy, faiss"),
                        ("import torch", "import torch"), ("import transformers.BertModel",
                                                           "from transformers import BertModel"),
                        ("import sentence_transformers", "import sentence_transformers"),
                        ("import onnxruntime", "import onnxruntime")):
        if code.startswith("import onnxruntime") and not ctx["onnx"]:
            continue
        walls = [run_child([sys.executable, "-c", code])["wall_s"] for _ in range(2)]
        imports[label] = min(walls)
    out["imports"] = imports
    return out


def main_section(ctx: dict[str, Any], rounds: int) -> dict[str, Any]:
    base = {"data": ctx["data"], "limit": ctx["limit"], "index": ctx["index"]}
    configs = [
        ("embedtag (torch, batch 32, sorted)", {**base, "mode": "pipeline", "raw": True, "repeats": 5}),
        ("before: sentence-transformers encoder, same batching",
         {**base, "mode": "pipeline", "backend": "sentence-transformers"}),
        ("naive: one SentenceTransformer.encode per README", {**base, "mode": "naive"}),
        ("embedtag, shipped index: ranker + 263 dev examples (its F1 has seen these labels)",
         {**base, "mode": "pipeline", "index": str(REPO / "index")}),
    ]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in configs}
    batch_runs = []
    for _ in range(rounds):
        for name, cfg in configs:
            results[name].append(worker({**cfg, "label": name}))
        out_file = Path(ctx["tmp"]) / "batch-out.jsonl"
        child = run_child(embedtag_cmd("batch", ctx["data_for_cli"], "-o", str(out_file), "--index", ctx["index"]))
        batch_runs.append({"wall_s": child["wall_s"], "rss_mb": child["rss_mb"], "load": child["load"],
                           **batch_f1(out_file, ctx)})
        print(f"  embedtag batch (CLI): {batch_runs[-1]}", file=sys.stderr, flush=True)
    best = {name: min(runs, key=lambda r: r.get("tag_many_s", 1e9)) for name, runs in results.items()}
    for name, runs in results.items():
        best[name]["rounds_tag_many_s"] = [r.get("tag_many_s") for r in runs]
        best[name]["rounds_load"] = [r.get("load") for r in runs]
    cli = min(batch_runs, key=lambda r: r["wall_s"])
    cli["rounds_wall_s"] = [r["wall_s"] for r in batch_runs]
    return {"configs": best, "batch_cli": cli}


def batch_f1(out_file: Path, ctx: dict[str, Any]) -> dict[str, Any]:
    from embedtag.evaluate import evaluate

    _, gold = load_data(ctx["data"], ctx["limit"])
    if not out_file.is_file():
        return {}
    lines = [json.loads(line) for line in out_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    report = evaluate([[t.strip() for t in line["tags"]] for line in lines], gold)
    return {"f1": round(report.strict_f1, 4), "records": len(lines)}


def options_section(ctx: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ctx["onnx"]:
        out["onnx export"] = worker({"mode": "export", "onnx_cache": str(Path(ctx["home"]) / "export-test"),
                                    "label": "onnx export"})
    backends = ["torch", "numpy"] + (["onnx", "onnx-int8"] if ctx["onnx"] else [])
    out["equivalence"] = worker({"mode": "equivalence", "data": ctx["data"], "limit": 20,
                                 "index": ctx["index"], "backends": backends, "onnx_cache": ctx["onnx_cache"],
                                 "label": "equivalence"})
    cfg = {"mode": "options", "data": ctx["data"], "limit": ctx["options_limit"], "index": ctx["index"],
           "onnx": ctx["onnx"], "onnx_cache": ctx["onnx_cache"], "label": "options (interleaved)",
           "m2v_dir": str(Path(ctx["home"]) / "m2v") if have("model2vec") else None}
    out["interleaved"] = worker(cfg)
    return out


def curve_section(ctx: dict[str, Any], max_chunks: list[int], max_tokens: list[int]) -> dict[str, Any]:
    out = {}
    for tokens in max_tokens:
        cfg = {"mode": "curve", "data": ctx["data"], "limit": ctx["limit"], "index": ctx["index"],
               "max_tokens": tokens, "max_chunks_list": max_chunks, "label": f"curve max_tokens={tokens}",
               "speed_limit": ctx["curve_speed_limit"]}
        out[str(tokens)] = worker(cfg).get("points", [])
    return out


# ---- report -------------------------------------------------------------------------------------


def rate(n: float, seconds: float | None) -> float:
    return n / seconds if seconds else 0.0


def report(data: dict[str, Any]) -> str:
    meta = data["meta"]
    lines = [BEGIN, "", f"Generated by `{meta['command']}` on {meta['date']}.",
             f"Machine: {meta['cpu']}, {meta['cores']} cores, Python {meta['python']}, {meta['torch']}; "
             f"1-minute load average at the start {meta['load_start']}, at the end {meta.get('load_end')} "
             f"(other processes share the 2 cores: every figure here is noisy; compare rows of one run).", ""]
    targets: list[list[Any]] = []
    main = data.get("main")
    if main:
        cfgs = main["configs"]
        ours = cfgs["embedtag (torch, batch 32, sorted)"]
        raw_tok_s = rate(ours["tokens"], ours["raw_encode_s"])
        lines += ["### Throughput on the dev set (warm: model loaded; best of the rounds)", ""]
        rows = []
        for name, r in cfgs.items():
            if "tag_many_s" not in r:
                rows.append([name, "failed", "", "", "", "", "", "", ""])
                continue
            docs_s = rate(r["docs"], r["tag_many_s"])
            tok_s = rate(ours["tokens"], r["tag_many_s"])
            rows.append([name, f"{docs_s:.2f}", f"{rate(ours['chunks'], r['tag_many_s']):.1f}", f"{tok_s:.0f}",
                         f"{tok_s / raw_tok_s:.0%}", f"{r.get('rss_mb')}", f"{r['f1']:.3f}",
                         " / ".join(f"{t:.1f}" for t in r["rounds_tag_many_s"]),
                         " / ".join(str(x) for x in r["rounds_load"])])
        rows.insert(0, ["raw encoder limit: `encode()` of exactly these chunks, 64 READMEs' chunks per call", "",
                        f"{rate(ours['chunks'], ours['raw_encode_s']):.1f}", f"{raw_tok_s:.0f}", "100%",
                        "", "", f"{ours['raw_encode_s']:.1f}", ""])
        before_raw = cfgs["before: sentence-transformers encoder, same batching"]
        if "raw_encode_s" in before_raw:
            rows.insert(1, ["raw limit of the sentence-transformers encoder (before)", "",
                            f"{rate(ours['chunks'], before_raw['raw_encode_s']):.1f}",
                            f"{rate(ours['tokens'], before_raw['raw_encode_s']):.0f}",
                            f"{rate(ours['tokens'], before_raw['raw_encode_s']) / raw_tok_s:.0%}", "", "",
                            f"{before_raw['raw_encode_s']:.1f}", ""])
        cli = main["batch_cli"]
        cli_docs_s = rate(ours["docs"], cli["wall_s"])
        rows.append(["`embedtag batch` CLI, cold process (start-up included)", f"{cli_docs_s:.2f}",
                     f"{rate(ours['chunks'], cli['wall_s']):.1f}", f"{rate(ours['tokens'], cli['wall_s']):.0f}",
                     f"{rate(ours['tokens'], cli['wall_s']) / raw_tok_s:.0%}", f"{cli['rss_mb']}",
                     f"{cli.get('f1', 0):.3f}", " / ".join(f"{t:.1f}" for t in cli["rounds_wall_s"]), ""])
        lines += md_table(["configuration", "READMEs/s", "chunks/s", "tokens/s", "% of raw limit",
                           "peak RSS MB", "strict F1", "seconds (each round)", "load avg"], rows)
        lines += ["", f"{ours['docs']} READMEs → {ours['chunks']} chunks, {ours['tokens']} tokens "
                  f"({ours['tokens'] / max(ours['chunks'], 1):.0f} per chunk, special tokens included). "
                  f"Outside the encoder, per README: chunking {1000 * ours['chunk_s'] / ours['docs']:.0f} ms, "
                  f"scoring {1000 * ours.get('score_s', 0) / ours['docs']:.0f} ms, of which FAISS search "
                  f"{1000 * ours.get('score_faiss_s', 0) / ours['docs']:.0f} ms, per-tag votes "
                  f"{1000 * ours.get('score_votes_s', 0) / ours['docs']:.0f} ms, keyword "
                  f"hits in the opening {1000 * ours.get('score_keyword_s', 0) / ours['docs']:.0f} ms, "
                  "cue regexes over the first 10,000 characters "
                  f"{1000 * ours.get('score_cues_s', 0) / ours['docs']:.0f} ms"
                  f" (the encoder alone: {1000 * ours['raw_encode_s'] / ours['docs']:.0f} ms). "
                  "Model load in the worker: "
                  f"{ours.get('load_s')} s (torch backend) vs "
                  f"{cfgs['before: sentence-transformers encoder, same batching'].get('load_s')} s "
                  "(sentence-transformers).", ""]
        docs_s = rate(ours["docs"], ours["tag_many_s"])
        targets.append(["≥ 25 READMEs/s warm (default settings)", f"{docs_s:.2f}", docs_s >= 25])
        ratio = rate(ours["tokens"], ours["tag_many_s"]) / raw_tok_s
        rounds = ours.get("ratio_rounds")
        if rounds:  # the median of per-round ratios is steadier than best-of-rounds over best-of-rounds
            ratio = statistics.median(rounds)
            lines += [f"Raw encoder time / pipeline time, round by round (blocks of 64 READMEs, alternating "
                      f"which goes first): {' / '.join(f'{x:.1%}' for x in rounds)}; median {ratio:.1%}.", ""]
        targets.append(["≥ 90% of the raw encoder throughput (median of the rounds)", f"{ratio:.0%}", ratio >= 0.9])
        startup = cli["wall_s"] - ours["docs"] / docs_s
        projected = startup + 10_000 / docs_s
        targets.append(["10,000 READMEs < 10 min (projected: start-up + 10,000 / warm rate)",
                        f"{projected / 60:.1f} min", projected < 600])
        targets.append(["peak RSS ≤ 1 GB (`embedtag batch`)", f"{cli['rss_mb']} MB", (cli["rss_mb"] or 0) <= 1024])
    cold = data.get("cold")
    if cold:
        lines += ["### Cold commands (fresh process each; median of the rounds)", ""]
        rows = []
        for name, r in cold.items():
            if isinstance(r, dict) and "wall_median_s" in r:
                rows.append([name, f"{r['wall_median_s']:.2f}", " / ".join(f"{w:.2f}" for w in r["walls"]),
                             r["rss_mb"], r["rc"], " / ".join(str(x) for x in r["load"])])
        build = data.get("build_index")
        if build:
            rows.append(["embedtag build-index (90 tags) --out TMP", f"{build['wall_s']:.2f}", "", build["rss_mb"],
                         build["rc"], build["load"]])
        lines += md_table(["command", "wall s (median)", "each round", "peak RSS MB", "exit", "load avg"], rows)
        lines += ["", f"torch imported by `--help`: {cold['torch imported by --help']}; by a usage error: "
                  f"{cold['torch imported by a usage error']}; by `tag` on one README: "
                  f"{cold['torch imported by tag (one README)']} (from `python -X importtime`).", ""]
        lines += ["Where a cold `embedtag tag` spends its time (seconds, in-process stages of a fresh process):", ""]
        stage_names: list[str] = []
        for stages in cold["stages"].values():
            for key in stages:
                if key not in stage_names and key not in {"wall_s", "rss_mb"}:
                    stage_names.append(key)
        rows = []
        for key in [*stage_names, "wall_s", "rss_mb"]:
            row = [key]
            for stages in cold["stages"].values():
                value = stages.get(key, "")
                row.append(f"{value:.2f}" if isinstance(value, float) else value)
            rows.append(row)
        lines += md_table(["stage", *cold["stages"].keys()], rows)
        lines += ["", "Bare imports, fresh process each (best of 2): " + ", ".join(
            f"{k} {v:.2f} s" for k, v in cold["imports"].items()) + ".", ""]
        tag_cold = cold["embedtag tag (default: numpy for one README, no torch)"]
        targets.append(["`embedtag tag` cold ≤ 3 s", f"{tag_cold['wall_median_s']:.2f} s",
                        tag_cold["wall_median_s"] <= 3])
        helped = cold["embedtag --help"]
        targets.append(["`embedtag --help` ≤ 0.3 s", f"{helped['wall_median_s']:.2f} s",
                        helped["wall_median_s"] <= 0.3])
        targets.append(["peak RSS ≤ 1 GB (`embedtag tag`)", f"{tag_cold['rss_mb']} MB", tag_cold["rss_mb"] <= 1024])
    options = data.get("options")
    if options:
        inter = options.get("interleaved", {})
        variants = inter.get("variants", {})
        lines += [f"### Encoding options: all in one process, interleaved over {inter.get('blocks')} blocks of "
                  f"the first {inter.get('docs')} items ({inter.get('chunks')} chunks; default settings "
                  "max_chunks 12, max_tokens 128; F1 on those items)", ""]
        reference: dict[str, Any] = next(iter(variants.values()), {})
        rows = []
        for name, r in variants.items():
            ratio = reference["tag_many_s"] / r["tag_many_s"] if r.get("tag_many_s") else 0
            rows.append([name, f"{rate(inter['docs'], r['tag_many_s']):.2f}",
                         f"{rate(inter['chunks'], r['tag_many_s']):.1f}", f"{r['tag_many_s']:.1f}",
                         f"{ratio:.2f}×", f"{r['f1']:.3f}"])
        lines += md_table(["option", "READMEs/s", "chunks/s", "seconds", "speed vs first row", "strict F1"], rows)
        lines += ["", f"(peak RSS of that one process, all options loaded: {inter.get('rss_mb')} MB; "
                  f"load average at its start {inter.get('load')}.)"]
        eq = options.get("equivalence", {})
        if eq.get("texts"):
            lines += ["", f"Vectors against sentence-transformers on {eq['texts']} real chunks: " + "; ".join(
                f"{k} max abs diff {v['max_abs_diff']:.1e}, min cosine {v['min_cosine']:.4f}"
                for k, v in eq.items() if isinstance(v, dict)) + "."]
        export = options.get("onnx export", {})
        if "export_fp32_s" in export:
            lines += ["", f"ONNX one-time costs: export float32 {export['export_fp32_s']:.1f} s, int8 quantization "
                      f"{export['quantize_int8_s']:.1f} s, loading the cached int8 model "
                      f"{export['load_cached_int8_s']:.2f} s."]
        m2v = next((r for n, r in variants.items() if n.startswith("model2vec")), None)
        if m2v and "distill_s" in m2v:
            lines += ["", f"model2vec distillation took {m2v['distill_s']:.0f} s (once)."]
        lines += [""]
    curve = data.get("curve")
    if curve:
        lines += ["### Quality and speed against how much README is embedded", "",
                  "Strict F1 on all items / warm READMEs/s on the first "
                  f"{next(iter(curve.values()))[0]['speed_docs']} items (torch backend, zero-shot index, one "
                  "pass each; F1 from one encode at the largest max_chunks, smaller settings keep a prefix "
                  "of those chunks):", ""]
        tokens_list = list(curve)
        chunks_list = [p["max_chunks"] for p in next(iter(curve.values()))]
        rows = []
        best_f1 = max(p["f1"] for points in curve.values() for p in points)
        candidates = []
        for max_chunks in chunks_list:
            curve_row: list[Any] = [max_chunks]
            for tokens in tokens_list:
                point = next(p for p in curve[tokens] if p["max_chunks"] == max_chunks)
                speed = rate(point["speed_docs"], point["tag_many_s"])
                curve_row.append(f"{point['f1']:.3f} / {speed:.1f}")
                candidates.append((point["f1"], speed, max_chunks, int(tokens), point))
            rows.append(curve_row)
        lines += md_table(["max_chunks", *[f"max_tokens {t}" for t in tokens_list]], rows)
        good = [c for c in candidates if c[0] >= best_f1 - 0.01]
        fastest = max(good, key=lambda c: c[1])
        lines += ["", f"Best strict F1 {best_f1:.3f}. Fastest setting within 0.01 of it: max_chunks {fastest[2]}, "
                  f"max_tokens {fastest[3]} (F1 {fastest[0]:.3f}, {fastest[1]:.1f} READMEs/s, "
                  f"{fastest[4]['chunks'] / fastest[4]['docs']:.1f} chunks and "
                  f"{fastest[4]['tokens'] / fastest[4]['docs']:.0f} tokens per README).", ""]
        targets.append(["≥ 25 READMEs/s at F1 within 0.01 of the best", f"{fastest[1]:.1f} READMEs/s "
                        f"(max_chunks {fastest[2]}, max_tokens {fastest[3]})", fastest[1] >= 25])
    if targets:
        lines += ["### Targets", ""]
        lines += md_table(["target", "measured", "met"], [[t, m, "yes" if ok else "**no**"] for t, m, ok in targets])
        lines += [""]
    lines += [END]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", default=str(DEV_ITEMS),
                        help="labelled JSONL (id, description, readme, core, also)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown file to update")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    parser.add_argument("--limit", type=int, default=None, help="only the first N items (quick runs)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds of the main comparison")
    parser.add_argument("--options-limit", type=int, default=64, help="items for the encoding options")
    parser.add_argument("--curve-speed-limit", type=int, default=48, help="items timed per curve point")
    parser.add_argument("--cold-rounds", type=int, default=3)
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--reuse", type=Path, default=None,
                        help="results JSON of an earlier run: keep its sections, rerun only --sections")
    parser.add_argument("--max-chunks", default="1,2,4,8,12,16")
    parser.add_argument("--max-tokens", default="64,96,128")
    args = parser.parse_args()
    if args.worker:
        worker_main(json.loads(args.worker))
        return
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    from importlib.metadata import version

    tmp = tempfile.mkdtemp(prefix="embedtag-speed-")
    data_path = args.data
    if args.limit:  # the CLI reads a file: give it the same subset
        subset = Path(tmp) / "items.jsonl"
        with open(args.data, encoding="utf-8") as src, subset.open("w", encoding="utf-8") as dst:
            for i, line in enumerate(src):
                if i >= args.limit:
                    break
                dst.write(line)
        data_path = str(subset)
    ctx: dict[str, Any] = {"tmp": tmp, "data": args.data, "data_for_cli": data_path, "limit": args.limit,
                           "index": str(Path(tmp) / "index"), "home": str(Path(tmp) / "home"),
                           "onnx": have("onnxruntime") and have("onnx"),
                           "options_limit": min(args.options_limit, args.limit or args.options_limit),
                           "curve_speed_limit": min(args.curve_speed_limit, args.limit or args.curve_speed_limit)}
    ctx["onnx_cache"] = str(Path(ctx["home"]) / "onnx")
    host = machine()
    data: dict[str, Any] = {"meta": {
        "command": "python scripts/speed_benchmark.py " + " ".join(a for a in sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": host["cpu"], "cores": host["cores"],
        "python": host["python"], "torch": f"torch {version('torch')}",
        "load_start": load_avg(), "onnxruntime available": ctx["onnx"],
        "model2vec available": have("model2vec"), "rss_from": "/usr/bin/time -v" if GNU_TIME.exists() else "getrusage"}}
    if args.reuse:
        earlier = json.loads(args.reuse.read_text(encoding="utf-8"))
        kept = [k for k in earlier if k not in {"meta", "build_index", *sections}]
        earlier["meta"]["command"] = (f"{earlier['meta']['command']}` (sections {', '.join(kept)}, "
                                      f"{earlier['meta']['date']}), then `{data['meta']['command']}")
        earlier["meta"]["date"] = data["meta"]["date"]
        earlier["meta"]["load_start"] = f"{earlier['meta']['load_start']} / {data['meta']['load_start']}"
        data = {k: v for k, v in earlier.items() if k not in sections}
    try:
        print("build-index (zero-shot, for every F1 figure)", file=sys.stderr, flush=True)
        build = run_child(embedtag_cmd("build-index", "--out", ctx["index"]))
        data["build_index"] = {k: build[k] for k in ("wall_s", "rss_mb", "rc", "load")}
        if build["rc"] != 0:
            raise SystemExit(f"build-index failed: {build['stderr']}")
        if ctx["onnx"]:  # the cache the ONNX rows use: exported once here, timed in `options`
            run_child([sys.executable, "-c", "from embedtag.encoders import OnnxEncoder as E; "
                       f"E(cache_dir={ctx['onnx_cache']!r}); E(cache_dir={ctx['onnx_cache']!r}, quantize=True)"])
            os.environ["EMBEDTAG_HOME"] = ctx["home"]
        if "cold" in sections:
            print("cold commands", file=sys.stderr, flush=True)
            data["cold"] = cold_section(ctx, args.cold_rounds)
        if "main" in sections:
            print("main comparison", file=sys.stderr, flush=True)
            data["main"] = main_section(ctx, args.rounds)
        if "options" in sections:
            print("encoding options", file=sys.stderr, flush=True)
            data["options"] = options_section(ctx)
        if "curve" in sections:
            print("curve", file=sys.stderr, flush=True)
            data["curve"] = curve_section(ctx, [int(x) for x in args.max_chunks.split(",")],
                                          [int(x) for x in args.max_tokens.split(",")])
    finally:
        data["meta"]["load_end"] = f"{data['meta'].get('load_end', '')} / {load_avg():.2f}".lstrip(" /")
        if args.json:
            write_json(args.json, data)
        shutil.rmtree(tmp, ignore_errors=True)
    replace_section(args.out, report(data), BEGIN, END, "Speed benchmark")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

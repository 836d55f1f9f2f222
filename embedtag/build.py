"""Building an index from a tag list, glosses and optional labelled examples; training an adapter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from embedtag.calibrate import EXAMPLE_WEIGHT
from embedtag.encoders import Encoder, load_encoder
from embedtag.encoders.adapter import (
    ADAPTER_FILE,
    TrainReport,
    TrainSettings,
    adapter_bytes,
    read_adapter,
    settings_json,
    train_adapter,
)
from embedtag.errors import InputError
from embedtag.exemplars import EXEMPLAR_WEIGHT, Exemplar, read_exemplars
from embedtag.glosses import load_glosses, tag_texts
from embedtag.index import Example, TagIndex, build_index, load_index
from embedtag.records import LabelledRecord, read_labelled
from embedtag.scoring import ScoringSettings
from embedtag.tagger import Tagger, document_vector
from embedtag.tags import load_tags
from embedtag.transfer import MIN_SHARED, curated_for, match_tags, shipped_names, transfer


def document_vectors(tagger: Tagger, records: list[LabelledRecord]) -> tuple[np.ndarray, list[np.ndarray]]:
    """One vector per labelled README (zeros for a README with no text), and its chunks' vectors."""
    out = np.zeros((len(records), tagger.encoder.dimension), dtype=np.float32)
    per_doc = [tagger.chunks(r.document) for r in records]
    vectors = tagger.encoder.encode([c.text for chunks in per_doc for c in chunks])
    chunk_vectors = []
    start = 0
    for row, chunks in enumerate(per_doc):
        if chunks:
            out[row] = document_vector(chunks, vectors[start : start + len(chunks)])
        chunk_vectors.append(vectors[start : start + len(chunks)])
        start += len(chunks)
    return out, chunk_vectors


def with_examples(
    index: TagIndex,
    tagger: Tagger,
    records: list[LabelledRecord],
    vectors: np.ndarray | None = None,
    chunk_vectors: list[np.ndarray] | None = None,
) -> TagIndex:
    """The index plus one prototype vector per labelled README (kNN label transfer) and its
    chunks' vectors (chunk-level votes).

    `vectors` and `chunk_vectors` are the READMEs' document and chunk vectors when already
    computed (by calibration); document vectors alone keep no chunks."""
    if vectors is None:
        vectors, chunk_vectors = document_vectors(tagger, records)
    counts = [len(c) for c in chunk_vectors] if chunk_vectors is not None else [0] * len(records)
    chunk_bank = np.concatenate(chunk_vectors, dtype=np.float32) if chunk_vectors and any(counts) else None
    by_key = {tag.key: tag.id for tag in index.tags}
    examples = [
        Example(
            r.document.id,
            tuple(by_key[t] for t in r.core if t in by_key),
            tuple(by_key[t] for t in r.also if t in by_key),
            chunks=n,
        )
        for r, n in zip(records, counts, strict=True)
    ]
    settings = index.settings
    if not settings.example_weight:
        settings = replace(settings, example_weight=EXAMPLE_WEIGHT)
    return replace(
        index,
        examples=examples,
        example_vectors=vectors,
        example_chunk_vectors=chunk_bank,
        settings=settings,
        _faiss_examples=None,
        _faiss_example_chunks=None,
    )


def with_exemplars(index: TagIndex, encoder: Encoder, exemplars: list[Exemplar], source: str = "") -> TagIndex:
    """The index plus exemplar vectors and tag ids (their text is embedded, never stored).

    Without a ranker their vote is added with `EXEMPLAR_WEIGHT`; `embedtag calibrate` weighs it."""
    by_key = {tag.key: tag.id for tag in index.tags}
    settings = index.settings
    if settings.ranker is None and not settings.exemplar_weight:
        settings = replace(settings, exemplar_weight=EXEMPLAR_WEIGHT)
    return replace(
        index,
        exemplar_tags=[tuple(by_key[t] for t in e.tags) for e in exemplars],
        exemplar_also=[tuple(by_key[t] for t in e.also) for e in exemplars] if any(e.also for e in exemplars) else [],
        exemplar_vectors=encoder.encode([e.text for e in exemplars]),
        exemplar_source=source,
        settings=settings,
    )


def build(
    tags_path: str | Path | None,
    glosses_path: str | Path | None,
    model: str | Path | None,
    out: str | Path,
    examples_path: str | Path | None = None,
    settings: ScoringSettings | None = None,
    exemplars_path: str | Path | None = None,
    adapter_path: str | Path | None = None,
    carry_over: str | Path | None = None,
) -> TagIndex:
    """`embedtag build-index`: embed tag texts (and examples, exemplars) and write the index atomically.

    `settings` (chunk sizes...) are stored in the manifest and used by every later `tag`; an
    adapter (`embedtag train`) is copied into the index, which then always runs with it.
    `carry_over`: an index whose exemplars, labelled examples and ranker the new list keeps for
    the tags it shares with it (`embedtag.transfer`), with its settings and adapter."""
    tags = load_tags(tags_path)
    glosses = load_glosses(glosses_path)
    source = None
    if carry_over is not None:
        if examples_path is not None or adapter_path is not None:
            raise InputError(
                "--carry-over keeps that index's examples and adapter; leave out --examples/--adapter "
                "(to fit on your own labelled READMEs, run `embedtag calibrate` on the new index)"
            )
        source = load_index(carry_over)
        settings = source.settings
    settings = settings or ScoringSettings()
    adapter = read_adapter(adapter_path) if adapter_path is not None else (source.adapter if source else None)
    encoder = load_encoder(model, max_tokens=max(settings.max_tokens, 128), adapter=adapter)
    mapping: dict[int, int] = {}
    if source is not None:
        source.check_encoder(encoder)  # its vectors must be this model's
        mapping, glosses = match_tags(source.tags, tags, glosses)
    else:
        glosses = curated_for(tags, glosses)
    index = build_index(tags, glosses, encoder, settings)
    if source is not None:
        index = transfer(source, index, MIN_SHARED, mapping)
    if exemplars_path is not None:
        found = read_exemplars(exemplars_path, {t.key for t in tags}, shipped_names(tags, glosses))
        index = with_exemplars(index, encoder, found.exemplars, Path(exemplars_path).name)
    if examples_path is not None:
        records = read_labelled(examples_path, {t.key for t in tags})
        index = with_examples(index, Tagger(index, encoder), records)
    index.save(out)
    return index


def train(
    exemplars_path: str | Path,
    out: str | Path,
    tags_path: str | Path | None = None,
    glosses_path: str | Path | None = None,
    model: str | Path | None = None,
    settings: TrainSettings | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> tuple[Path, TrainReport]:
    """`embedtag train`: fine-tune the encoder's top layers on exemplars against the tag texts,
    and write `OUT/adapter.safetensors` (use it with `build-index --adapter OUT`)."""
    tags = load_tags(tags_path)
    glosses = load_glosses(glosses_path)
    texts = tag_texts(tags, curated_for(tags, glosses))
    found = read_exemplars(exemplars_path, {t.key for t in tags}, shipped_names(tags, glosses))
    position = {t.key: i for i, t in enumerate(tags)}
    per_tag = [[x.text for x in texts if x.tag_id == t.id] for t in tags]
    encoder = load_encoder(model, backend="torch")
    settings = settings or TrainSettings()
    weights, report = train_adapter(
        encoder,
        [e.text for e in found.exemplars],
        [tuple(position[k] for k in e.tags) for e in found.exemplars],
        per_tag,
        settings,
        progress,
    )
    data = adapter_bytes(weights, encoder.fingerprint(), {**settings_json(settings, report),
                                                          "exemplars": Path(exemplars_path).name})
    target = Path(out)
    try:
        target.mkdir(parents=True, exist_ok=True)
        path = target / ADAPTER_FILE
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        raise InputError(f"cannot write the adapter into {target} ({exc.strerror}); pass a writable --out") from None
    return path, report

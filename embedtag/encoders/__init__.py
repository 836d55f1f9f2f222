"""Encoders: text in, L2-normalised float32 vectors out. The default is the bundled MiniLM.

The bundled model is a plain BERT with mean pooling. `SentenceTransformerEncoder` runs such a
model directly on torch from its safetensors weights and its `tokenizer.json` (the Rust
`tokenizers` library), without importing transformers or sentence-transformers: the vectors are
the same as sentence-transformers gives (max abs difference ~2e-7, see tests/test_encoder.py)
and a cold start saves the seconds those two libraries take to import. Any other model folder
still goes through sentence-transformers.

`OnnxEncoder` runs the same weights on ONNX Runtime. The default encoder is its int8 variant:
a static int8 model of the bundled MiniLM shipped in the package (embedtag/data, built by
scripts/build_int8_encoder.py), 2x float MiniLM on torch end to end, never importing torch. Its
vectors approximate the float model's (cosine ~0.99 on README chunks), so it has a fingerprint
of its own (the vector store keeps its vectors apart) and `approximates` the float one (an index
built with either scores with either). The float32 ONNX variant is exported once, locally, into
a cache directory ($EMBEDTAG_HOME/onnx, else ~/.cache/embedtag/onnx); nothing is ever
downloaded. benchmarks/speed.md has the measurements.
"""

from __future__ import annotations

import os
from pathlib import Path

from embedtag.encoders.base import (
    BACKENDS,
    BUNDLED_MODEL_NAME,
    BUNDLED_PACKAGE,
    ENV_BACKEND,
    ENV_HOME,
    ENV_THREADS,
    NUMPY_MAX_TEXTS,
    Encoder,
    bundled_model_path,
    cache_home,
    set_offline,
    weights_fingerprint,
)
from embedtag.encoders.bert import BertSpec, bert_module, bert_numpy, bert_spec, bert_weights
from embedtag.encoders.hashing import HashingEncoder
from embedtag.encoders.onnx import INT8_MODEL, OnnxEncoder, onnx_model, onnxruntime_available
from embedtag.encoders.torch_bert import SentenceTransformerEncoder
from embedtag.errors import ModelError

__all__ = [
    "BACKENDS", "BUNDLED_MODEL_NAME", "BUNDLED_PACKAGE", "ENV_BACKEND", "ENV_HOME", "ENV_THREADS",
    "INT8_MODEL", "NUMPY_MAX_TEXTS", "BertSpec", "Encoder", "HashingEncoder", "OnnxEncoder",
    "SentenceTransformerEncoder",
    "bert_module", "bert_numpy", "bert_spec", "bert_weights", "bundled_model_path", "cache_home",
    "default_backend", "load_encoder", "onnx_model", "set_offline", "weights_fingerprint",
]


def default_backend(model: str | Path | None = None, adapter: bytes | None = None) -> str:
    """$EMBEDTAG_BACKEND, else the int8 model for the bundled MiniLM (when onnxruntime and the
    shipped model are there and no adapter changes the weights), else torch."""
    chosen = os.environ.get(ENV_BACKEND, "").strip().lower()
    if chosen:
        return chosen
    if model is None and adapter is None and INT8_MODEL.is_file() and onnxruntime_available():
        return "onnx-int8"
    return "torch"


def load_encoder(
    model: str | Path | None = None, max_tokens: int = 128, backend: str | None = None,
    adapter: bytes | None = None,
) -> Encoder:
    """The encoder for a `--model` value: None means the bundled MiniLM.

    `backend` (else `default_backend`): "onnx-int8" (the default: the shipped static int8
    model), "torch" (float, the model's own vectors), "onnx" (float on ONNX Runtime) or
    "sentence-transformers".
    `adapter`: an `embedtag train` file's bytes (an index carries its own, see TagIndex.adapter).
    """
    if model is not None and str(model).startswith("hashing"):
        if adapter is not None:
            raise ModelError("an adapter applies to the bundled BERT model, not to the hashing encoder")
        return HashingEncoder()
    chosen = (backend or default_backend(model, adapter)).strip().lower()
    if chosen not in BACKENDS:
        raise ModelError(f"unknown backend {chosen!r}; use one of {', '.join(BACKENDS)}")
    if chosen.startswith("onnx"):
        return OnnxEncoder(model, max_tokens=max_tokens, quantize=chosen == "onnx-int8", adapter=adapter)
    return SentenceTransformerEncoder(model, max_tokens=max_tokens, backend=chosen, adapter=adapter)

"""Encoders: text in, L2-normalised float32 vectors out. The default is the bundled MiniLM.

The bundled model is a plain BERT with mean pooling. `SentenceTransformerEncoder` runs such a
model directly on torch from its safetensors weights and its `tokenizer.json` (the Rust
`tokenizers` library), without importing transformers or sentence-transformers: the vectors are
the same as sentence-transformers gives (max abs difference ~2e-7, see tests/test_encoder.py)
and a cold start saves the seconds those two libraries take to import. Any other model folder
still goes through sentence-transformers.

`OnnxEncoder` runs the same weights on ONNX Runtime (optional: `pip install onnxruntime onnx`).
The ONNX file is exported once, locally, from the bundled weights into a cache directory
($EMBEDTAG_HOME/onnx, else ~/.cache/embedtag/onnx); nothing is ever downloaded. Its float32
variant gives the same vectors (same fingerprint, works with the shipped index); the int8
variant (dynamic quantization) is faster but not identical, so it has its own fingerprint and
needs an index built with it. benchmarks/speed.md has the measurements.
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
from embedtag.encoders.onnx import OnnxEncoder, onnx_model
from embedtag.encoders.torch_bert import SentenceTransformerEncoder
from embedtag.errors import ModelError

__all__ = [
    "BACKENDS", "BUNDLED_MODEL_NAME", "BUNDLED_PACKAGE", "ENV_BACKEND", "ENV_HOME", "ENV_THREADS",
    "NUMPY_MAX_TEXTS", "BertSpec", "Encoder", "HashingEncoder", "OnnxEncoder", "SentenceTransformerEncoder",
    "bert_module", "bert_numpy", "bert_spec", "bert_weights", "bundled_model_path", "cache_home",
    "load_encoder", "onnx_model", "set_offline", "weights_fingerprint",
]


def load_encoder(
    model: str | Path | None = None, max_tokens: int = 128, backend: str | None = None,
    adapter: bytes | None = None,
) -> Encoder:
    """The encoder for a `--model` value: None means the bundled MiniLM.

    `backend` (else $EMBEDTAG_BACKEND, else "torch"): "torch", "sentence-transformers",
    "onnx" (same vectors, faster start) or "onnx-int8" (faster, own fingerprint and index).
    `adapter`: an `embedtag train` file's bytes (an index carries its own, see TagIndex.adapter).
    """
    if model is not None and str(model).startswith("hashing"):
        if adapter is not None:
            raise ModelError("an adapter applies to the bundled BERT model, not to the hashing encoder")
        return HashingEncoder()
    chosen = (backend or os.environ.get(ENV_BACKEND) or "torch").strip().lower()
    if chosen not in BACKENDS:
        raise ModelError(f"unknown backend {chosen!r}; use one of {', '.join(BACKENDS)}")
    if chosen.startswith("onnx"):
        return OnnxEncoder(model, max_tokens=max_tokens, quantize=chosen == "onnx-int8", adapter=adapter)
    return SentenceTransformerEncoder(model, max_tokens=max_tokens, backend=chosen, adapter=adapter)

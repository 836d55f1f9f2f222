"""`SentenceTransformerEncoder`: a local sentence-transformers model on torch (the default)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from embedtag.encoders.adapter import adapted_fingerprint, apply_adapter
from embedtag.encoders.base import (
    BUNDLED_MODEL_NAME,
    NUMPY_MAX_TEXTS,
    _env_threads,
    _model_dir,
    set_offline,
    weights_fingerprint,
)
from embedtag.encoders.bert import (
    BertSpec,
    _batches,
    _one_blas_thread,
    _padded,
    _Tokenizers,
    bert_module,
    bert_numpy,
    bert_spec,
    bert_weights,
)
from embedtag.errors import ModelError


class SentenceTransformerEncoder:
    """A local sentence-transformers model, loaded once, never downloaded.

    `backend="torch"` (the default) runs a BERT mean-pooling folder (the bundled MiniLM is one)
    directly on torch; other folders, or `backend="sentence-transformers"`, use that library.
    `adapter` (the bytes of an `embedtag train` file) replaces the top layers' weights; it needs
    the torch backend, and the encoder then has a fingerprint of its own.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        max_tokens: int = 128,
        batch_size: int = 32,
        threads: int | None = None,
        backend: str = "torch",
        sort_by_length: bool = True,
        adapter: bytes | None = None,
    ) -> None:
        if backend not in {"torch", "sentence-transformers"}:
            raise ModelError(f"unknown backend {backend!r} for SentenceTransformerEncoder")
        set_offline()
        self.path = _model_dir(model_path)
        self.name = BUNDLED_MODEL_NAME if model_path is None else self.path.name
        self.batch_size = batch_size
        self.sort_by_length = sort_by_length
        self._fingerprint = weights_fingerprint(self.path)
        self.threads = threads or _env_threads()
        spec = bert_spec(self.path) if backend == "torch" else None
        self.backend = "torch" if spec is not None else "sentence-transformers"
        self.adapter = adapter
        if adapter is not None:
            if spec is None:
                raise ModelError("an adapter needs the torch backend and a BERT mean-pooling model")
            self.name += "+adapter"
        if spec is not None:
            self._init_direct(spec, max_tokens)
        else:
            self._init_sentence_transformers(max_tokens)

    def _init_direct(self, spec: BertSpec, max_tokens: int) -> None:
        # MiniLM was trained on 128-token inputs; longer chunks dilute and cost quadratically.
        self.max_tokens = min(max_tokens, spec.window - 2)
        self.dimension = spec.hidden
        self._spec = spec
        self._tokens = _Tokenizers(spec, self.max_tokens + 2)
        self._weights = bert_weights(spec)
        if self.adapter is not None:
            self._weights = apply_adapter(self.adapter, self._weights, self._fingerprint)
            self._fingerprint = adapted_fingerprint(self._fingerprint, self.adapter)
        # torch is imported on the first call with more than NUMPY_MAX_TEXTS texts (or when it
        # is already loaded): `embedtag tag` on one README never pays for importing it.
        self.model: Any = None

    def torch_module(self) -> Any:
        """The torch module (built on first use, sharing the numpy weights' memory)."""
        if self.model is None:
            try:
                module = bert_module(self._spec, self._weights)
            except ModelError:
                raise
            except Exception as exc:  # any load failure is the same problem for the user
                raise ModelError(f"cannot load the model at {self.path}: {exc}") from None
            self._apply_threads()
            self.model = module
        return self.model

    def set_threads(self, threads: int | None) -> None:
        """Cap the cores torch uses (now, or when it is loaded): workers sharing a machine."""
        self.threads = threads or None
        self._apply_threads()

    def _apply_threads(self) -> None:
        if self.threads and "torch" in sys.modules:
            import torch

            torch.set_num_threads(self.threads)

    def _init_sentence_transformers(self, max_tokens: int) -> None:
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        try:
            from sentence_transformers import SentenceTransformer

            self.model = SentenceTransformer(str(self.path), device="cpu", local_files_only=True)
        except Exception as exc:  # any load failure is the same problem for the user
            raise ModelError(f"cannot load the model at {self.path}: {exc}") from None
        model_window = int(self.model.max_seq_length or 256)
        self.max_tokens = min(max_tokens, model_window - 2)
        self.model.max_seq_length = self.max_tokens + 2
        self.dimension = int(self.model.get_embedding_dimension()
                             if hasattr(self.model, "get_embedding_dimension")
                             else self.model.get_sentence_embedding_dimension())
        self._tokenizer = self.model.tokenizer

    def fingerprint(self) -> str:
        return self._fingerprint

    def count_tokens(self, text: str) -> int:
        if self.backend == "torch":
            return self._tokens.count(text)
        return len(self._tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self.backend == "torch":
            return self._encode_direct(texts)
        # Sorting by length keeps padding inside each batch small; order restored below.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors = self.model.encode(
            [texts[i] for i in order],
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        out = np.empty_like(vectors, dtype=np.float32)
        out[np.asarray(order)] = vectors
        return out

    def _encode_direct(self, texts: list[str]) -> np.ndarray:
        ids = self._tokens.ids(texts)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        batches = _batches(ids, self.batch_size, self.sort_by_length)
        if self.model is None and len(texts) <= NUMPY_MAX_TEXTS and "torch" not in sys.modules:
            with _one_blas_thread():
                for rows in batches:
                    input_ids, mask = _padded(ids, rows, self._tokens.pad_id)
                    out[rows] = bert_numpy(self._spec, self._weights, input_ids, mask)
            return out
        import torch

        module = self.torch_module()
        with torch.inference_mode():
            for rows in batches:
                input_ids, mask = _padded(ids, rows, self._tokens.pad_id)
                out[rows] = module(torch.from_numpy(input_ids), torch.from_numpy(mask)).numpy()
        return out



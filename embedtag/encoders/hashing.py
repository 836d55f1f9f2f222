"""`HashingEncoder`: a tiny deterministic bag-of-words encoder for tests and wiring checks."""

from __future__ import annotations

import hashlib
import re

import numpy as np


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
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                bucket = int(hashlib.md5(word.encode()).hexdigest()[:8], 16)
                out[row, bucket % self.dimension] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        normalised: np.ndarray = out / norms
        return normalised



"""The encoder without sentence-transformers: same vectors, same token counts, lazy torch, offline.

The fast tests read the bundled weights and tokenizer only (numpy + tokenizers, no torch); the
`slow` ones compare against sentence-transformers itself, run the torch path and the ONNX path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedtag.encoders import (
    NUMPY_MAX_TEXTS,
    HashingEncoder,
    SentenceTransformerEncoder,
    bert_spec,
    bundled_model_path,
    load_encoder,
)
from embedtag.errors import ModelError
from embedtag.records import read_readme
from embedtag.text import chunk_text, document_chunks

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "kubeedge.md"
ODD_TEXTS = [
    "",
    "   padded   ",
    "word " * 600,  # far past the window: truncated to max_tokens
    "日本語のテキストと English mixed",
    "Ünïcödé àccents, ÉMOJI 🚀 and\ttabs\nand newlines",
    "x",
]


@pytest.fixture(scope="module")
def encoder() -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder()


@pytest.fixture(scope="module")
def chunks(encoder: SentenceTransformerEncoder) -> list[str]:
    readme = read_readme(EXAMPLE)
    found = document_chunks("Kubernetes Native Edge Computing Framework", readme, 128, 16, encoder.count_tokens)
    return [c.text for c in found] + ODD_TEXTS


def plain_count(encoder: SentenceTransformerEncoder, text: str) -> int:
    return len(encoder._tokens.counter.encode(text, add_special_tokens=False).ids)


def test_bundled_model_runs_without_sentence_transformers(encoder: SentenceTransformerEncoder) -> None:
    assert encoder.backend == "torch"
    assert (encoder.name, encoder.dimension, encoder.max_tokens) == ("all-MiniLM-L6-v2", 384, 128)
    assert len(encoder.fingerprint()) == 16


def test_count_tokens_is_exact_through_chunking(encoder: SentenceTransformerEncoder) -> None:
    """The memo answers `a + " " + b` from the counts of a and b: never a different number."""
    text = read_readme(EXAMPLE)
    calls: list[str] = []

    def recording(piece: str) -> int:
        calls.append(piece)
        return encoder.count_tokens(piece)

    chunk_text(text, 128, recording)
    chunk_text(text, 40, recording)
    assert len(calls) > 100
    assert all(encoder.count_tokens(c) == plain_count(encoder, c) for c in calls)
    for first, second in [("hello", "world"), ("naïve café", "日本語"), ("a.b", "c,d"), ("x", ""), ("", "y")]:
        encoder.count_tokens(first)
        encoder.count_tokens(second)
        joined = f"{first} {second}"
        assert encoder.count_tokens(joined) == plain_count(encoder, joined)


def test_count_tokens_does_not_truncate_but_encoding_does(encoder: SentenceTransformerEncoder) -> None:
    long = "word " * 600
    assert encoder.count_tokens(long) == 600
    assert [len(ids) for ids in encoder._tokens.ids([long, ""])] == [130, 2]


def test_small_calls_use_numpy_and_keep_row_order(encoder: SentenceTransformerEncoder) -> None:
    texts = ["a command line tool for kubernetes", "a blog engine", "a database", ""]
    vectors = encoder.encode(texts)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    again = encoder.encode(texts[::-1])[::-1]
    np.testing.assert_allclose(vectors, again, atol=1e-6)
    unsorted = SentenceTransformerEncoder(sort_by_length=False)
    np.testing.assert_allclose(unsorted.encode(texts), vectors, atol=1e-6)
    assert encoder.encode([]).shape == (0, 384)


def test_other_folders_fall_back_to_sentence_transformers(tmp_path: Path) -> None:
    model = bundled_model_path()
    assert bert_spec(model) is not None
    copy = tmp_path / "cls-pooling"
    shutil.copytree(model, copy)
    pooling = copy / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text(encoding="utf-8"))
    config.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    pooling.write_text(json.dumps(config), encoding="utf-8")
    assert bert_spec(copy) is None
    (copy / "tokenizer.json").unlink()
    assert bert_spec(copy) is None


def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelError, match="unknown backend"):
        load_encoder(None, backend="tensorflow")
    monkeypatch.setenv("EMBEDTAG_BACKEND", "nope")
    with pytest.raises(ModelError, match="unknown backend"):
        load_encoder(None)
    assert isinstance(load_encoder("hashing"), HashingEncoder)
    with pytest.raises(ModelError, match="no sentence-transformers model"):
        SentenceTransformerEncoder(REPO / "examples")


def _imports(args: list[str], tmp_path: Path) -> set[str]:
    """Top-level names of the modules a command imports (`python -X importtime`)."""
    env = {**os.environ, "EMBEDTAG_INDEX": str(REPO / "index")}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "embedtag", *args], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300)
    return set(re.findall(r"^import time:.*\|\s+([\w.]+)$", proc.stderr, re.MULTILINE))


@pytest.mark.parametrize("args", [["--help"], ["tag"], ["batch"], ["tag", "--tag-format", "bogus", "x"]])
def test_help_and_usage_errors_never_import_torch(args: list[str], tmp_path: Path) -> None:
    imported = _imports(args, tmp_path)
    assert "embedtag.cli" in imported
    for heavy in ("torch", "transformers", "sentence_transformers", "faiss"):
        assert heavy not in imported, f"`embedtag {' '.join(args)}` imports {heavy}"


# ---- slow: the real libraries ------------------------------------------------------------------


@pytest.mark.slow
def test_tagging_one_readme_never_imports_torch(tmp_path: Path) -> None:
    imported = _imports(["tag", str(EXAMPLE)], tmp_path)
    assert {"embedtag.encoders", "tokenizers", "safetensors"} <= imported
    assert not imported & {"torch", "transformers", "sentence_transformers"}


@pytest.mark.slow
def test_vectors_equal_sentence_transformers(encoder: SentenceTransformerEncoder, chunks: list[str]) -> None:
    reference = SentenceTransformerEncoder(backend="sentence-transformers")
    assert reference.backend == "sentence-transformers"
    assert (reference.fingerprint(), reference.max_tokens, reference.dimension) == (
        encoder.fingerprint(), encoder.max_tokens, encoder.dimension)
    assert all(reference.count_tokens(t) == encoder.count_tokens(t) for t in chunks)
    expected = reference.encode(chunks)
    small = np.concatenate([encoder.encode(chunks[i : i + NUMPY_MAX_TEXTS])
                            for i in range(0, len(chunks), NUMPY_MAX_TEXTS)])
    batched = encoder.encode(chunks * 2)[: len(chunks)]  # > NUMPY_MAX_TEXTS: the torch module
    assert encoder.model is not None
    assert float(np.abs(small - expected).max()) < 1e-5
    assert float(np.abs(batched - expected).max()) < 1e-5


@pytest.mark.slow
def test_onnx_float32_matches_the_torch_encoder(
    encoder: SentenceTransformerEncoder, chunks: list[str], tmp_path: Path
) -> None:
    pytest.importorskip("onnx")
    from embedtag.encoders import OnnxEncoder

    expected = encoder.encode(chunks)
    fp32 = OnnxEncoder(cache_dir=tmp_path)
    assert fp32.fingerprint() == encoder.fingerprint() and fp32.onnx_path.is_file()
    assert float(np.abs(fp32.encode(chunks) - expected).max()) < 1e-5
    assert [p.name for p in tmp_path.rglob("*.onnx")] == ["model.tokens.onnx"]  # exported once, here

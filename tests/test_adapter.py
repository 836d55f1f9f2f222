"""The encoder adapter: `embedtag train` fine-tunes the bundled MiniLM's top layers on exemplars,
an index built with it carries it, and every backend runs it. Tiny training runs only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedtag.encoders import SentenceTransformerEncoder, load_encoder
from embedtag.encoders.adapter import (
    ADAPTER_FILE,
    TrainSettings,
    adapter_bytes,
    adapter_metadata,
    apply_adapter,
    balanced_sample,
    train_adapter,
)
from embedtag.errors import ModelError
from embedtag.index import load_index
from embedtag.tagger import Tagger
from tests.helpers import assert_one_line_error, run, write_jsonl

pytestmark = pytest.mark.slow

# Written for these tests: three tags, eight one-line "projects" each.
TAG_TEXTS = [
    ["database: a system that stores and queries data", "SQL tables, rows, indexes and transactions"],
    ["game: a video game or game engine", "players, levels, sprites and game loops"],
    ["security: protecting systems from attacks", "vulnerability scanning, encryption, authentication"],
]
EXEMPLARS = [
    *[(f"A {w} database with fast SQL queries", (0,)) for w in
      ("columnar", "embedded", "distributed", "graph", "time-series", "key-value", "document", "in-memory")],
    *[(f"A {w} game where players explore levels", (1,)) for w in
      ("roguelike", "puzzle", "racing", "strategy", "platform", "card", "arcade", "sandbox")],
    *[(f"A {w} scanner that finds vulnerabilities", (2,)) for w in
      ("network", "container", "web", "secret", "dependency", "port", "malware", "firmware")],
]
TINY = TrainSettings(layers=1, epochs=3, batch_size=8, learning_rate=1e-4, per_tag_cap=8, seed=3)


@pytest.fixture(scope="module")
def encoder() -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder()


@pytest.fixture(scope="module")
def trained(encoder: SentenceTransformerEncoder) -> dict[str, np.ndarray]:
    texts, labels = zip(*EXEMPLARS, strict=True)
    weights, report = train_adapter(encoder, list(texts), list(labels), TAG_TEXTS, TINY)
    assert report.steps == 9 and report.pairs == 24
    return weights


def _margin(enc: SentenceTransformerEncoder) -> float:
    """Mean over exemplars of (similarity to own tag's texts) - (best other tag's)."""
    ex = enc.encode([t for t, _ in EXEMPLARS])
    tag_vectors = [enc.encode(texts).mean(axis=0) for texts in TAG_TEXTS]
    sims = ex @ np.stack(tag_vectors).T
    own = np.array([sims[i, tags[0]] for i, (_, tags) in enumerate(EXEMPLARS)])
    other = np.array([np.delete(sims[i], tags[0]).max() for i, (_, tags) in enumerate(EXEMPLARS)])
    return float((own - other).mean())


def test_training_changes_only_the_top_layers_and_pulls_exemplars_to_their_tags(
    encoder: SentenceTransformerEncoder, trained: dict[str, np.ndarray]
) -> None:
    assert trained and all(name.startswith("encoder_layer_5_") for name in trained)
    assert any(not np.array_equal(trained[n], encoder._weights[n]) for n in trained)
    data = adapter_bytes(trained, encoder.fingerprint(), {"layers": 1})
    adapted = SentenceTransformerEncoder(adapter=data)
    assert adapted.fingerprint() != encoder.fingerprint()
    assert adapted.fingerprint().startswith(encoder.fingerprint() + "+")
    assert adapted.name.endswith("+adapter")
    assert _margin(adapted) > _margin(encoder) + 0.01
    # the encoder it trained from is untouched
    assert np.array_equal(encoder.encode(["a game"]), SentenceTransformerEncoder().encode(["a game"]))


def test_training_is_reproducible_with_a_seed(encoder: SentenceTransformerEncoder, trained: dict) -> None:
    texts, labels = zip(*EXEMPLARS, strict=True)
    again, _ = train_adapter(encoder, list(texts), list(labels), TAG_TEXTS, TINY)
    assert all(np.array_equal(again[n], trained[n]) for n in trained)
    reseeded = TrainSettings(**{**TINY.__dict__, "seed": 4})
    other, _ = train_adapter(encoder, list(texts), list(labels), TAG_TEXTS, reseeded)
    assert any(not np.array_equal(other[n], trained[n]) for n in trained)


def test_numpy_torch_and_onnx_run_the_same_adapted_weights(
    encoder: SentenceTransformerEncoder, trained: dict, tmp_path: Path
) -> None:
    data = adapter_bytes(trained, encoder.fingerprint(), {})
    adapted = SentenceTransformerEncoder(adapter=data)
    texts = ["A roguelike game", "An SQL database engine written in Rust"]
    small = adapted.encode(texts)  # few texts: the numpy path
    import torch

    with torch.inference_mode():
        ids = adapted._tokens.ids(texts)
        from embedtag.encoders.bert import _padded

        input_ids, mask = _padded(ids, [0, 1], adapted._tokens.pad_id)
        big = adapted.torch_module()(torch.from_numpy(input_ids), torch.from_numpy(mask)).numpy()
    assert np.abs(small - big).max() < 1e-5
    assert np.abs(small - encoder.encode(texts)).max() > 1e-3  # the adapter matters
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from embedtag.encoders import OnnxEncoder

    onnx = OnnxEncoder(adapter=data, cache_dir=tmp_path)
    assert onnx.fingerprint() == adapted.fingerprint()
    assert np.abs(onnx.encode(texts) - small).max() < 1e-4


def test_an_adapter_for_another_model_or_shape_is_refused(encoder: SentenceTransformerEncoder, trained: dict) -> None:
    foreign = adapter_bytes(trained, "0123456789abcdef", {})
    with pytest.raises(ModelError, match="trained on another model"):
        SentenceTransformerEncoder(adapter=foreign)
    wrong_shape = {"encoder_layer_5_output_dense_weight": np.zeros((3, 3), np.float32)}
    bad = adapter_bytes(wrong_shape, encoder.fingerprint(), {})
    with pytest.raises(ModelError, match="does not fit"):
        apply_adapter(bad, encoder._weights, encoder.fingerprint())
    with pytest.raises(ModelError, match="not a safetensors file"):
        adapter_metadata(b"\xff" * 16)
    with pytest.raises(ModelError, match="hashing"):
        load_encoder("hashing", adapter=foreign)


def test_a_tag_without_exemplars_is_still_found_after_training(encoder: SentenceTransformerEncoder) -> None:
    """Security is held out of training (no exemplar; its texts are only ever negatives in the softmax,
    which keeps the other tags' exemplars away from them): it must not become a tag nothing lands on."""
    held_in = [(t, g) for t, g in EXEMPLARS if g != (2,)]
    texts, labels = zip(*held_in, strict=True)
    weights, report = train_adapter(encoder, list(texts), list(labels), TAG_TEXTS, TINY)
    assert report.pairs == 16
    adapted = SentenceTransformerEncoder(adapter=adapter_bytes(weights, encoder.fingerprint(), {}))
    probes = ["An open-source tool that scans web servers for known vulnerabilities",
              "Encrypts secrets and audits authentication to protect systems from attacks"]
    tag_vectors = np.stack([adapted.encode(texts).mean(axis=0) for texts in TAG_TEXTS])
    assert (np.argmax(adapted.encode(probes) @ tag_vectors.T, axis=1) == 2).all()
    assert _margin(adapted) > _margin(encoder)  # and training still pulled the others apart


def test_balanced_sample_caps_each_tag() -> None:
    labels = [(0,)] * 50 + [(1,)] * 3 + [(0, 1)]
    keep = balanced_sample(labels, cap=5, seed=0)
    assert all(i in keep for i in range(50, 54))  # the small tag keeps everything
    assert sum(1 for i in keep if labels[i] == (0,)) <= 5


def test_train_then_build_index_then_tag_end_to_end(tmp_path: Path) -> None:
    tags = tmp_path / "tags.json"
    tags.write_text(json.dumps([{"id": 1, "name": "database"}, {"id": 2, "name": "game"},
                                {"id": 3, "name": "security"}]), encoding="utf-8")
    names = ["database", "game", "security"]
    exemplars = write_jsonl(tmp_path / "ex.jsonl", [{"text": t, "tags": [names[g[0]]]} for t, g in EXEMPLARS])
    out = tmp_path / "adapter"
    result = run("train", "--exemplars", exemplars, "--tags", tags, "--out", out, "--layers", "1",
                 "--epochs", "2", "--per-tag-cap", "8", "--learning-rate", "1e-4")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stderr and "build-index --adapter" in result.stderr
    size = (out / ADAPTER_FILE).stat().st_size
    assert 1_000_000 < size < 5_000_000  # one layer in float16: about 3.5 MB
    meta = adapter_metadata((out / ADAPTER_FILE).read_bytes())
    assert json.loads(meta["settings"])["layers"] == 1

    index_dir = tmp_path / "index"
    result = run("build-index", "--tags", tags, "--adapter", out, "--exemplars", exemplars, "--out", index_dir)
    assert result.exit_code == 0, result.output
    assert "+adapter" in result.stderr
    manifest = json.loads((index_dir / "manifest.json").read_text())
    assert manifest["model"]["adapter"] == ADAPTER_FILE and ADAPTER_FILE in manifest["files"]
    index = load_index(index_dir)
    assert index.adapter == (out / ADAPTER_FILE).read_bytes()
    tagger = Tagger.load(index_dir)
    assert tagger.encoder.fingerprint() == index.model_fingerprint
    readme = tmp_path / "r.md"
    readme.write_text("# dungeon\n\nA roguelike game: players explore procedurally generated levels.\n")
    result = run("tag", readme, "--index", index_dir)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tags"][0] == "game"
    info = run("info", "--index", index_dir)
    assert "top 1 layers fine-tuned on ex.jsonl (24 exemplars, 2 steps)" in info.stdout
    assert "+adapter" in info.stdout

    # calibrating rewrites the index: the adapter stays in it
    labelled = write_jsonl(tmp_path / "labelled.jsonl", [
        {"id": str(i), "description": text, "readme": f"# p{i}\n\n{text}.\n", "core": [names[g[0]]], "also": []}
        for i, (text, g) in enumerate(EXEMPLARS[::4])
    ])
    result = run("calibrate", labelled, "--index", index_dir)
    assert result.exit_code == 0, result.output
    assert load_index(index_dir).adapter == (out / ADAPTER_FILE).read_bytes()
    assert json.loads(run("tag", readme, "--index", index_dir).stdout)["tags"][0] == "game"

    # a damaged adapter in the index is a one-line error, not a traceback or other vectors
    (index_dir / ADAPTER_FILE).write_bytes(b"broken")
    assert_one_line_error(run("tag", readme, "--index", index_dir), 1, "adapter", "corrupt")
    (index_dir / ADAPTER_FILE).unlink()
    assert_one_line_error(run("tag", readme, "--index", index_dir), 1, "adapter", "missing")


def test_train_usage_errors_are_one_line(tmp_path: Path) -> None:
    assert_one_line_error(run("train", "--exemplars", tmp_path / "none.jsonl", "--out", tmp_path / "a"), 1,
                          "does not exist")
    assert_one_line_error(run("build-index", "--adapter", tmp_path / "none", "--out", tmp_path / "i"), 1,
                          "no adapter", "embedtag train")

"""The index on disk: round trip, atomic replacement, and every way it can be wrong."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedtag.encoders import HashingEncoder
from embedtag.errors import IndexError_
from embedtag.index import MANIFEST, TEXT_VECTORS, TagIndex, default_index_path, load_index
from embedtag.scoring import ScoringSettings
from embedtag.tagger import Tagger
from embedtag.tags import Tag

REBUILD = "embedtag build-index"


def copy_index(src: Path, tmp_path: Path, name: str = "index") -> Path:
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


def read_manifest(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    return data


def write_manifest(directory: Path, manifest: Any) -> None:
    (directory / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def assert_same_index(a: TagIndex, b: TagIndex) -> None:
    np.testing.assert_array_equal(a.text_vectors, b.text_vectors)
    assert a.manifest() == b.manifest()
    assert a.settings == b.settings
    assert a.keywords == b.keywords
    assert [(t.id, t.name) for t in a.tags] == [(t.id, t.name) for t in b.tags]
    assert a.texts == b.texts


# ---- round trip --------------------------------------------------------------------------


def test_round_trip(fake_built_index: TagIndex, fake_index: TagIndex, fake_index_dir: Path) -> None:
    assert_same_index(fake_built_index, fake_index)
    assert sorted(p.name for p in fake_index_dir.iterdir()) == [MANIFEST, TEXT_VECTORS]
    assert fake_index.model_name == "hashing"
    assert fake_index.model_fingerprint == "hashing-64"
    assert fake_index.dimension == 64
    assert "python " in [t.name for t in fake_index.tags]  # names verbatim, trailing space kept
    assert fake_index.keywords[11] == ["k8s", "Kubernetes", "kubernetes operator"]
    assert fake_index.form_tags == {14}  # cli
    assert fake_index.form_mask().tolist() == [False, False, False, True, False, False, False]


def test_an_index_from_before_form_tags_loads_with_none(fake_index_dir: Path, tmp_path: Path) -> None:
    ix = copy_index(fake_index_dir, tmp_path)
    write_manifest(ix, {k: v for k, v in read_manifest(ix).items() if k != "form_tags"})
    loaded = load_index(ix)
    assert loaded.form_tags == frozenset() and not loaded.form_mask().any()


def test_round_trip_with_settings_and_examples(fake_built_index: TagIndex, tmp_path: Path) -> None:
    settings = ScoringSettings(
        threshold=0.25, margin=0.05, tag_bias={11: 0.05, 16: -0.02}, example_weight=0.5
    )
    vectors = HashingEncoder().encode(["kubernetes operator readme", "a video game"])
    from embedtag.index import Example

    index = replace(
        fake_built_index,
        settings=settings,
        examples=[Example("r1", (11,), (14,)), Example("r2", (16,))],
        example_vectors=vectors,
    )
    index.save(tmp_path / "ix")
    assert sorted(p.name for p in (tmp_path / "ix").iterdir()) == ["examples.faiss", MANIFEST, TEXT_VECTORS]
    loaded = load_index(tmp_path / "ix")
    assert_same_index(index, loaded)
    assert loaded.settings.tag_bias == {11: 0.05, 16: -0.02}
    assert loaded.examples == index.examples
    assert loaded.example_vectors is not None
    np.testing.assert_array_equal(loaded.example_vectors, vectors)


def test_round_trip_with_example_chunks_and_their_errors(fake_built_index: TagIndex, tmp_path: Path) -> None:
    from embedtag.index import EXAMPLE_CHUNK_VECTORS, Example

    encoder = HashingEncoder()
    chunks = encoder.encode(["kubernetes operator", "for pods", "a video game", "with levels", "and players"])
    index = replace(
        fake_built_index,
        examples=[Example("r1", (11,), (14,), chunks=2), Example("r2", (16,), chunks=3)],
        example_vectors=encoder.encode(["kubernetes operator readme", "a video game"]),
        example_chunk_vectors=chunks,
    )
    index.save(tmp_path / "ix")
    assert EXAMPLE_CHUNK_VECTORS in read_manifest(tmp_path / "ix")["files"]
    loaded = load_index(tmp_path / "ix")
    assert [e.chunks for e in loaded.examples] == [2, 3]
    assert loaded.example_chunk_owners().tolist() == [0, 0, 1, 1, 1]
    assert loaded.example_chunk_vectors is not None
    np.testing.assert_allclose(loaded.example_chunk_vectors, chunks, atol=1e-3)  # stored as float16
    manifest = read_manifest(tmp_path / "ix")
    manifest["examples"][1]["chunks"] = 4  # the manifest promises more chunks than the file holds
    (tmp_path / "ix" / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(IndexError_, match=r"example_chunks\.faiss does not match the manifest"):
        load_index(tmp_path / "ix")
    manifest["examples"][1]["chunks"] = -3
    (tmp_path / "ix" / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(IndexError_, match=r"malformed.*negative number of chunks"):
        load_index(tmp_path / "ix")
    manifest["examples"][1]["chunks"] = 3
    (tmp_path / "ix" / MANIFEST).write_text(json.dumps(manifest))
    (tmp_path / "ix" / EXAMPLE_CHUNK_VECTORS).unlink()
    with pytest.raises(IndexError_, match=r"example_chunks\.faiss is missing"):
        load_index(tmp_path / "ix")


def test_manifest_is_plain_json_with_checksums(fake_index_dir: Path) -> None:
    manifest = read_manifest(fake_index_dir)
    assert manifest["format_version"] == 1
    assert manifest["model"] == {
        "name": "hashing",
        "fingerprint": "hashing-64",
        "dimension": 64,
        "max_tokens": 128,
    }
    assert set(manifest["files"]) == {TEXT_VECTORS}
    assert len(manifest["files"][TEXT_VECTORS]) == 64  # a sha256


# ---- atomic save -------------------------------------------------------------------------


def test_save_leaves_no_temp_dirs(fake_built_index: TagIndex, tmp_path: Path) -> None:
    out = fake_built_index.save(tmp_path / "ix")
    assert out == (tmp_path / "ix").resolve()
    fake_built_index.save(tmp_path / "ix")  # again, over the first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ix"]


def test_save_replaces_an_existing_index_whole(fake_built_index: TagIndex, tmp_path: Path) -> None:
    out = tmp_path / "ix"
    old = replace(fake_built_index, settings=ScoringSettings(threshold=0.9))
    old.save(out)
    (out / "stray.txt").write_text("from an older build")
    (out / "examples.faiss").write_bytes(b"old examples")
    fake_built_index.save(out)
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, TEXT_VECTORS]
    assert load_index(out).settings.threshold == fake_built_index.settings.threshold
    assert leftovers(tmp_path) == []


def test_failed_save_changes_nothing(
    fake_built_index: TagIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "ix"
    fake_built_index.save(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken_manifest(self: TagIndex) -> dict[str, Any]:
        raise OSError("disk full")

    monkeypatch.setattr(TagIndex, "manifest", broken_manifest)
    with pytest.raises(OSError, match="disk full"):
        replace(fake_built_index, settings=ScoringSettings(threshold=0.5)).save(out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert leftovers(tmp_path) == []


def test_save_that_cannot_move_into_place_keeps_the_old_index(
    fake_built_index: TagIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "ix"
    fake_built_index.save(out)
    real_rename = os.rename

    def rename(src: Any, dst: Any) -> None:
        if ".ix.tmp-" in str(src):
            raise PermissionError(13, "Permission denied")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with contextlib.suppress(OSError):  # failing loudly is fine; losing the old index is not
        replace(fake_built_index, settings=ScoringSettings(threshold=0.5)).save(out)
    monkeypatch.undo()
    assert load_index(out).settings.threshold == fake_built_index.settings.threshold


def test_concurrent_saves_leave_one_complete_index(
    fake_built_index: TagIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "ix"
    a = replace(fake_built_index, settings=ScoringSettings(threshold=0.1))
    b = replace(
        fake_built_index,
        text_vectors=fake_built_index.text_vectors[:, ::-1].copy(),
        settings=ScoringSettings(threshold=0.2),
    )
    real_rename = os.rename

    def slow_rename(src: Any, dst: Any) -> None:  # widen the windows between the two renames
        time.sleep(0.005)
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", slow_rename)
    for round_ in range(6):
        if round_ % 2:
            shutil.rmtree(out, ignore_errors=True)  # also race on creating a fresh directory
        barrier = threading.Barrier(4)
        errors: list[BaseException] = []

        def save(
            index: TagIndex, barrier: threading.Barrier = barrier, errors: list[BaseException] = errors
        ) -> None:
            try:
                barrier.wait()
                index.save(out)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=save, args=(x,)) for x in (a, b, a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        loaded = load_index(out)  # complete and consistent (checksums verified)
        winner = a if loaded.settings.threshold == 0.1 else b
        np.testing.assert_array_equal(loaded.text_vectors, winner.text_vectors)
        assert sorted(p.name for p in out.iterdir()) == [MANIFEST, TEXT_VECTORS]
        assert leftovers(tmp_path) == []


# ---- errors ------------------------------------------------------------------------------


def assert_clear(exc: pytest.ExceptionInfo[IndexError_], *fragments: str) -> None:
    message = str(exc.value)
    assert "\n" not in message
    assert REBUILD in message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(IndexError_) as exc:
        load_index(tmp_path / "nowhere")
    assert_clear(exc, "does not exist")


def test_directory_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(IndexError_) as exc:
        load_index(tmp_path)
    assert_clear(exc, "has no manifest.json", "not an embedtag index")


def test_missing_vectors_file(fake_index_dir: Path, tmp_path: Path) -> None:
    ix = copy_index(fake_index_dir, tmp_path)
    (ix / TEXT_VECTORS).unlink()
    with pytest.raises(IndexError_) as exc:
        load_index(ix)
    assert_clear(exc, "tags.faiss is missing")


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_corrupt_or_truncated_vectors_fail_the_checksum(
    fake_index_dir: Path, tmp_path: Path, damage: str
) -> None:
    ix = copy_index(fake_index_dir, tmp_path)
    path = ix / TEXT_VECTORS
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    with pytest.raises(IndexError_) as exc:
        load_index(ix)
    assert_clear(exc, "corrupt or truncated (checksum differs)")


def test_corrupt_vectors_without_checksum_still_a_clear_error(fake_index_dir: Path, tmp_path: Path) -> None:
    ix = copy_index(fake_index_dir, tmp_path)
    manifest = read_manifest(ix)
    del manifest["files"]
    write_manifest(ix, manifest)
    (ix / TEXT_VECTORS).write_bytes((ix / TEXT_VECTORS).read_bytes()[:100])
    with pytest.raises(IndexError_) as exc:
        load_index(ix)
    assert_clear(exc, "cannot be read (corrupt file)")


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda m: "{ not json", id="not-json"),
        pytest.param(lambda m: [m], id="a-list"),
        pytest.param(lambda m: {k: v for k, v in m.items() if k != "model"}, id="no-model"),
        pytest.param(lambda m: {k: v for k, v in m.items() if k != "tags"}, id="no-tags"),
        pytest.param(lambda m: {**m, "tags": [{"id": "x", "name": "a"}]}, id="bad-tag-id"),
        pytest.param(lambda m: {**m, "texts": [{"tag_id": 11}]}, id="text-without-kind"),
        pytest.param(lambda m: {**m, "keywords": ["k8s"]}, id="keywords-a-list"),
        pytest.param(lambda m: {**m, "form_tags": [14, 999]}, id="form-tag-not-in-the-list"),
        pytest.param(lambda m: {**m, "form_tags": ["cli"]}, id="form-tag-not-an-id"),
        pytest.param(lambda m: {**m, "settings": {"tag_bias": {"k8s": 0.1}}}, id="bad-bias"),
        pytest.param(lambda m: {**m, "settings": {"ranker": {"weights": {"score": 1.0}}}}, id="ranker-no-intercept"),
        pytest.param(
            lambda m: {**m, "settings": {"ranker": {"weights": [1.0], "intercept": 0, "threshold": 0.5}}},
            id="ranker-weights-a-list",
        ),
        pytest.param(
            lambda m: {**m, "settings": {"ranker": {"weights": {}, "intercept": "x", "threshold": 0.5}}},
            id="ranker-intercept-not-a-number",
        ),
        pytest.param(
            lambda m: {**m, "settings": {"ranker": {"weights": {"novel": 1.0}, "intercept": 0, "threshold": 0.5}}},
            id="ranker-unknown-feature",
        ),
    ],
)
def test_malformed_manifest(fake_index_dir: Path, tmp_path: Path, edit: Any) -> None:
    ix = copy_index(fake_index_dir, tmp_path)
    edited = edit(read_manifest(ix))
    if isinstance(edited, str):
        (ix / MANIFEST).write_text(edited, encoding="utf-8")
    else:
        write_manifest(ix, edited)
    with pytest.raises(IndexError_) as exc:
        load_index(ix)
    assert_clear(exc, "manifest.json is malformed")


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(
            lambda m: {**m, "model": {"name": "hashing", "fingerprint": "hashing-64"}}, id="no-dimension"
        ),
        pytest.param(lambda m: {**m, "model": "hashing"}, id="model-a-string"),
        pytest.param(lambda m: {**m, "files": ["tags.faiss"]}, id="files-a-list"),
    ],
)
def test_malformed_model_section(fake_index_dir: Path, tmp_path: Path, edit: Any) -> None:
    ix = copy_index(fake_index_dir, tmp_path)
    write_manifest(ix, edit(read_manifest(ix)))
    with pytest.raises(IndexError_):
        load_index(ix)


@pytest.mark.parametrize("version", [2, 0, None, "1"])
def test_wrong_format_version(fake_index_dir: Path, tmp_path: Path, version: Any) -> None:
    ix = copy_index(fake_index_dir, tmp_path)
    manifest = read_manifest(ix)
    manifest["format_version"] = version
    write_manifest(ix, manifest)
    with pytest.raises(IndexError_) as exc:
        load_index(ix)
    assert_clear(exc, f"format version {version!r}", "reads version 1")


def test_vectors_that_do_not_match_the_manifest(fake_index_dir: Path, tmp_path: Path) -> None:
    ix = copy_index(fake_index_dir, tmp_path)
    manifest = read_manifest(ix)
    manifest["texts"] = manifest["texts"][:-1]  # a text dropped without rebuilding the vectors
    write_manifest(ix, manifest)
    with pytest.raises(IndexError_) as exc:
        load_index(ix)
    n = len(manifest["texts"])
    assert_clear(exc, f"holds {n + 1} vectors of dimension 64, the manifest lists {n} of 64")


# ---- the index refuses another model or tag list -----------------------------------------


def test_encoder_of_another_dimension_is_refused(fake_index: TagIndex) -> None:
    with pytest.raises(IndexError_) as exc:
        Tagger(fake_index, HashingEncoder(dimension=32))
    assert_clear(exc, "64-dim vectors from hashing", "gives 32", "pass the --model it was built with (hashing)")


def test_encoder_with_another_fingerprint_is_refused(fake_index: TagIndex) -> None:
    with pytest.raises(IndexError_) as exc:
        Tagger(fake_index, HashingEncoder(name="other"))
    assert_clear(
        exc, "built with model hashing (hashing-64)", "in use is other (other-64)", "--model it was built with"
    )


def test_the_right_encoder_is_accepted(fake_index: TagIndex) -> None:
    Tagger(fake_index, HashingEncoder()).index.check_encoder(HashingEncoder())


def test_check_tags(fake_index: TagIndex, fake_tags: list[Tag]) -> None:
    fake_index.check_tags(fake_tags)  # the list it was built for
    for other in (
        fake_tags[:-1],
        [*fake_tags, Tag(99, "extra")],
        [Tag(t.id, t.name.strip()) for t in fake_tags],  # "python " respelled "python"
        [Tag(t.id + 1000, t.name) for t in fake_tags],
    ):
        with pytest.raises(IndexError_) as exc:
            fake_index.check_tags(other)
        assert "another tag list (7 tags)" in str(exc.value)
        assert "embedtag build-index --tags FILE --out DIR" in str(exc.value)


def test_tagger_load_checks_the_encoder(fake_index_dir: Path) -> None:
    tagger = Tagger.load(fake_index_dir, "hashing")
    assert tagger.encoder.fingerprint() == "hashing-64"


# ---- where the default index is ----------------------------------------------------------


def test_default_index_path_env_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMBEDTAG_INDEX", str(tmp_path))
    assert default_index_path() == tmp_path


def test_default_index_path_is_the_shipped_index() -> None:
    path = default_index_path()
    assert (path / MANIFEST).is_file(), path
    assert (path / TEXT_VECTORS).is_file()

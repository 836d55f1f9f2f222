"""The committed default index must match the shipped tag list and glosses (no model needed).

If this fails after editing embedtag/data/glosses.json or tags.json, rebuild the index:
    embedtag build-index --out index
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import embedtag.glosses as glosses_module
from embedtag.encoders import bundled_model_path, weights_fingerprint
from embedtag.glosses import TagGlosses, default_glosses_path, load_glosses, tag_keywords, tag_texts
from embedtag.index import MANIFEST, load_index, texts_fingerprint
from embedtag.tags import Tag, load_tags, tags_fingerprint

DEFAULT_INDEX_DIR = Path(__file__).resolve().parents[1] / "index"


def stale_differences(manifest: dict[str, Any], tags: list[Tag], glosses: dict[str, TagGlosses]) -> list[str]:
    """What differs between an index manifest and what building it now would write."""
    texts = tag_texts(tags, glosses)
    expected: dict[str, Any] = {
        "tags": [t.to_json() for t in tags],
        "texts": [{"tag_id": t.tag_id, "kind": t.kind, "text": t.text} for t in texts],
        "keywords": {str(k): v for k, v in tag_keywords(tags, glosses).items()},
        "tags_fingerprint": tags_fingerprint(tags),
        "texts_fingerprint": texts_fingerprint(texts),
    }
    if hasattr(glosses_module, "tag_cues"):  # README cues, where this version has them
        expected["cues"] = {str(k): v for k, v in glosses_module.tag_cues(tags, glosses).items()}
    if hasattr(glosses_module, "form_tags"):  # project-form tags, where this version has them
        expected["form_tags"] = sorted(glosses_module.form_tags(tags, glosses))
    problems = []
    for key, value in expected.items():
        if manifest.get(key) != value:
            problems.append(key)
    if "texts" in problems:
        got = {json.dumps(t, sort_keys=True) for t in manifest.get("texts", [])}
        want = {json.dumps(t, sort_keys=True) for t in expected["texts"]}
        problems.append(f"texts missing from the index: {sorted(want - got)[:3]}")
        problems.append(f"texts no longer in the glosses: {sorted(got - want)[:3]}")
    return problems


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DEFAULT_INDEX_DIR / MANIFEST).read_text(encoding="utf-8"))
    return data


def test_default_index_matches_the_shipped_tag_list_and_glosses(manifest: dict[str, Any]) -> None:
    problems = stale_differences(manifest, load_tags(), load_glosses())
    assert problems == [], f"index/ is stale ({problems}); rebuild: embedtag build-index --out index"


def test_the_staleness_check_notices_an_edited_gloss(manifest: dict[str, Any]) -> None:
    tags, glosses = load_tags(), load_glosses()
    key = tags[0].key
    edits = {
        "gloss": replace(glosses[key], glosses=(*glosses[key].glosses, "A newly written gloss.")),
        "alias": replace(glosses[key], aliases=(*glosses[key].aliases, "newalias")),
        "expansion": replace(glosses[key], expansion="something else"),
    }
    for what, edited in edits.items():
        problems = stale_differences(manifest, tags, {**glosses, key: edited})
        assert "texts" in problems, what
    flipped = replace(glosses[key], form=not glosses[key].form)
    assert stale_differences(manifest, tags, {**glosses, key: flipped}) == ["form_tags"]
    renamed = [Tag(t.id, t.name + "x") if i == 1 else t for i, t in enumerate(tags)]
    assert "tags" in stale_differences(manifest, renamed, glosses)


def test_default_index_loads_with_one_vector_per_text(manifest: dict[str, Any]) -> None:
    index = load_index(DEFAULT_INDEX_DIR)
    assert index.text_vectors.shape == (len(manifest["texts"]), 384)
    assert index.model_name == "all-MiniLM-L6-v2"
    index.check_tags(load_tags())


def test_default_index_was_built_with_the_bundled_model(manifest: dict[str, Any]) -> None:
    # hashes the weight files only: cheap, no model load
    assert manifest["model"]["fingerprint"] == weights_fingerprint(bundled_model_path())


def test_the_staleness_check_notices_an_edited_gloss_file(manifest: dict[str, Any], tmp_path: Path) -> None:
    data = json.loads(default_glosses_path().read_text(encoding="utf-8"))
    first = next(iter(data))
    data[first]["glosses"][0] += " Edited."
    edited = tmp_path / "glosses.json"
    edited.write_text(json.dumps(data), encoding="utf-8")
    # the shipped glosses are glosses.json with the other languages' files merged in (load_glosses())
    from embedtag.glosses import language_glosses_paths, merge_glosses

    merged = load_glosses(edited)
    for extra in language_glosses_paths():
        merged = merge_glosses(merged, load_glosses(extra))
    assert "texts" in stale_differences(manifest, load_tags(), merged)
    assert stale_differences(manifest, load_tags(), load_glosses()) == []

"""`embedtag eval` and `embedtag calibrate` on the tiny hashing index."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import assert_one_line_error, run

from embedtag.index import load_index
from embedtag.scoring import RANKER_FEATURES

DOCS = {
    "k8s": "kubeop is a Kubernetes operator that manages pods and clusters.",
    "database": "tabula is a SQL database engine storing tables and rows.",
    "game": "sprites is a video game with levels and players.",
}


@pytest.fixture
def gold(tmp_path: Path) -> Path:
    lines = []
    for n in range(4):
        for tag, readme in DOCS.items():
            lines.append({"id": f"{tag}-{n}", "description": "", "readme": f"{readme} Release {n}.", "core": [tag]})
    path = tmp_path / "gold.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def index_copy(fake_index_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "index"
    shutil.copytree(fake_index_dir, target)
    return target


def test_eval_reports_metrics_as_json(gold: Path, index_copy: Path) -> None:
    result = run("eval", gold, "--index", index_copy, "--model", "hashing", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["items"] == 12
    # every README names its tag's topic outright, so the hashing encoder gets the first tag right
    assert report["hit_at_1"] == 1.0
    assert report["per_tag"]["k8s"]["support"] == 4


def test_eval_cross_validated(gold: Path, index_copy: Path) -> None:
    result = run("eval", gold, "--index", index_copy, "--model", "hashing", "--folds", "3")
    assert result.exit_code == 0, result.output
    assert "strict F1" in result.stdout and "hit@1" in result.stdout


def test_eval_too_many_folds_is_a_usage_error(gold: Path, index_copy: Path) -> None:
    result = run("eval", gold, "--index", index_copy, "--model", "hashing", "--folds", "50")
    assert result.exit_code == 2
    assert "between 2 and the number of items (12)" in result.stderr


def test_eval_scores_a_batch_output(gold: Path, tmp_path: Path) -> None:
    predictions = tmp_path / "out.jsonl"
    ids = [json.loads(line)["id"] for line in gold.read_text().splitlines()]
    # right for the first half, wrong (k8s for everything) for the rest
    rows = [{"id": i, "tags": [i.split("-")[0]] if n < 6 else ["k8s"]} for n, i in enumerate(ids)]
    predictions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run("eval", gold, "--predictions", predictions, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    correct = 6 + sum(1 for i in ids[6:] if i.startswith("k8s"))
    assert report["strict_precision"] == round(correct / 12, 4)


def test_eval_predictions_missing_an_id(gold: Path, tmp_path: Path) -> None:
    predictions = tmp_path / "out.jsonl"
    predictions.write_text(json.dumps({"id": "k8s-0", "tags": ["k8s"]}) + "\n")
    result = run("eval", gold, "--predictions", predictions)
    assert result.exit_code == 1
    assert "has no result for 11 gold ids" in result.stderr


def test_calibrate_stores_calibration_and_examples(gold: Path, index_copy: Path) -> None:
    before = load_index(index_copy)
    assert not before.examples
    result = run("calibrate", gold, "--index", index_copy, "--model", "hashing")
    assert result.exit_code == 0, result.output
    after = load_index(index_copy)
    assert [e.id for e in after.examples] == [json.loads(x)["id"] for x in gold.read_text().splitlines()]
    assert after.settings.example_weight > 0
    assert after.settings.ranker is not None and before.settings.ranker is None
    assert set(after.settings.ranker.weights) == set(RANKER_FEATURES)
    info = run("info", "--index", index_copy).stdout
    assert "calibrated  yes" in info
    # the tag head: trained on the 12 READMEs (the index has no exemplars), for every tag
    assert after.head is not None and after.head.trained_on == {"exemplars": 0, "readmes": 12}
    assert f"tag head    {len(after.tags)} tags (trained on 0 exemplars, 12 readmes)" in info
    assert "tag head for" in result.stderr
    # cross-validated eval of an index with a head trains a head per fold (the index's saw every README)
    cv = run("eval", gold, "--index", index_copy, "--model", "hashing", "--folds", "3", "--json")
    assert cv.exit_code == 0, cv.output
    assert 0.0 <= json.loads(cv.stdout)["strict_f1"] <= 1.0
    assert after.texts == before.texts
    readme = index_copy.parent / "r.md"
    readme.write_text(DOCS["database"])
    tagged = run("tag", readme, "--index", index_copy, "--model", "hashing")
    assert json.loads(tagged.stdout)["tags"][0] == "database"


def test_calibrate_without_examples(gold: Path, index_copy: Path) -> None:
    result = run("calibrate", gold, "--index", index_copy, "--model", "hashing", "--no-examples", "--no-head")
    assert result.exit_code == 0, result.output
    after = load_index(index_copy)
    assert not after.examples and after.settings.example_weight == 0.0
    assert after.head is None and "no tag head" in result.stderr
    assert "tag head    none" in run("info", "--index", index_copy).stdout


def test_batch_accepts_readme_file_like_the_users_example(tmp_path: Path, fake_index_dir: Path) -> None:
    (tmp_path / "r.md").write_text(DOCS["database"])
    line = {"id": "1977", "description": "", "readme_file": "r.md"}
    (tmp_path / "in.jsonl").write_text(json.dumps(line) + "\n")
    result = run("batch", tmp_path / "in.jsonl", "--index", fake_index_dir, "--model", "hashing")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tags"][0] == "database"


def test_build_index_carries_a_calibrated_index_over_to_an_edited_list(
    gold: Path, index_copy: Path, tmp_path: Path
) -> None:
    from conftest import FAKE_GLOSSES_JSON, FAKE_TAGS_JSON

    assert run("calibrate", gold, "--index", index_copy, "--model", "hashing").exit_code == 0
    glosses = tmp_path / "glosses.json"
    glosses.write_text(FAKE_GLOSSES_JSON)
    # the same list under other ids, k8s spelt out, one tag more
    edited = [{"id": t["id"] + 100, "name": "kubernetes" if t["name"] == "k8s" else t["name"]}
              for t in json.loads(FAKE_TAGS_JSON)] + [{"id": 300, "name": "pixel-art"}]
    tags = tmp_path / "edited.json"
    tags.write_text(json.dumps(edited))
    out = tmp_path / "edited-index"
    args = ["build-index", "--tags", tags, "--glosses", glosses, "--model", "hashing", "--out", out]
    result = run(*args, "--carry-over", index_copy)
    assert result.exit_code == 0, result.output
    assert "its ranker kept; 1 tags new to it" in result.stderr
    source, built = load_index(index_copy), load_index(out)
    assert [e.id for e in built.examples] == [e.id for e in source.examples]
    assert built.settings.ranker is not None and source.settings.ranker is not None
    assert built.settings.ranker.weights == source.settings.ranker.weights
    kubernetes = next(t["id"] for t in edited if t["name"] == "kubernetes")
    assert {e.core for e in built.examples if e.id.startswith("k8s")} == {(kubernetes,)}
    assert built.settings.ranker.fitted_tags is not None and 300 not in built.settings.ranker.fitted_tags
    readme = tmp_path / "r.md"
    readme.write_text(DOCS["k8s"])
    tagged = run("tag", readme, "--index", out, "--model", "hashing")
    assert json.loads(tagged.stdout)["tags"][0] == "kubernetes"
    assert "carried over, 1 tags new to it" in run("info", "--index", out).stdout
    # without it, the same list starts from nothing learned
    plain = run(*args[:-1], tmp_path / "plain")
    assert plain.exit_code == 0 and load_index(tmp_path / "plain").settings.ranker is None
    assert_one_line_error(run(*args, "--carry-over", index_copy, "--examples", gold), 1, "--carry-over", "calibrate")
    assert_one_line_error(run(*args, "--carry-over", index_copy, "--max-chunks", "4"), 2, "--carry-over")

"""`embedtag doctor`: near-duplicate tags, unclear names, tags that never win or win too often."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedtag.doctor import (
    DUPLICATE_THRESHOLD,
    TagUsage,
    diagnose,
    generated_only,
    usage_findings,
)
from embedtag.encoders import HashingEncoder
from embedtag.glosses import parse_glosses
from embedtag.index import build_index, load_index
from embedtag.tagger import Document, Tagger
from embedtag.tags import parse_tags
from tests.conftest import DEFAULT_INDEX_DIR
from tests.helpers import run, write_jsonl

TAGS = [
    {"id": 1, "name": "monitor"},
    {"id": 2, "name": "metrics"},
    {"id": 3, "name": "game"},
    {"id": 4, "name": "zorblax"},
]
# monitor and metrics are described with the same words: the bag-of-words encoder sees twins
GLOSSES = {
    "monitor": ["Monitor servers with metrics dashboards and alerts.", "Collect metrics and alerts for servers."],
    "metrics": ["Collect metrics dashboards and alerts for servers.", "Monitor servers with metrics and alerts."],
    "game": ["A video game with players levels and sprites."],
}


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    index = build_index(parse_tags(json.dumps(TAGS)), parse_glosses(json.dumps(GLOSSES)), HashingEncoder())
    return index.save(tmp_path_factory.mktemp("doctor") / "index")


def test_twins_and_placeholder_glosses_are_found(index_dir: Path) -> None:
    index = load_index(index_dir)
    report = diagnose(index)
    pairs = {frozenset((f.tag, *f.related)) for f in report.findings if f.kind == "near-duplicate"}
    assert pairs == {frozenset({"monitor", "metrics"})}
    assert generated_only(index) == ["zorblax"]
    (no_gloss,) = [f for f in report.findings if f.kind == "no-gloss"]
    assert no_gloss.tag == "zorblax" and "glosses" in no_gloss.suggestion
    assert report.neighbours["monitor"][0][0] == "metrics"
    assert report.similarity[0, 1] >= DUPLICATE_THRESHOLD > report.similarity[0, 2]


def test_usage_findings_compare_with_the_expected_share() -> None:
    usage = {
        "never": TagUsage(picked=0, top3=0, expected=4.0),
        "greedy": TagUsage(picked=30, top3=40, expected=5.0),
        "fine": TagUsage(picked=6, top3=20, expected=5.0),
    }
    found = {f.tag: f.kind for f in usage_findings(usage, n_docs=50)}
    assert found == {"never": "never-top3", "greedy": "wins-too-often"}


def test_corpus_usage_counts_picks(index_dir: Path) -> None:
    tagger = Tagger(load_index(index_dir), HashingEncoder())
    docs = [Document(str(i), "A video game with players, levels and sprites.") for i in range(6)]
    report = diagnose(tagger.index, tagger=tagger, corpus=docs, gold=[["monitor"]] * 6)
    assert report.usage is not None and report.expected_from == "gold labels"
    assert report.usage["game"].picked == 6 and report.usage["game"].expected == 0
    kinds = {(f.kind, f.tag) for f in report.findings}
    assert ("wins-too-often", "game") in kinds
    assert ("never-top3", "monitor") not in kinds or report.usage["monitor"].top3 == 0


def test_cli_json_and_plot(index_dir: Path, tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"id": "a", "readme": "A video game with sprites."}])
    plot = tmp_path / "heat.png"
    result = run("doctor", "--index", index_dir, "--model", "hashing", "--json", "--plot", plot, "--corpus", corpus)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["tags"] == 4 and data["corpus"]["documents"] == 1
    assert {f["kind"] for f in data["findings"]} >= {"near-duplicate", "no-gloss"}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = run("doctor", "--index", index_dir, "--model", "hashing")
    assert table.exit_code == 0 and "near-duplicate" in table.stdout and "-> merge" in table.stdout


def test_cli_bad_corpus_is_one_line(index_dir: Path, tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "bad.jsonl", ["{not json"])
    result = run("doctor", "--index", index_dir, "--model", "hashing", "--corpus", corpus)
    assert result.exit_code == 1 and result.stderr.startswith("Error: corpus") and "Traceback" not in result.output


@pytest.mark.slow
def test_default_list_flags_monitoring_observability_and_julian(real_tagger: Tagger) -> None:
    report = diagnose(load_index(DEFAULT_INDEX_DIR), real_tagger.encoder)
    pairs = {frozenset((f.tag, *f.related)) for f in report.findings if f.kind == "near-duplicate"}
    assert frozenset({"monitoring", "observability"}) in pairs
    assert frozenset({"http", "web-server"}) in pairs
    unclear = {f.tag for f in report.findings if f.kind == "unclear-name"}
    assert "julian" in unclear
    # clear names stay clear: the check is not flagging everything
    assert not unclear & {"database", "game", "blockchain", "k8s", "security"}
    assert len(unclear) < 10

"""Adaptive compute: the head is always embedded, the rest only for close decisions."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from embedtag.adaptive import AdaptivePolicy, AdaptiveTagger, decision_is_close, head_length
from embedtag.index import TagIndex
from embedtag.scoring import RANKER_FEATURES, Ranker, ScoringSettings
from embedtag.tagger import Document, Tagger
from tests.test_vectorstore import CountingEncoder

TOPICS = ["kubernetes operator pods clusters", "sql database tables queries", "video game sprites levels",
          "command line terminal flags", "neural network training models"]


def long_readme(seed: int) -> str:
    """Ten paragraphs of ~40 words on rotating topics: more chunks than any head."""
    paragraphs = []
    for p in range(10):
        topic = TOPICS[(seed + p) % len(TOPICS)]
        paragraphs.append(" ".join(f"{topic} part {p} word{w}" for w in range(8)))
    return "# project\n\n" + "\n\n".join(paragraphs) + "\n"


def docs() -> list[Document]:
    return [Document(str(i), long_readme(i), f"project number {i}") for i in range(6)]


def test_band_zero_embeds_only_the_heads(fake_index: TagIndex) -> None:
    encoder = CountingEncoder()
    plain = Tagger(fake_index, encoder)
    adaptive = AdaptiveTagger.wrap(plain, AdaptivePolicy(first_chunks=2, chance_band=0.0, score_band=0.0))
    results = list(adaptive.tag_many(docs()))
    heads = [head_length(plain.chunks(d), 2) for d in docs()]
    full = [len(plain.chunks(d)) for d in docs()]
    assert all(h == 3 for h in heads) and all(f > 3 for f in full)  # description + 2 README chunks
    assert encoder.encoded == sum(heads) and adaptive.extended == 0
    assert len(encoder.calls) == 1  # the heads of the whole batch in one call
    assert len(results) == 6


def test_a_wide_band_extends_everything_and_matches_the_plain_tagger(fake_index: TagIndex) -> None:
    encoder = CountingEncoder()
    plain = Tagger(fake_index, encoder)
    adaptive = AdaptiveTagger.wrap(plain, AdaptivePolicy(first_chunks=2, chance_band=10.0, score_band=10.0))
    got = [r.to_json() for r in adaptive.tag_many(docs())]
    assert adaptive.extended == 6
    assert len(encoder.calls) == 2  # heads, then the rest of every close README in one call
    expected = [r.to_json() for r in Tagger(fake_index, CountingEncoder()).tag_many(docs())]
    assert got == expected


def test_decision_is_close_with_a_ranker() -> None:
    ranker = Ranker(dict.fromkeys(RANKER_FEATURES, 0.0), 0.0, 0.4)
    settings = replace(ScoringSettings(), ranker=ranker)
    policy = AdaptivePolicy(chance_band=0.05)
    clear = np.array([0.9, 0.8, 0.1, 0.05, 0.0])
    assert not decision_is_close(clear, settings, policy)
    assert decision_is_close(np.array([0.9, 0.42, 0.1, 0.0]), settings, policy)  # 2nd tag near 0.4
    assert decision_is_close(np.array([0.9, 0.36, 0.1, 0.0]), settings, policy)  # just below it
    # three clear tags and a 4th close behind the 3rd: the cap of three could swap them
    assert decision_is_close(np.array([0.9, 0.8, 0.7, 0.68, 0.0]), settings, policy)
    assert not decision_is_close(np.array([0.9, 0.8, 0.7, 0.5, 0.0]), settings, policy)
    assert not decision_is_close(np.array([]), settings, policy)
    # no tag reaches the threshold: with min_tags 1 the best is given anyway, so a runner-up close
    # behind it could swap in; with min_tags 0 nothing is given either way
    unlikely = np.array([0.2, 0.18, 0.05, 0.0])
    assert decision_is_close(unlikely, settings, policy)
    assert not decision_is_close(unlikely, replace(settings, min_tags=0), policy)
    assert not decision_is_close(np.array([0.2, 0.1, 0.05, 0.0]), settings, policy)


def test_decision_is_close_zero_shot_uses_threshold_and_margin() -> None:
    settings = replace(ScoringSettings(), threshold=0.3, margin=0.07, ranker=None)
    policy = AdaptivePolicy(score_band=0.01)
    assert not decision_is_close(np.array([0.6, 0.45, 0.1]), settings, policy)
    assert decision_is_close(np.array([0.6, 0.535, 0.1]), settings, policy)  # at best - margin
    assert decision_is_close(np.array([0.305, 0.1, 0.0]), settings, policy)  # at the threshold


def test_batch_cli_adaptive_band(fake_index_dir: object, tmp_path: object) -> None:
    import json
    from pathlib import Path

    from click.testing import CliRunner

    from embedtag.cli import cli

    work = Path(str(tmp_path))
    items = work / "in.jsonl"
    items.write_text("\n".join(json.dumps({"id": d.id, "readme": d.readme, "description": d.description})
                               for d in docs()) + "\n", encoding="utf-8")
    common = ["batch", str(items), "--index", str(fake_index_dir), "--model", "hashing", "--no-cache"]
    runner = CliRunner()
    full = runner.invoke(cli, [*common, "-o", str(work / "full.jsonl")])
    wide = runner.invoke(cli, [*common, "-o", str(work / "wide.jsonl"), "--adaptive", "--adaptive-band", "1"])
    assert full.exit_code == 0 and wide.exit_code == 0, (full.output, wide.output)
    # a band of 1 embeds every README whole: the same lines as the full budget
    assert (work / "full.jsonl").read_text() == (work / "wide.jsonl").read_text()
    alone = runner.invoke(cli, [*common, "--adaptive-band", "0.1"])
    assert alone.exit_code == 2 and "--adaptive-band goes with --adaptive" in alone.output

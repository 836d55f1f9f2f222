"""Adaptive compute: the head is always embedded, the rest only for close decisions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from embedtag.adaptive import AdaptivePolicy, AdaptiveTagger, decision_is_close, head_length
from embedtag.encoders import HashingEncoder
from embedtag.index import TagIndex
from embedtag.scoring import RANKER_FEATURES, Ranker, ScoringSettings
from embedtag.tagger import Document, Tagger
from embedtag.vectorstore import CachingEncoder, VectorStore, cached_tagger
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


# ---- with the vector store -----------------------------------------------------------------------

SOME_CLOSE = AdaptivePolicy(first_chunks=2, chance_band=0.05, score_band=0.05)  # extends 3 of the 6


def _no_preparing(patch: pytest.MonkeyPatch) -> None:
    """Cleaning or chunking a README fails the test: everything must come prepared from the store."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a README was cleaned or chunked again")

    for target in ("embedtag.adaptive.readme_sections", "embedtag.vectorstore.readme_sections",
                   "embedtag.tagger.readme_sections", "embedtag.tagger.document_chunks"):
        patch.setattr(target, refuse)


def _stored_documents(store: VectorStore) -> int:
    return int(store._conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0])


def test_adaptive_with_the_store_keeps_prepared_readmes_and_encodes_no_stored_chunk(
    fake_index: TagIndex, tmp_path: Path
) -> None:
    reference = CountingEncoder()
    alone = AdaptiveTagger.wrap(Tagger(fake_index, reference), SOME_CLOSE)
    expected = [r.to_json(explain=True) for r in alone.tag_many(docs())]
    assert 0 < alone.extended < len(docs())  # some heads decide, some READMEs need the rest
    needed = {t for call in reference.calls for t in call}
    inner = CountingEncoder()
    with VectorStore(tmp_path / "v.sqlite") as store:
        first = AdaptiveTagger.wrap(cached_tagger(Tagger(fake_index, inner), store), SOME_CLOSE)
        assert [r.to_json(explain=True) for r in first.tag_many(docs())] == expected
        assert first.extended == alone.extended
        assert {t for call in inner.calls for t in call} == needed  # heads, then the close READMEs' rest
        assert _stored_documents(store) == len(docs())  # the adaptive run prepared them for the store
        assert store.info().vectors == len(needed)
        inner.calls.clear()
        with pytest.MonkeyPatch.context() as patch:
            _no_preparing(patch)
            again = AdaptiveTagger.wrap(cached_tagger(Tagger(fake_index, inner), store), SOME_CLOSE)
            assert [r.to_json(explain=True) for r in again.tag_many(docs())] == expected
            assert inner.calls == []  # every head and rest chunk came from the store
            assert isinstance(again.encoder, CachingEncoder)
            assert (again.encoder.hits, again.encoder.misses) == (alone.embedded_chunks, 0)
            # the plain store tagger reads the same prepared READMEs and encodes only the rest of
            # the READMEs whose heads decided
            full = cached_tagger(Tagger(fake_index, inner), store)
            plain = [r.to_json() for r in full.tag_many(docs())]
        all_chunks = {c.text for d in docs() for c in Tagger(fake_index, HashingEncoder()).chunks(d)}
        assert {t for call in inner.calls for t in call} == all_chunks - needed
        assert _stored_documents(store) == len(docs())
    assert plain == [r.to_json() for r in Tagger(fake_index, HashingEncoder()).tag_many(docs())]


def test_adaptive_reads_the_readmes_a_plain_store_run_prepared(fake_index: TagIndex, tmp_path: Path) -> None:
    expected = [r.to_json() for r in AdaptiveTagger.wrap(Tagger(fake_index, HashingEncoder()), SOME_CLOSE)
                .tag_many(docs())]
    inner = CountingEncoder()
    with VectorStore(tmp_path / "v.sqlite") as store:
        list(cached_tagger(Tagger(fake_index, inner), store).tag_many(docs()))
        inner.calls.clear()
        with pytest.MonkeyPatch.context() as patch:
            _no_preparing(patch)
            adaptive = AdaptiveTagger.wrap(cached_tagger(Tagger(fake_index, inner), store), SOME_CLOSE)
            assert [r.to_json() for r in adaptive.tag_many(docs())] == expected
    assert inner.calls == [] and adaptive.extended > 0


def test_batch_cli_adaptive_with_the_store(fake_index_dir: Path, tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from embedtag.cli import cli

    items = tmp_path / "in.jsonl"
    items.write_text("\n".join(json.dumps({"id": d.id, "readme": d.readme, "description": d.description})
                               for d in docs()) + "\n", encoding="utf-8")
    common = ["batch", str(items), "--index", str(fake_index_dir), "--model", "hashing", "--adaptive"]
    runner = CliRunner()
    cache = tmp_path / "c.sqlite"
    alone = runner.invoke(cli, [*common, "--no-cache"])
    stored = runner.invoke(cli, [*common, "--cache", str(cache)])
    with pytest.MonkeyPatch.context() as patch:
        _no_preparing(patch)
        again = runner.invoke(cli, [*common, "--cache", str(cache)])
    assert alone.exit_code == stored.exit_code == again.exit_code == 0, (stored.output, again.output)
    assert alone.stdout == stored.stdout == again.stdout
    with VectorStore(cache) as store:
        assert _stored_documents(store) == len(docs())

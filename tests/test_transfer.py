"""Another tag list keeps what the shipped index learned for the tags it shares (no model needed)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import FAKE_GLOSSES_JSON
from test_calibrate import new_records, topic_exemplars, topic_records

from embedtag.build import with_examples, with_exemplars
from embedtag.calibrate import calibrate, score_labelled
from embedtag.encoders import HashingEncoder
from embedtag.glosses import parse_glosses
from embedtag.index import TagIndex
from embedtag.index_cache import BUILT, DISK, IndexCache, index_bytes
from embedtag.tagger import Tagger
from embedtag.tags import Tag
from embedtag.transfer import id_map, transfer, without_learning

READMES = [r.document for r in new_records()] + [r.document for r in topic_records()]
K8S_TEXT = "A Kubernetes operator that manages pods and clusters."


def cache_for(base: Tagger, directory: Path, **options: float) -> IndexCache:
    """A cache embedding new lists' texts from the fake index's glosses (the shipped file's otherwise)."""
    return IndexCache(base, cache_dir=directory, glosses=parse_glosses(FAKE_GLOSSES_JSON), **options)


@pytest.fixture(scope="module")
def calibrated(fake_index: TagIndex, fake_encoder: HashingEncoder) -> Tagger:
    """The fake index with exemplars, labelled examples and a fitted ranker (as `calibrate` makes it)."""
    base = Tagger(with_exemplars(fake_index, fake_encoder, topic_exemplars()), fake_encoder)
    records = topic_records()
    scored = score_labelled(base, records)
    settings = calibrate(scored, base.without_examples().settings, use_examples=True)
    assert settings.ranker is not None and settings.ranker.tag_bias
    index = with_examples(replace(base.index, settings=settings), base, records, scored.doc_vectors,
                          scored.chunk_vectors)
    return Tagger(index, fake_encoder)


def renumbered(tags: list[Tag], offset: int = 100) -> list[Tag]:
    """The same names under other ids: another list as far as fingerprints go."""
    return [Tag(t.id + offset, t.name) for t in tags]


def names(tagger: Tagger) -> list[list[str]]:
    return [[t.key for t in r.tags] for r in tagger.tag_many(READMES)]


def test_the_same_names_under_other_ids_tag_exactly_like_the_calibrated_index(
    calibrated: Tagger, tmp_path: Path
) -> None:
    tagger, source = cache_for(calibrated, tmp_path).tagger_for(renumbered(calibrated.index.tags))
    assert source == BUILT
    assert names(tagger) == names(calibrated)
    assert len({n for tags in names(calibrated) for n in tags}) >= 3
    # scored zero-shot, as every other list was before, the same list tags otherwise
    zero_shot, _ = cache_for(calibrated, tmp_path, min_shared=2.0).tagger_for(renumbered(calibrated.index.tags))
    assert names(zero_shot) != names(calibrated)


def test_labels_biases_and_exemplars_follow_their_tags_by_name(calibrated: Tagger) -> None:
    base = calibrated.index
    old = {t.key: t.id for t in base.tags}
    # k8s and database stay (new ids); cli is renamed (a new tag to the list); game is dropped
    tags = [Tag(1, "k8s"), Tag(2, "Database "), Tag(3, "command-line"), Tag(4, "3d")]
    own = without_learning(replace(base, tags=tags))
    moved = transfer(base, own, min_shared=0.5)
    assert id_map(base.tags, tags) == {old["k8s"]: 1, old["database"]: 2, old["3d"]: 4}
    settings, ranker = moved.settings, moved.settings.ranker
    assert ranker is not None and base.settings.ranker is not None
    assert ranker.weights == base.settings.ranker.weights and ranker.threshold == base.settings.ranker.threshold
    assert ranker.tag_bias == {1: base.settings.ranker.tag_bias[old["k8s"]],
                               2: base.settings.ranker.tag_bias[old["database"]]}
    assert settings.ranker is ranker and 3 not in ranker.tag_bias  # the renamed tag competes on evidence alone
    # every example kept, its labels mapped; a game README now votes for nothing
    assert [e.id for e in moved.examples] == [e.id for e in base.examples]
    labels = {e.id: e.core for e in moved.examples}
    assert labels["k8s-0"] == (1,) and labels["database-1"] == (2,) and labels["game-2"] == () == labels["cli-3"]
    assert moved.example_vectors is base.example_vectors  # shared, not copied
    assert moved.example_chunk_vectors is base.example_chunk_vectors
    # exemplars of a shared tag only: the cli-only and game exemplars are left out
    assert moved.exemplar_tags == [(1,), (2,), (1,)]


def test_a_list_sharing_too_few_tags_is_scored_zero_shot(calibrated: Tagger, tmp_path: Path) -> None:
    tags = [Tag(1, "k8s"), Tag(2, "edge"), Tag(3, "iot"), Tag(4, "robots")]  # 1 of 4 shared
    tagger, _ = cache_for(calibrated, tmp_path).tagger_for(tags)
    assert tagger.settings.ranker is None and not tagger.index.examples
    assert tagger.settings.exemplar_weight > 0 and tagger.index.exemplar_tags == [(1,), (1,)]
    everything = cache_for(calibrated, tmp_path, min_shared=0.25).tagger_for(tags)[0]
    assert everything.settings.ranker is not None and len(everything.index.examples) == len(calibrated.index.examples)
    never = cache_for(calibrated, tmp_path, min_shared=2.0).tagger_for(renumbered(calibrated.index.tags))[0]
    assert never.settings.ranker is None and not never.index.examples


def test_the_disk_keeps_only_the_lists_texts_and_a_recalibrated_index_is_never_stale(
    calibrated: Tagger, tmp_path: Path
) -> None:
    tags = renumbered(calibrated.index.tags)
    cache_for(calibrated, tmp_path).tagger_for(tags)
    (directory,) = [p.parent for p in tmp_path.glob("*/manifest.json")]
    assert sorted(p.name for p in directory.iterdir()) == ["manifest.json", "tags.faiss"]
    # the shipped index is recalibrated (another threshold); the cached list follows it
    assert calibrated.settings.ranker is not None
    ranker = replace(calibrated.settings.ranker, threshold=0.99)
    recalibrated = Tagger(replace(calibrated.index, settings=replace(calibrated.settings, ranker=ranker)),
                          calibrated.encoder)
    tagger, source = cache_for(recalibrated, tmp_path).tagger_for(tags)
    assert source == DISK and tagger.settings.ranker is not None and tagger.settings.ranker.threshold == 0.99
    assert names(tagger) == names(recalibrated)


def test_a_cached_list_takes_keywords_cues_and_forms_from_the_glosses_in_use(
    calibrated: Tagger, tmp_path: Path
) -> None:
    """They are not part of the embedded texts: an index cached by an older embedtag (no
    form_tags) or under other cues must not score with what its disk says."""
    tags = renumbered(calibrated.index.tags)
    built, _ = cache_for(calibrated, tmp_path).tagger_for(tags)
    assert built.index.form_tags == {114}  # cli, 14 + 100
    (manifest_path,) = tmp_path.glob("*/manifest.json")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    del manifest["form_tags"]
    manifest["cues"] = {"111": ["stale-cue"]}
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    tagger, source = cache_for(calibrated, tmp_path).tagger_for(tags)
    assert source == DISK
    assert tagger.index.form_tags == built.index.form_tags and tagger.index.cues == built.index.cues
    assert names(tagger) == names(built)


def test_shared_arrays_are_not_counted_against_the_cache(calibrated: Tagger) -> None:
    other_list = replace(calibrated.index, tags=renumbered(calibrated.index.tags))
    moved = transfer(calibrated.index, without_learning(other_list))
    alone = index_bytes(moved)
    assert index_bytes(moved, shared_with=calibrated.index) < alone
    assert calibrated.index.example_chunk_vectors is not None
    assert alone - index_bytes(moved, shared_with=calibrated.index) >= 2 * calibrated.index.example_chunk_vectors.nbytes


def test_another_spelling_of_a_tag_or_of_its_expansion_is_that_tag() -> None:
    source = [Tag(1, "k8s"), Tag(2, "lib"), Tag(3, "database"), Tag(4, "dev-tool"), Tag(5, "web-app"), Tag(6, "cli")]
    expansions = {"k8s": "Kubernetes", "lib": "library", "dev-tool": "developer tool"}
    target = [Tag(10, "kubernetes"), Tag(11, "Library"), Tag(12, "databases"), Tag(13, "Developer_Tools"),
              Tag(14, "web app"), Tag(15, "webapp"), Tag(16, "CLI ")]
    assert id_map(source, target, expansions) == {1: 10, 2: 11, 3: 12, 4: 13, 5: 14, 6: 16}
    assert id_map(source, target) == {3: 12, 5: 14, 6: 16}  # without expansions: spellings of the name only
    # a spelling that could be either of two tags is neither; an exact name wins over a spelling
    assert id_map([Tag(1, "database"), Tag(2, "databases")], [Tag(7, "Databases "), Tag(8, "database_s")]) == {2: 7}
    assert id_map([Tag(1, "game")], [Tag(7, "games"), Tag(8, "GAMES")]) == {}


def test_a_respelt_tag_keeps_its_curated_glosses_and_examples(calibrated: Tagger, tmp_path: Path) -> None:
    respelt = {"k8s": "kubernetes", "cli": "command-line tool"}
    tags = [Tag(t.id + 100, respelt.get(t.key, t.name)) for t in calibrated.index.tags]
    tagger, _ = cache_for(calibrated, tmp_path).tagger_for(tags)
    # cli is a project form in the fake glosses: so is its other spelling
    assert tagger.index.form_tags == {next(t.id for t in tags if t.name == "command-line tool")}
    kubernetes = next(t.id for t in tags if t.name == "kubernetes")
    texts = {t.text for t in tagger.index.texts if t.tag_id == kubernetes}
    assert set(parse_glosses(FAKE_GLOSSES_JSON)["k8s"].glosses) <= texts
    assert any(kubernetes in e.core for e in tagger.index.examples)
    assert tagger.settings.ranker is not None and kubernetes in tagger.settings.ranker.tag_bias



def test_a_tag_new_to_the_list_is_still_predicted(calibrated: Tagger, tmp_path: Path) -> None:
    """It has no examples, votes or bias, so the carried-over ranker alone would never pick it;
    where the zero-shot rule would keep it, it is kept."""
    pixel = Tag(900, "pixel-art", glosses=("Pixel art sprites drawn on a retro palette.",))
    tagger, _ = cache_for(calibrated, tmp_path).tagger_for([*renumbered(calibrated.index.tags), pixel])
    assert tagger.settings.ranker is not None and 900 not in tagger.settings.ranker.tag_bias
    readme = "Draw pixel art sprites on a retro palette, frame by frame."
    assert "pixel-art" in [t.key for t in tagger.tag(readme, "pixel art editor").tags]
    assert "pixel-art" not in [t.key for t in tagger.tag(K8S_TEXT).tags]  # only where its evidence is
    assert tagger.settings.ranker.fitted_tags is not None and 900 not in tagger.settings.ranker.fitted_tags
    alone = replace(tagger.settings, ranker=replace(tagger.settings.ranker, fitted_tags=None))  # no tag is new
    ranker_alone = Tagger(replace(tagger.index, settings=alone), tagger.encoder)
    assert "pixel-art" not in [t.key for t in ranker_alone.tag(readme, "pixel art editor").tags]


def test_retarget_is_the_index_for_another_list_in_one_call(calibrated: Tagger) -> None:
    """`TagIndex.retarget`: the same list under other ids tags exactly like the calibrated index,
    sharing its arrays; a list that shares too little scores zero-shot with the shared exemplars."""
    base = calibrated.index
    tags = renumbered(base.tags)
    mapping = {t.id: t.id + 100 for t in base.tags}
    # the list's own index: its texts (and what the glosses say of its tags) under the new ids
    own = replace(
        base, tags=tags, texts=[replace(t, tag_id=t.tag_id + 100) for t in base.texts],
        keywords={k + 100: v for k, v in base.keywords.items()}, cues={k + 100: v for k, v in base.cues.items()},
        form_tags=frozenset(t + 100 for t in base.form_tags),
    )
    moved = base.retarget(own, mapping, min_shared=0.5)
    assert moved.tags == tags and moved.example_vectors is base.example_vectors
    assert moved.faiss_examples() is base.faiss_examples()  # shared, not rebuilt per list
    assert names(Tagger(moved, calibrated.encoder)) == names(calibrated)
    assert transfer(base, without_learning(moved)).settings == moved.settings  # the policy wrapper agrees
    k8s = next(t.id for t in base.tags if t.key == "k8s")
    zero_shot = base.retarget(moved, {k8s: k8s + 100}, min_shared=0.5)  # 1 of the list's tags shared
    assert zero_shot.settings.ranker is None and not zero_shot.examples and not zero_shot.settings.tag_bias
    assert zero_shot.exemplar_tags and set(zero_shot.exemplar_tags) == {(k8s + 100,)}
    assert zero_shot.settings.exemplar_weight > 0
    assert base.settings.ranker is not None and base.examples  # the source itself is left as it was


def test_retarget_refuses_a_mapping_that_names_ids_neither_list_has(calibrated: Tagger) -> None:
    from embedtag.errors import IndexError_

    base = calibrated.index
    own = without_learning(replace(base, tags=renumbered(base.tags)))
    with pytest.raises(IndexError_, match=r"ids \[999\] that are not in the source tag list"):
        base.retarget(own, {999: 101}, min_shared=0.5)
    with pytest.raises(IndexError_, match=r"ids \[5\] that are not in the target tag list"):
        base.retarget(own, {base.tags[0].id: 5}, min_shared=0.5)

"""The tag list: parsing, validation, verbatim names, fingerprints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedtag.errors import TagListError
from embedtag.tags import Tag, load_tags, parse_tags, tags_fingerprint


def dumps(data: object) -> str:
    return json.dumps(data)


def test_parses_ids_and_names_in_order() -> None:
    tags = parse_tags(dumps([{"id": 77, "name": "3d"}, {"id": 89, "name": "agent"}]))
    assert [(t.id, t.name) for t in tags] == [(77, "3d"), (89, "agent")]
    assert [t.to_json() for t in tags] == [{"id": 77, "name": "3d"}, {"id": 89, "name": "agent"}]


def test_numeric_string_id_becomes_int() -> None:
    (tag,) = parse_tags(dumps([{"id": " 42 ", "name": "x"}]))
    assert tag.id == 42 and isinstance(tag.id, int)


def test_invalid_json_names_the_source_and_the_expected_shape() -> None:
    with pytest.raises(TagListError) as info:
        parse_tags('[{"id": 1, "name": "a"', "tag list t.json")
    message = str(info.value)
    assert message.startswith("tag list t.json is not valid JSON")
    assert "line 1" in message
    assert '"id": 77' in message  # shows the expected format
    assert "\n" not in message


@pytest.mark.parametrize("text", ['{"id": 1, "name": "a"}', '"k8s"', "3"])
def test_not_a_list(text: str) -> None:
    with pytest.raises(TagListError, match="must be a JSON list"):
        parse_tags(text)


def test_empty_list_is_refused() -> None:
    with pytest.raises(TagListError, match="is empty; give at least one tag"):
        parse_tags("[]")


def test_entry_that_is_not_an_object() -> None:
    with pytest.raises(TagListError, match="entry 2 is not an object"):
        parse_tags(dumps([{"id": 1, "name": "a"}, "b"]))


@pytest.mark.parametrize(("entry", "missing"), [({"name": "a"}, "id"), ({"id": 1}, "name"), ({}, "id")])
def test_missing_id_or_name(entry: dict[str, object], missing: str) -> None:
    with pytest.raises(TagListError, match=rf"entry 1 has no '{missing}'"):
        parse_tags(dumps([entry]))


@pytest.mark.parametrize("bad_id", [1.5, True, "abc", None, [1]])
def test_non_integer_id(bad_id: object) -> None:
    with pytest.raises(TagListError, match="id must be an integer"):
        parse_tags(dumps([{"id": bad_id, "name": "a"}]))


@pytest.mark.parametrize("bad_name", ["", "   ", 5, None])
def test_empty_or_non_string_name(bad_name: object) -> None:
    with pytest.raises(TagListError, match="name must be a non-empty string"):
        parse_tags(dumps([{"id": 1, "name": bad_name}]))


def test_duplicate_ids_name_both_entries() -> None:
    with pytest.raises(TagListError, match=r"id 7 is used twice \(entries 1 and 3\)"):
        parse_tags(dumps([{"id": 7, "name": "a"}, {"id": 8, "name": "b"}, {"id": 7, "name": "c"}]))


def test_duplicate_ids_given_as_int_and_string() -> None:
    with pytest.raises(TagListError, match="id 7 is used twice"):
        parse_tags(dumps([{"id": 7, "name": "a"}, {"id": "7", "name": "b"}]))


@pytest.mark.parametrize("second", ["go ", " go", "Go", " GO  "])
def test_duplicate_names_after_trimming_and_case(second: str) -> None:
    with pytest.raises(TagListError, match=r"(?i)name 'go' is used twice \(entries 1 and 2"):
        parse_tags(dumps([{"id": 1, "name": "go"}, {"id": 2, "name": second}]))


def test_trailing_space_name_kept_verbatim_but_trimmed_key() -> None:
    (tag,) = parse_tags(dumps([{"id": 5, "name": "python "}]))
    assert tag.name == "python "
    assert tag.key == "python"
    assert tag.to_json() == {"id": 5, "name": "python "}


def test_fingerprint_depends_on_names_as_spelled_and_ids() -> None:
    base = parse_tags(dumps([{"id": 5, "name": "python"}]))
    spaced = parse_tags(dumps([{"id": 5, "name": "python "}]))
    other_id = parse_tags(dumps([{"id": 6, "name": "python"}]))
    with_gloss = parse_tags(dumps([{"id": 5, "name": "python", "gloss": "snakes"}]))
    assert tags_fingerprint(base) != tags_fingerprint(spaced)
    assert tags_fingerprint(base) != tags_fingerprint(other_id)
    assert tags_fingerprint(base) == tags_fingerprint(with_gloss)  # glosses do not identify a list
    assert len(tags_fingerprint(base)) == 16


def test_gloss_and_aliases_fields() -> None:
    tags = parse_tags(
        dumps(
            [
                {"id": 1, "name": "k8s", "gloss": "  Kubernetes things. ", "aliases": "kube"},
                {"id": 2, "name": "db", "glosses": ["A database.", "  ", "Tables."], "aliases": ["sql", " "]},
                {"id": 3, "name": "plain"},
            ]
        )
    )
    assert tags[0].glosses == ("Kubernetes things.",)
    assert tags[0].aliases == ("kube",)
    assert tags[1].glosses == ("A database.", "Tables.")  # blanks dropped, trimmed
    assert tags[1].aliases == ("sql",)
    assert tags[2].glosses == () and tags[2].aliases == ()
    # glosses do not take part in equality: a tag is its id and name
    assert tags[0] == Tag(1, "k8s")


@pytest.mark.parametrize("field", ["gloss", "aliases"])
@pytest.mark.parametrize("value", [5, [1, 2], {"a": "b"}])
def test_gloss_and_aliases_must_be_strings(field: str, value: object) -> None:
    with pytest.raises(
        TagListError, match=f"'{'gloss' if field == 'gloss' else 'aliases'}' must be a string"
    ):
        parse_tags(dumps([{"id": 1, "name": "a", field: value}]))


def test_messages_are_one_line() -> None:
    bad_inputs = [
        "[",
        "[]",
        "{}",
        dumps([{"id": 1}]),
        dumps([{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]),
    ]
    for text in bad_inputs:
        with pytest.raises(TagListError) as info:
            parse_tags(text)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("bad_id", ["--5", "²"])
def test_odd_numeric_looking_string_id_is_a_tag_list_error(bad_id: str) -> None:
    with pytest.raises(TagListError):
        parse_tags(dumps([{"id": bad_id, "name": "a"}]))


# ---- files ---------------------------------------------------------------------------------


def test_load_default_list() -> None:
    tags = load_tags()
    assert len(tags) >= 50
    names = {t.name for t in tags}
    assert {"k8s", "cloud-native", "3d"} <= names
    assert len({t.id for t in tags}) == len(tags)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TagListError, match=r"does not exist; pass a JSON file of tags"):
        load_tags(tmp_path / "nope.json")


def test_load_undecodable_file(tmp_path: Path) -> None:
    path = tmp_path / "tags.json"
    path.write_bytes(b"\xff\xfe[\x00")
    with pytest.raises(TagListError, match="cannot be read"):
        load_tags(path)


def test_load_file_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tags.json"
    path.write_text("[]", encoding="utf-8")
    with pytest.raises(TagListError, match=rf"tag list {path} is empty"):
        load_tags(path)

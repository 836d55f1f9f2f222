"""Glosses: name expansion, generated glosses, resolution order, texts and keywords."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedtag.errors import GlossError
from embedtag.glosses import (
    TagGlosses,
    TagText,
    expand_name,
    form_tags,
    generate_glosses,
    glosses_document,
    load_glosses,
    parse_glosses,
    resolve_glosses,
    tag_keywords,
    tag_texts,
)
from embedtag.tags import Tag, load_tags, parse_tags


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("k8s", "Kubernetes"),
        ("K8S", "Kubernetes"),  # case-insensitive lookup of a whole name
        ("cicd", "continuous integration and delivery CI/CD"),  # whole name wins over parts
        ("dev-exp-lib", "developer experience library"),
        ("web_ui", "web user interface"),
        ("ml/ai", "machine learning artificial intelligence"),
        ("rust", "rust"),  # unknown words kept as written
        ("Game Engine", "Game Engine"),
        ("--", "--"),  # nothing but separators: the key itself
    ],
)
def test_expand_name(key: str, expected: str) -> None:
    assert expand_name(key) == expected


def test_generated_glosses_use_the_expansion_and_are_marked() -> None:
    g = generate_glosses("iot-sdk")
    assert g.expansion == "Internet of Things software development kit SDK"
    assert g.generated is True
    assert len(g.glosses) == 3
    assert all("Internet of Things software development kit SDK" in text for text in g.glosses)
    assert g.to_json()["generated"] is True
    assert "generated" not in TagGlosses("x", ("y",)).to_json()


# ---- parsing -------------------------------------------------------------------------------


def test_parse_forms_string_list_object() -> None:
    parsed = parse_glosses(
        json.dumps(
            {
                " k8s ": "Kubernetes things.",
                "db": ["A database.", "  "],
                "ml": {"expansion": "ML", "aliases": "sklearn", "gloss": "Models."},
                "cli": {"glosses": ["  A terminal tool.  "], "aliases": ["shell", ""], "generated": True},
            }
        )
    )
    assert set(parsed) == {"k8s", "db", "ml", "cli"}  # keys trimmed
    assert parsed["k8s"] == TagGlosses("Kubernetes", ("Kubernetes things.",))
    assert parsed["db"].glosses == ("A database.",)
    assert parsed["db"].expansion == "database"
    assert parsed["ml"] == TagGlosses("ML", ("Models.",), ("sklearn",))
    assert parsed["cli"].glosses == ("A terminal tool.",)
    assert parsed["cli"].aliases == ("shell",)
    assert parsed["cli"].generated is True


def test_parse_invalid_json() -> None:
    with pytest.raises(GlossError, match=r"g.json is not valid JSON \(.* at line 2\)"):
        parse_glosses('{\n"k8s": }', "g.json")


def test_parse_not_an_object() -> None:
    with pytest.raises(GlossError, match="must be a JSON object"):
        parse_glosses('["k8s"]')


@pytest.mark.parametrize("entry", [5, None, True])
def test_parse_bad_entry(entry: object) -> None:
    with pytest.raises(GlossError, match="entry 'k8s' must be an object"):
        parse_glosses(json.dumps({"k8s": entry}))


def test_parse_non_string_glosses() -> None:
    with pytest.raises(GlossError, match="'glosses' of 'k8s' must be a string or a list of strings"):
        parse_glosses(json.dumps({"k8s": {"glosses": ["ok", 3]}}))


@pytest.mark.parametrize("entry", [{"glosses": 5}, {"aliases": {"a": 1}}, {"cues": [1]}])
def test_parse_scalar_fields_are_gloss_errors(entry: dict[str, object]) -> None:
    with pytest.raises(GlossError, match="must be a string or a list of strings"):
        parse_glosses(json.dumps({"k8s": entry}))


def test_parse_null_fields_mean_none_given() -> None:
    parsed = parse_glosses(json.dumps({"k8s": {"glosses": None, "aliases": None, "cues": None}}))
    assert parsed["k8s"].glosses == () and parsed["k8s"].aliases == () and parsed["k8s"].cues == ()


def test_parse_bad_cue_regex() -> None:
    with pytest.raises(GlossError, match="not a valid regular expression"):
        parse_glosses(json.dumps({"k8s": {"glosses": ["x"], "cues": ["(unclosed"]}}))


def test_parse_form_flag_and_its_errors() -> None:
    parsed = parse_glosses(json.dumps({"lib": {"glosses": ["x"], "form": True}, "k8s": ["y"]}))
    assert parsed["lib"].form is True and parsed["k8s"].form is False
    assert parse_glosses(json.dumps({"lib": parsed["lib"].to_json()}))["lib"].form is True
    assert "form" not in parsed["k8s"].to_json()
    with pytest.raises(GlossError, match="'form' of 'lib' must be true or false"):
        parse_glosses(json.dumps({"lib": {"glosses": ["x"], "form": "yes"}}))


def test_form_tags_follow_the_glosses_and_survive_list_glosses() -> None:
    glosses = {"lib": TagGlosses("library", ("A library.",), form=True), **FILE}
    tags = parse_tags(json.dumps([
        {"id": 1, "name": "lib ", "gloss": "Written by the list."},  # the list's own gloss keeps the flag
        {"id": 2, "name": "k8s"},
        {"id": 3, "name": "zz-widget"},  # generated: a subject
    ]))
    assert form_tags(tags, glosses) == [1]


def test_shipped_form_tags_are_the_project_forms() -> None:
    tags = load_tags()
    forms = set(form_tags(tags, load_glosses()))
    assert sorted(t.key for t in tags if t.id in forms) == [
        "cli", "desktop-app", "dev-tool", "framework", "learning-resource", "lib", "mobile-app", "sdk", "server",
        "web-app",
    ]


def test_load_missing_gloss_file(tmp_path: Path) -> None:
    with pytest.raises(GlossError, match="does not exist; make one with `embedtag glosses`"):
        load_glosses(tmp_path / "none.json")


def test_shipped_glosses_cover_every_default_tag() -> None:
    tags = load_tags()
    glosses = load_glosses()
    assert {t.key for t in tags} == set(glosses)
    document = glosses_document(tags, glosses)
    assert not [k for k, v in document.items() if v.get("generated")]
    assert all(len(v["glosses"]) >= 2 for v in document.values())


# ---- resolution order: tag list fields, then the gloss file, then generated ---------------


FILE = {
    "k8s": TagGlosses("Kubernetes", ("From the file.",), ("kube",)),
    "python": TagGlosses("Python language", ("Python from the file.",)),
}


def test_tag_list_glosses_win_over_the_file_and_aliases_merge() -> None:
    tag = parse_tags(
        json.dumps([{"id": 1, "name": "k8s", "gloss": "From the list.", "aliases": ["k3s", "kube"]}])
    )
    resolved = resolve_glosses(tag, FILE)["k8s"]
    assert resolved.glosses == ("From the list.",)
    assert resolved.aliases == ("k3s", "kube")  # list's first, file's after, no duplicate
    assert resolved.expansion == "Kubernetes"
    assert resolved.generated is False


def test_aliases_only_in_the_list_keep_the_file_glosses() -> None:
    tag = parse_tags(json.dumps([{"id": 1, "name": "k8s", "aliases": "k3s"}]))
    resolved = resolve_glosses(tag, FILE)["k8s"]
    assert resolved.glosses == ("From the file.",)
    assert resolved.aliases == ("k3s", "kube")
    assert resolved.generated is False


def test_aliases_only_and_no_file_entry_gives_generated_glosses() -> None:
    tag = parse_tags(json.dumps([{"id": 1, "name": "zz-widget", "aliases": "zw"}]))
    resolved = resolve_glosses(tag, FILE)["zz-widget"]
    assert resolved.aliases == ("zw",)
    assert resolved.generated is True
    assert resolved.glosses == generate_glosses("zz-widget").glosses


def test_file_entry_found_by_trimmed_and_lowercased_name() -> None:
    tags = [Tag(1, "Python "), Tag(2, "K8s")]
    resolved = resolve_glosses(tags, FILE)
    assert resolved["Python"].glosses == ("Python from the file.",)
    assert resolved["K8s"].glosses == ("From the file.",)


def test_unknown_tag_is_generated() -> None:
    resolved = resolve_glosses([Tag(1, "zz-widget")], FILE)
    assert resolved["zz-widget"] == generate_glosses("zz-widget")
    assert resolved["zz-widget"].generated


# ---- texts and keywords --------------------------------------------------------------------


def test_tag_texts_order_and_kinds() -> None:
    tags = [Tag(1, "k8s"), Tag(2, "blog ")]
    glosses = {"k8s": FILE["k8s"], "blog": TagGlosses("blog", ("Posts.",))}
    assert tag_texts(tags, glosses) == [
        TagText(1, "name", "k8s: Kubernetes"),
        TagText(1, "alias", "kube (Kubernetes)"),
        TagText(1, "gloss", "From the file."),
        TagText(2, "name", "blog"),  # expansion equal to the name: no "blog: blog"
        TagText(2, "gloss", "Posts."),
    ]


def test_tag_keywords() -> None:
    tags = [Tag(1, "k8s"), Tag(2, "c"), Tag(3, "python ")]
    keywords = tag_keywords(tags, FILE)
    assert keywords[1] == ["k8s", "Kubernetes", "kube"]
    assert keywords[2] == []  # one letter is no evidence
    assert keywords[3] == ["python", "Python language"]  # trimmed name


def test_glosses_document_marks_generated_only() -> None:
    tags = [Tag(1, "k8s"), Tag(2, "zz-widget")]
    document = glosses_document(tags, FILE)
    assert list(document) == ["k8s", "zz-widget"]
    assert "generated" not in document["k8s"]
    assert document["k8s"]["glosses"] == ["From the file."]
    assert document["zz-widget"]["generated"] is True
    assert document["zz-widget"]["expansion"] == "zz widget"
    # a written document parses back to the same glosses
    assert parse_glosses(json.dumps(document)) == resolve_glosses(tags, FILE)

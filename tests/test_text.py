"""README cleaning and chunking."""

from __future__ import annotations

import re

import pytest

from embedtag.text import (
    MIN_PROSE_WORDS,
    Section,
    approx_token_count,
    chunk_text,
    clean_sections,
    clean_text,
    document_chunks,
)

PROSE = "Rocket is a fast web framework for building REST APIs in Python."


def words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


# ---- cleaning: what goes -------------------------------------------------------------------


def test_html_markup_goes_text_stays() -> None:
    readme = (
        '<p align="center"><b>Rocket</b> serves <i>fast</i> pages &amp; APIs</p>\n'
        "<script>var secretscript = 1;</script>\n"
        "<style>.secretstyle { color: red }</style>\n"
        "<!-- secretcomment -->\n"
        '<div align="center"><a href="https://secret.example.com">Docs site</a></div>\n'
    )
    text = clean_text(readme)
    assert "Rocket serves fast pages & APIs" in text
    assert "Docs site" in text
    assert "<" not in text and ">" not in text
    assert not words(text) & {"secretscript", "secretstyle", "secretcomment", "align", "href", "secret"}


def test_badges_and_images_go_entirely() -> None:
    readme = (
        "[![Build Status](https://ci.example.com/badge.svg)](https://ci.example.com/job) "
        "[![PyPI](https://img.shields.io/pypi/v/rocket.svg)][pypi]\n"
        "![screenshot alt](docs/shot.png)\n"
        '<img src="logo.png" alt="logoalt" width="200">\n'
        f"{PROSE}\n"
    )
    text = clean_text(readme)
    assert text == PROSE
    assert "shields" not in text and "badge" not in text


def test_link_text_kept_targets_dropped() -> None:
    readme = (
        "Rocket builds [REST APIs](https://example.com/rest-target) with [routing][r] in Python.\n"
        "See https://rocket.example.com/bareurl and www.example.org/wwwurl for more.\n"
        "[r]: https://example.com/refdef-target\n"
    )
    text = clean_text(readme)
    assert "Rocket builds REST APIs with routing in Python." in text
    assert not words(text) & {"https", "target", "bareurl", "wwwurl", "refdef", "example"}


@pytest.mark.parametrize("fence", ["```", "~~~", "```python"])
def test_code_fences_go(fence: str) -> None:
    closing = fence[:3]
    readme = (
        f"{PROSE}\n\n{fence}\npip install secretcode\nimport secretmodule\n{closing}\n\n"
        "Run it with `rocket serve`.\n"
    )
    text = clean_text(readme)
    assert "secretcode" not in text and "secretmodule" not in text
    assert PROSE in text
    assert "Run it with rocket serve." in text  # inline code keeps its words


def test_indented_code_goes_but_indented_lists_stay() -> None:
    readme = f"{PROSE}\n\n    secret_indented_call()\n\n    - nested list item stays\n"
    text = clean_text(readme)
    assert "secret_indented_call" not in text
    assert "nested list item stays" in text


def test_table_of_contents_goes() -> None:
    readme = (
        f"{PROSE}\n\n## Table of Contents\n\n- [Install](#install)\n- Plain tocitem entry\n\n"
        "## Usage\n\nDefine routes with decorators.\n\n"
        "* [Anchored tocanchor](#anchor)\n"
    )
    sections = clean_sections(readme)
    assert [s.heading for s in sections] == ["", "Usage"]
    text = clean_text(readme)
    assert "tocitem" not in text and "tocanchor" not in text
    assert "Define routes with decorators." in text


@pytest.mark.parametrize(
    "heading",
    [
        "License",
        "LICENCE",
        "Contributing",
        "Contributors",
        "Acknowledgements",
        "Sponsors",
        "Code of Conduct",
        "Star History",
        "📝 License",
    ],
)
def test_boilerplate_sections_go_and_the_next_section_comes_back(heading: str) -> None:
    readme = (
        f"# Rocket\n\n{PROSE}\n\n## {heading}\n\nboilerwordone boilerwordtwo.\n\n"
        "## Features\n\nFast routing.\n"
    )
    sections = clean_sections(readme)
    assert [s.heading for s in sections] == ["Rocket", "Features"]
    assert "boilerwordone" not in clean_text(readme)


def test_setext_headings_and_tables() -> None:
    readme = (
        "Rocket\n======\n\n"
        f"{PROSE}\n\n"
        "License\n-------\n\nMIT licencebody.\n\n"
        "Features\n--------\n\n"
        "| Feature | Status |\n|---------|:------:|\n| Routing | Stable |\n"
    )
    sections = clean_sections(readme)
    assert sections == [Section("Rocket", PROSE), Section("Features", "Feature Status\nRouting Stable")]


def test_prose_kept_emphasis_and_list_markers_stripped() -> None:
    readme = (
        "Rocket is **fast**, _small_ and ~~slow~~ simple.\n\n"
        f"- First feature\n1. Second feature\n> Quoted line\n{PROSE}\n"
    )
    (section,) = clean_sections(readme)
    assert section.text.split("\n") == [
        "Rocket is fast, small and slow simple.",
        "First feature",
        "Second feature",
        "Quoted line",
        PROSE,
    ]


def test_rst_directives_go() -> None:
    readme = f".. image:: https://example.com/badge.svg\n   :target: https://example.com\n\n{PROSE}\n"
    assert clean_text(readme) == PROSE


def test_control_characters_and_crlf() -> None:
    readme = f"# Title\r\n\r\n{PROSE}\x00\x07\r\nSecond line.\r"
    assert clean_sections(readme) == [Section("Title", f"{PROSE}\nSecond line.")]


def test_nothing_but_markup_gives_no_sections() -> None:
    assert clean_sections("") == []
    assert clean_sections("[![a](b)](c)\n```\ncode\n```\n<img src='x'>\n---\n") == []


def test_html_boilerplate_heading_is_dropped() -> None:
    readme = f"<p>{PROSE}</p>\n<h2>License</h2>\n<p>Distributed under MIT licencewords.</p>\n"
    assert "licencewords" not in clean_text(readme)
    assert [s.heading for s in clean_sections(readme)] == [""]


# ---- token counting and chunking -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("hello", 1),
        ("hi, there", 3),
        ("hello, world", 4),
        ("internationalization", 4),
        ("é", 2),
        ("a b  c", 3),
    ],
)
def test_approx_token_count(text: str, expected: int) -> None:
    assert approx_token_count(text) == expected


def count_words(text: str) -> int:
    return len(text.split())


def test_chunks_pack_sentences_greedily() -> None:
    text = "A b c. D e f. G h i.\nJ k."
    assert chunk_text(text, 6, count_words) == ["A b c. D e f.", "G h i. J k."]
    assert chunk_text(text, 100, count_words) == ["A b c. D e f. G h i. J k."]


def test_long_sentence_split_by_words_within_the_bound() -> None:
    sentence = " ".join(f"w{i}" for i in range(25))
    chunks = chunk_text(sentence, 10, count_words)
    assert [count_words(c) for c in chunks] == [10, 10, 5]
    assert " ".join(chunks) == sentence  # nothing lost, order kept


def test_giant_word_split_by_characters() -> None:
    blob = "QUJD" * 2500  # 10 000 characters without a space (base64, minified code)
    chunks = chunk_text(f"Intro words. {blob}", 16)
    assert all(0 < approx_token_count(c) <= 16 for c in chunks)
    assert "".join(c for c in chunks if c != "Intro words.").replace(" ", "").endswith("QUJD")


def test_no_empty_or_punctuation_only_chunks() -> None:
    chunks = chunk_text("...\n\n!!! ???\n   \nReal words here.\n---", 8)
    assert chunks == ["Real words here."]


def test_chunk_text_on_wordless_text() -> None:
    assert chunk_text("", 8) == []
    assert chunk_text(" \n --- *** ", 8) == []


def test_max_tokens_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        chunk_text("words", 0)


# ---- document chunks and their weights -----------------------------------------------------


def long_sentence(n: int, word: str = "word") -> str:
    return " ".join(f"{word}{i}" for i in range(n)) + "."


def test_description_and_intro_weights_then_decay() -> None:
    readme = (
        "# Rocket\n\n"
        "Rocket is a fast web framework for Python.\n\n"
        "## Routing\n\nRoutes are declared with small decorators on functions.\n\n"
        "## Templates\n\nTemplates are rendered with a tiny built-in engine.\n\n"
        "## Testing\n\nA test client calls routes without a running server.\n"
    )
    chunks = document_chunks("A fast web framework", readme, max_tokens=32, count_tokens=count_words)
    assert [(c.source, c.weight) for c in chunks] == [
        ("description", 3.0),
        ("Rocket", 2.0),
        ("Routing", 1.0),
        ("Templates", 0.85),
        ("Testing", pytest.approx(0.85**2)),
    ]
    assert chunks[0].text == "A fast web framework"
    assert chunks[1].text == "Rocket is a fast web framework for Python."  # the opening: no heading prefix
    assert chunks[2].text == "Routing: Routes are declared with small decorators on functions."


def test_weights_are_settable() -> None:
    chunks = document_chunks(
        "Desc words",
        f"{PROSE}\n\n## More\n\n{PROSE}",
        description_weight=5.0,
        intro_weight=4.0,
        decay=0.5,
        count_tokens=count_words,
    )
    assert [(c.source, c.weight) for c in chunks] == [("description", 5.0), ("intro", 4.0), ("More", 1.0)]


def test_description_markup_is_stripped_and_at_most_two_chunks() -> None:
    chunks = document_chunks("[**Rocket**](https://x.example) web framework", "", count_tokens=count_words)
    assert [c.text for c in chunks] == ["Rocket web framework"]
    long_description = " ".join(long_sentence(10, f"s{k}x") for k in range(5))
    chunks = document_chunks(long_description, "", max_tokens=10, count_tokens=count_words)
    assert len(chunks) == 2
    assert all(c.source == "description" for c in chunks)


def test_short_section_skipped_and_the_next_prose_is_the_intro() -> None:
    readme = f"# Rocket\n\nEnglish | 中文\n\n## About\n\n{PROSE}\n"
    chunks = document_chunks("", readme, count_tokens=count_words)
    # "English 中文" is no sentence to judge; the first prose is the opening: intro weight, no prefix
    assert [(c.text, c.weight, c.source) for c in chunks] == [(PROSE, 2.0, "About")]
    assert len(PROSE.split()) >= MIN_PROSE_WORDS


def test_only_short_lines_fall_back_to_headings() -> None:
    chunks = document_chunks("", "# Rocket\n\nFast web framework\n", count_tokens=count_words)
    assert [(c.text, c.weight, c.source) for c in chunks] == [("Rocket Fast web framework", 1.0, "headings")]


def test_max_chunks_bounds_readme_chunks() -> None:
    readme = "\n\n".join(long_sentence(8, f"p{k}w") for k in range(40))
    chunks = document_chunks("Desc here", readme, max_tokens=8, max_chunks=5, count_tokens=count_words)
    assert [c.source for c in chunks] == ["description"] + ["intro"] * 5
    assert all(count_words(c.text) <= 8 for c in chunks)


def test_nothing_to_embed() -> None:
    assert document_chunks("", "") == []
    assert document_chunks("  ", "[![badge](https://b.example/x.svg)](https://b.example)\n") == []


def test_huge_readme_only_its_opening_is_read() -> None:
    # 250 000 characters of licence text, then prose: the prose lies past the 200 000 read
    huge = "## License\n\n" + "Permission is hereby granted to anyone.\n" * 6_250 + f"\n## About\n\n{PROSE}\n"
    assert len(huge) > 250_000
    assert document_chunks("", huge) == []
    in_reach = "## License\n\n" + huge[-5_000:]  # the same README, shortened
    assert [c.text for c in document_chunks("", in_reach)] == [PROSE]


def test_readme_of_only_headings_still_gives_a_chunk() -> None:
    chunks = document_chunks("", "# KubeEdge\n\n## Edge computing on Kubernetes\n")
    assert chunks and "KubeEdge" in chunks[0].text

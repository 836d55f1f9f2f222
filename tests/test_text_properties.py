"""Property tests: cleaning and chunking never crash, never lose all the words, respect the bound."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedtag.text import (
    approx_token_count,
    chunk_text,
    clean_sections,
    clean_text,
    document_chunks,
    readme_sections,
    sections_text,
)

WORD = re.compile(r"\w")

PROPERTY_SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)

# README-ish fragments, so that markup paths (fences, headings, links, HTML, tables) get exercised
FRAGMENTS = [
    "# ",
    "## ",
    "### License\n",
    "## Usage\n",
    "\n",
    "\n\n",
    "```",
    "~~~",
    "    ",
    "\t",
    "- ",
    "* ",
    "1. ",
    "> ",
    "| a | b |\n|---|---|\n",
    "[",
    "]",
    "(",
    ")",
    "![",
    "](",
    "<",
    ">",
    "<p>",
    "</p>",
    "<h2>",
    "</h2>",
    "<br>",
    "<!--",
    "-->",
    "<script>",
    "</script>",
    "`",
    "**",
    "_",
    "~~",
    "===\n",
    "---\n",
    "https://example.com/x ",
    "www.x.org ",
    "[1]: http://x\n",
    ".. image:: x\n",
    ":target: x\n",
    "&amp;",
    "&#x41;",
    "\r\n",
    "\x00",
    "\ufffd",
    "é",
    "中文",
    "Ελληνικά",
    "🚀",
    ". ",
    "! ",
    "? ",
    "。",
    "word",
    "Kubernetes",
    "Edge computing framework.",
    " ",
]

readme_text = st.one_of(
    st.text(max_size=600),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12)), max_size=80).map("".join),
)

# plain prose: words, spaces, sentence ends and line breaks, no markup at all
plain_word = st.text(alphabet=st.characters(categories=["L", "Nd"]), min_size=1, max_size=40)
plain_text = st.lists(
    st.tuples(plain_word, st.sampled_from([" ", "  ", ". ", "\n", "! ", ", "])), min_size=1, max_size=60
).map(lambda parts: "".join(w + sep for w, sep in parts))


def count_words(text: str) -> int:
    return len(text.split())


@PROPERTY_SETTINGS
@given(readme_text)
def test_clean_sections_never_crashes_and_keeps_only_wordy_lines(text: str) -> None:
    sections = clean_sections(text)
    for section in sections:
        assert section.text.strip()
        for line in section.text.split("\n"):
            assert WORD.search(line), line
    assert isinstance(clean_text(text), str)


@PROPERTY_SETTINGS
@given(plain_text)
def test_plain_prose_is_never_cleaned_away(text: str) -> None:
    sections = clean_sections(text)
    assert sections
    # every word of plain prose survives cleaning
    kept = set(re.findall(r"\w+", clean_text(text)))
    assert set(re.findall(r"\w+", text)) <= kept


@PROPERTY_SETTINGS
@given(readme_text, st.integers(min_value=2, max_value=64))
def test_chunk_text_bound_and_no_empty_chunk_approx_counter(text: str, max_tokens: int) -> None:
    # (2, not 1: the approximate counter gives a single non-ASCII character 2 tokens)
    chunks = chunk_text(text, max_tokens)
    for chunk in chunks:
        assert chunk.strip() and WORD.search(chunk)
        assert approx_token_count(chunk) <= max_tokens, (chunk, approx_token_count(chunk))
    if WORD.search(text):
        assert chunks


@PROPERTY_SETTINGS
@given(readme_text, st.integers(min_value=1, max_value=40))
def test_chunk_text_bound_and_no_empty_chunk_word_counter(text: str, max_tokens: int) -> None:
    chunks = chunk_text(text, max_tokens, count_words)
    for chunk in chunks:
        assert chunk.strip() and WORD.search(chunk)
        assert count_words(chunk) <= max_tokens
    if WORD.search(text):
        assert chunks


@PROPERTY_SETTINGS
@given(
    st.one_of(st.just(""), readme_text, plain_text),
    readme_text,
    st.integers(min_value=2, max_value=64),
    st.integers(min_value=1, max_value=20),
)
def test_document_chunks_never_crash_and_respect_bounds(
    description: str, readme: str, max_tokens: int, max_chunks: int
) -> None:
    chunks = document_chunks(description, readme, max_tokens=max_tokens, max_chunks=max_chunks)
    for chunk in chunks:
        assert chunk.text.strip() and WORD.search(chunk.text)
        assert approx_token_count(chunk.text) <= max_tokens
        assert chunk.weight > 0
    from_description = [c for c in chunks if c.source == "description"]
    assert len(from_description) <= 2
    assert len(chunks) - len(from_description) <= max_chunks
    if WORD.search(clean_text(readme)):  # words survive cleaning: never "nothing to tag"
        assert chunks


@PROPERTY_SETTINGS
@given(plain_text, st.integers(min_value=2, max_value=64))
def test_document_chunks_of_plain_prose_are_never_empty(text: str, max_tokens: int) -> None:
    assert document_chunks(text, "", max_tokens=max_tokens)  # as a description
    assert document_chunks("", text, max_tokens=max_tokens)  # as a README


@given(readme_text, st.integers(min_value=0, max_value=400))
def test_opening_from_sections_equals_the_cleaned_readme_cut(text: str, max_chars: int) -> None:
    """The tagger reuses chunking's sections for the keyword opening instead of cleaning twice."""
    sections = readme_sections(text)
    assert sections_text(sections, max_chars) == clean_text(text)[:max_chars]
    assert sections_text(sections) == clean_text(text)


@given(readme_text, st.text(max_size=80))
def test_document_chunks_with_given_sections_are_the_same(text: str, description: str) -> None:
    assert document_chunks(description, text, sections=readme_sections(text)) == document_chunks(description, text)

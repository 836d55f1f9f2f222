"""README cleaning and chunking: keep the prose that says what a project is, drop the rest."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# Sections whose body is boilerplate in nearly every README; they say nothing about the project.
BOILERPLATE_HEADINGS = re.compile(
    r"^(licen[cs]e|contribut\w*|contributors?|code of conduct|acknowledg\w*|thanks|credits|"
    r"sponsors?|backers?|supporters?|donat\w*|funding|star history|stargazers|changelog|"
    r"release notes|authors?|maintainers?|citation|cite|citing|security policy|support|"
    r"community|contact|faq|table of contents|contents|toc|star|stars|license & copyright)\b",
    re.IGNORECASE,
)

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_HTML_BLOCK_DROP = re.compile(r"<(script|style|svg|pre|code)\b.*?</\1\s*>", re.DOTALL | re.IGNORECASE)
_HTML_TAG = re.compile(r"</?[a-zA-Z][^<>]{0,2000}>")
# Spans are bounded and exclude their own delimiters, so unbalanced markup ("[[[[...") costs
# linear, not quadratic, time.
_IMAGE = re.compile(r"!\[([^\[\]\n]{0,500})\]\([^()\n]{0,2000}\)")
_LINKED_IMAGE = re.compile(r"\[\s*!\[[^\[\]\n]{0,500}\]\([^()\n]{0,2000}\)\s*\]\([^()\n]{0,2000}\)")
_REF_IMAGE = re.compile(r"!\[[^\[\]\n]{0,500}\]\[[^\[\]\n]{0,200}\]")
_LINK = re.compile(r"\[([^\[\]\n]{0,500})\]\([^()\n]{0,2000}\)")
_REF_LINK = re.compile(r"\[([^\[\]\n]{1,500})\]\[[^\[\]\n]{0,200}\]")
_LINK_DEF = re.compile(r"^[ \t]{0,3}\[[^\[\]\n]{1,500}\]:[ \t]*\S+.*$", re.MULTILINE)
_URL = re.compile(r"(https?|ftp)://\S+|www\.\S+")
_INLINE_CODE = re.compile(r"`([^`\n]*)`")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s*(.*?)\s*#*\s*$")
_SETEXT = re.compile(r"^\s*(=+|-+)\s*$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_LIST_OF_ANCHORS = re.compile(r"^\s*([-*+]|\d+\.)\s*\[[^\]]*\]\(#[^)]*\)\s*$")
_EMPHASIS = re.compile(r"(\*\*|__|\*|_|~~)(?=\S)(.{1,200}?)(?<=\S)\1")
_RST_DIRECTIVE = re.compile(r"^\s*\.\. [a-z-]+::.*$|^\s*:[a-z-]+:.*$", re.MULTILINE)
_SPACES = re.compile(r"[ \t\u00a0]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")
# Character ranges of the CJK scripts, as regex class bodies (`embedtag.language` counts them).
HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs (Chinese, and Japanese kanji)
KANA = "\u3040-\u30ff\u31f0-\u31ff"  # hiragana and katakana: only Japanese writes them
HANGUL = "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"
CJK_CHARS = HAN + KANA + HANGUL
_CJK = re.compile(f"[{CJK_CHARS}]")
_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+|\n+")
# In text that is mostly CJK (`dense` below; `embedtag.language.mostly_cjk`): Chinese and Japanese
# put no space after a full stop, so their sentence ends split on their own; Latin sentence ends
# still need the space after them ("e.g. this", "v1.2"). Text that is not mostly CJK is chunked
# exactly as before CJK support, so English READMEs keep their tags to the last digit.
_DENSE_SENTENCE_END = re.compile(r"(?<=[.!?。！？；])\s+|(?<=[。！？；])|\n+")
# Where a long CJK sentence can be cut when it has no spaces: after a comma, enumeration comma or colon.
_CJK_CLAUSE_END = re.compile(r"(?<=[，、：；,:])")
_WORD = re.compile(r"\w", re.UNICODE)
MIN_PROSE_WORDS = 5
# A Chinese word is one to two characters long: two CJK characters count as a word of prose.
CJK_CHARS_PER_WORD = 2
# In the keyword opening a CJK character counts as much text as this many Latin characters (a
# Chinese word is ~1.7 characters, an English one ~6 with its space): 600 characters of opening
# hold about as many words in either script.
CJK_CHAR_WIDTH = 3
# A description is one line; past this it is a README pasted in the wrong field.
MAX_DESCRIPTION_CHARS = 10_000
# Only the opening of a README is ever embedded; cleaning more would be wasted work.
MAX_README_CHARS = 200_000


@dataclass(frozen=True)
class Section:
    """A stretch of cleaned README text under one heading (`""` before the first heading)."""

    heading: str
    text: str


def _strip_inline(line: str) -> str:
    line = _LINKED_IMAGE.sub(" ", line)
    line = _IMAGE.sub(" ", line)
    line = _REF_IMAGE.sub(" ", line)
    line = _LINK.sub(r"\1", line)
    line = _REF_LINK.sub(r"\1", line)
    line = _URL.sub(" ", line)
    line = _INLINE_CODE.sub(r"\1", line)
    line = _EMPHASIS.sub(r"\2", line)
    line = _HTML_TAG.sub(" ", line)
    line = html.unescape(line)
    line = _CONTROL.sub(" ", line)
    return _SPACES.sub(" ", line).strip()


def clean_sections(readme: str) -> list[Section]:
    """Clean a Markdown/HTML/rst README into sections of plain prose.

    Drops code blocks, HTML markup, images and badges, link targets, bare URLs, tables of
    contents, link definitions and boilerplate sections (licence, contributing, sponsors...).
    """
    text = readme.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub(" ", text)
    text = _HTML_COMMENT.sub("\n", text)
    text = _FENCE.sub("\n", text)
    text = _HTML_BLOCK_DROP.sub("\n", text)
    text = _LINK_DEF.sub("", text)
    text = _RST_DIRECTIVE.sub("", text)
    # html headings become markdown headings so boilerplate detection sees them
    text = re.sub(
        r"<h([1-6])[^>]*>(.*?)</h\1\s*>",
        lambda m: "\n" + "#" * int(m.group(1)) + " " + m.group(2) + "\n",
        text,
        flags=re.IGNORECASE | re.DOTALL,
    )
    text = re.sub(r"<br\s*/?>|</p>|</div>|</h\d>|</li>", "\n", text, flags=re.IGNORECASE)
    text = _HTML_TAG.sub(" ", text)

    sections: list[Section] = []
    heading, skipping = "", False
    body: list[str] = []
    lines = text.split("\n")
    for i, raw in enumerate(lines):
        match = _HEADING.match(raw)
        next_line = lines[i + 1] if i + 1 < len(lines) else ""
        setext = bool(raw.strip()) and bool(_SETEXT.match(next_line)) and not raw.lstrip().startswith(("|", "-", "*"))
        if match or setext:
            if (body or heading) and not skipping:
                sections.append(Section(heading, "\n".join(body)))
            heading = _strip_inline(match.group(2) if match else raw)
            body = []
            skipping = bool(BOILERPLATE_HEADINGS.match(re.sub(r"^\W+", "", heading)))
            continue
        if skipping or _SETEXT.match(raw) or _TABLE_RULE.match(raw) or _LIST_OF_ANCHORS.match(raw):
            continue
        if raw.startswith(("    ", "\t")) and not raw.lstrip().startswith(("-", "*", "+")):
            continue  # indented code block
        line = _strip_inline(raw.replace("|", " "))
        line = re.sub(r"^([-*+>]|\d+[.)])\s+", "", line)
        if _WORD.search(line):
            body.append(line)
    if (body or heading) and not skipping:
        sections.append(Section(heading, "\n".join(body)))
    return [s for s in sections if _WORD.search(s.heading) or s.text]


def readme_sections(readme: str) -> list[Section]:
    """The cleaned sections of a README's first MAX_README_CHARS characters."""
    # Bound the text before cleaning: a 20 MB README must not cost 20 MB of regex work.
    return clean_sections((readme or "")[:MAX_README_CHARS])


def clean_text(readme: str) -> str:
    """The cleaned README as one string (headings kept as lines)."""
    return sections_text(clean_sections(readme))


def sections_text(sections: list[Section], max_chars: int | None = None) -> str:
    """Cleaned sections as one string (headings kept as lines), cut at `max_chars`."""
    parts: list[str] = []
    length = 0
    for section in sections:
        for part in (section.heading, section.text):
            if part:
                parts.append(part)
                length += len(part) + 1
        if max_chars is not None and length >= max_chars:
            break
    text = "\n".join(parts)
    return text if max_chars is None else text[:max_chars]


def opening_text(sections: list[Section], max_chars: int, dense: bool = False) -> str:
    """The start of the cleaned sections, `max_chars` wide; in a README that is mostly CJK
    (`dense`) a CJK character counts CJK_CHAR_WIDTH (Chinese says in 200 characters what English
    says in 600). Otherwise exactly `sections_text(sections, max_chars)`."""
    if not dense:
        return sections_text(sections, max_chars)
    wide = sections_text(sections, max_chars * CJK_CHAR_WIDTH)
    width = 0
    for end, char in enumerate(wide):
        width += CJK_CHAR_WIDTH if _CJK.match(char) else 1
        if width > max_chars:
            return wide[:end]
    return wide


def word_count(text: str) -> int:
    """Words of prose: whitespace-separated words, and CJK characters CJK_CHARS_PER_WORD to a
    word (CJK writes no spaces); for text without CJK exactly `len(text.split())`."""
    if text.isascii():
        return len(text.split())
    cjk = len(_CJK.findall(text))
    if not cjk:
        return len(text.split())
    return len(_CJK.sub(" ", text).split()) + cjk // CJK_CHARS_PER_WORD


def approx_token_count(text: str) -> int:
    """A conservative estimate of WordPiece tokens, used when no tokenizer is at hand."""
    count = 0
    for word in text.split():
        if not word.isascii() and _CJK.search(word):
            # BERT-style tokenizers make each CJK character a token of its own
            cjk = len(_CJK.findall(word))
            count += cjk + approx_token_count(_CJK.sub(" ", word))
            continue
        # long or non-ASCII words split into several word pieces; punctuation is its own token
        count += 1 + len(word) // 6 + sum(1 for ch in word if not ch.isalnum() or ord(ch) > 127)
    return count


def _words(piece: str, max_tokens: int, count: Callable[[str], int]) -> list[str]:
    """The piece's words; a CJK run too long for the window (CJK writes no spaces) is cut after
    its commas and colons first, so a cut falls between clauses rather than inside a word."""
    out: list[str] = []
    for word in piece.split():
        if not word.isascii() and _CJK.search(word) and count(word) > max_tokens:
            out.extend(part for part in _CJK_CLAUSE_END.split(word) if part)
        else:
            out.append(word)
    return out


def _split_long(piece: str, max_tokens: int, count: Callable[[str], int], dense: bool = False) -> list[str]:
    """Split a piece that alone exceeds the window: by words (in `dense` text also by CJK
    clauses), then by characters."""
    out: list[str] = []
    current: list[str] = []
    for word in _words(piece, max_tokens, count) if dense else piece.split():
        while count(word) > max_tokens:  # one enormous "word" (minified code, base64...)
            cut = max(1, len(word) // 2)
            while cut > 1 and count(word[:cut]) > max_tokens:
                cut //= 2
            head, word = word[:cut], word[cut:]
            if current:
                out.append(" ".join(current))
                current = []
            out.append(head)
        candidate = " ".join([*current, word])
        if current and count(candidate) > max_tokens:
            out.append(" ".join(current))
            current = [word]
        else:
            current.append(word)
    if current:
        out.append(" ".join(current))
    return out


def chunk_text(
    text: str,
    max_tokens: int = 128,
    count_tokens: Callable[[str], int] = approx_token_count,
    dense: bool = False,
) -> list[str]:
    """Pack sentences greedily into chunks of at most `max_tokens` tokens; `dense`: the text is
    mostly CJK, whose sentences end on 。！？； with no space after them.

    Never returns an empty chunk; returns at least one chunk whenever `text` has a word.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    pieces: list[str] = []
    for sentence in (_DENSE_SENTENCE_END if dense else _SENTENCE_END).split(text):
        sentence = sentence.strip()
        if not sentence or not _WORD.search(sentence):
            continue
        if count_tokens(sentence) > max_tokens:
            pieces.extend(_split_long(sentence, max_tokens, count_tokens, dense))
        else:
            pieces.append(sentence)
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        candidate = f"{current} {piece}" if current else piece
        if current and count_tokens(candidate) > max_tokens:
            chunks.append(current)
            current = piece
        else:
            current = candidate
    if current:
        chunks.append(current)
    return [c for c in chunks if _WORD.search(c)]


@dataclass(frozen=True)
class Chunk:
    """A piece of text to embed, with the weight its vote carries."""

    text: str
    weight: float
    source: str  # "description", "intro" or the section heading


def document_chunks(
    description: str,
    readme: str,
    max_tokens: int = 128,
    max_chunks: int = 16,
    count_tokens: Callable[[str], int] = approx_token_count,
    description_weight: float = 3.0,
    intro_weight: float = 2.0,
    decay: float = 0.85,
    sections: list[Section] | None = None,
    dense: bool = False,
) -> list[Chunk]:
    """The chunks embedtag embeds for one project, best signal first.

    The description and the README's opening carry the most weight (they say what a project
    *is*); later chunks decay geometrically, and only `max_chunks` are kept, which bounds the
    work for a 20 MB README. `sections` are the README's `readme_sections` when the caller
    already has them. `dense`: the README is mostly CJK (`embedtag.language.mostly_cjk`), so
    sentences split on CJK punctuation and CJK characters count as words of prose.
    """
    chunks: list[Chunk] = []
    description = _strip_inline((description or "")[:MAX_DESCRIPTION_CHARS])
    if _WORD.search(description):
        for piece in chunk_text(description, max_tokens, count_tokens, dense)[:2]:
            chunks.append(Chunk(piece, description_weight, "description"))
    if sections is None:
        sections = readme_sections(readme)
    budget = max_chunks
    position = 0
    for section in sections:
        if budget <= 0:
            break
        body = section.text
        if not body:
            continue
        if section.heading and position > 0:
            body = f"{section.heading}: {body}"
        for piece in chunk_text(body, max_tokens, count_tokens, dense):
            if budget <= 0:
                break
            if (word_count(piece) if dense else len(piece.split())) < MIN_PROSE_WORDS:
                continue  # a title, a badge caption, a language switcher: no sentence to judge
            weight = intro_weight if position == 0 else decay ** (position - 1)
            chunks.append(Chunk(piece, weight, section.heading or "intro"))
            position += 1
            budget -= 1
    if not chunks and sections:  # only short lines: use whatever words there are
        words = " ".join(f"{s.heading} {s.text}" for s in sections)
        for piece in chunk_text(words, max_tokens, count_tokens)[:1]:
            chunks.append(Chunk(piece, 1.0, "headings"))
    return chunks


def iter_words(texts: Iterable[str]) -> Iterable[str]:
    for text in texts:
        yield from re.findall(r"[a-z0-9][a-z0-9.+#-]*", text.lower())

"""The catalogue's LLM prompt, read back into its parts: description, README, expected JSON, tag list.

The prompt people send to a chat API looks like this (the seed, `examples/llm-prompt.txt`):

    base on {description} {README}", Assign "at most 3 tags" to the expected json:
    {"id":"1977","tags":[]} "only from the tags list I provide: [{"id":77,"name":"3d"}, ...]"
    returns me the "expected json"

`parse_prompt` finds the two JSON parts by the phrases that introduce them ("expected json",
"tags list"/"list of tags"), never by guessing from bare JSON, so a README that itself contains
JSON cannot be taken for them. What follows "base on"/"based on" up to the instructions is the
content; its first line holds the description, the README starts where the first line shows a
README opening (a heading, HTML, a badge) or on the next line. Curly quotes are read as straight
ones for the JSON, and kept as written in the README.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedtag.errors import EmbedtagError, TagListError
from embedtag.tags import Tag, parse_tags

if TYPE_CHECKING:
    from embedtag.tagger import TagResult

# A prompt holds a whole README plus the tag list; past this it is refused, never cut (a cut
# prompt loses the tag list at its end).
MAX_PROMPT_BYTES = 8 << 20


class PromptError(EmbedtagError):
    """The prompt is not the tagging prompt, or a part of it (tag list, expected JSON) is missing."""


PROMPT_SHAPE = (
    'the tagging prompt looks like: base on {description} {README}", Assign "at most 3 tags" to the '
    'expected json: {"id":"1977","tags":[]} "only from the tags list I provide: [{"id":77,"name":"3d"}, ...]"'
)

# One character each way, so positions in the normalised copy are positions in the original.
_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"', "\u2018": "'", "\u2019": "'"})

# "```json" (or "```") right before the JSON, and the closing fence after it.
_FENCE = r"\s*(?:```[a-zA-Z]*[ \t]*\r?\n?)?"
# The phrase before the expected JSON, then a few words ("format", ":", a quote) and the object.
_EXPECTED = re.compile(r"expected[\s_-]*json\b[^{}\[\]\n]{0,60}?" + _FENCE + r"\s*(?=\{)", re.IGNORECASE)
# The phrase before the tag list: "tags list", "tag list", "list of tags", "tags to choose from".
_TAG_LIST = re.compile(
    r"(?:\btags?[\s_-]*list\b|\blist\s+of\s+(?:the\s+)?(?:allowed\s+|available\s+)?tags\b|"
    r"\btags\s+(?:to\s+choose\s+from|available)\b)[^{}\[\]\n]{0,80}?" + _FENCE + r"\s*(?=\[)",
    re.IGNORECASE,
)
_OPENER = re.compile(r"\bbased?\s+on\b(?:[ \t]*:)?", re.IGNORECASE)
# Where the instructions start after the content: `", Assign "at most 3 tags" to the expected json`,
# `" only from the tags list`; a closing quote right before the word is preferred.
_INSTRUCTION = re.compile(r"(?:[\"\u201d]\s*,?\s*)?\b(?:assign|only|choose|pick|select)\b", re.IGNORECASE)
# A closing sentence after the content when the instructions came first.
_TRAILER = re.compile(
    r"""["'\s,.]*\b(?:and\s+)?(?:return|reply|respond|answer|give)\w*\b[^\n]{0,60}?expected[\s_-]*json["'\s.]*$""",
    re.IGNORECASE,
)
# What a README's first line starts with, seen after the description on the same line.
_README_START = re.compile(r"[ \t]+(?=#{1,6}\s|<[a-zA-Z!/]|!\[|\[!\[|\[[^\]\n]{1,80}\]\(|={3,}|\*\*|\.\.\s|>\s)")
_UNDERLINE = re.compile(r"[ \t]*(=+|-+)[ \t]*")


@dataclass(frozen=True)
class ParsedPrompt:
    """The parts of one tagging prompt."""

    description: str
    readme: str
    template: dict[str, Any]  # the expected JSON as given: its id and any other fields are kept
    tags: list[Tag]
    tag_list_json: list[Any] = field(default_factory=list, compare=False, repr=False)

    @property
    def id(self) -> str:
        """The template's id as a string (what `Tagger.tag` echoes); "" when it has none."""
        value = self.template.get("id", "")
        return value if isinstance(value, str) else json.dumps(value)

    def answer(self, result: TagResult, tag_format: str = "names") -> dict[str, Any]:
        """The expected JSON filled in: the template's fields in their order, `tags` set to the
        result's tags (names as the prompt's list spells them)."""
        out = dict(self.template)
        out["tags"] = result.to_json(tag_format)["tags"]
        return out


def _json_after(normalised: str, start: int, kind: type) -> tuple[Any, int] | None:
    """The JSON value of type `kind` that starts at `start`, and where it ends; None if it does not parse."""
    try:
        value, end = json.JSONDecoder().raw_decode(normalised, start)
    except json.JSONDecodeError:
        return None
    if not isinstance(value, kind):
        return None
    rest = re.match(r"[ \t]*\r?\n?[ \t]*```", normalised[end:])  # a closing code fence belongs to it
    return value, end + (rest.end() if rest else 0)


def _find_template(normalised: str) -> tuple[dict[str, Any], int, int]:
    for match in _EXPECTED.finditer(normalised):
        found = _json_after(normalised, match.end(), dict)
        if found is not None:
            return found[0], match.start(), found[1]
    raise PromptError(
        'no expected JSON found: write it after the words "expected json", e.g. '
        '"to the expected json: {"id":"1977","tags":[]}"'
    )


def _find_tag_list(normalised: str) -> tuple[list[Any], int, int]:
    for match in _TAG_LIST.finditer(normalised):
        found = _json_after(normalised, match.end(), list)
        if found is not None:
            return found[0], match.start(), found[1]
    raise PromptError(
        'no tag list found: write it after the words "tags list", e.g. '
        '"only from the tags list I provide: [{"id":77,"name":"3d"}, ...]"'
    )


def _instruction_start(text: str, start: int, end: int) -> int:
    """Where the instruction sentence before a JSON part begins ("Assign", "only from"...), else `end`.

    Looked for on the anchor's own line only (at most 300 characters back), so README words
    further up are never cut."""
    line_start = max(start, end - 300, text.rfind("\n", start, end) + 1)
    matches = list(_INSTRUCTION.finditer(text, line_start, end))
    quoted = [m for m in matches if m.group(0)[:1] in {'"', "\u201d"}]
    chosen = quoted or matches
    return chosen[0].start() if chosen else end


def _trim_content(content: str) -> str:
    """Drop a closing "returns me the expected json" and the seed's `", ` after the README.

    Only the tail is searched: a regex anchored at `$` over a whole README is quadratic."""
    head, tail = content[:-300], content[-300:]
    tail = _TRAILER.sub("", tail).rstrip()
    tail = tail.removesuffix(",").rstrip()
    if tail.endswith(('"', "\u201d")):  # the closing quote of the seed's `{README}", Assign`
        tail = tail[:-1]
    return head + tail


def split_content(content: str) -> tuple[str, str]:
    """`{description} {README}` → (description, README).

    The description is on the first line. An empty first line, or two spaces where the
    description would be (`base on  # Title`), means there is none. On the first line, the
    README starts at its first heading, HTML tag, badge or similar; a first line followed by a
    setext underline (`Title` / `=====`) is split where the title of that length begins.
    """
    if content[:1] in {'"', "\u201c"}:
        content = content[1:]
    if not content.strip():
        return "", ""
    first, newline, rest = content.partition("\n")
    if not first.strip():  # the content starts on the next line
        return "", rest
    if content.startswith((" ", "\t")):  # a second space where the description would be
        return "", content.lstrip(" \t")
    opening = _README_START.search(first)
    if opening is not None:
        cut = opening.start()
        return first[:cut], first[opening.end() :] + newline + rest
    underline = _UNDERLINE.fullmatch(rest.partition("\n")[0]) if newline else None
    if underline is not None:
        width = len(underline.group(1))
        title_start = len(first.rstrip()) - width
        if title_start > 0 and first[title_start - 1] == " ":
            return first[: title_start - 1], first[title_start:] + newline + rest
        return "", first + newline + rest
    return first, rest


def parse_prompt(text: str) -> ParsedPrompt:
    """Read a tagging prompt; raises `PromptError` (naming what is missing) when it is not one."""
    if not isinstance(text, str) or not text.strip():
        raise PromptError(f"the prompt is empty; {PROMPT_SHAPE}")
    normalised = text.translate(_QUOTES)
    tag_json, tags_start, tags_end = _find_tag_list(normalised)
    template, template_start, template_end = _find_template(normalised)
    try:
        tags = parse_tags(json.dumps(tag_json), "the prompt's tag list")
    except TagListError as exc:
        raise PromptError(str(exc)) from None
    parts = sorted([(tags_start, tags_end), (template_start, template_end)])
    opener = None
    for match in _OPENER.finditer(normalised):
        if not any(s <= match.start() < e for s, e in parts):
            opener = match
            break
    if opener is None:
        raise PromptError(f'no project text found: put it after "based on"; {PROMPT_SHAPE}')
    content_start = opener.end()
    following = [s for s, _ in parts if s >= content_start]
    content_end = min(following) if following else len(text)
    content_end = _instruction_start(normalised, content_start, content_end)
    raw = text[content_start:content_end]
    if raw.startswith(" "):
        raw = raw[1:]  # the one space after "base on"; a second one means "no description"
    description, readme = split_content(_trim_content(raw))
    return ParsedPrompt(description.strip(), readme, template, tags, tag_json)


def read_prompt(path: str | Path) -> str:
    """A prompt file as text (UTF-8, bad bytes replaced); a file over MAX_PROMPT_BYTES is refused."""
    from embedtag.records import read_file_bytes  # the README reader's: same one-line errors

    label = f"prompt file {Path(path)}"
    return decode_prompt(read_file_bytes(Path(path), MAX_PROMPT_BYTES + 1, label, PromptError), label)


def decode_prompt(data: bytes, source: str) -> str:
    if len(data) > MAX_PROMPT_BYTES:
        raise PromptError(f"{source} is over {MAX_PROMPT_BYTES} bytes; send one README per prompt")
    return data.decode("utf-8", errors="replace")

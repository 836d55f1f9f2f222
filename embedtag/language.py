"""Which script a README is written in: a cheap count of CJK characters against English words.

The bundled encoder was trained on English, so its similarities over Chinese prose are close to
noise; a README that is mostly Chinese has to be tagged on other evidence (keywords, cues, the
description). This module tells such READMEs apart, on the cleaned prose only: code blocks,
URLs, badges and markup would otherwise count as English words in any README.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from embedtag.text import (
    CJK_CHARS,
    HAN,
    HANGUL,
    KANA,
    MAX_DESCRIPTION_CHARS,
    Section,
    readme_sections,
    sections_text,
)

__all__ = [
    "CJK_CHARS", "MOSTLY_CJK", "ScriptCounts", "cjk_share", "has_cjk", "language_note", "mostly_chinese",
    "mostly_cjk", "prose", "readme_counts", "script_counts",
]

_HAN = re.compile(f"[{HAN}]")
_KANA = re.compile(f"[{KANA}]")
_HANGUL = re.compile(f"[{HANGUL}]")
_CJK = re.compile(f"[{CJK_CHARS}]")
# Two ASCII letters or more: English words and identifiers, not "v2" or a stray "x".
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")

# A README whose CJK share (CJK characters / (CJK characters + English words)) reaches this is
# "mostly CJK". On the dev set the 17 mostly-Chinese READMEs score 0.73-0.99; the English ones
# at most 0.51 (a README listing Japanese blog titles), then 0.35 (Chinese comments in a list of
# algorithms); a language switcher "简体中文" leaves an English README under 0.2.
MOSTLY_CJK = 0.6
# Japanese mixes kanji with kana; Chinese writes (almost) no kana. Above this share of kana among
# Han + kana characters, CJK text is taken for Japanese, not Chinese.
JAPANESE_KANA = 0.2
# Counting past the first 20,000 characters of prose changes no decision and costs time.
SAMPLE_CHARS = 20_000


@dataclass(frozen=True)
class ScriptCounts:
    """How many characters of each CJK script and how many English words a text has."""

    han: int
    kana: int
    hangul: int
    words: int

    @property
    def cjk(self) -> int:
        return self.han + self.kana + self.hangul

    @property
    def share(self) -> float:
        """CJK characters against CJK characters + English words (0 for a text with neither)."""
        total = self.cjk + self.words
        return self.cjk / total if total else 0.0

    @property
    def chinese(self) -> bool:
        """Mostly CJK, and the CJK is Chinese: Han characters, (almost) no kana, no hangul."""
        return (
            self.share >= MOSTLY_CJK
            and self.kana <= JAPANESE_KANA * (self.han + self.kana)
            and self.hangul < self.han
        )


def script_counts(text: str) -> ScriptCounts:
    """Count scripts in `text` as given (already cleaned prose: see `prose`)."""
    return ScriptCounts(
        han=len(_HAN.findall(text)),
        kana=len(_KANA.findall(text)),
        hangul=len(_HANGUL.findall(text)),
        words=len(_LATIN_WORD.findall(text)),
    )


def prose(description: str, readme: str, sections: list[Section] | None = None) -> str:
    """The description and the README's cleaned prose (no code, URLs, badges or markup), cut at
    SAMPLE_CHARS; `sections` are `readme_sections(readme)` when the caller already has them."""
    if sections is None:
        sections = readme_sections(readme)
    return f"{(description or '')[:MAX_DESCRIPTION_CHARS]}\n{sections_text(sections, SAMPLE_CHARS)}"


def readme_counts(description: str, readme: str, sections: list[Section] | None = None) -> ScriptCounts:
    """`script_counts` of a project's description and cleaned README."""
    return script_counts(prose(description, readme, sections))


def cjk_share(readme: str, description: str = "") -> float:
    """Share of CJK characters against CJK characters + English words in a README's prose
    (markup and code left out): 0 for English, near 1 for a README written in Chinese."""
    return readme_counts(description, readme).share


def mostly_cjk(share: float) -> bool:
    """Whether a CJK share (`cjk_share`, `Evidence.cjk`) makes a README mostly CJK."""
    return share >= MOSTLY_CJK


def mostly_chinese(description: str, readme: str, sections: list[Section] | None = None) -> bool:
    """Whether a project's description and README are mostly written in Chinese."""
    return readme_counts(description, readme, sections).chinese


def has_cjk(text: str) -> bool:
    """Whether `text` has any CJK character (cheap: stops at the first)."""
    return _CJK.search(text) is not None


def language_note(cjk: float, chinese: bool) -> str | None:
    """What `--explain` and the review page say about a README of CJK share `cjk` (mostly
    Chinese when `chinese`); None for one that is not mostly CJK."""
    if not mostly_cjk(cjk):
        return None
    which = "Chinese" if chinese else "CJK (Japanese or Korean)"
    return (
        f"README mostly {which} (CJK {cjk:.2f}): similarity to tag texts is weak here; "
        "tags rest more on keywords (Chinese names of the tags too), cues, the description and the tag head"
    )

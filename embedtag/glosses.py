"""Glosses: the short texts that stand for a tag in the index (name, aliases, one-line meanings)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from embedtag.errors import GlossError
from embedtag.tags import Tag

# Short names a sentence encoder cannot read on its own.
ABBREVIATIONS: dict[str, str] = {
    "3d": "3D graphics",
    "ai": "artificial intelligence",
    "api": "API",
    "aws": "Amazon Web Services AWS",
    "cicd": "continuous integration and delivery CI/CD",
    "ci": "continuous integration",
    "cd": "continuous delivery",
    "cli": "command-line tool",
    "cms": "content management system",
    "crm": "customer relationship management",
    "db": "database",
    "dev": "developer",
    "exp": "experience",
    "gui": "graphical user interface",
    "iac": "infrastructure as code",
    "ide": "integrated development environment",
    "iot": "Internet of Things",
    "js": "JavaScript",
    "json": "JSON",
    "julian": "Julia programming language",
    "k8s": "Kubernetes",
    "lib": "library",
    "lms": "learning management system",
    "llm": "large language model",
    "ml": "machine learning",
    "nosql": "NoSQL database",
    "orm": "object-relational mapper ORM",
    "os": "operating system",
    "sdk": "software development kit SDK",
    "ts": "TypeScript",
    "ui": "user interface",
    "ux": "user experience",
    "yaml": "YAML",
}


@dataclass(frozen=True)
class TagGlosses:
    """What a tag means, as texts to embed."""

    expansion: str
    glosses: tuple[str, ...]
    aliases: tuple[str, ...] = field(default=())
    # regular expressions over the raw README (code included) that hint at the tag, e.g.
    # `pip install x` for a library; case-insensitive, multiline
    cues: tuple[str, ...] = field(default=())
    generated: bool = False
    # the tag says what form a project takes (a library, a CLI, an app...) rather than what it is
    # about; a README is usually one form, so form tags are ranked against each other
    # (`scoring.ranker_features`)
    form: bool = False

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "expansion": self.expansion,
            "aliases": list(self.aliases),
            "glosses": list(self.glosses),
        }
        if self.cues:
            data["cues"] = list(self.cues)
        if self.form:
            data["form"] = True
        if self.generated:
            data["generated"] = True
        return data


def expand_name(key: str) -> str:
    """`k8s` → `Kubernetes`, `dev-exp-lib` → `developer experience library`."""
    whole = ABBREVIATIONS.get(key.lower())
    if whole:
        return whole
    words = [w for w in re.split(r"[-_\s/.]+", key) if w]
    return " ".join(ABBREVIATIONS.get(w.lower(), w) for w in words) or key


def generate_glosses(key: str) -> TagGlosses:
    """Glosses made from the name alone, for tags nobody wrote glosses for (review them)."""
    expansion = expand_name(key)
    return TagGlosses(
        expansion=expansion,
        glosses=(
            f"A software project about {expansion}.",
            f"An open-source {expansion} tool or library.",
            f"This repository is related to {expansion}.",
        ),
        generated=True,
    )


def _parse_entry(key: str, value: Any, source: str) -> TagGlosses:
    if isinstance(value, str):
        value = {"glosses": [value]}
    if isinstance(value, list):
        value = {"glosses": value}
    if not isinstance(value, dict):
        raise GlossError(f"{source}: entry {key!r} must be an object with 'glosses'")

    def strings(field_name: str, raw: Any) -> list[str]:
        if raw is None:
            return []
        if isinstance(raw, str):
            return [raw]
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            raise GlossError(f"{source}: '{field_name}' of {key!r} must be a string or a list of strings")
        return raw

    glosses = strings("glosses", value.get("glosses", value.get("gloss")))
    aliases = strings("aliases", value.get("aliases"))
    cues = strings("cues", value.get("cues"))
    for cue in cues:
        try:
            re.compile(cue)
        except re.error as exc:
            raise GlossError(f"{source}: cue {cue!r} of {key!r} is not a valid regular expression ({exc})") from None
    form = value.get("form", False)
    if not isinstance(form, bool):
        raise GlossError(f"{source}: 'form' of {key!r} must be true or false")
    expansion = value.get("expansion") or expand_name(key)
    return TagGlosses(
        expansion=str(expansion),
        glosses=tuple(g.strip() for g in glosses if g.strip()),
        aliases=tuple(a.strip() for a in aliases if a.strip()),
        cues=tuple(c for c in cues if c),
        generated=bool(value.get("generated", False)),
        form=form,
    )


def parse_glosses(text: str, source: str = "gloss file") -> dict[str, TagGlosses]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GlossError(f"{source} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise GlossError(f'{source} must be a JSON object like {{"k8s": {{"glosses": [...]}}}}')
    return {str(k).strip(): _parse_entry(str(k).strip(), v, source) for k, v in data.items()}


def default_glosses_path() -> Path:
    return Path(str(resources.files("embedtag") / "data" / "glosses.json"))


def language_glosses_paths() -> list[Path]:
    """The shipped glosses in other languages, `glosses.<language>.json` beside `glosses.json`
    (`glosses.zh.json`: Chinese), in name order. Each is a gloss file of its own."""
    return sorted(default_glosses_path().parent.glob("glosses.*.json"))


def merge_glosses(base: dict[str, TagGlosses], extra: dict[str, TagGlosses]) -> dict[str, TagGlosses]:
    """`base` with `extra`'s aliases, glosses and cues added after its own (a language's names
    for the same tags); expansion and form stay `base`'s. A tag only `extra` has is taken as is."""
    merged = dict(base)
    for key, more in extra.items():
        known = merged.get(key)
        if known is None:
            merged[key] = more
            continue
        merged[key] = replace(
            known,
            aliases=tuple(dict.fromkeys([*known.aliases, *more.aliases])),
            glosses=tuple(dict.fromkeys([*known.glosses, *more.glosses])),
            cues=tuple(dict.fromkeys([*known.cues, *more.cues])),
        )
    return merged


def _read_glosses(p: Path) -> dict[str, TagGlosses]:
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GlossError(f"gloss file {p} does not exist; make one with `embedtag glosses`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GlossError(f"gloss file {p} cannot be read: {exc}") from None
    return parse_glosses(text, f"gloss file {p}")


def load_glosses(path: str | Path | None = None) -> dict[str, TagGlosses]:
    """Read a gloss file; `None` gives the curated glosses shipped for the default tag list, with
    the shipped glosses in other languages (`language_glosses_paths`) merged in."""
    if path is not None:
        return _read_glosses(Path(path))
    glosses = _read_glosses(default_glosses_path())
    for extra in language_glosses_paths():
        glosses = merge_glosses(glosses, _read_glosses(extra))
    return glosses


def resolve_glosses(tags: list[Tag], glosses: dict[str, TagGlosses]) -> dict[str, TagGlosses]:
    """Glosses for every tag: the tag list's own fields first, then the gloss file, then generated."""
    resolved: dict[str, TagGlosses] = {}
    for tag in tags:
        known = glosses.get(tag.key) or glosses.get(tag.key.lower())
        if tag.glosses or tag.aliases:
            base = known or generate_glosses(tag.key)
            resolved[tag.key] = TagGlosses(
                expansion=base.expansion,
                glosses=tag.glosses or base.glosses,
                aliases=tuple(dict.fromkeys([*tag.aliases, *base.aliases])),
                cues=base.cues,
                generated=not tag.glosses and base.generated,
                form=base.form,
            )
        else:
            resolved[tag.key] = known or generate_glosses(tag.key)
    return resolved


@dataclass(frozen=True)
class TagText:
    """One text in the index and the tag it stands for."""

    tag_id: int
    kind: str  # "name", "alias", "gloss" or "example"
    text: str


def tag_texts(tags: list[Tag], glosses: dict[str, TagGlosses]) -> list[TagText]:
    """Every text embedded for a tag list, in a stable order."""
    resolved = resolve_glosses(tags, glosses)
    texts: list[TagText] = []
    for tag in tags:
        g = resolved[tag.key]
        name_text = tag.key if g.expansion.lower() == tag.key.lower() else f"{tag.key}: {g.expansion}"
        texts.append(TagText(tag.id, "name", name_text))
        for alias in g.aliases:
            texts.append(TagText(tag.id, "alias", f"{alias} ({g.expansion})"))
        for gloss in g.glosses:
            texts.append(TagText(tag.id, "gloss", gloss))
    return texts


def glosses_document(tags: list[Tag], glosses: dict[str, TagGlosses]) -> dict[str, Any]:
    """The gloss file for a tag list: curated where known, generated (and marked) elsewhere."""
    resolved = resolve_glosses(tags, glosses)
    return {tag.key: resolved[tag.key].to_json() for tag in tags}


def tag_keywords(tags: list[Tag], glosses: dict[str, TagGlosses]) -> dict[int, list[str]]:
    """Words that, written in a README's opening, name the tag outright: name, expansion, aliases."""
    resolved = resolve_glosses(tags, glosses)
    out: dict[int, list[str]] = {}
    for tag in tags:
        g = resolved[tag.key]
        terms = [tag.key, g.expansion, *g.aliases]
        out[tag.id] = list(dict.fromkeys(t for t in terms if len(t.strip()) >= 2))
    return out


def tag_cues(tags: list[Tag], glosses: dict[str, TagGlosses]) -> dict[int, list[str]]:
    """The README cue patterns of each tag that has any."""
    resolved = resolve_glosses(tags, glosses)
    return {tag.id: list(resolved[tag.key].cues) for tag in tags if resolved[tag.key].cues}


def form_tags(tags: list[Tag], glosses: dict[str, TagGlosses]) -> list[int]:
    """Ids of the tags whose glosses mark them as a project form (`TagGlosses.form`)."""
    resolved = resolve_glosses(tags, glosses)
    return [tag.id for tag in tags if resolved[tag.key].form]

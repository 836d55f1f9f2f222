"""The tag list: the user's `[{"id": 77, "name": "3d"}, ...]` format."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from embedtag.errors import TagListError


@dataclass(frozen=True)
class Tag:
    """One tag. `name` is spelled exactly as the list spells it (output repeats it verbatim);
    `key` is the trimmed name used for matching and embedding."""

    id: int
    name: str
    glosses: tuple[str, ...] = field(default=(), compare=False)
    aliases: tuple[str, ...] = field(default=(), compare=False)

    @property
    def key(self) -> str:
        return self.name.strip()

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}


def default_tags_path() -> Path:
    return Path(str(resources.files("embedtag") / "data" / "tags.json"))


def _string_list(value: Any, what: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TagListError(f"{where}: '{what}' must be a string or a list of strings")
    return tuple(v.strip() for v in value if v.strip())


def parse_tags(text: str, source: str = "tag list") -> list[Tag]:
    """Parse and validate a tag list given as JSON text."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TagListError(
            f'{source} is not valid JSON ({exc.msg} at line {exc.lineno}); expected [{{"id": 77, "name": "3d"}}, ...]'
        ) from None
    if not isinstance(data, list):
        raise TagListError(f'{source} must be a JSON list like [{{"id": 77, "name": "3d"}}, ...]')
    if not data:
        raise TagListError(f"{source} is empty; give at least one tag")
    tags: list[Tag] = []
    seen_ids: dict[int, int] = {}
    seen_keys: dict[str, int] = {}
    for position, entry in enumerate(data, start=1):
        where = f"{source}, entry {position}"
        if not isinstance(entry, dict):
            raise TagListError(f'{where} is not an object like {{"id": 77, "name": "3d"}}')
        if "id" not in entry or "name" not in entry:
            missing = "id" if "id" not in entry else "name"
            raise TagListError(f"{where} has no '{missing}'; every tag needs an id and a name")
        tag_id, name = entry["id"], entry["name"]
        if isinstance(tag_id, str) and re.fullmatch(r"-?\d+", tag_id.strip(), re.ASCII):
            tag_id = int(tag_id)
        if isinstance(tag_id, bool) or not isinstance(tag_id, int):
            raise TagListError(f"{where}: id must be an integer, got {tag_id!r}")
        if not isinstance(name, str) or not name.strip():
            raise TagListError(f"{where}: name must be a non-empty string, got {name!r}")
        key = name.strip()
        if tag_id in seen_ids:
            raise TagListError(f"{source}: id {tag_id} is used twice (entries {seen_ids[tag_id]} and {position})")
        if key.lower() in seen_keys:
            raise TagListError(
                f"{source}: name {key!r} is used twice (entries {seen_keys[key.lower()]} and "
                f"{position}, compared after trimming)"
            )
        seen_ids[tag_id] = position
        seen_keys[key.lower()] = position
        tags.append(
            Tag(
                id=tag_id,
                name=name,
                glosses=_string_list(entry.get("gloss", entry.get("glosses")), "gloss", where),
                aliases=_string_list(entry.get("aliases"), "aliases", where),
            )
        )
    return tags


def load_tags(path: str | Path | None = None) -> list[Tag]:
    """Load a tag list from a file; `None` gives the default list, `-` reads stdin."""
    if path is None:
        path = default_tags_path()
    if str(path) == "-":
        import sys

        return parse_tags(sys.stdin.read(), "tag list on stdin")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TagListError(f"tag list {p} does not exist; pass a JSON file of tags") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TagListError(f"tag list {p} cannot be read: {exc}") from None
    return parse_tags(text, f"tag list {p}")


def tags_fingerprint(tags: list[Tag]) -> str:
    """A hash of ids and names as spelled, so an index knows which list it was built for."""
    import hashlib

    payload = json.dumps([[t.id, t.name] for t in tags], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]

"""Reading READMEs and JSONL records: every input line yields exactly one outcome."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedtag.errors import EmbedtagError, InputError
from embedtag.tagger import Document

# Past this many bytes a README is read only in part: only the opening is ever embedded.
MAX_README_BYTES = 1 << 20


def decode_readme(data: bytes, source: str) -> str:
    """UTF-8 with replacement; a file that is mostly not text is refused."""
    head = data[:8192]
    if head:
        binary = sum(1 for b in head if b < 9 or 13 < b < 32) / len(head)
        if binary > 0.1:
            raise InputError(f"{source} looks like a binary file, not a README; pass a text file")
    return data.decode("utf-8", errors="replace")


def read_file_bytes(path: Path, limit: int, label: str, error: type[EmbedtagError] = InputError) -> bytes:
    """At most `limit` bytes of a file; a missing, directory or unreadable path is one `error` line
    starting with `label` (e.g. "README x.md")."""
    try:
        with path.open("rb") as handle:
            return handle.read(limit)
    except FileNotFoundError:
        raise error(f"{label} does not exist") from None
    except IsADirectoryError:
        raise error(f"{label} is a directory; pass a file") from None
    except OSError as exc:
        raise error(f"{label} cannot be read: {exc.strerror}") from None


def read_readme(path: str | Path) -> str:
    label = f"README {Path(path)}"
    return decode_readme(read_file_bytes(Path(path), MAX_README_BYTES, label), label)


def _valid_unicode(text: str) -> str:
    """JSON may carry lone surrogates ("\\ud800") that no encoder or tokenizer accepts."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


@dataclass(frozen=True)
class Record:
    """One input line: a document to tag, or the reason it cannot be tagged."""

    line: int
    id: str | None
    document: Document | None = None
    error: str | None = None


def parse_record(line_text: str, line: int, base_dir: Path) -> Record:
    try:
        data = json.loads(line_text)
    except json.JSONDecodeError as exc:
        return Record(line, None, error=f"line {line} is not valid JSON ({exc.msg})")
    except (ValueError, RecursionError) as exc:  # absurd nesting or a 5,000-digit number
        return Record(line, None, error=f"line {line} is not usable JSON ({type(exc).__name__})")
    if not isinstance(data, dict):
        return Record(line, None, error=f"line {line} is not a JSON object")
    raw_id = data.get("id")
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        return Record(line, None, error=f"line {line} has no 'id'")
    if not isinstance(raw_id, str | int) or isinstance(raw_id, bool):
        return Record(line, None, error=f"line {line}: 'id' must be a string or an integer")
    record_id = _valid_unicode(str(raw_id))
    description = data.get("description") or ""
    if not isinstance(description, str):
        return Record(line, record_id, error=f"line {line}: 'description' must be a string")
    if "readme" in data and data["readme"] is not None:
        readme = data["readme"]
        if not isinstance(readme, str):
            return Record(line, record_id, error=f"line {line}: 'readme' must be a string")
    elif data.get("readme_path") or data.get("readme_file"):
        # `readme_file` is what the user's own example (examples/kubeedge.json) calls it
        path = Path(str(data.get("readme_path") or data["readme_file"]))
        if not path.is_absolute():
            path = base_dir / path
        try:
            readme = read_readme(path)
        except InputError as exc:
            return Record(line, record_id, error=str(exc))
    elif description.strip():
        readme = ""
    else:
        return Record(line, record_id, error=f"line {line} has no 'readme', 'readme_path' or 'description'")
    return Record(line, record_id, Document(record_id, _valid_unicode(readme), _valid_unicode(description)))


def read_records(path: str | Path, skip: int = 0) -> Iterator[Record]:
    """Records of a JSONL file (or `-` for stdin), in order; blank lines are not records.

    `skip` passes over that many records (for resuming an interrupted run)."""
    import sys

    if str(path) == "-":
        stream = sys.stdin.buffer
        base = Path.cwd()
    else:
        p = Path(path)
        try:
            stream = p.open("rb")
        except OSError as exc:
            raise InputError(f"input {p} cannot be read: {exc.strerror}") from None
        base = p.parent
    try:
        seen = 0
        for number, raw in enumerate(stream, start=1):
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            seen += 1
            if seen <= skip:
                continue
            yield parse_record(text, number, base)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def completed_results(output: Path) -> list[dict[str, Any]]:
    """The whole result lines an interrupted run left; a torn last line is cut off the file."""
    if not output.exists():
        return []
    data = output.read_bytes()
    keep = data[: data.rfind(b"\n") + 1]
    results: list[dict[str, Any]] = []
    lines = keep.splitlines(keepends=True)
    for raw in lines:
        try:
            results.append(json.loads(raw))
        except ValueError:
            break
    kept = b"".join(lines[: len(results)])
    if kept != data:
        output.write_bytes(kept)
    return results


@dataclass(frozen=True)
class LabelledRecord:
    """A document with gold tags (trimmed names): `core` are the tags to assign, `also` defensible."""

    document: Document
    core: tuple[str, ...]
    also: tuple[str, ...] = ()


def read_labelled(path: str | Path, known_tags: set[str] | None = None) -> list[LabelledRecord]:
    """Read gold JSONL (id, description, readme, core, also); a bad line is an error naming it."""
    p = Path(path)
    out: list[LabelledRecord] = []
    try:
        lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise InputError(f"labelled file {p} cannot be read: {exc.strerror}") from None
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        record = parse_record(text, number, p.parent)
        if record.document is None:
            raise InputError(f"{p}: {record.error}")
        data = json.loads(text)
        core, also = data.get("core"), data.get("also", [])
        if not isinstance(core, list) or not all(isinstance(t, str) for t in [*core, *(also or [])]):
            raise InputError(f"{p}: line {number} needs 'core' as a list of tag names")
        core_t = tuple(t.strip() for t in core)
        also_t = tuple(t.strip() for t in also or [])
        if known_tags is not None:
            unknown = [t for t in (*core_t, *also_t) if t not in known_tags]
            if unknown:
                raise InputError(f"{p}: line {number} uses tags not in the tag list: {', '.join(unknown)}")
        out.append(LabelledRecord(record.document, core_t, also_t))
    if not out:
        raise InputError(f"labelled file {p} has no records")
    return out

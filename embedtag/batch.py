"""Batch tagging of a JSONL file: one output line per input record, in order, resumable."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from embedtag.errors import InputError
from embedtag.records import Record, completed_results, read_records
from embedtag.tagger import Tagger


@dataclass
class BatchSummary:
    written: int = 0
    failed: int = 0
    skipped: int = 0  # lines kept from an earlier run (--resume)
    duplicate_ids: list[str] = field(default_factory=list)

    def line(self) -> str:
        parts = [f"{self.written} records tagged", f"{self.failed} failed"]
        if self.skipped:
            parts.append(f"{self.skipped} kept from the earlier run")
        if self.duplicate_ids:
            shown = ", ".join(self.duplicate_ids[:5])
            parts.append(f"{len(self.duplicate_ids)} duplicate ids ({shown})")
        return "embedtag batch: " + "; ".join(parts)


def _error_line(record: Record) -> dict[str, object]:
    return {"id": record.id, "tags": [], "error": record.error, "line": record.line}


def tag_records(
    tagger: Tagger, records: Iterator[Record], batch_size: int = 64, tag_format: str = "names"
) -> Iterator[tuple[Record, dict[str, object]]]:
    """Output objects for records, in input order; good records are encoded in batches."""
    pending: list[Record] = []

    def flush() -> Iterator[tuple[Record, dict[str, object]]]:
        docs = [r.document for r in pending if r.document is not None]
        results = iter(tagger.tag_many(docs, batch_size=max(len(docs), 1)))
        for record in pending:
            if record.document is None:
                yield record, _error_line(record)
            else:
                yield record, next(results).to_json(tag_format)
        pending.clear()

    for record in records:
        pending.append(record)
        if len(pending) >= batch_size:
            yield from flush()
    if pending:
        yield from flush()


def run_batch(
    tagger: Tagger,
    input_path: str | Path,
    output_path: str | Path | None,
    batch_size: int = 64,
    resume: bool = False,
    tag_format: str = "names",
    progress: bool = False,
) -> BatchSummary:
    summary = BatchSummary()
    skip = 0
    seen_before: list[str] = []
    out: IO[str]
    if output_path is not None:
        target = Path(output_path)
        if resume:
            kept = completed_results(target)
            skip = summary.skipped = len(kept)
            # the earlier part counts too: its failures set the exit code, its ids can repeat
            summary.failed = sum(1 for r in kept if isinstance(r, dict) and "error" in r)
            seen_before = [str(r["id"]) for r in kept if isinstance(r, dict) and r.get("id") is not None]
        try:
            out = target.open("a" if resume else "w", encoding="utf-8")
        except OSError as exc:
            raise InputError(f"output {target} cannot be written: {exc.strerror}") from None
    else:
        out = sys.stdout
    seen: Counter[str] = Counter(seen_before)
    summary.duplicate_ids = [i for i, n in seen.items() if n > 1]
    records = read_records(input_path, skip=skip)
    bar = None
    if progress:
        import click

        bar = click.progressbar(length=0, label="tagging", file=sys.stderr, show_pos=True)
    try:
        for record, line in tag_records(tagger, records, batch_size, tag_format):
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
            summary.written += 1
            summary.failed += "error" in line
            if record.id is not None:
                seen[record.id] += 1
                if seen[record.id] == 2:
                    summary.duplicate_ids.append(record.id)
            if bar is not None:
                bar.update(1)
            if summary.written % batch_size == 0:
                out.flush()
    finally:
        if bar is not None:
            bar.render_finish()
        if out is not sys.stdout:
            out.close()
        else:
            out.flush()
    return summary

"""Does the prompt path tag exactly like the batch path? Every dev item, written as a prompt.

Each item of the dev set becomes a prompt in the seed's form (`base on {description} {README}",
Assign "at most 3 tags" to the expected json: {"id": ...,"tags":[]} "only from the tags list I
provide: [...]" returns me the "expected json"`, with the default tag list), goes through
`parse_prompt` and the tagger the prompt's list selects (`IndexCache`: the shipped index), and is
compared with `Tagger.tag_many` on the same items (what `embedtag batch` runs). Writes a Markdown
report with the agreement and every disagreement.

    .venv/bin/python scripts/prompt_agreement.py ../shared/data/dev/items.jsonl -o benchmarks/prompt_agreement.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness import REPO, load_avg, md_table, read_jsonl, seed_prompt, timed

sys.path.insert(0, str(REPO))

from embedtag.index_cache import IndexCache
from embedtag.prompt import parse_prompt
from embedtag.tagger import Document, Tagger
from embedtag.tags import default_tags_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("items", type=Path, help="JSONL: id, description, readme")
    parser.add_argument("-o", "--output", type=Path, help="Markdown report [default: stdout]")
    parser.add_argument("--index", help="index directory [default: the shipped index]")
    parser.add_argument("--limit", type=int, default=None, help="only the first N items (quick runs)")
    args = parser.parse_args()

    rows = read_jsonl(args.items, args.limit)
    tag_list = json.dumps(json.loads(default_tags_path().read_text(encoding="utf-8")), separators=(",", ":"))
    tagger = Tagger.load(args.index)
    cache = IndexCache(tagger, use_disk=False)
    docs = [Document(str(r["id"]), r.get("readme") or "", r.get("description") or "") for r in rows]

    batch, batch_s = timed(lambda: [[t.name for t in res.tags] for res in tagger.tag_many(docs)])

    via_prompt: list[list[str]] = []
    sources: dict[str, int] = {}
    split_exact = 0

    def one(row: dict[str, Any], doc: Document) -> list[str]:
        nonlocal split_exact
        parsed = parse_prompt(seed_prompt(doc.description, doc.readme, doc.id, tag_list))
        split_exact += parsed.description == doc.description.strip() and parsed.readme.strip() == doc.readme.strip()
        list_tagger, source = cache.tagger_for(parsed.tags)
        sources[source] = sources.get(source, 0) + 1
        result = list_tagger.tag(parsed.readme, parsed.description, parsed.id)
        answer = parsed.answer(result)
        assert answer["id"] == row["id"], (answer, row["id"])
        return list(answer["tags"])

    via_prompt, prompt_s = timed(lambda: [one(row, doc) for row, doc in zip(rows, docs, strict=True)])

    same = sum(a == b for a, b in zip(batch, via_prompt, strict=True))
    differ = [(d.id, a, b) for d, a, b in zip(docs, batch, via_prompt, strict=True) if a != b]
    lines = [
        "# Prompt path vs batch path: agreement on the dev set",
        "",
        f"Each of the {len(rows)} items of `{args.items.name}` was written as a prompt in the seed's form",
        "(`../shared/data/examples/llm-prompt.txt`: `base on {description} {README}\", Assign",
        "\"at most 3 tags\" to the expected json: {\"id\": ...,\"tags\":[]} \"only from the tags list I",
        "provide: [...]\" returns me the \"expected json\"`, with the default tag list), read back with",
        "`embedtag.prompt.parse_prompt`,",
        "and tagged by the tagger the prompt's tag list selects. The same items went through",
        "`Tagger.tag_many` (what `embedtag batch` runs).",
        "",
        *md_table(["what", "value"], [
            ["items", len(rows)],
            ["same tags, same order", f"**{same} / {len(rows)} ({100 * same / len(rows):.1f}%)**"],
            ["description and README read back exactly", f"{split_exact} / {len(rows)}"],
            ["index the prompt's list selected", ", ".join(f"{k}: {v}" for k, v in sorted(sources.items()))],
            ["items with at least one tag", sum(1 for t in batch if t)],
            ["time, batch path / prompt path (one by one)", f"{batch_s:.1f} s / {prompt_s:.1f} s"],
            ["1-minute load average at the end (2 cores, shared machine)", f"{load_avg():.2f}"],
        ]),
        "",
        "Reproduce:",
        "",
        "```sh",
        f".venv/bin/python scripts/prompt_agreement.py {args.items} -o benchmarks/prompt_agreement.md",
        "```",
        "",
    ]
    if differ:
        lines += ["## Disagreements", "", *md_table(["id", "batch", "prompt"], differ)]
        lines.append("")
    report = "\n".join(lines)
    if args.output:
        args.output.write_text(report, encoding="utf-8")
    print(report if not args.output else f"{same}/{len(rows)} agree; wrote {args.output}")
    if differ:
        sys.exit(1)


if __name__ == "__main__":
    main()

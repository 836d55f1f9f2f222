"""Latency of `POST /v1/chat/completions` on a running `embedtag serve` (loopback only).

Three parts, one after the other:
1. the default tag list (the shipped index): `--requests` prompts at each `--concurrency` level;
2. new tag lists never seen by the server (ids drawn at random, so neither memory nor disk
   cache has them): the first request's latency, which includes building the list's index;
3. the same new lists again, now cached: `--requests` prompts at each concurrency level.

Prompts are the dev items written in the seed's form (../shared/data/examples/llm-prompt.txt). Prints a
Markdown table; `--json` keeps the full report.

    .venv/bin/embedtag serve &
    .venv/bin/python scripts/load_openai.py --requests 48 --concurrency 1 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_service import DEFAULT_ITEMS, load_items, loopback_only, percentile

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TAGS = json.loads((REPO / "embedtag" / "data" / "tags.json").read_text(encoding="utf-8"))
NEW_NAMES = ["edge-computing", "kubernetes-operator", "static-site", "data-visualization", "rust-crate"]


def seed_form(item: dict[str, str], tags: list[dict[str, Any]]) -> str:
    tag_list = json.dumps(tags, separators=(",", ":"))
    return (
        f'base on {item["description"]} {item["readme"]}", Assign "at most 3 tags" to the expected json: '
        f'{{"id":{json.dumps(item["id"])},"tags":[]}} "only from the tags list I provide: {tag_list}" '
        f'returns me the "expected json"'
    )


def new_list(size: int, rng: random.Random) -> list[dict[str, Any]]:
    """`size` tags: default names plus a few new ones, under fresh random ids (a list never cached)."""
    names = [t["name"] for t in rng.sample(DEFAULT_TAGS, max(0, size - len(NEW_NAMES)))]
    names += NEW_NAMES[: size - len(names)]
    ids = rng.sample(range(1000, 10**6), len(names))
    return [{"id": i, "name": n} for i, n in zip(ids, names, strict=True)]


async def chat(client: httpx.AsyncClient, prompt: str) -> tuple[float, str, bool]:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]}
    start = time.perf_counter()
    try:
        response = await client.post("/v1/chat/completions", json=body)
        ok = response.status_code == 200 and "tags" in json.loads(response.json()["choices"][0]["message"]["content"])
        source = response.headers.get("x-embedtag-index", "?")
    except (httpx.HTTPError, ValueError, KeyError):
        ok, source = False, "error"
    return time.perf_counter() - start, source, ok


async def level(client: httpx.AsyncClient, prompts: list[str], requests: int, concurrency: int) -> dict[str, Any]:
    load_start = os.getloadavg()[0]
    next_index, latencies, errors = 0, [], 0
    sources: dict[str, int] = {}

    async def worker() -> None:
        nonlocal next_index, errors
        while next_index < requests:
            i = next_index
            next_index += 1
            seconds, source, ok = await chat(client, prompts[i % len(prompts)])
            latencies.append(seconds * 1000)
            errors += not ok
            sources[source] = sources.get(source, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return {
        "concurrency": concurrency, "requests": requests, "errors": errors, "seconds": round(seconds, 2),
        "requests_per_s": round(requests / seconds, 2), "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1), "mean_ms": round(statistics.fmean(latencies), 1),
        "sources": sources, "load_avg_start": round(load_start, 2), "load_avg_end": round(os.getloadavg()[0], 2),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    url = loopback_only(args.url)
    items = load_items(args.items, args.limit_items)
    rng = random.Random(args.seed)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    limits = httpx.Limits(max_connections=max(args.concurrency) + 2)
    report: dict[str, Any] = {"url": url, "items": len(items), "requests_per_level": args.requests}
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout, limits=limits, headers=headers) as client:
        health = (await client.get("/health")).json()
        report["health_before"] = health
        default_prompts = [seed_form(item, DEFAULT_TAGS) for item in items]
        for _ in range(args.warmup):
            await chat(client, default_prompts[0])
        report["default_list"] = [await level(client, default_prompts, args.requests, c) for c in args.concurrency]
        report["new_lists"] = []
        for size in args.new_list_sizes:
            tags = new_list(size, rng)
            prompts = [seed_form(item, tags) for item in items]
            seconds, source, ok = await chat(client, prompts[0])
            cached = [await level(client, prompts, args.requests, c) for c in args.concurrency]
            report["new_lists"].append({"tags": size, "first_ms": round(seconds * 1000, 1), "first_source": source,
                                        "first_ok": ok, "load_avg": round(os.getloadavg()[0], 2), "cached": cached})
        report["health_after"] = (await client.get("/health")).json()
    return report


def markdown(report: dict[str, Any]) -> str:
    head = ("| tag list | concurrency | requests | errors | requests/s | p50 ms | p99 ms | mean ms "
            "| index | load avg start/end |\n|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    rows = [head]

    def add(name: str, r: dict[str, Any]) -> None:
        sources = ", ".join(f"{k} {v}" for k, v in sorted(r["sources"].items()))
        rows.append(f"| {name} | {r['concurrency']} | {r['requests']} | {r['errors']} | {r['requests_per_s']} "
                    f"| {r['p50_ms']} | {r['p99_ms']} | {r['mean_ms']} | {sources} "
                    f"| {r['load_avg_start']} / {r['load_avg_end']} |")

    for r in report["default_list"]:
        add("default (90 tags, shipped index)", r)
    for new in report["new_lists"]:
        rows.append(f"| new list, {new['tags']} tags: **first request** | 1 | 1 | {int(not new['first_ok'])} | "
                    f"| {new['first_ms']} | | | {new['first_source']} | {new['load_avg']} |")
        for r in new["cached"]:
            add(f"same {new['tags']}-tag list, cached", r)
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--items", type=Path, default=DEFAULT_ITEMS)
    parser.add_argument("--limit-items", type=int, default=None)
    parser.add_argument("--requests", type=int, default=48, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--new-list-sizes", type=int, nargs="*", default=[10, 90])
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--seed", type=int, default=None, help="random ids of the new lists [default: fresh]")
    parser.add_argument("--api-key", default=os.environ.get("EMBEDTAG_API_KEY"))
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(markdown(report))


if __name__ == "__main__":
    main()

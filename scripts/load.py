"""Bounded load run against `embedtag serve` on loopback: `POST /tag` or the OpenAI-compatible API.

    .venv/bin/embedtag serve &                                  # real default model and index, port 8000
    .venv/bin/python scripts/load.py --api tag --requests 200 --concurrency 1 8 32
    .venv/bin/python scripts/load.py --api openai --requests 48 --concurrency 1 8 --new-list-sizes 10 90
    .venv/bin/python scripts/load.py --api tag --serve="--workers 2"    # start (and stop) a server itself

`--api tag`: a fixed number of `POST /tag` requests (real READMEs from a JSONL file with id,
description, readme) at each concurrency level, one level after the other; requests/s, p50/p99
latency and how many documents shared each encode call (from /health).

`--api openai`: `POST /v1/chat/completions` with the dev items written in the seed prompt's form
(../shared/data/examples/llm-prompt.txt), in three parts: the default tag list (the shipped
index) at each level; then per `--new-list-sizes`, a tag list the server has never seen (random
ids, so neither memory nor disk cache has it): its first request, which builds the list's index,
then the same list again, cached, at each level. The `index` column is the X-Embedtag-Index header.

Every level records the 1-minute load average at its start and end. It only ever talks to a
loopback address, and it stops by itself. Prints a Markdown table; `--json` keeps the full report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shlex
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import httpx
from harness import (
    DEV_ITEMS,
    REPO,
    load_avg,
    loopback_only,
    machine,
    md_table,
    percentile,
    read_jsonl,
    seed_prompt,
    serve,
    write_json,
)

DEFAULT_TAGS: list[dict[str, Any]] = json.loads((REPO / "embedtag" / "data" / "tags.json").read_text(encoding="utf-8"))
NEW_NAMES = ["edge-computing", "kubernetes-operator", "static-site", "data-visualization", "rust-crate"]
# per API: requests per level, concurrency levels, warm-up requests, seconds per request
DEFAULTS: dict[str, tuple[int, list[int], int, float]] = {"tag": (200, [1, 8, 32], 8, 120.0),
                                                          "openai": (48, [1, 8], 4, 300.0)}

# one request: (ok, which index answered: the X-Embedtag-Index header, or None where there is none)
Send = Callable[[int], Awaitable[tuple[bool, str | None]]]


def load_items(path: Path, limit: int | None) -> list[dict[str, str]]:
    return [{"id": str(row["id"]), "description": row.get("description") or "", "readme": row.get("readme") or ""}
            for row in read_jsonl(path, limit)]


async def level(send: Send, requests: int, concurrency: int) -> dict[str, Any]:
    """`requests` calls of `send(i)`, `concurrency` at a time: throughput, latency, errors, the
    answering indexes and the load average around it."""
    load_start = load_avg()
    next_index, errors = 0, 0
    latencies: list[float] = []
    sources: dict[str, int] = {}

    async def worker() -> None:
        nonlocal next_index, errors
        while next_index < requests:
            i = next_index
            next_index += 1
            start = time.perf_counter()
            ok, source = await send(i)
            latencies.append((time.perf_counter() - start) * 1000)
            errors += not ok
            if source is not None:
                sources[source] = sources.get(source, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return {
        "concurrency": concurrency, "requests": requests, "errors": errors, "seconds": round(seconds, 2),
        "requests_per_s": round(requests / seconds, 2), "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1), "mean_ms": round(statistics.fmean(latencies), 1),
        **({"sources": sources} if sources else {}), "load_avg_start": load_start, "load_avg_end": load_avg(),
    }


# ---- POST /tag ------------------------------------------------------------------------------------


async def run_tag(client: httpx.AsyncClient, items: list[dict[str, str]], args: argparse.Namespace) -> dict[str, Any]:
    async def send(i: int) -> tuple[bool, str | None]:
        try:
            response = await client.post("/tag", json=items[i % len(items)])
            return response.status_code == 200 and "tags" in response.json(), None
        except (httpx.HTTPError, ValueError):
            return False, None

    async def counted(concurrency: int) -> dict[str, Any]:
        # how many documents shared an encode call: the server's counters around the level
        before = (await client.get("/health")).json()
        result = await level(send, args.requests, concurrency)
        after = (await client.get("/health")).json()
        calls = after["encode_calls"] - before["encode_calls"]
        docs = after["documents"] - before["documents"]
        return {**result, "encode_calls": calls, "docs_per_encode_call": round(docs / calls, 2) if calls else 0.0}

    if args.warmup:
        await level(send, args.warmup, 1)
    levels = []
    for concurrency in args.concurrency:
        levels.append(await counted(concurrency))
        r = levels[-1]
        print(f"concurrency {concurrency:>3}: {r['requests_per_s']:7.2f} req/s, p50 {r['p50_ms']:8.1f} ms, "
              f"p99 {r['p99_ms']:8.1f} ms, {r['docs_per_encode_call']:5.2f} docs/encode call, {r['errors']} errors, "
              f"load avg {r['load_avg_start']} -> {r['load_avg_end']}", file=sys.stderr)
    return {"levels": levels}


def tag_markdown(report: dict[str, Any]) -> str:
    rows = [[r["concurrency"], r["requests"], r["errors"], r["seconds"], r["requests_per_s"], r["p50_ms"],
             r["p99_ms"], r["mean_ms"], r["docs_per_encode_call"], f"{r['load_avg_start']} / {r['load_avg_end']}"]
            for r in report["levels"]]
    header = ["concurrency", "requests", "errors", "seconds", "requests/s", "p50 ms", "p99 ms", "mean ms",
              "docs per encode call", "load avg start/end"]
    return "\n".join(md_table(header, rows, right=range(9)))


# ---- POST /v1/chat/completions --------------------------------------------------------------------


def seed_form(item: dict[str, str], tags: list[dict[str, Any]]) -> str:
    return seed_prompt(item["description"], item["readme"], item["id"], json.dumps(tags, separators=(",", ":")))


def new_list(size: int, rng: random.Random) -> list[dict[str, Any]]:
    """`size` tags: default names plus a few new ones, under fresh random ids (a list never cached)."""
    names = [t["name"] for t in rng.sample(DEFAULT_TAGS, max(0, size - len(NEW_NAMES)))]
    names += NEW_NAMES[: size - len(names)]
    ids = rng.sample(range(1000, 10**6), len(names))
    return [{"id": i, "name": n} for i, n in zip(ids, names, strict=True)]


async def run_openai(
    client: httpx.AsyncClient, items: list[dict[str, str]], args: argparse.Namespace
) -> dict[str, Any]:
    rng = random.Random(args.seed)

    def sender(prompts: list[str]) -> Send:
        async def send(i: int) -> tuple[bool, str | None]:
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompts[i % len(prompts)]}]}
            try:
                response = await client.post("/v1/chat/completions", json=body)
                content = json.loads(response.json()["choices"][0]["message"]["content"])
                return response.status_code == 200 and "tags" in content, response.headers.get("x-embedtag-index", "?")
            except (httpx.HTTPError, ValueError, KeyError):
                return False, "error"
        return send

    default = sender([seed_form(item, DEFAULT_TAGS) for item in items])
    for _ in range(args.warmup):
        await default(0)
    report: dict[str, Any] = {"default_list": [await level(default, args.requests, c) for c in args.concurrency],
                              "new_lists": []}
    for size in args.new_list_sizes:
        tags = new_list(size, rng)  # one list for all its requests: the first builds it, the rest find it cached
        send = sender([seed_form(item, tags) for item in items])
        start = time.perf_counter()
        ok, source = await send(0)  # builds the list's index
        first_ms = round((time.perf_counter() - start) * 1000, 1)
        cached = [await level(send, args.requests, c) for c in args.concurrency]
        report["new_lists"].append({"tags": size, "first_ms": first_ms, "first_source": source, "first_ok": ok,
                                    "load_avg": load_avg(), "cached": cached})
    return report


def openai_markdown(report: dict[str, Any]) -> str:
    def row(name: str, r: dict[str, Any]) -> list[Any]:
        sources = ", ".join(f"{k} {v}" for k, v in sorted(r.get("sources", {}).items()))
        return [name, r["concurrency"], r["requests"], r["errors"], r["requests_per_s"], r["p50_ms"], r["p99_ms"],
                r["mean_ms"], sources, f"{r['load_avg_start']} / {r['load_avg_end']}"]

    rows = [row(f"default ({len(DEFAULT_TAGS)} tags, shipped index)", r) for r in report["default_list"]]
    for new in report["new_lists"]:
        rows.append([f"new list, {new['tags']} tags: **first request**", 1, 1, int(not new["first_ok"]), "",
                     new["first_ms"], "", "", new["first_source"], new["load_avg"]])
        rows += [row(f"same {new['tags']}-tag list, cached", r) for r in new["cached"]]
    header = ["tag list", "concurrency", "requests", "errors", "requests/s", "p50 ms", "p99 ms", "mean ms", "index",
              "load avg start/end"]
    return "\n".join(md_table(header, rows, right=range(1, 8)))


# ---- main -----------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace, url: str) -> dict[str, Any]:
    items = load_items(args.items, args.limit_items)
    if not items:
        sys.exit(f"no items in {args.items}")
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    most = max(args.concurrency)
    limits = httpx.Limits(max_connections=most + 2, max_keepalive_connections=most)
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout, limits=limits, headers=headers) as client:
        try:
            health = (await client.get("/health")).json()
        except httpx.HTTPError as exc:
            sys.exit(f"no server at {url} ({exc}); start one with `.venv/bin/embedtag serve`, or pass --serve")
        print(f"server {url}: model {health['model']} ({health['model_fingerprint']}), "
              f"encoder {health.get('encoder')}, index texts {health['texts_fingerprint']}, {health['tags']} tags",
              file=sys.stderr)
        run = run_tag if args.api == "tag" else run_openai
        parts = await run(client, items, args)
        health_after = (await client.get("/health")).json()
    sizes = [len(i["readme"].encode()) for i in items]
    return {
        "api": args.api, "url": url, "health": health, "health_after": health_after,
        "items": {"path": str(args.items), "count": len(items), "readme_bytes_median": statistics.median(sizes)},
        "requests_per_level": args.requests, "warmup": args.warmup, "machine": machine(), **parts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", choices=sorted(DEFAULTS), default="tag", help="which API to load [default: tag]")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="a loopback URL of `embedtag serve`")
    parser.add_argument("--serve", metavar="ARGS", default=None,
                        help="start `embedtag serve ARGS` on a free port for this run (and stop it after) instead "
                             "of --url; write --serve= (empty) for the defaults, --serve='--workers 2' for options")
    parser.add_argument("--items", type=Path, default=DEV_ITEMS, help="JSONL: id, description, readme")
    parser.add_argument("--limit-items", type=int, default=None, help="use only the first N items")
    parser.add_argument("--requests", type=int, help="requests per concurrency level [tag: 200, openai: 48]")
    parser.add_argument("--concurrency", type=int, nargs="+", help="levels [tag: 1 8 32, openai: 1 8]")
    parser.add_argument("--warmup", type=int, help="requests sent first, not counted [tag: 8, openai: 4]")
    parser.add_argument("--timeout", type=float, help="seconds per request [tag: 120, openai: 300]")
    parser.add_argument("--new-list-sizes", type=int, nargs="*", default=[10, 90],
                        help="openai: sizes of the never-seen tag lists")
    parser.add_argument("--seed", type=int, default=None, help="openai: random ids of the new lists [default: fresh]")
    parser.add_argument("--api-key", default=os.environ.get("EMBEDTAG_API_KEY"))
    parser.add_argument("--json", type=Path, help="also write the full report here")
    args = parser.parse_args()
    requests, concurrency, warmup, timeout = DEFAULTS[args.api]
    args.requests = requests if args.requests is None else args.requests
    args.concurrency = concurrency if args.concurrency is None else args.concurrency
    args.warmup = warmup if args.warmup is None else args.warmup
    args.timeout = timeout if args.timeout is None else args.timeout
    if args.requests < 1 or min(args.concurrency) < 1:
        parser.error("--requests and --concurrency must be positive")
    server = serve(*shlex.split(args.serve)) if args.serve is not None else nullcontext(loopback_only(args.url))
    with server as url:
        report = asyncio.run(main_async(args, url))
    if args.json:
        write_json(args.json, report)
    print(tag_markdown(report) if args.api == "tag" else openai_markdown(report))


if __name__ == "__main__":
    main()

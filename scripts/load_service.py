"""Bounded load run against a running `embedtag serve` on loopback.

Sends a fixed number of POST /tag requests (real READMEs from a JSONL file with id, description,
readme) at each concurrency level, one level after the other, and prints requests/s, p50/p99
latency and how many documents shared each encode call (from /health). It never talks to
anything but a loopback address, and it stops by itself.

    .venv/bin/embedtag serve &                      # real default model and index, port 8000
    .venv/bin/python scripts/load_service.py --requests 200 --concurrency 1 8 32
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ITEMS = REPO.parent / "shared" / "data" / "dev" / "items.jsonl"


@dataclass
class LevelResult:
    concurrency: int
    requests: int
    errors: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    encode_calls: int
    docs_per_encode_call: float
    load_avg_start: float  # 1-minute load average of this machine, others' work included
    load_avg_end: float


def loopback_only(url: str) -> str:
    host = urlparse(url).hostname or ""
    if host != "localhost":
        try:
            if not ipaddress.ip_address(host).is_loopback:
                raise ValueError
        except ValueError:
            sys.exit(f"refusing {url}: this load test only targets loopback (127.0.0.0/8, ::1, localhost)")
    return url.rstrip("/")


def load_items(path: Path, limit: int | None) -> list[dict[str, str]]:
    items = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                items.append({"id": str(row["id"]), "description": row.get("description") or "",
                              "readme": row.get("readme") or ""})
    return items[:limit] if limit else items


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


async def run_level(
    client: httpx.AsyncClient, items: list[dict[str, str]], requests: int, concurrency: int
) -> LevelResult:
    before = (await client.get("/health")).json()
    load_start = os.getloadavg()[0]
    next_index = 0
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal next_index, errors
        while next_index < requests:
            i = next_index
            next_index += 1
            start = time.perf_counter()
            try:
                response = await client.post("/tag", json=items[i % len(items)])
                ok = response.status_code == 200 and "tags" in response.json()
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - start)
            errors += not ok

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    after = (await client.get("/health")).json()
    calls = after["encode_calls"] - before["encode_calls"]
    docs = after["documents"] - before["documents"]
    ms = [x * 1000 for x in latencies]
    return LevelResult(
        concurrency=concurrency, requests=requests, errors=errors, seconds=round(seconds, 2),
        requests_per_s=round(requests / seconds, 2), p50_ms=round(percentile(ms, 50), 1),
        p99_ms=round(percentile(ms, 99), 1), mean_ms=round(statistics.fmean(ms), 1),
        encode_calls=calls, docs_per_encode_call=round(docs / calls, 2) if calls else 0.0,
        load_avg_start=round(load_start, 2), load_avg_end=round(os.getloadavg()[0], 2),
    )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    url = loopback_only(args.url)
    items = load_items(args.items, args.limit_items)
    if not items:
        sys.exit(f"no items in {args.items}")
    most = max(args.concurrency)
    limits = httpx.Limits(max_connections=most + 2, max_keepalive_connections=most)
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout, limits=limits) as client:
        try:
            health = (await client.get("/health")).json()
        except httpx.HTTPError as exc:
            sys.exit(f"no server at {url} ({exc}); start one with `.venv/bin/embedtag serve`")
        print(f"server {url}: model {health['model']} ({health['model_fingerprint']}), "
              f"index texts {health['texts_fingerprint']}, {health['tags']} tags", file=sys.stderr)
        if args.warmup:
            await run_level(client, items, args.warmup, 1)
        results = []
        for concurrency in args.concurrency:
            result = await run_level(client, items, args.requests, concurrency)
            results.append(result)
            print(f"concurrency {concurrency:>3}: {result.requests_per_s:7.2f} req/s, "
                  f"p50 {result.p50_ms:8.1f} ms, p99 {result.p99_ms:8.1f} ms, "
                  f"{result.docs_per_encode_call:5.2f} docs/encode call, {result.errors} errors, "
                  f"load avg {result.load_avg_start} -> {result.load_avg_end}",
                  file=sys.stderr)
    sizes = [len(i["readme"].encode()) for i in items]
    return {
        "url": url,
        "health": health,
        "items": {"path": str(args.items), "count": len(items),
                  "readme_bytes_median": statistics.median(sizes)},
        "requests_per_level": args.requests,
        "warmup": args.warmup,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count()},
        "levels": [asdict(r) for r in results],
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| concurrency | requests | errors | seconds | requests/s | p50 ms | p99 ms | mean ms "
        "| docs per encode call | load avg start/end |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["levels"]:
        lines.append(
            f"| {r['concurrency']} | {r['requests']} | {r['errors']} | {r['seconds']} "
            f"| {r['requests_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {r['mean_ms']} "
            f"| {r['docs_per_encode_call']} | {r['load_avg_start']} / {r['load_avg_end']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="a loopback URL of `embedtag serve`")
    parser.add_argument("--items", type=Path, default=DEFAULT_ITEMS, help="JSONL: id, description, readme")
    parser.add_argument("--limit-items", type=int, default=None, help="use only the first N items")
    parser.add_argument("--requests", type=int, default=200, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--warmup", type=int, default=8, help="requests sent first, not counted")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--json", type=Path, help="also write the full report here")
    args = parser.parse_args()
    if args.requests < 1 or min(args.concurrency) < 1:
        parser.error("--requests and --concurrency must be positive")
    report = asyncio.run(main_async(args))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(markdown(report))


if __name__ == "__main__":
    main()

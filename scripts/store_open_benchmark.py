"""What the vector store costs a cold `embedtag tag`: opening it, with and without the integrity check.

    python scripts/store_open_benchmark.py --vectors 10000 --rounds 5

Builds a store of N random 384-dim vectors (plus N/12 prepared READMEs) through the store's own
API in a temp folder, then opens it in a fresh process each time, interleaved: once with the
daily `PRAGMA quick_check` due (its time removed from the store's meta: what every open cost
before the check became daily) and once not due (every other open of the day), each with the file
in the page cache (warm) and evicted from it (cold, posix_fadvise). Medians in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

OPEN = """
import os, sys, time
from embedtag.vectorstore import VectorStore
path, cold = sys.argv[1], sys.argv[2] == "cold"
if cold:
    fd = os.open(path, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)
started = time.perf_counter()
VectorStore(path).close()
print(1e3 * (time.perf_counter() - started))
"""


def make_store(path: Path, n: int) -> None:
    from embedtag.vectorstore import VectorStore, text_key

    rng = np.random.default_rng(0)
    with VectorStore(path) as store:
        for start in range(0, n, 1000):
            block = rng.standard_normal((min(1000, n - start), 384)).astype(np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            store.put_many("model", "bench;dim=384", [(text_key(f"chunk {start + i}"), v) for i, v in enumerate(block)])
        prepared = json.dumps({"s": [["", "x" * 3000]], "c": [["y" * 300, 1.0, "intro"]] * 12}).encode()
        store.put_documents([(text_key(f"doc {i}"), zlib.compress(prepared)) for i in range(n // 12)])


def forget_check(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM meta WHERE name = 'checked'")


def open_ms(path: Path, mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", OPEN, str(path), mode], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vectors.sqlite"
        make_store(path, args.vectors)
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for mode in ("warm", "cold"):
                forget_check(path)
                times.setdefault(("check due", mode), []).append(open_ms(path, mode))
                times.setdefault(("check not due", mode), []).append(open_ms(path, mode))
        size_mb = path.stat().st_size / 1e6
    print(f"store of {args.vectors} vectors ({size_mb:.1f} MB), fresh process per open, median of {args.rounds}:")
    print("| open | page cache | median ms | each |")
    print("| --- | --- | ---: | --- |")
    for (check, mode), values in times.items():
        print(f"| {check} | {mode} | {statistics.median(values):.1f} | {', '.join(f'{v:.1f}' for v in values)} |")


if __name__ == "__main__":
    main()

"""Every encoder and reading option side by side in one run: warm throughput, tokens/s, peak RSS,
start-up, and quality on the same READMEs; plus a picture of throughput against F1.

    python scripts/speed_options.py --limit 200 --rounds 2 --out benchmarks/speed.md --plot benchmarks/speed-vs-f1.png

Each option runs in a fresh process (`--worker`), interleaved over the rounds (A B C .. A B C ..),
and the best round is kept (other jobs share these 2 cores; the load average is recorded). A worker
loads the tagger (timed: `load s`), then tags every README through `Tagger.tag_many` (or the
adaptive tagger), as `embedtag batch --no-cache` does, timed warm. Its encoder is wrapped to count
what it really embeds (`tokens/README`, special tokens included). Quality is strict F1 and hit@1 of
the shipped index's output on these READMEs: that index learned from them (flattered), so compare
the options with each other; the cross-validated figures are in benchmarks/encoder_quality.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness import DEV_ITEMS, REPO, embedtag_cmd, load_label, md_table, read_jsonl, replace_section, run_command

# `cv`: the row of benchmarks/encoder_quality.md or adaptive_quality.md with this option's
# cross-validated F1 and hit@1 (the shipped setting with the tag head, dev set, 5-fold x 3)
OPTIONS: list[dict[str, Any]] = [
    {"label": "float MiniLM on torch (`--backend torch`, the default before)", "backend": "torch", "before": True,
     "cv": "float MiniLM (torch), 12 chunks"},
    {"label": "float MiniLM on onnxruntime (`--backend onnx`)", "backend": "onnx",
     "cv": "float MiniLM (torch), 12 chunks"},  # the same vectors to 1e-5 (tests/test_encoder.py)
    {"label": "static int8 MiniLM (the default now)", "backend": "onnx-int8", "default": True,
     "cv": "static int8 MiniLM (onnxruntime), 12 chunks"},
    {"label": "static int8, 8 chunks per README", "backend": "onnx-int8", "max_chunks": 8,
     "cv": "static int8, 8 chunks"},
    {"label": "static int8, 6 chunks per README", "backend": "onnx-int8", "max_chunks": 6,
     "cv": "static int8, 6 chunks"},
    {"label": "static int8, `--adaptive` (first 6, band 0.05)", "backend": "onnx-int8", "adaptive": [6, 0.05],
     "cv": "adaptive (first 6, band 0.05)"},
    {"label": "static int8, `--adaptive` (first 6, band 0.1)", "backend": "onnx-int8", "adaptive": [6, 0.1],
     "cv": "adaptive (first 6, band 0.1)"},
    {"label": "static int8, `--adaptive` (first 8, band 0.1)", "backend": "onnx-int8", "adaptive": [8, 0.1],
     "cv": "adaptive (first 8, band 0.1)"},
]
CV_FILES = [REPO / "benchmarks" / "encoder_quality.md", REPO / "benchmarks" / "adaptive_quality.md"]
BEGIN, END = "<!-- speed-options:begin -->", "<!-- speed-options:end -->"


class CountingEncoder:
    """The tagger's encoder, counting the tokens it embeds."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name, self.dimension, self.max_tokens = inner.name, inner.dimension, inner.max_tokens
        self.tokens = 0

    def fingerprint(self) -> str:
        return str(self.inner.fingerprint())

    def count_tokens(self, text: str) -> int:
        return int(self.inner.count_tokens(text))

    def encode(self, texts: list[str]) -> Any:
        self.tokens += sum(min(self.inner.count_tokens(t), self.max_tokens) + 2 for t in texts)
        return self.inner.encode(texts)


def worker(cfg: dict[str, Any]) -> None:
    os.environ["EMBEDTAG_BACKEND"] = cfg["backend"]
    started = time.perf_counter()
    from embedtag.adaptive import AdaptivePolicy, AdaptiveTagger
    from embedtag.tagger import Document, Tagger

    loaded = Tagger.load()
    if cfg.get("max_chunks"):
        loaded = Tagger(replace(loaded.index, settings=replace(loaded.index.settings, max_chunks=cfg["max_chunks"])),
                        loaded.encoder)
    if hasattr(loaded.encoder, "torch_module"):
        loaded.encoder.torch_module()  # a batch imports torch at its first big call: load time, not warm
    counting = CountingEncoder(loaded.encoder)
    tagger = Tagger(loaded.index, counting)  # type: ignore[arg-type]  # an Encoder by protocol
    if cfg.get("adaptive"):
        first, band = cfg["adaptive"]
        tagger = AdaptiveTagger.wrap(tagger, AdaptivePolicy(first_chunks=first, chance_band=band))
    rows = read_jsonl(cfg["items"], cfg["limit"])
    docs = [Document(id=str(r["id"]), description=r.get("description") or "", readme=r.get("readme") or "")
            for r in rows]
    tagger.tag(docs[0].readme[:500], description=docs[0].description)  # first call's lazy set-up, not timed
    counting.tokens = 0
    load_s = time.perf_counter() - started
    warm_started = time.perf_counter()
    results = list(tagger.tag_many(docs))
    warm_s = time.perf_counter() - warm_started
    print(json.dumps({"load_s": round(load_s, 2), "warm_s": round(warm_s, 3), "tokens": counting.tokens,
                      "torch": "torch" in sys.modules, "encoder": loaded.encoder.name,
                      "tags": [r.to_json()["tags"] for r in results]}))


def quality(tags: list[list[str]], rows: list[dict[str, Any]]) -> tuple[float, float]:
    from embedtag.evaluate import GoldItem, evaluate

    report = evaluate(tags, [GoldItem(str(r["id"]), tuple(r["core"]), tuple(r.get("also", []))) for r in rows])
    return report.strict_f1, report.hit_at_1


def cross_validated() -> dict[str, tuple[float, float]]:
    """(strict F1, hit@1) per configuration row of the quality scripts' Markdown tables."""
    found: dict[str, tuple[float, float]] = {}
    for path in CV_FILES:
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) > 3 and cells[1].replace(".", "", 1).isdigit():
                found[cells[0].split(" (Δ")[0].split(": the new default")[0]] = (float(cells[1]), float(cells[2]))
    return found


def cold_tag(backend: str, home: str) -> float:
    run = run_command([*embedtag_cmd("tag", "examples/kubeedge.md", "--no-cache")],
                      env={"EMBEDTAG_BACKEND": backend, "EMBEDTAG_HOME": home})
    if run.returncode != 0:
        sys.exit(f"cold tag failed: {run.stderr}")
    return run.wall_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", default=str(DEV_ITEMS))
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cold-rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="Markdown file: the section between the markers")
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    started = time.time()
    rows = read_jsonl(args.items, args.limit)
    home = tempfile.mkdtemp(prefix="embedtag-speed-")
    # the float ONNX export happens once, before anything is timed
    subprocess.run([sys.executable, "-c", "from embedtag.encoders import OnnxEncoder; OnnxEncoder()"],
                   env={**os.environ, "EMBEDTAG_HOME": home}, check=True, cwd=REPO)
    runs: dict[str, list[dict[str, Any]]] = {o["label"]: [] for o in OPTIONS}
    for _ in range(args.rounds):
        for option in OPTIONS:
            cfg = {**option, "items": args.items, "limit": args.limit}
            run = run_command([sys.executable, str(Path(__file__)), "--worker", json.dumps(cfg)],
                              env={"EMBEDTAG_HOME": home})
            if run.returncode != 0:
                sys.exit(f"{option['label']} failed: {run.stderr[-2000:]}")
            result = json.loads(run.stdout.strip().splitlines()[-1])
            result.update(peak_rss_mb=run.peak_rss_mb, wall_s=run.wall_s, load=load_label())
            runs[option["label"]].append(result)
    cold: dict[str, list[float]] = {"torch": [], "onnx-int8": []}
    for _ in range(args.cold_rounds):
        for backend in cold:
            cold[backend].append(cold_tag(backend, home))
    table = []
    points = []
    rates = []
    before_rate = 1.0
    cv = cross_validated()
    for option in OPTIONS:
        best = min(runs[option["label"]], key=lambda r: r["warm_s"])
        rate = len(rows) / best["warm_s"]
        before_rate = rate if option.get("before") else before_rate
        rates.append(rate)
        f1, hit = quality(best["tags"], rows)
        cv_f1, cv_hit = cv.get(option["cv"], (float("nan"), float("nan")))
        points.append((option, rate, cv_f1))
        table.append([
            option["label"], f"{rate:.1f}", "", f"{best['tokens'] / best['warm_s']:,.0f}",
            f"{best['tokens'] / len(rows):.0f}", f"{cv_f1:.4f}", f"{cv_hit:.4f}", f"{f1:.3f} / {hit:.3f}",
            f"{best['load_s']:.2f}",
            f"{max(r['peak_rss_mb'] or 0 for r in runs[option['label']]):.0f}", "yes" if best["torch"] else "no",
            ", ".join(f"{len(rows) / r['warm_s']:.1f}" for r in runs[option["label"]]),
        ])
    for line, rate in zip(table, rates, strict=True):
        line[2] = f"{rate / before_rate:.2f}x"
    cold_line = (f"Cold `embedtag tag examples/kubeedge.md --no-cache` (a fresh process, median of "
                 f"{args.cold_rounds} interleaved): float torch {statistics.median(cold['torch']):.2f} s "
                 f"({', '.join(f'{s:.2f}' for s in cold['torch'])}), static int8 "
                 f"{statistics.median(cold['onnx-int8']):.2f} s ({', '.join(f'{s:.2f}' for s in cold['onnx-int8'])}).")
    text = "\n".join([
        BEGIN,
        f"Run of {time.strftime('%Y-%m-%d')}: {len(rows)} dev READMEs, best of {args.rounds} interleaved rounds, "
        f"{time.time() - started:.0f} s in all, {load_label()} at the end. Reproduce:",
        "",
        "```",
        f"python scripts/speed_options.py --limit {args.limit} --rounds {args.rounds} --out benchmarks/speed.md "
        "--plot benchmarks/speed-vs-f1.png",
        "```",
        "",
        *md_table(["option", "READMEs/s (warm)", "vs before", "tokens/s", "tokens/README", "CV strict F1",
                   "CV hit@1", "F1 / hit@1 on these READMEs (flattered)", "load s", "peak RSS MB", "torch loaded",
                   "READMEs/s per round"], table, right=[1, 2, 3, 4, 5, 6, 7, 8, 9]),
        "",
        "CV strict F1 and hit@1: the dev set's 672 READMEs, 5-fold CV x 3 splits, the shipped setting with the tag "
        "head (benchmarks/encoder_quality.md, benchmarks/adaptive_quality.md; float on onnxruntime gives the torch "
        "vectors to 1e-5, so it shares the torch row). The flattered pair is the shipped index's own output here "
        "(it learned from these READMEs, with the int8 encoder's vectors).",
        "",
        cold_line,
        END,
    ])
    print(text)
    if args.out:
        replace_section(args.out, text, BEGIN, END, "Speed II: the static int8 encoder and every option side by side")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(7, 4.5))
        for option, rate, f1 in points:
            if f1 != f1:  # no cross-validated figure for this option
                continue
            marker = "*" if option.get("default") else "o"
            axes.scatter([f1], [rate], s=220 if option.get("default") else 60, marker=marker,
                         color="tab:red" if option.get("default") else "tab:blue")
            axes.annotate(option["label"].replace(" (the default now)", "").replace("`", "")
                          + (" [default]" if option.get("default") else ""),
                          (f1, rate), textcoords="offset points", xytext=(6, 4), fontsize=8)
        axes.set_xlabel("strict F1, dev set, 5-fold CV x 3 (the shipped setting with the tag head)")
        axes.set_ylabel("READMEs/s, warm, 2 cores")
        axes.set_title(f"embedtag options: throughput against quality ({len(rows)} READMEs)")
        axes.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(args.plot, dpi=110)


if __name__ == "__main__":
    main()

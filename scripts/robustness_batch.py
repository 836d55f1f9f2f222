"""Robustness measurements for `embedtag batch` and for a large tag list (issue 5).

    # 10,000 records (1% corrupt), real model and default index:
    python scripts/robustness_batch.py batch --records 10000
    # the same with the fake encoder, on an index built for it here:
    python scripts/robustness_batch.py batch --records 10000 --model hashing
    # 5,000-tag list with the fake encoder: build an index, tag 100 READMEs:
    python scripts/robustness_batch.py large-tags --tags 5000 --readmes 100

`batch` writes a JSONL of synthetic but realistic records (the dev READMEs cycled under new ids;
one good record in ten gives its README as a `readme_path` file), with 1% corrupt lines spread
through the file and mixed in four kinds: malformed JSON, missing id, missing readme, unreadable
readme_path (a missing file, a directory, a binary file). It runs `embedtag batch` under
`/usr/bin/time -v` (else resource.getrusage) and checks: records in = records out, ids in
order, an "error" line exactly for each corrupt record, exit code 1, and the summary on stderr.
Exits 1 if a check fails. Prints a report (and `--json FILE` writes it as JSON).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness import DEV_ITEMS, REPO, read_jsonl, run_command, write_json

CORRUPT_KINDS = ("malformed-json", "missing-id", "missing-readme", "unreadable-readme-path")
WORDS = [
    "data", "web", "cloud", "graph", "stream", "image", "audio", "video", "text", "mobile",
    "game", "crypto", "network", "search", "cache", "queue", "auth", "test", "build", "deploy",
]


def default_embedtag() -> str:
    local = REPO / ".venv" / "bin" / "embedtag"
    return str(local) if local.exists() else (shutil.which("embedtag") or "embedtag")


def load_dev(path: Path) -> list[dict[str, Any]]:
    items = read_jsonl(path)
    if not items:
        sys.exit(f"no records in {path}")
    return items


# ---- the input ---------------------------------------------------------------------------------


def generate(n: int, corrupt_every: int, dev: list[dict[str, Any]], work: Path) -> list[dict[str, Any]]:
    """Write work/input.jsonl; return one expectation per record: {"id": str | None, "error": bool}."""
    readmes = work / "readmes"
    readmes.mkdir(parents=True, exist_ok=True)
    (readmes / "a-directory").mkdir(exist_ok=True)
    (readmes / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 16)
    for k, item in enumerate(dev):
        (readmes / f"dev-{k:04d}.md").write_text(item["readme"], encoding="utf-8")
    unreadable = ["readmes/does-not-exist.md", "readmes/a-directory", "readmes/logo.png"]
    expected: list[dict[str, Any]] = []
    corrupt = 0
    with (work / "input.jsonl").open("w", encoding="utf-8") as out:
        for i in range(n):
            k = i % len(dev)
            item = dev[k]
            rid = f"syn-{i:06d}"
            record: dict[str, Any] = {"id": rid, "description": item.get("description") or ""}
            if i % 10 == 3:
                record["readme_path"] = f"readmes/dev-{k:04d}.md"
            else:
                record["readme"] = item["readme"]
            if i % corrupt_every == corrupt_every // 2:  # spread through the file
                kind = CORRUPT_KINDS[corrupt % len(CORRUPT_KINDS)]
                if kind == "malformed-json":
                    text = json.dumps(record, ensure_ascii=False)
                    out.write(text[: max(1, len(text) // 3)] + "\n")  # cut short: not valid JSON
                    expected.append({"id": None, "error": True, "kind": kind})
                else:
                    if kind == "missing-id":
                        del record["id"]
                    elif kind == "missing-readme":
                        record = {"id": rid}  # no readme, readme_path nor description
                    else:
                        record.pop("readme", None)
                        record["readme_path"] = unreadable[(corrupt // len(CORRUPT_KINDS)) % len(unreadable)]
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                    expected.append({"id": record.get("id"), "error": True, "kind": kind})
                corrupt += 1
            else:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                expected.append({"id": rid, "error": False})
    return expected


# ---- running a command with time and peak memory ---------------------------------------------------


def timed(cmd: list[str], stdout: Any = subprocess.DEVNULL) -> dict[str, Any]:
    """Run cmd (`harness.run_command`, in this directory); its exit code, stderr, wall seconds and
    peak RSS (MiB) of the command itself, as the report shows them."""
    run = run_command(cmd, stdout=stdout, cwd=None)
    return {
        "cmd": " ".join(cmd),
        "exit_code": run.returncode,
        "stderr": run.stderr.strip(),
        "wall_s": round(run.wall_s, 2),
        "peak_rss_mib": run.peak_rss_mb,
        "measured_with": run.measured_with,
        # other processes on the machine slow the run: the 1-minute load average before and after
        "load_avg_1min": [run.load_start, run.load_end],
    }


# ---- checks ------------------------------------------------------------------------------------


def check_output(expected: list[dict[str, Any]], output: Path, run: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    lines = output.read_text(encoding="utf-8").splitlines()
    if len(lines) != len(expected):
        problems.append(f"records in {len(expected)} != records out {len(lines)}")
    for number, (want, raw) in enumerate(zip(expected, lines, strict=False), start=1):
        try:
            got = json.loads(raw)
        except json.JSONDecodeError:
            problems.append(f"output line {number} is not JSON")
            continue
        if got.get("id") != want["id"]:
            problems.append(f"output line {number}: id {got.get('id')!r}, expected {want['id']!r}")
        if ("error" in got) != want["error"]:
            problems.append(f"output line {number}: error {got.get('error')!r}, expected error={want['error']}")
        if len(got.get("tags", [])) > 3:
            problems.append(f"output line {number}: more than 3 tags")
        if len(problems) > 20:
            problems.append("... (stopped after 20)")
            break
    if run["exit_code"] != 1:
        problems.append(f"exit code {run['exit_code']}, expected 1 (some records failed)")
    failed = sum(1 for e in expected if e["error"])
    summary = f"embedtag batch: {len(expected)} records tagged; {failed} failed"
    if summary not in run["stderr"]:
        problems.append(f"summary {summary!r} not on stderr: {run['stderr'][-300:]!r}")
    return problems


# ---- commands ----------------------------------------------------------------------------------


def build_index(embedtag: str, out: Path, model: str, tags: Path | None = None) -> dict[str, Any]:
    cmd = [embedtag, "build-index", "--model", model, "--out", str(out)]
    if tags is not None:
        cmd[2:2] = ["--tags", str(tags)]
    run = timed(cmd)
    if run["exit_code"] != 0:
        sys.exit(f"build-index failed: {run['stderr']}")
    return run


def cmd_batch(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="embedtag-robustness-"))
    work.mkdir(parents=True, exist_ok=True)
    dev = load_dev(Path(args.dev))
    expected = generate(args.records, args.corrupt_every, dev, work)
    report: dict[str, Any] = {
        "mode": "batch",
        "records": args.records,
        "corrupt": sum(1 for e in expected if e["error"]),
        "corrupt_kinds": {k: sum(1 for e in expected if e.get("kind") == k) for k in CORRUPT_KINDS},
        "workdir": str(work),
        "model": args.model or "default (bundled all-MiniLM-L6-v2)",
    }
    index = args.index
    if args.model and args.model.startswith("hashing") and index is None:
        index = str(work / "index-hashing")
        report["index_build"] = build_index(args.embedtag, Path(index), args.model)
    report["index"] = index or "default"
    cmd = [args.embedtag, "batch", str(work / "input.jsonl"), "-o", str(work / "output.jsonl")]
    if args.model:
        cmd += ["--model", args.model]
    if index:
        cmd += ["--index", index]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    run = timed(cmd)
    report["run"] = run
    report["records_per_s"] = round(args.records / run["wall_s"], 1) if run["wall_s"] else None
    report["problems"] = check_output(expected, work / "output.jsonl", run)
    return report


def cmd_large_tags(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="embedtag-largetags-"))
    work.mkdir(parents=True, exist_ok=True)
    names = [f"{WORDS[i % len(WORDS)]}-{WORDS[(i // len(WORDS)) % len(WORDS)]}-{i}" for i in range(args.tags)]
    tags_path = work / "tags.json"
    tags_path.write_text(json.dumps([{"id": 1000 + i, "name": n} for i, n in enumerate(names)]), encoding="utf-8")
    index = work / "index"
    report: dict[str, Any] = {"mode": "large-tags", "tags": args.tags, "readmes": args.readmes, "workdir": str(work)}
    report["index_build"] = build_index(args.embedtag, index, args.model, tags_path)
    dev = load_dev(Path(args.dev))
    with (work / "input.jsonl").open("w", encoding="utf-8") as out:
        for i in range(args.readmes):
            item = dev[i % len(dev)]
            out.write(json.dumps({"id": f"r{i}", "description": item.get("description") or "",
                                  "readme": item["readme"]}) + "\n")
    cmd = [args.embedtag, "batch", str(work / "input.jsonl"), "-o", str(work / "output.jsonl"),
           "--model", args.model, "--index", str(index)]
    run = timed(cmd)
    report["run"] = run
    lines = (work / "output.jsonl").read_text(encoding="utf-8").splitlines()
    problems = []
    if run["exit_code"] != 0:
        problems.append(f"exit code {run['exit_code']}: {run['stderr'][-300:]}")
    if len(lines) != args.readmes:
        problems.append(f"{len(lines)} output lines for {args.readmes} READMEs")
    report["problems"] = problems
    report["s_per_readme"] = round(run["wall_s"] / max(args.readmes, 1), 3)
    return report


def print_report(report: dict[str, Any]) -> None:
    def show(name: str, run: dict[str, Any]) -> None:
        print(f"  {name}: {run['wall_s']} s wall, peak RSS {run['peak_rss_mib']} MiB "
              f"({run['measured_with']}), exit {run['exit_code']}, load avg {run['load_avg_1min']}")
        print(f"    $ {run['cmd']}")
        if run["stderr"]:
            print(f"    stderr: {run['stderr'].splitlines()[-1]}")

    print(f"embedtag robustness: {report['mode']}")
    for key, value in report.items():
        if key not in {"run", "index_build", "problems", "mode"}:
            print(f"  {key}: {value}")
    if "index_build" in report:
        show("build-index", report["index_build"])
    show("batch", report["run"])
    if report["problems"]:
        print("  CHECKS FAILED:")
        for problem in report["problems"]:
            print(f"    - {problem}")
    else:
        print("  checks: all passed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dev", default=str(DEV_ITEMS), help="dev items.jsonl whose READMEs are cycled")
    common.add_argument("--embedtag", default=default_embedtag(), help="the embedtag executable")
    common.add_argument("--workdir", help="where to write inputs and outputs [default: a new temp dir]")
    common.add_argument("--json", help="also write the report as JSON to this file")
    batch = sub.add_parser("batch", parents=[common], help="10,000-record batch with 1%% corrupt lines")
    batch.add_argument("--records", type=int, default=10_000)
    batch.add_argument("--corrupt-every", type=int, default=100, help="one corrupt record in N [100: 1%%]")
    batch.add_argument("--model", help="--model for embedtag [default: the bundled model]")
    batch.add_argument("--index", help="--index for embedtag [default: the default index; built here for hashing]")
    batch.add_argument("--batch-size", type=int, help="--batch-size for embedtag [default: embedtag's]")
    large = sub.add_parser("large-tags", parents=[common], help="build an index for N tags and tag READMEs")
    large.add_argument("--tags", type=int, default=5000)
    large.add_argument("--readmes", type=int, default=100)
    large.add_argument("--model", default="hashing")
    args = parser.parse_args()
    report = cmd_batch(args) if args.mode == "batch" else cmd_large_tags(args)
    print_report(report)
    if args.json:
        write_json(args.json, report, indent=2)
    sys.exit(1 if report["problems"] else 0)


if __name__ == "__main__":
    main()

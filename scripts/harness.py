"""What the benchmark scripts share: timing with the machine's load, commands run under
`/usr/bin/time -v`, Markdown and JSON writers, and a real `embedtag serve` started, waited for and
stopped.

The machine these scripts run on is shared (2 cores, other jobs): every figure is worth only as
much as the load average beside it, so everything here that times something records it.
Scripts import it as `from harness import ...` (they run as `python scripts/NAME.py`, which puts
scripts/ first on sys.path). It runs embedtag as a command and never imports the tests: what the
tests' real server (tests/helpers.py) does under pytest's network guard, this does with /health.
"""

from __future__ import annotations

import ipaddress
import json
import os
import platform
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]
DEV_ITEMS = REPO.parent / "shared" / "data" / "dev" / "items.jsonl"
GNU_TIME = Path("/usr/bin/time")

# ---- timing and the machine ---------------------------------------------------------------------


def load_avg() -> float:
    """The 1-minute load average: others' work included, which is the point."""
    return round(os.getloadavg()[0], 2)


def load_label() -> str:
    """`load 1.2/0.9` (1- and 5-minute averages), for a row or a line of a report."""
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}"


def timed(fn: Callable[..., Any]) -> tuple[Any, float]:
    """`fn()` and the wall seconds it took (Any: mypy cannot type the lambdas with default
    arguments that timing a loop's body needs)."""
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def machine() -> dict[str, Any]:
    """What a report says of the machine it ran on."""
    cpuinfo = Path("/proc/cpuinfo")
    cpu = platform.processor()
    if cpuinfo.exists():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


# ---- commands -------------------------------------------------------------------------------------


@dataclass
class CommandRun:
    """A finished command: exit code, output, wall seconds, peak RSS and the load around it."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    peak_rss_mb: float | None  # MiB; None where it could not be told
    load_start: float
    load_end: float
    measured_with: str


def embedtag_cmd(*args: str) -> list[str]:
    """`embedtag ARGS` with this interpreter: the checkout's embedtag, whatever is on PATH."""
    return [sys.executable, "-m", "embedtag", *args]


def run_command(
    argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float | None = None,
    stdin: str | None = None, stdout: Any = subprocess.PIPE, cwd: Path | None = REPO,
) -> CommandRun:
    """Run a command to its end and measure it. Peak RSS comes from `/usr/bin/time -v` (its
    report goes to a file, so the command's stderr stays its own), else from getrusage, which
    only knows the largest child so far: exact when this one is the largest yet."""
    rss_file = None
    command = list(argv)
    if GNU_TIME.exists():
        handle, rss_file = tempfile.mkstemp(prefix="embedtag-rss-")
        os.close(handle)
        command = [str(GNU_TIME), "-v", "-o", rss_file, *command]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    load_start = load_avg()
    proc, wall = timed(lambda: subprocess.run(
        command, env={**os.environ, **(env or {})}, stdout=stdout, stderr=subprocess.PIPE, text=True,
        timeout=timeout, input=stdin, cwd=cwd,
    ))
    rss_mb: float | None = None
    if rss_file:
        report = Path(rss_file).read_text(encoding="utf-8", errors="replace")
        Path(rss_file).unlink(missing_ok=True)
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", report)
        rss_mb = round(int(match.group(1)) / 1024, 1) if match else None
    else:
        after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        rss_mb = round(after / 1024, 1) if after > before else None
    return CommandRun(
        argv=list(argv), returncode=proc.returncode, stdout=proc.stdout or "", stderr=proc.stderr or "",
        wall_s=round(wall, 3), peak_rss_mb=rss_mb, load_start=load_start, load_end=load_avg(),
        measured_with="/usr/bin/time -v" if rss_file else "resource.getrusage(RUSAGE_CHILDREN)",
    )


# ---- data and writers ---------------------------------------------------------------------------


def read_jsonl(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file (blank lines skipped), the first `limit` of them."""
    rows: list[dict[str, Any]] = []
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                rows.append(json.loads(line))
                if limit and len(rows) >= limit:
                    break
    return rows


def write_json(path: str | Path, data: Any, indent: int = 1) -> None:
    Path(path).write_text(json.dumps(data, indent=indent) + "\n", encoding="utf-8")


def md_head(header: Sequence[str], right: Sequence[int] = ()) -> list[str]:
    """A Markdown table's two head lines; columns in `right` are right-aligned (numbers)."""
    rule = ["---:" if i in right else "---" for i in range(len(header))]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]


def md_row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> list[str]:
    return [*md_head(header, right), *(md_row(row) for row in rows)]


def replace_section(path: Path, text: str, begin: str, end: str, title: str) -> None:
    """Put `text` (which starts with `begin` and ends with `end`) in place of the part of `path`
    between those markers, keeping the prose around it; append it, or start the file with `title`."""
    if path.is_file():
        current = path.read_text(encoding="utf-8")
        if begin in current and end in current:
            head, rest = current.split(begin, 1)
            path.write_text(head + text + rest.split(end, 1)[1], encoding="utf-8")
        else:
            path.write_text(current.rstrip() + "\n\n" + text + "\n", encoding="utf-8")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {title}\n\n{text}\n", encoding="utf-8")


def seed_prompt(description: str, readme: str, doc_id: str, tag_list: str) -> str:
    """A prompt in the seed's form (../shared/data/examples/llm-prompt.txt); `tag_list` is the
    list's JSON text, as a catalogue app pastes it."""
    return (
        f'base on {description} {readme}", Assign "at most 3 tags" to the expected json: '
        f'{{"id":{json.dumps(doc_id)},"tags":[]}} "only from the tags list I provide: {tag_list}" '
        f'returns me the "expected json"'
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


# ---- a real server --------------------------------------------------------------------------------


def loopback_only(url: str) -> str:
    """`url` without its trailing slash; exits unless it is a loopback address (these scripts load
    a server hard: never someone else's)."""
    host = urlparse(url).hostname or ""
    if host != "localhost":
        try:
            if not ipaddress.ip_address(host).is_loopback:
                raise ValueError
        except ValueError:
            sys.exit(f"refusing {url}: only loopback servers are loaded (127.0.0.0/8, ::1, localhost)")
    return url.rstrip("/")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(*args: str, env: Mapping[str, str] | None = None, startup_s: float = 300) -> Iterator[str]:
    """`embedtag serve ARGS` on a free loopback port; yields its base URL once `/health` answers,
    and stops it (SIGTERM, then SIGKILL after 15 s) on the way out. Its output goes to a temp
    file whose tail is shown if it never comes up. EMBEDTAG_HOME (the cache of other tag lists'
    indexes) is a fresh temp folder unless `env` names one: a benchmark starts cold."""
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="embedtag-serve-") as scratch:
        log_path = Path(scratch) / "serve.log"
        environment = {**os.environ, "EMBEDTAG_HOME": str(Path(scratch) / "home"), "PYTHONUNBUFFERED": "1",
                       **(env or {})}
        with log_path.open("w", encoding="utf-8") as log:
            proc = subprocess.Popen(
                embedtag_cmd("serve", "--host", "127.0.0.1", "--port", str(port), *args),
                stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=REPO,
            )
        try:
            deadline = time.monotonic() + startup_s
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
                    sys.exit(f"embedtag serve did not come up (exit code {proc.poll()}):\n{tail}")
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass  # not listening yet
                time.sleep(0.25)
            print(f"started `embedtag serve {' '.join(args)}` at {url}", file=sys.stderr, flush=True)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

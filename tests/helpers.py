"""Sample READMEs and CLI helpers shared by the test modules."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from embedtag.cli import cli

K8S_README = (
    "# kubeop\n\nkubeop is a Kubernetes operator that manages container orchestration on "
    "Kubernetes clusters and pods.\n"
)
DATABASE_README = "# tabula\n\nA SQL database engine storing tables and rows, running queries fast.\n"
GAME_README = "# sprites\n\nA video game engine with levels and sprites for players.\n"


def run(*args: str | Path, input: str | bytes | None = None) -> Result:
    """The CLI in-process (click's CliRunner), arguments as strings."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def assert_one_line_error(result: Result, exit_code: int, *fragments: str) -> str:
    """Handled (SystemExit), nothing on stdout, exactly one `Error: ...` line on stderr."""
    assert result.exit_code == exit_code, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    """One JSON value (or a raw string, for broken lines) per line."""
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines),
        encoding="utf-8",
    )
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """A running `embedtag serve`: its base URL, its process and its log so far."""

    url: str
    proc: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "".join(self.log)


@contextmanager
def serve_subprocess(
    *args: str, workers: int = 1, env: dict[str, str] | None = None, drop_env: tuple[str, ...] = (),
    startup_s: float = 60, log: list[str] | None = None,
) -> Iterator[ServerProcess]:
    """Run `embedtag serve ARGS` in a subprocess; yields once every worker has started.

    Readiness comes from uvicorn's log, not from polling: the test process may open loopback
    connections only inside tests marked allow_network (see conftest's network guard). On exit
    the server gets SIGTERM (killed after 15 s); the caller checks its exit code and log."""
    port = free_port()
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    for name in drop_env:
        environment.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "embedtag", "serve", "--port", str(port), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment,
    )
    server = ServerProcess(f"http://127.0.0.1:{port}", proc, [] if log is None else log)
    started = threading.Semaphore(0)

    def read() -> None:
        for line in proc.stdout or []:
            server.log.append(line)
            if "Application startup complete" in line:
                started.release()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + startup_s

        def check_alive() -> None:
            if proc.poll() is not None or time.monotonic() > deadline:
                reader.join(5)
                pytest.fail(f"server did not start (exit code {proc.poll()}):\n{server.output}")

        for _ in range(workers):
            while not started.acquire(timeout=0.1):
                check_alive()
        while not any("Uvicorn running on" in line for line in server.log):
            check_alive()
            time.sleep(0.05)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(5)


@contextmanager
def serve_process(
    index: Path | None, *options: str, model: str | None = "hashing", workers: int = 1, home: Path | None = None,
    startup_s: float = 60, log: list[str] | None = None,
) -> Iterator[str]:
    """The tests' one real server: `embedtag serve` on `index` (None: the shipped one) with `model`
    (None: the bundled one); yields its base URL once every worker has started.

    The user's EMBEDTAG_INDEX and EMBEDTAG_API_KEY stay out; EMBEDTAG_HOME (where /v1 keeps the
    indexes it builds for other tag lists) is `home`, else a temporary folder. The server's output
    goes into `log` as it comes. On exit the server must shut down cleanly: every worker completes
    its shutdown and nothing logs a traceback."""
    with tempfile.TemporaryDirectory(prefix="embedtag-home-") as scratch:
        args = [*(["--index", str(index)] if index is not None else []), *(["--model", model] if model else [])]
        with serve_subprocess(
            *args, "--workers", str(workers), *options, workers=workers,
            env={"EMBEDTAG_HOME": str(home or scratch)}, drop_env=("EMBEDTAG_INDEX", "EMBEDTAG_API_KEY"),
            startup_s=startup_s, log=log,
        ) as server:
            yield server.url
    output, proc = server.output, server.proc
    # uvicorn exits by re-raising the SIGTERM it handled, after a graceful shutdown
    assert proc.returncode in (0, -signal.SIGTERM), f"exit code {proc.returncode}:\n{output}"
    assert output.count("Application shutdown complete") == workers, output
    assert "Traceback" not in output, output

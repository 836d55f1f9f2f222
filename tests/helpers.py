"""Sample READMEs and CLI helpers shared by the test modules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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

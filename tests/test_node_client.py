"""The official Node `openai` package (v4) against a real `embedtag serve`: the drop-in promise for
JavaScript apps, kept by CI. `.ci/run` installs Node and the package in a temp folder and names it
in EMBEDTAG_NODE_OPENAI; without them the test is skipped. The script is tests/node/openai_client.mjs:
models, the seed prompt (the exact JSON the same tagger gives in-process), streaming, and a 400
for a prompt that is not the tagging prompt."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import serve_process
from test_prompt import SEED

from embedtag.prompt import parse_prompt
from embedtag.tagger import Tagger

SCRIPT = Path(__file__).parent / "node" / "openai_client.mjs"
NODE = shutil.which("node")
PACKAGE_DIR = os.environ.get("EMBEDTAG_NODE_OPENAI")  # set by .ci/run
API_KEY = "node-test-key-0123456789"
STEPS = ["ok models", "ok prompt", "ok stream", "ok error"]

pytestmark = [
    pytest.mark.allow_network,  # loopback only: the server under test
    pytest.mark.slow,  # the real model and the shipped index, as the catalogue app uses them
    pytest.mark.skipif(NODE is None or not PACKAGE_DIR,
                       reason="needs node and the openai npm package (.ci/run installs them: EMBEDTAG_NODE_OPENAI)"),
]


def test_node_openai_client_against_the_real_server(real_tagger: Tagger, tmp_path: Path) -> None:
    assert PACKAGE_DIR and (Path(PACKAGE_DIR) / "node_modules" / "openai").is_dir(), (
        f"EMBEDTAG_NODE_OPENAI={PACKAGE_DIR} has no node_modules/openai"
    )
    parsed = parse_prompt(SEED)
    result = real_tagger.tag(parsed.readme, parsed.description, parsed.id)
    expected = json.dumps(parsed.answer(result), ensure_ascii=False)  # what the server must answer
    assert json.loads(expected)["id"] == "1977" and {"k8s", "cloud-native"} <= set(json.loads(expected)["tags"])
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(SEED, encoding="utf-8")
    model = f"embedtag-{real_tagger.index.model_name.rsplit('/', 1)[-1]}"
    with serve_process(None, "--api-key", API_KEY, model=None, home=tmp_path, startup_s=120) as url:
        run = subprocess.run(
            [str(NODE), str(SCRIPT)], capture_output=True, text=True, timeout=120,
            env={**os.environ, "OPENAI_NODE_DIR": str(PACKAGE_DIR), "EMBEDTAG_BASE_URL": f"{url}/v1",
                 "EMBEDTAG_API_KEY": API_KEY, "EMBEDTAG_MODEL": model, "EMBEDTAG_PROMPT": str(prompt),
                 "EMBEDTAG_EXPECTED": expected},
        )
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    assert [line for line in run.stdout.splitlines() if line.startswith("ok ")] == STEPS, run.stdout

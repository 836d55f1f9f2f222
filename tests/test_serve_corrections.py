"""The correction loop on a real `embedtag serve` process: /feedback, calibrate --from-store, /admin/reload."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from embedtag.corrections import CorrectionStore
from embedtag.index import load_index
from embedtag.prompt import parse_prompt
from tests.helpers import serve_process
from tests.test_prompt import seed_form
from tests.test_serve import DOCS, index_dir  # noqa: F401 - index_dir is a fixture

pytestmark = pytest.mark.allow_network  # loopback only: the server under test


def test_feedback_changes_the_tags_after_calibrate_and_reload(index_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    index = tmp_path / "index"
    subprocess.run(["cp", "-r", str(index_dir), str(index)], check=True)
    store = tmp_path / "store.sqlite3"
    doc = DOCS[2]  # the SQL database README
    # the index's tag list plus one: another list, which carries over what the index learned
    edited_list = json.dumps([t.to_json() for t in load_index(index).tags] + [{"id": 900, "name": "knitting"}])
    prompt = seed_form(str(doc["description"]), str(doc["readme"]), str(doc["id"]), edited_list)

    def ask_edited(url: str) -> list[str]:
        llm = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
        answer = llm.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}])
        return list(json.loads(answer.choices[0].message.content or "{}")["tags"])

    with serve_process(index, "--store", str(store)) as url, httpx.Client(base_url=url, timeout=60) as client:
        before = client.post("/tag", json=doc).json()["tags"]
        assert before and "game" not in before
        assert ask_edited(url) == before
        # refers to the record just tagged by its id: no need to send the README again
        posted = client.post("/feedback", json={"id": doc["id"], "core": ["game", "cli"]})
        assert posted.status_code == 201, posted.text
        assert posted.json()["core"] == ["game", "cli"] and posted.json()["projects"] == 1
        bad = client.post("/feedback", json={"id": "x", "core": ["gmae"], "readme": "r"})
        assert bad.status_code == 422 and "did you mean game?" in bad.json()["message"]
        unknown = client.post("/feedback", json={"id": "never-seen", "core": ["game"]})
        assert unknown.status_code == 422 and "send the text" in unknown.json()["message"]
        assert CorrectionStore(store).get(str(doc["id"])) is not None
        # the same correction for the text the edited-list prompt gives (it reads as one description)
        parsed = parse_prompt(prompt)
        as_prompted = {"id": "db-prompt", "description": parsed.description, "readme": parsed.readme}
        assert client.post("/feedback", json={**as_prompted, "core": ["game", "cli"]}).status_code == 201

        calibrated = subprocess.run(
            [sys.executable, "-m", "embedtag", "calibrate", "--from-store", "--index", str(index),
             "--model", "hashing", "--store", str(store)],
            capture_output=True, text=True,
        )
        assert calibrated.returncode == 0, calibrated.stderr
        assert client.post("/tag", json=doc).json()["tags"] == before  # not reloaded yet

        def tag(i: int) -> int:
            return client.post("/tag", json=DOCS[i % len(DOCS)]).status_code

        with ThreadPoolExecutor(8) as pool:
            during = [pool.submit(tag, i) for i in range(60)]
            reloaded = client.post("/admin/reload")
            statuses = [f.result() for f in during]
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.json()["examples"] == 2
        assert statuses == [200] * 60  # no request dropped while the index was swapped
        assert client.post("/tag", json=doc).json()["tags"] == ["game", "cli"]
        assert ask_edited(url) == ["game", "cli"]  # the edited list follows the reloaded index
        assert client.post("/tag", json=DOCS[6]).json()["tags"] == client.post("/tag", json=DOCS[6]).json()["tags"]
        assert client.get("/health").json()["status"] == "ok"


def test_reload_of_a_broken_index_keeps_the_old_one(index_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    index = tmp_path / "index"
    subprocess.run(["cp", "-r", str(index_dir), str(index)], check=True)
    with serve_process(index, "--store", str(tmp_path / "s.db")) as url, httpx.Client(base_url=url, timeout=60) as c:
        before = c.post("/tag", json=DOCS[0]).json()
        (index / "tags.faiss").write_bytes(b"garbage")
        answer = c.post("/admin/reload")
        assert answer.status_code == 409 and "kept the index in use" in answer.json()["message"]
        assert c.post("/tag", json=DOCS[0]).json() == before
        page = c.get("/review")
        assert page.status_code == 200 and "<title>embedtag review</title>" in page.text
        assert "http://" not in page.text and "https://" not in page.text  # no CDN: works offline


def test_reload_reaches_every_worker(index_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    """`--workers 2`: one POST /admin/reload, then every answer, from either worker, is the new index's."""
    index = tmp_path / "index"
    subprocess.run(["cp", "-r", str(index_dir), str(index)], check=True)
    old_list = [t.to_json() for t in load_index(index).tags]
    # the same tags under other ids, plus one: an answer shows which index gave it
    new_list = [{"id": int(t["id"]) + 100, "name": t["name"]} for t in old_list] + [{"id": 999, "name": "knitting"}]
    doc = DOCS[2]  # the SQL database README

    def ask() -> tuple[list[Any], list[Any]]:
        # a new connection each time (no keep-alive), so that either worker may take it
        headers = {"Connection": "close"}
        tags = httpx.get(f"{url}/tags", headers=headers, timeout=60).json()
        answer = httpx.post(f"{url}/tag?tag_format=ids", json=doc, headers=headers, timeout=60).json()
        return tags, answer["tags"]

    log: list[str] = []
    with serve_process(index, "--store", str(tmp_path / "s.db"), workers=2, log=log) as url:
        tags, before = ask()
        assert tags == old_list and before and set(before) <= {t["id"] for t in old_list}
        subprocess.run(
            [sys.executable, "-m", "embedtag", "build-index", "--tags", "-", "--model", "hashing", "--out", str(index)],
            input=json.dumps(new_list), capture_output=True, text=True, check=True,
        )
        assert ask()[0] == old_list  # rebuilt on disk, not reloaded: still the old index
        reloaded = httpx.post(f"{url}/admin/reload", timeout=60)
        assert reloaded.status_code == 200 and reloaded.json()["tags"] == len(new_list), reloaded.text

        def caught_up() -> bool:  # the worker that did not take the reload has loaded the new index
            return any("reloaded, as another worker was asked to" in line for line in log)

        answers = 0
        while answers < 30 or (not caught_up() and answers < 400):
            tags, after = ask()
            assert tags == new_list, f"answer {answers} after the reload came from the old index"
            assert after == [t + 100 for t in before]
            answers += 1
        assert caught_up(), f"all {answers} answers came from the worker that reloaded:\n{''.join(log)}"

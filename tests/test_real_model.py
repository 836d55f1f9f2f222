"""End to end with the bundled MiniLM and the committed default index (slow: one model load,
shared by the session through the `real_tagger` fixture). Kept few on purpose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from embedtag.cli import cli
from embedtag.records import read_readme
from embedtag.tagger import Document, Tagger
from embedtag.tags import load_tags

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = json.loads((REPO / "examples" / "kubeedge.json").read_text(encoding="utf-8"))
EXAMPLE_README = REPO / "examples" / EXAMPLE["readme_file"]
DEFAULT_NAMES = {t.name for t in load_tags()}


def assert_shape(data: dict[str, object], doc_id: str) -> None:
    assert data["id"] == doc_id
    tags = data["tags"]
    assert isinstance(tags, list) and len(tags) <= 3
    assert len(set(tags)) == len(tags)
    assert set(tags) <= DEFAULT_NAMES


def test_kubeedge_gets_k8s_and_cloud_native(real_tagger: Tagger) -> None:
    assert EXAMPLE["id"] == "1977"
    assert EXAMPLE["description"] == "Kubernetes Native Edge Computing Framework (project under CNCF)"
    result = real_tagger.tag(
        read_readme(EXAMPLE_README), description=EXAMPLE["description"], id=EXAMPLE["id"]
    )
    data = result.to_json()
    assert list(data) == ["id", "tags"]
    assert_shape(data, "1977")
    assert {"k8s", "cloud-native"} <= set(data["tags"]), data
    # the README's quickstart says what its first command prints: keep that true
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    promised = readme.split("The first prints `", 1)[1].split("`", 1)[0]
    assert json.loads(promised) == data
    # every chunk fits the model's window by the model's own tokenizer
    chunks = real_tagger.chunks(Document("1977", read_readme(EXAMPLE_README), EXAMPLE["description"]))
    assert chunks and all(real_tagger.encoder.count_tokens(c.text) <= 128 for c in chunks)


def test_cli_tag_prints_the_expected_json(real_tagger: Tagger) -> None:
    args = [
        "tag",
        str(EXAMPLE_README),
        "--id",
        EXAMPLE["id"],
        "--description",
        EXAMPLE["description"],
        "--index",
        str(REPO / "index"),
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1
    data = json.loads(result.stdout)
    assert list(data) == ["id", "tags"]
    assert_shape(data, "1977")
    library = real_tagger.tag(read_readme(EXAMPLE_README), EXAMPLE["description"], EXAMPLE["id"]).to_json()
    assert data == library


NON_ENGLISH = """# KubeEdge

KubeEdge 构建在 Kubernetes 之上，将本机容器化应用编排和设备管理扩展到边缘端的主机。
它由云和边缘部分构成，为网络、应用部署以及云与边缘之间的元数据同步提供核心基础架构支持。

## Возможности

Управление приложениями на периферии из облака с полностью совместимыми API Kubernetes. 🚀
"""

BADGES_ONLY = """[![Build](https://github.com/o/r/actions/workflows/ci.yml/badge.svg)](https://github.com/o/r/actions)
[![PyPI](https://img.shields.io/pypi/v/r.svg)](https://pypi.org/project/r)
[![License: MIT](https://img.shields.io/badge/License-MIT-yellow.svg)](https://opensource.org/licenses/MIT)
<img src="https://raw.githubusercontent.com/o/r/main/logo.svg" width="120">
"""


def test_non_english_and_badges_only_readmes(real_tagger: Tagger) -> None:
    results = list(
        real_tagger.tag_many(
            [
                Document("zh", NON_ENGLISH),
                Document("badges", BADGES_ONLY),
                Document("both", BADGES_ONLY, "缓存库"),
            ],
            explain=True,
        )
    )
    data = [r.to_json(explain=True) for r in results]
    for item, doc_id in zip(data, ["zh", "badges", "both"], strict=True):
        assert_shape(item, doc_id)
        json.dumps(item, ensure_ascii=False)
    assert data[0]["tags"], "a README with Kubernetes in it should get some tag"
    assert data[1]["tags"] == [] and "empty" in data[1]["reason"]

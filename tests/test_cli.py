"""The command line, through click's CliRunner, on the tiny hashing index (`--model hashing`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import DATABASE_README, GAME_README, K8S_README, assert_one_line_error, run, write_jsonl

from embedtag.glosses import load_glosses
from embedtag.index import load_index
from embedtag.tags import Tag


@pytest.fixture
def fake(fake_index_dir: Path) -> list[str]:
    return ["--index", str(fake_index_dir), "--model", "hashing"]


@pytest.fixture
def readme(tmp_path: Path) -> Path:
    path = tmp_path / "README.md"
    path.write_text(K8S_README, encoding="utf-8")
    return path


# ---- tag -----------------------------------------------------------------------------------


def test_tag_prints_exactly_id_and_tags(readme: Path, fake: list[str], fake_tags: list[Tag]) -> None:
    result = run("tag", readme, "--id", "1977", "--description", "Kubernetes operator", *fake)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1
    data = json.loads(result.stdout)
    assert list(data) == ["id", "tags"]
    assert data["id"] == "1977"
    assert 1 <= len(data["tags"]) <= 3
    assert set(data["tags"]) <= {t.name for t in fake_tags}
    assert data["tags"][0] == "k8s"


def test_tag_formats(readme: Path, fake: list[str]) -> None:
    outputs = {
        fmt: json.loads(run("tag", readme, "--id", "x", "--tag-format", fmt, *fake).stdout)
        for fmt in ("names", "ids", "objects")
    }
    assert outputs["objects"]["tags"][0] == {"id": 11, "name": "k8s"}
    assert outputs["ids"]["tags"] == [t["id"] for t in outputs["objects"]["tags"]]
    assert outputs["names"]["tags"] == [t["name"] for t in outputs["objects"]["tags"]]
    bad = run("tag", readme, "--tag-format", "xml", *fake)
    assert bad.exit_code == 2


def test_tag_trailing_space_name_verbatim(tmp_path: Path, fake: list[str]) -> None:
    result = run(
        "tag", "--description", "A Python library installable with pip", "--tag-format", "objects", *fake
    )
    assert json.loads(result.stdout)["tags"] == [{"id": 15, "name": "python "}]


def test_tag_explain(readme: Path, fake: list[str]) -> None:
    data = json.loads(run("tag", readme, "--explain", *fake).stdout)
    assert set(data) == {"id", "tags", "explain", "top_scores", "language"}
    assert data["language"] == {"cjk": 0.0, "mostly_chinese": False}  # English: no note
    assert list(data["explain"]) == data["tags"]
    assert data["explain"]["k8s"]["evidence"]
    assert isinstance(data["explain"]["k8s"]["score"], float)


def test_tag_from_stdin(fake: list[str]) -> None:
    result = run("tag", "-", "--id", "s", *fake, input=DATABASE_README.encode())
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"id": "s", "tags": ["database"]}


def test_tag_without_input_is_a_usage_error(fake: list[str]) -> None:
    assert_one_line_error(run("tag", *fake), 2, "give a README file", "--description")


def test_tag_missing_file(tmp_path: Path, fake: list[str]) -> None:
    assert_one_line_error(run("tag", tmp_path / "nope.md", *fake), 1, "nope.md does not exist")


def test_tag_directory_instead_of_file(tmp_path: Path, fake: list[str]) -> None:
    assert_one_line_error(run("tag", tmp_path, *fake), 1, "is a directory")


def test_tag_binary_readme_refused(tmp_path: Path, fake: list[str]) -> None:
    path = tmp_path / "logo.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    assert_one_line_error(run("tag", path, *fake), 1, "looks like a binary file")


def test_tag_empty_readme_with_description(tmp_path: Path, fake: list[str]) -> None:
    path = tmp_path / "README.md"
    path.write_bytes(b"")
    result = run("tag", path, "--id", "e", "--description", "SQL database engine with tables", *fake)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"id": "e", "tags": ["database"]}


def test_tag_empty_readme_without_description(tmp_path: Path, fake: list[str]) -> None:
    path = tmp_path / "README.md"
    path.write_bytes(b"")
    result = run("tag", path, "--id", "e", *fake)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["tags"] == [] and "empty" in data["reason"]


def test_tag_latin1_readme_is_read(tmp_path: Path, fake: list[str]) -> None:
    path = tmp_path / "README.md"
    path.write_bytes(DATABASE_README.encode() + "Caf\xe9 cr\xe8me.\n".encode("latin-1"))
    result = run("tag", path, *fake)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tags"][0] == "database"


def test_tag_with_missing_index(readme: Path, tmp_path: Path) -> None:
    assert_one_line_error(
        run("tag", readme, "--index", tmp_path / "none", "--model", "hashing"),
        1,
        "does not exist",
        "build-index",
    )


def test_tag_with_index_for_another_model(readme: Path, fake_built_index: Any, tmp_path: Path) -> None:
    from embedtag.encoders import HashingEncoder
    from embedtag.index import build_index

    other = build_index(fake_built_index.tags, {}, HashingEncoder(dimension=32)).save(tmp_path / "ix32")
    assert_one_line_error(
        run("tag", readme, "--index", other, "--model", "hashing"),
        1,
        "32-dim vectors",
        "gives 64",
        "build-index",
    )


# ---- batch ---------------------------------------------------------------------------------




@pytest.fixture
def batch_input(tmp_path: Path) -> Path:
    (tmp_path / "readmes").mkdir()
    (tmp_path / "readmes" / "db.md").write_text(DATABASE_README, encoding="utf-8")
    (tmp_path / "readmes" / "bin.dat").write_bytes(bytes(range(32)) * 100)
    return write_jsonl(
        tmp_path / "in.jsonl",
        [
            {"id": "k", "readme": K8S_README},
            {"id": 2, "readme_path": "readmes/db.md"},  # relative to the input file
            '{"id": "broken", ',
            {"description": "no id here"},
            "",  # a blank line is not a record
            {"id": "nothing"},
            {"id": "gone", "readme_path": "readmes/missing.md"},
            {"id": "binary", "readme_path": "readmes/bin.dat"},
            {"id": "d", "description": "A video game engine with levels and sprites"},
            {"id": "k", "readme": GAME_README},  # duplicate id
            "[1, 2]",
        ],
    )


def test_batch_one_line_per_record_in_order_with_errors(
    batch_input: Path, fake: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    result = run("batch", batch_input, "-o", out, *fake)
    assert result.exit_code == 1, result.output
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [x["id"] for x in lines] == ["k", "2", None, None, "nothing", "gone", "binary", "d", "k", None]
    assert lines[0] == {"id": "k", "tags": ["k8s"]}
    assert lines[1] == {"id": "2", "tags": ["database"]}
    assert lines[7] == {"id": "d", "tags": ["game"]}
    assert lines[8]["tags"][0] == "game" and "error" not in lines[8]
    errors = {i: x for i, x in enumerate(lines) if "error" in x}
    assert sorted(errors) == [2, 3, 4, 5, 6, 9]
    assert all(x["tags"] == [] for x in errors.values())
    assert errors[2]["line"] == 3 and "line 3 is not valid JSON" in errors[2]["error"]
    assert errors[3]["error"] == "line 4 has no 'id'"
    assert errors[4]["line"] == 6 and "has no 'readme', 'readme_path' or 'description'" in errors[4]["error"]
    assert "missing.md does not exist" in errors[5]["error"]
    assert "looks like a binary file" in errors[6]["error"]
    assert errors[9]["error"] == "line 11 is not a JSON object"
    summary = result.stderr.strip().splitlines()
    assert summary == ["embedtag batch: 10 records tagged; 6 failed; 1 duplicate ids (k)"]
    assert result.stdout == ""


def test_batch_to_stdout(batch_input: Path, fake: list[str], tmp_path: Path) -> None:
    result = run("batch", batch_input, *fake)
    out = tmp_path / "out.jsonl"
    run("batch", batch_input, "-o", out, *fake)
    assert result.stdout == out.read_text(encoding="utf-8")
    assert result.exit_code == 1


def test_batch_all_good_exits_zero(tmp_path: Path, fake: list[str]) -> None:
    path = write_jsonl(
        tmp_path / "in.jsonl", [{"id": "a", "readme": K8S_README}, {"id": "b", "readme": GAME_README}]
    )
    result = run("batch", path, "--tag-format", "ids", *fake)
    assert result.exit_code == 0, result.output
    assert [json.loads(x) for x in result.stdout.splitlines()] == [
        {"id": "a", "tags": [11]},
        {"id": "b", "tags": [16]},
    ]
    assert result.stderr.strip() == "embedtag batch: 2 records tagged; 0 failed"


def test_batch_unreadable_readme_path(tmp_path: Path, fake: list[str]) -> None:
    (tmp_path / "adir").mkdir()
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "readme_path": str(tmp_path / "adir")}])
    out = tmp_path / "out.jsonl"
    result = run("batch", path, "-o", out, *fake)
    assert result.exit_code == 1
    (line,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert line["id"] == "a" and "is a directory" in line["error"]


def test_batch_is_byte_identical_for_any_batch_size(
    batch_input: Path, fake: list[str], tmp_path: Path
) -> None:
    outputs = []
    for size in ("1", "2", "3", "64"):
        out = tmp_path / f"out{size}.jsonl"
        run("batch", batch_input, "-o", out, "--batch-size", size, *fake)
        outputs.append(out.read_bytes())
    assert outputs[0] and all(o == outputs[0] for o in outputs)


@pytest.mark.parametrize("cut", ["torn", "boundary", "empty", "one-char"])
def test_batch_resume_after_interruption(
    batch_input: Path, fake: list[str], tmp_path: Path, cut: str
) -> None:
    full = tmp_path / "full.jsonl"
    run("batch", batch_input, "-o", full, *fake)
    expected = full.read_bytes()
    lines = expected.splitlines(keepends=True)
    if cut == "torn":
        partial = b"".join(lines[:4]) + lines[4][: len(lines[4]) // 2]  # killed mid-line
    elif cut == "boundary":
        partial = b"".join(lines[:6])
    elif cut == "empty":
        partial = b""
    else:
        partial = b"{"
    out = tmp_path / "out.jsonl"
    out.write_bytes(partial)
    result = run("batch", batch_input, "-o", out, "--resume", *fake)
    assert result.exit_code == 1  # the error records are still errors
    assert out.read_bytes() == expected  # exactly one line per record, no duplicate, none lost
    kept = {"torn": 4, "boundary": 6, "empty": 0, "one-char": 0}[cut]
    if kept:
        assert f"{kept} kept from the earlier run" in result.stderr


def test_batch_resume_of_a_finished_run_adds_nothing(
    batch_input: Path, fake: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    run("batch", batch_input, "-o", out, *fake)
    before = out.read_bytes()
    result = run("batch", batch_input, "-o", out, "--resume", *fake)
    assert out.read_bytes() == before
    assert "0 records tagged" in result.stderr


def test_batch_resume_needs_output(batch_input: Path, fake: list[str]) -> None:
    assert_one_line_error(run("batch", batch_input, "--resume", *fake), 2, "--resume needs -o OUTPUT")


def test_batch_missing_input(tmp_path: Path, fake: list[str]) -> None:
    assert_one_line_error(run("batch", tmp_path / "none.jsonl", *fake), 2, "does not exist")


def test_batch_output_in_missing_directory(batch_input: Path, fake: list[str], tmp_path: Path) -> None:
    assert_one_line_error(
        run("batch", batch_input, "-o", tmp_path / "no" / "out.jsonl", *fake), 1, "out.jsonl"
    )


# ---- build-index ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('[{"id": 1, "name": "a"', "is not valid JSON"),
        ('[{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]', "id 1 is used twice"),
        ('[{"id": 1, "name": "a"}, {"id": 2, "name": "A "}]', "is used twice"),
        ("[]", "is empty"),
        ('[{"name": "a"}]', "has no 'id'"),
    ],
)
def test_build_index_bad_tag_list(tmp_path: Path, content: str, fragment: str) -> None:
    tags = tmp_path / "tags.json"
    tags.write_text(content, encoding="utf-8")
    out = tmp_path / "ix"
    result = run("build-index", "--tags", tags, "--model", "hashing", "--out", out)
    assert_one_line_error(result, 2, fragment)
    assert not out.exists()


def test_build_index_missing_tag_list(tmp_path: Path) -> None:
    result = run(
        "build-index", "--tags", tmp_path / "none.json", "--model", "hashing", "--out", tmp_path / "ix"
    )
    assert_one_line_error(result, 2, "does not exist")


def test_build_index_then_tag_with_it(tmp_path: Path) -> None:
    tags = tmp_path / "tags.json"
    tags.write_text(
        json.dumps([{"id": 1, "name": "k8s"}, {"id": 2, "name": "game "}, {"id": 3, "name": "database"}])
    )
    out = tmp_path / "ix"
    result = run("build-index", "--tags", tags, "--model", "hashing", "--out", out)
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().startswith(f"wrote {out}: 3 tags, ")
    index = load_index(out)
    assert [t.name for t in index.tags] == ["k8s", "game ", "database"]
    tagged = run(
        "tag",
        "--description",
        "Postgres database migrations tables and indexes",
        "--index",
        out,
        "--model",
        "hashing",
    )
    assert json.loads(tagged.stdout)["tags"][0] == "database"


def test_build_index_with_examples(tmp_path: Path) -> None:
    tags = tmp_path / "tags.json"
    tags.write_text(json.dumps([{"id": 1, "name": "k8s"}, {"id": 2, "name": "game"}]))
    examples = write_jsonl(tmp_path / "gold.jsonl", [{"id": "e1", "readme": GAME_README, "core": ["game"]}])
    out = tmp_path / "ix"
    result = run("build-index", "--tags", tags, "--model", "hashing", "--examples", examples, "--out", out)
    assert result.exit_code == 0, result.output
    index = load_index(out)
    assert [(e.id, e.core) for e in index.examples] == [("e1", (2,))]
    assert index.settings.example_weight > 0


def test_build_index_chunk_settings_are_stored_and_used(tmp_path: Path) -> None:
    out = tmp_path / "ix"
    result = run("build-index", "--model", "hashing", "--out", out, "--max-chunks", "2", "--max-tokens", "16")
    assert result.exit_code == 0, result.output
    index = load_index(out)
    assert (index.settings.max_chunks, index.settings.max_tokens) == (2, 16)
    from embedtag.encoders import HashingEncoder
    from embedtag.tagger import Document, Tagger

    long_readme = "\n\n".join(f"Paragraph {n} talks about databases and tables at some length here." for n in range(20))
    chunks = Tagger(index, HashingEncoder()).chunks(Document("x", long_readme))
    assert len(chunks) == 2 and all(HashingEncoder().count_tokens(c.text) <= 16 for c in chunks)
    assert "chunks      2 x 16 tokens" in run("info", "--index", out).stdout
    assert run("build-index", "--model", "hashing", "--out", out, "--max-chunks", "0").exit_code == 2


def test_build_index_min_tags_is_stored_and_used(tmp_path: Path, readme: Path) -> None:
    """--min-tags 0 lets a README get no tag (with its reason); 1 (the default) gives its best one."""
    for min_tags in ("0", "1"):
        out = tmp_path / f"ix{min_tags}"
        assert run("build-index", "--model", "hashing", "--out", out, "--min-tags", min_tags).exit_code == 0
        assert load_index(out).settings.min_tags == int(min_tags)
        # a threshold no tag reaches, written as a user editing the manifest would
        manifest = json.loads((out / "manifest.json").read_text())
        manifest["settings"]["threshold"] = 0.99
        (out / "manifest.json").write_text(json.dumps(manifest))
        result = run("tag", readme, "--index", out, "--model", "hashing")
        answer = json.loads(result.stdout)
        assert len(answer["tags"]) == int(min_tags), result.output
        assert ("reason" in answer) == (min_tags == "0")
    assert run("build-index", "--model", "hashing", "--out", out, "--min-tags", "4").exit_code == 2


def test_build_index_examples_with_unknown_tag(tmp_path: Path) -> None:
    tags = tmp_path / "tags.json"
    tags.write_text(json.dumps([{"id": 1, "name": "k8s"}]))
    examples = write_jsonl(tmp_path / "gold.jsonl", [{"id": "e1", "readme": GAME_README, "core": ["game"]}])
    result = run(
        "build-index", "--tags", tags, "--model", "hashing", "--examples", examples, "--out", tmp_path / "ix"
    )
    assert_one_line_error(result, 1, "tags not in the tag list: game")


# ---- glosses and info ----------------------------------------------------------------------


def test_glosses_writes_generated_glosses_for_unknown_tags(tmp_path: Path) -> None:
    tags = tmp_path / "tags.json"
    tags.write_text(json.dumps([{"id": 1, "name": "k8s"}, {"id": 2, "name": "zz-widget "}]))
    out = tmp_path / "glosses.json"
    result = run("glosses", "--tags", tags, "-o", out)
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == f"wrote {out}: 2 tags, 1 with generated glosses to review"
    document = json.loads(out.read_text(encoding="utf-8"))
    assert list(document) == ["k8s", "zz-widget"]
    assert "generated" not in document["k8s"] and document["k8s"]["expansion"] == "Kubernetes"
    assert document["zz-widget"]["generated"] is True
    assert document["zz-widget"]["expansion"] == "zz widget"
    assert len(document["zz-widget"]["glosses"]) == 3


def test_a_shipped_tag_spelt_another_way_gets_its_curated_glosses(tmp_path: Path) -> None:
    """`kubernetes` is k8s and `library` is lib (by expansion): glosses, project form and all, in
    `embedtag glosses` and in the index `build-index` writes; an exact name wins over a spelling."""
    shipped = load_glosses()
    tags = tmp_path / "tags.json"
    tags.write_text(json.dumps([{"id": 1, "name": "Kubernetes"}, {"id": 2, "name": "library"},
                                {"id": 3, "name": "zz-widget"}]))
    document = json.loads(run("glosses", "--tags", tags).stdout)
    assert document["Kubernetes"]["glosses"] == list(shipped["k8s"].glosses)
    assert document["library"]["glosses"] == list(shipped["lib"].glosses) and document["library"]["form"] is True
    assert document["zz-widget"]["generated"] is True
    out = tmp_path / "ix"
    assert run("build-index", "--tags", tags, "--model", "hashing", "--out", out).exit_code == 0
    index = load_index(out)
    assert index.form_tags == {2}
    assert set(shipped["k8s"].glosses) <= {t.text for t in index.texts if t.tag_id == 1}
    both = tmp_path / "both.json"
    both.write_text(json.dumps([{"id": 1, "name": "lib"}, {"id": 2, "name": "library"}]))
    document = json.loads(run("glosses", "--tags", both).stdout)
    assert "generated" not in document["lib"] and document["library"]["generated"] is True


def test_glosses_to_stdout_and_bad_tags(tmp_path: Path) -> None:
    tags = tmp_path / "tags.json"
    tags.write_text(json.dumps([{"id": 1, "name": "k8s"}]))
    result = run("glosses", "--tags", tags)
    assert list(json.loads(result.stdout)) == ["k8s"]
    tags.write_text("{}")
    assert_one_line_error(run("glosses", "--tags", tags), 2, "must be a JSON list")


def test_info(fake_index_dir: Path) -> None:
    result = run("info", "--index", fake_index_dir)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["index", str(fake_index_dir)]
    assert lines[1] == "model       hashing (hashing-64), 64 dims"
    assert lines[2] == "encoder     hashing (the index's own, for tests)"
    assert lines[3] == "tags        7"
    assert "forms       cli" in lines  # the tags that name a project form, from the glosses
    assert "chunks      12 x 64 tokens" in lines
    assert "thresholds  score >= 0.0, within 0.07 of the best, 1 to 3 tags" in lines
    assert "calibrated  no (zero-shot selection; 0 tag biases)" in lines


def test_info_missing_index(tmp_path: Path) -> None:
    assert_one_line_error(run("info", "--index", tmp_path / "none"), 1, "does not exist")


def test_info_uses_env_index(fake_index_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDTAG_INDEX", str(fake_index_dir))
    result = run("info")
    assert result.exit_code == 0
    assert "tags        7" in result.stdout


def test_help_and_version() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in ("tag", "batch", "build-index", "glosses", "info"):
        assert command in result.stdout
    assert "0.1.0" in run("--version").stdout

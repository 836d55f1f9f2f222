"""`embedtag.prompt`: the catalogue's LLM prompt read back into its parts.

The seed prompt (`../shared/data/examples/llm-prompt.txt`) is rebuilt here from files in the
repository (examples/kubeedge.md and the shipped tag list) and checked against the shared file
byte for byte where it is present; the property tests write generated variants of it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import FAKE_TAGS_JSON
from helpers import GAME_README, assert_one_line_error, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedtag.encoders import HashingEncoder
from embedtag.index import load_index
from embedtag.index_cache import IndexCache
from embedtag.prompt import PromptError, parse_prompt, split_content
from embedtag.tagger import Tagger, TagResult
from embedtag.tags import Tag, load_tags

REPO = Path(__file__).resolve().parents[1]
SHARED_SEED = REPO.parent / "shared" / "data" / "examples" / "llm-prompt.txt"
KUBEEDGE_MD = (REPO / "examples" / "kubeedge.md").read_text(encoding="utf-8")
KUBEEDGE_DESCRIPTION = "Kubernetes Native Edge Computing Framework (project under CNCF)"
DEFAULT_TAGS_COMPACT = json.dumps(
    json.loads((REPO / "embedtag" / "data" / "tags.json").read_text(encoding="utf-8")), separators=(",", ":")
)


def seed_form(description: str, readme: str, doc_id: str = "1977", tag_list: str = DEFAULT_TAGS_COMPACT) -> str:
    """A prompt exactly in the seed's form."""
    return (
        f'base on {description} {readme}", Assign "at most 3 tags" to the expected json: '
        f'{{"id":{json.dumps(doc_id)},"tags":[]}} "only from the tags list I provide: {tag_list}" '
        f'returns me the "expected json"'
    )


SEED = seed_form(KUBEEDGE_DESCRIPTION, KUBEEDGE_MD)


def test_seed_is_the_shared_file_verbatim() -> None:
    if not SHARED_SEED.is_file():
        pytest.skip(f"{SHARED_SEED} is not in this checkout's neighbourhood")
    assert SHARED_SEED.read_text(encoding="utf-8") == SEED


def test_seed_prompt_parts() -> None:
    parsed = parse_prompt(SEED)
    assert parsed.description == KUBEEDGE_DESCRIPTION
    assert parsed.readme.strip() == KUBEEDGE_MD.strip()
    assert parsed.template == {"id": "1977", "tags": []}
    assert parsed.id == "1977"
    assert parsed.tags == load_tags()
    spelled = {t.name for t in parsed.tags}
    assert {"declarative-gui ", "game-engine "} <= spelled  # trailing spaces kept


def test_answer_keeps_template_fields_in_order() -> None:
    parsed = parse_prompt(SEED.replace('{"id":"1977","tags":[]}', '{"id":1977,"source":"catalogue","tags":[],"v":2}'))
    result = TagResult("1977", [Tag(81, "game-engine "), Tag(38, "k8s")])
    answer = parsed.answer(result)
    assert list(answer) == ["id", "source", "tags", "v"]
    assert answer == {"id": 1977, "source": "catalogue", "tags": ["game-engine ", "k8s"], "v": 2}
    assert parsed.id == "1977"
    assert parsed.answer(result, "ids")["tags"] == [81, 38]


# ---- what people really paste -------------------------------------------------------------------

README = "# tool\n\nA small tool for parsing logs.\n\n## Usage\n\nRun it with a file name.\n"
SMALL_LIST = '[{"id":1,"name":"cli"},{"id":"2","name":"parser"},{"id":3,"name":"game "}]'


def small(prompt: str) -> Any:
    return parse_prompt(prompt)


@pytest.mark.parametrize(
    "prompt",
    [
        seed_form("Log parser", README, "7", SMALL_LIST),
        seed_form("Log parser", README, "7", SMALL_LIST).replace("base on", "Based on"),
        # curly quotes around everything
        seed_form("Log parser", README, "7", SMALL_LIST).replace('"', "\u201c"),
        # the instructions first, the content last
        f'Assign at most 3 tags to the expected json: {{"id": "7", "tags": []}}\nonly from the tags list I provide:\n'
        f"{SMALL_LIST}\n\nbased on: Log parser\n{README}",
        # code fences, pretty-printed JSON, blank lines
        f"based on Log parser\n{README}\n\nAssign at most 3 tags to the expected json:\n```json\n"
        f'{{\n  "id": "7",\n  "tags": []\n}}\n```\n\nOnly from the tags list I provide:\n```json\n'
        f"{json.dumps(json.loads(SMALL_LIST), indent=2)}\n```\nReturn only the expected json.",
        # list of tags before the expected JSON, Windows newlines in the instructions
        f'based on Log parser {README}"\r\nOnly from this list of tags: {SMALL_LIST}\r\nassign at most 3 to the '
        f'expected json {{"id":"7","tags":[]}}',
    ],
    ids=["seed-form", "Based-on", "curly-quotes", "list-first", "fences", "list-of-tags"],
)
def test_variants_read_the_same(prompt: str) -> None:
    parsed = small(prompt)
    assert parsed.description == "Log parser"
    assert parsed.readme.strip() == README.strip()
    assert parsed.template == {"id": "7", "tags": []}
    assert [(t.id, t.name) for t in parsed.tags] == [(1, "cli"), (2, "parser"), (3, "game ")]


def test_readme_json_and_quotes_are_not_taken_for_the_parts() -> None:
    readme = (
        '# api\n\nReturns `[{"id": 5, "name": "x"}]` and {"id": "9", "tags": ["y"]} from “the server”.\n'
        "The tag list of a post is an array.\n"
    )
    parsed = parse_prompt(seed_form("An API", readme, "3", SMALL_LIST))
    assert parsed.readme.strip() == readme.strip()
    assert "“the server”" in parsed.readme  # curly quotes in the README are kept as written
    assert parsed.template == {"id": "3", "tags": []}
    assert len(parsed.tags) == 3


@pytest.mark.parametrize(
    ("content", "description", "readme"),
    [
        (" # Title\nbody", "", "# Title\nbody"),  # two spaces after "base on": no description
        ("\n# Title\nbody", "", "# Title\nbody"),
        ("Desc <p align=center>x</p>\nmore", "Desc", "<p align=center>x</p>\nmore"),
        ("Desc [![badge](u)](l) text", "Desc", "[![badge](u)](l) text"),
        ("Desc [English](README.md) | [中文](x)\nbody", "Desc", "[English](README.md) | [中文](x)\nbody"),
        ("Firmware for X Firmware for X in Rust\n" + "=" * 22 + "\nbody", "Firmware for X",
         "Firmware for X in Rust\n" + "=" * 22 + "\nbody"),
        ("Title that is long\n===\nbody", "", "Title that is long\n===\nbody"),  # no fit: all README
        ("Only a description", "Only a description", ""),
        ("A C# library ## Intro\ntext", "A C# library", "## Intro\ntext"),
    ],
)
def test_description_and_readme_split(content: str, description: str, readme: str) -> None:
    assert split_content(content) == (description, readme)


@pytest.mark.parametrize(
    ("prompt", "missing"),
    [
        ('base on X # r\n", Assign "at most 3 tags" to the expected json: {"id":"1","tags":[]}', "no tag list"),
        (f'base on X # r\n" only from the tags list I provide: {SMALL_LIST}', "no expected JSON"),
        (f'Assign to the expected json: {{"id":"1","tags":[]}} only from the tags list: {SMALL_LIST}',
         "no project text"),
        ("Write me a poem about autumn.", "no tag list"),
        ("   ", "empty"),
        (seed_form("X", "# r", "1", '[{"id":1,"name":"a"},{"id":1,"name":"b"}]'), "id 1 is used twice"),
        (seed_form("X", "# r", "1", "[]"), "empty"),
        (seed_form("X", "# r", "1", '[{"id":1}]'), "no 'name'"),
    ],
)
def test_missing_parts_are_named(prompt: str, missing: str) -> None:
    with pytest.raises(PromptError) as info:
        parse_prompt(prompt)
    message = str(info.value)
    assert missing in message, message
    assert "\n" not in message


def test_long_whitespace_runs_stay_linear() -> None:
    # a README with long indentation runs once made a trailing-quote regex cubic
    readme = "# x\n" + ("text" + " " * 5000 + "\n") * 40
    parsed = parse_prompt(seed_form("d", readme, "1", SMALL_LIST))
    assert parsed.readme.strip() == readme.strip()


# ---- generated variants -------------------------------------------------------------------------

# Words that never spell an instruction ("assign", "only", "tags list", "expected json", "based on").
VOCAB = ["kube", "edge", "fast", "parser", "logs", "engine", "render", "pixel", "cloud", "queue", "Rust", "Go",
         "API", "v2", "über", "naïve", "x86", "data", "server", "tiny", "3D", "node", "crate", "module"]
words = st.lists(st.sampled_from(VOCAB), min_size=1, max_size=8).map(" ".join)
paragraph = st.one_of(words, words.map(lambda w: f"`{w}`"), words.map(lambda w: f"“{w}” {w}"),
                      words.map(lambda w: f'{{"key": "{w}"}}'), words.map(lambda w: f"- {w}"))
body = st.lists(paragraph, min_size=0, max_size=6).map("\n\n".join)
tag_names = st.lists(st.sampled_from([*VOCAB, "k8s", "cli", "game-engine ", "declarative-gui "]),
                     min_size=1, max_size=12, unique_by=lambda s: s.strip().lower())


@st.composite
def prompts(draw: st.DrawFn) -> tuple[str, str, str, Any, list[tuple[int, str]], dict[str, Any]]:
    description = draw(st.one_of(st.just(""), words))
    heading = draw(st.sampled_from(["# ", "## ", "<h1>", "![logo](l.png) ", "[![ci](b)](c) "]))
    readme = f"{heading}{draw(words)}\n\n{draw(body)}".strip()
    names = draw(tag_names)
    ids = draw(st.lists(st.integers(1, 999), min_size=len(names), max_size=len(names), unique=True))
    as_strings = draw(st.booleans())  # tag ids as "38" strings
    tag_list = [{"id": str(i) if as_strings else i, "name": n} for i, n in zip(ids, names, strict=True)]
    doc_id: Any = draw(st.one_of(st.just("1977"), st.integers(0, 10**6), words))
    template: dict[str, Any] = {"id": doc_id, "tags": []}
    if draw(st.booleans()):
        template["source"] = draw(words)
    indent = draw(st.sampled_from([None, 2]))
    fence = draw(st.booleans())

    def as_json(value: Any) -> str:
        text = json.dumps(value, indent=indent, ensure_ascii=draw(st.booleans()))
        return f"```json\n{text}\n```" if fence else text

    opener = draw(st.sampled_from(["base on", "based on", "Based on", "based on:"]))
    separator = " " if description else draw(st.sampled_from([" ", "\n"]))
    content = f"{opener} {description}{separator}{readme}"
    gap = draw(st.sampled_from([" ", "\n", "\n\n", " \t "]))
    expected_part = f'Assign "at most 3 tags" to the expected json:{gap}{as_json(template)}'
    list_part = f'"only from the tags list I provide:{gap}{as_json(tag_list)}"'
    parts = [expected_part, list_part] if draw(st.booleans()) else [list_part, expected_part]
    instructions = gap.join(parts)
    if draw(st.booleans()):
        instructions = instructions.replace('"', "\u201c")  # curly quotes pasted from a document
    if draw(st.booleans()):
        text = f'{content}",{gap}{instructions}{gap}returns me the "expected json"'
    else:
        text = f"{instructions}{gap}{content}"
    pairs = [(i, n) for i, n in zip(ids, names, strict=True)]
    return text, description, readme, doc_id, pairs, template


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prompts())
def test_generated_variants_read_back(case: tuple[str, str, str, Any, list[tuple[int, str]], dict[str, Any]]) -> None:
    text, description, readme, doc_id, pairs, template = case
    parsed = parse_prompt(text)
    assert parsed.description == description
    assert parsed.readme.strip() == readme
    assert parsed.template == template
    assert parsed.template["id"] == doc_id
    assert [(t.id, t.name) for t in parsed.tags] == pairs


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_parses_or_names_what_is_missing(text: str) -> None:
    try:
        parse_prompt(text)
    except PromptError as exc:
        assert re.search(r"no tag list|no expected JSON|no project text|empty|tag list", str(exc))


# ---- CLI -----------------------------------------------------------------------------------------


def test_cli_prompt_errors_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("Write me a poem.", encoding="utf-8")
    assert_one_line_error(run("tag", "--prompt", path), 2, "no tag list")
    assert_one_line_error(run("tag", "--prompt", tmp_path / "missing.txt"), 2, "does not exist")
    assert_one_line_error(run("tag", "README.md", "--prompt", path), 2, "--prompt carries")
    assert_one_line_error(run("tag", "--explain", "--prompt", path), 2, "--explain")


@pytest.mark.slow
def test_cli_answers_the_seed_prompt(tmp_path: Path) -> None:
    path = tmp_path / "llm-prompt.txt"
    path.write_text(SEED, encoding="utf-8")
    result = run("tag", "--prompt", path)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["id"] == "1977" and set(answer) == {"id", "tags"}
    assert {"k8s", "cloud-native"} <= set(answer["tags"])
    assert run("tag", "--prompt", "-", input=SEED).stdout == result.stdout


@pytest.mark.slow
def test_an_edited_tag_list_keeps_the_shipped_calibration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's list plus one tag is another list (an index is built for it), yet it keeps the
    shipped ranker and examples: the seed prompt gets the shipped answer, not a zero-shot one."""
    monkeypatch.setenv("EMBEDTAG_HOME", str(tmp_path / "home"))
    parsed = parse_prompt(SEED)
    tag_list = json.dumps([t.to_json() for t in parsed.tags] + [{"id": 500, "name": "knitting"}])
    path = tmp_path / "edited.txt"
    path.write_text(seed_form(parsed.description, parsed.readme, parsed.id, tag_list), encoding="utf-8")
    edited = run("tag", "--prompt", path)
    assert edited.exit_code == 0, edited.output
    assert any((tmp_path / "home" / "indexes").glob("*/manifest.json"))  # built for the edited list
    assert edited.stdout == run("tag", "--prompt", "-", input=SEED).stdout
    assert json.loads(edited.stdout)["tags"] == ["k8s", "cloud-native"]


def test_cli_prompt_with_its_own_tag_list(
    fake_index_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMBEDTAG_HOME", str(tmp_path / "home"))
    local = Tagger(load_index(fake_index_dir), HashingEncoder())
    own_list = '[{"id": 1, "name": "video-game"}, {"id": 2, "name": "database"}, {"id": 3, "name": "3d "}]'
    for tag_list, built in [(FAKE_TAGS_JSON, False), (own_list, True)]:
        prompt = seed_form("2D game", GAME_README, "g1", tag_list)
        path = tmp_path / "prompt.txt"
        path.write_text(prompt, encoding="utf-8")
        result = run("tag", "--prompt", path, "--index", fake_index_dir, "--model", "hashing")
        assert result.exit_code == 0, result.output
        parsed = parse_prompt(prompt)
        tagger, _ = IndexCache(local, use_disk=False).tagger_for(parsed.tags)
        expected = parsed.answer(tagger.tag(parsed.readme, parsed.description, parsed.id))
        assert json.loads(result.stdout) == expected and expected["tags"]
        assert any((tmp_path / "home" / "indexes").glob("*/manifest.json")) == built

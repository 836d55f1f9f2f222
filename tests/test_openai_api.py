"""`embedtag serve` as an OpenAI-compatible endpoint, called with the official `openai` client.

A real `embedtag serve` process on a loopback port. Most tests serve the tiny hashing encoder
(fast start, answers compared with the same tagger in-process); one serves the real model and
the shipped index and asks the seed prompt, as the catalogue app would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from conftest import FAKE_TAGS_JSON
from helpers import DATABASE_README, GAME_README, K8S_README, serve_process
from openai import OpenAI
from test_prompt import KUBEEDGE_DESCRIPTION, KUBEEDGE_MD, SEED, seed_form

from embedtag.encoders import HashingEncoder
from embedtag.index import load_index
from embedtag.index_cache import IndexCache
from embedtag.prompt import parse_prompt
from embedtag.tagger import Tagger

pytestmark = pytest.mark.allow_network  # loopback only: the server under test

API_KEY = "test-key-0123456789"
MAX_BODY = 200_000
TEN_TAGS = [
    {"id": 1, "name": "kubernetes"}, {"id": 2, "name": "edge-computing"}, {"id": 3, "name": "iot"},
    {"id": 4, "name": "database"}, {"id": 5, "name": "game "}, {"id": 6, "name": "machine-learning"},
    {"id": 7, "name": "web-framework"}, {"id": 8, "name": "security"}, {"id": 9, "name": "compiler"},
    {"id": 10, "name": "cloud-native"},
]


def ask(client: OpenAI, prompt: str, **kwargs: Any) -> Any:
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}], **kwargs
    )


# ---- the hashing-encoder server ---------------------------------------------------------------


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def server(fake_index_dir: Path, home: Path) -> Iterator[str]:
    with serve_process(fake_index_dir, "--api-key", API_KEY, "--max-body-bytes", str(MAX_BODY), home=home) as url:
        yield url


@pytest.fixture
def client(server: str) -> OpenAI:
    return OpenAI(base_url=f"{server}/v1", api_key=API_KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def local(fake_index_dir: Path) -> Tagger:
    return Tagger(load_index(fake_index_dir), HashingEncoder())


def expected(local: Tagger, prompt: str) -> str:
    """What the server must answer: the same prompt parsed and tagged in-process."""
    parsed = parse_prompt(prompt)
    tagger, _ = IndexCache(local, use_disk=False).tagger_for(parsed.tags)
    result = tagger.tag(parsed.readme, parsed.description, parsed.id)
    return json.dumps(parsed.answer(result), ensure_ascii=False)


PROMPTS = [
    seed_form("Kubernetes operator", K8S_README, "1977", FAKE_TAGS_JSON),
    seed_form("", DATABASE_README, "db-1", FAKE_TAGS_JSON),
    seed_form("2D game", GAME_README, "42", FAKE_TAGS_JSON).replace('"id":"42"', '"id":42,"lang":"en"'),
]


@pytest.mark.parametrize("prompt", PROMPTS, ids=["k8s", "database", "game-int-id"])
def test_answer_is_the_expected_json(client: OpenAI, local: Tagger, prompt: str) -> None:
    response = ask(client, prompt, temperature=0.2, top_p=1, max_tokens=50, seed=1,
                   response_format={"type": "json_object"})
    choice = response.choices[0]
    assert choice.message.content == expected(local, prompt)
    assert json.loads(choice.message.content)["tags"], "no tag at all: the check would be empty"
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert response.object == "chat.completion" and response.model == "embedtag-hashing"
    assert response.usage is not None
    assert response.usage.prompt_tokens == len(prompt.split())  # the hashing encoder counts words
    assert response.usage.completion_tokens == len(choice.message.content.split())
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_answer_keeps_the_templates_fields(client: OpenAI) -> None:
    answer = json.loads(ask(client, PROMPTS[2]).choices[0].message.content)
    assert list(answer) == ["id", "lang", "tags"] and answer["id"] == 42 and answer["lang"] == "en"


def test_streaming_assembles_the_same_content(client: OpenAI, local: Tagger) -> None:
    stream = ask(client, PROMPTS[0], stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == expected(local, PROMPTS[0])
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == len(PROMPTS[0].split())


def test_stream_is_server_sent_events_ending_with_done(server: str) -> None:
    body = {"model": "x", "stream": True, "messages": [{"role": "user", "content": PROMPTS[1]}]}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, headers=headers, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert all(json.loads(e[6:])["object"] == "chat.completion.chunk" for e in events[:-1])


def test_content_parts_system_messages_and_n(client: OpenAI, local: Tagger) -> None:
    head, _, tail = PROMPTS[0].partition('", Assign')
    response = client.chat.completions.create(
        model="any", n=2,
        messages=[
            {"role": "system", "content": "You are a helpful assistant that answers in JSON."},
            {"role": "user", "content": "an earlier question"},
            {"role": "assistant", "content": "an earlier answer"},
            {"role": "user", "content": [{"type": "text", "text": head}, {"type": "text", "text": '", Assign' + tail}]},
        ],
    )
    assert [c.message.content for c in response.choices] == [expected(local, PROMPTS[0])] * 2


def test_custom_tag_list_is_built_once_then_cached(client: OpenAI, server: str, local: Tagger) -> None:
    prompt = seed_form("Edge computing on Kubernetes for IoT devices", K8S_README, "9", json.dumps(TEN_TAGS))
    health = httpx.get(f"{server}/health").json()["index_cache"]
    first = client.chat.completions.with_raw_response.create(
        model="x", messages=[{"role": "user", "content": prompt}])
    second = client.chat.completions.with_raw_response.create(
        model="x", messages=[{"role": "user", "content": prompt}])
    assert first.headers["x-embedtag-index"] == "built"
    assert second.headers["x-embedtag-index"] == "memory"
    answers = [first.parse().choices[0].message.content, second.parse().choices[0].message.content]
    assert answers[0] == answers[1] == expected(local, prompt)
    assert set(json.loads(answers[0])["tags"]) <= {t["name"] for t in TEN_TAGS}
    after = httpx.get(f"{server}/health").json()["index_cache"]
    assert after["builds"] == health["builds"] + 1
    assert after["memory_hits"] == health["memory_hits"] + 1


def test_not_the_tagging_prompt_is_a_400_error_object(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, "Write me a poem about autumn.")
    error = info.value.body
    assert isinstance(error, dict)
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_prompt"
    assert "no tag list" in error["message"] and "tagging prompt only" in error["message"]
    with pytest.raises(openai.BadRequestError, match="no expected JSON"):
        ask(client, PROMPTS[0].replace("expected json", "wanted output"))
    with pytest.raises(openai.BadRequestError, match="only text content"):
        client.chat.completions.create(model="x", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}])
    with pytest.raises(openai.BadRequestError, match="no user message"):
        client.chat.completions.create(model="x", messages=[{"role": "system", "content": PROMPTS[0]}])


def test_bad_bodies_are_422_and_too_big_is_413(client: OpenAI, server: str) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as info:
        client.chat.completions.create(model="x", messages=[])
    assert info.value.body["param"] == "messages"  # type: ignore[index]
    with pytest.raises(openai.UnprocessableEntityError, match="response_format"):
        ask(client, PROMPTS[0], response_format={"type": "xml"})  # type: ignore[arg-type,typeddict-item]
    headers = {"Authorization": f"Bearer {API_KEY}"}
    raw = httpx.post(f"{server}/v1/chat/completions", content=b"[1, 2]", headers={
        **headers, "Content-Type": "application/json"})
    assert raw.status_code == 422 and raw.json()["error"]["code"] == "invalid_body"
    with pytest.raises(openai.APIStatusError) as big:
        ask(client, PROMPTS[0] + " " * MAX_BODY)
    assert big.value.status_code == 413
    assert big.value.body["code"] == "request_too_large"  # type: ignore[index]


def test_api_key(server: str) -> None:
    wrong = OpenAI(base_url=f"{server}/v1", api_key="not-the-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        ask(wrong, PROMPTS[0])
    assert info.value.status_code == 401 and info.value.body["code"] == "invalid_api_key"  # type: ignore[index]
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    assert httpx.post(f"{server}/tag", json={"id": "1", "readme": "x"}).status_code == 401  # the key guards /tag too
    assert httpx.post(f"{server}/tag", json={"id": "1", "readme": "x"},
                      headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200
    assert httpx.get(f"{server}/health").status_code == 200  # liveness stays open


def test_models(client: OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == ["embedtag-hashing"]
    assert client.models.retrieve("embedtag-hashing").owned_by == "embedtag"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_without_a_key_no_header_is_needed(fake_index_dir: Path, tmp_path: Path) -> None:
    with serve_process(fake_index_dir, home=tmp_path) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="anything", max_retries=0)
        assert json.loads(ask(client, PROMPTS[0]).choices[0].message.content)["id"] == "1977"


# ---- the real model and the shipped index --------------------------------------------------------


@pytest.mark.slow
def test_real_server_answers_the_seed_prompt(tmp_path: Path) -> None:
    with serve_process(None, "--api-key", API_KEY, model=None, home=tmp_path, startup_s=120) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, timeout=120)
        content = ask(client, SEED).choices[0].message.content
        answer = json.loads(content)
        assert set(answer) == {"id", "tags"} and answer["id"] == "1977"
        assert {"k8s", "cloud-native"} <= set(answer["tags"]) and len(answer["tags"]) <= 3
        streamed = "".join(c.choices[0].delta.content or "" for c in ask(client, SEED, stream=True) if c.choices)
        assert streamed == content
        ten = seed_form(KUBEEDGE_DESCRIPTION, KUBEEDGE_MD, "1977", json.dumps(TEN_TAGS))
        first = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": ten}])
        second = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": ten}])
        assert (first.headers["x-embedtag-index"], second.headers["x-embedtag-index"]) == ("built", "memory")
        tags = json.loads(first.parse().choices[0].message.content)["tags"]
        assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
        assert "kubernetes" in tags and set(tags) <= {t["name"] for t in TEN_TAGS}
        cache = httpx.get(f"{url}/health").json()["index_cache"]
        assert cache["builds"] == 1 and cache["memory_hits"] == 1 and cache["shipped"] == 2

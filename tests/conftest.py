"""Shared fixtures: no network anywhere, a tiny deterministic index, the real tagger (slow).

Network: a guard is installed on `socket` for the whole session (so that session fixtures,
such as loading the real model, are covered too). Every attempted connection or DNS lookup is
refused *and recorded*; the per-test fixture fails the test if anything was attempted, even
when a library swallowed the error. Tests marked `allow_network` may use loopback only
(127.0.0.0/8, ::1, localhost, unix sockets) — enough for a local server under test.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from embedtag.encoders import HashingEncoder
from embedtag.glosses import parse_glosses
from embedtag.index import TagIndex, build_index, load_index
from embedtag.tagger import Tagger
from embedtag.tags import Tag, parse_tags

pytest_plugins = ("pytester",)  # tests/test_network_guard.py runs the guard in an inner session

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INDEX_DIR = REPO_ROOT / "index"


# ---- markers -----------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_network: the test may open loopback connections (local servers); nothing else"
    )
    # `slow` is declared in pyproject.toml; declaring it again here keeps a bare checkout working.
    config.addinivalue_line("markers", "slow: loads the real bundled model (a few seconds)")


# ---- the network guard -------------------------------------------------------------------------


class NetworkBlockedError(RuntimeError):
    """Raised instead of opening a connection; a RuntimeError so `except OSError` cannot hide it."""


class _Guard:
    allow_loopback = False
    attempts: list[str] = []  # noqa: RUF012 - shared mutable state is the point


_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def _is_loopback_host(host: Any) -> bool:
    if host is None:
        return True  # getaddrinfo(None, port): a local bind address
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    host = host.strip("[]").split("%", 1)[0]
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _is_loopback_address(address: Any) -> bool:
    if isinstance(address, str | bytes):  # AF_UNIX path
        return True
    if isinstance(address, tuple) and address:
        return _is_loopback_host(address[0])
    return False


def _refuse(what: str) -> None:
    _Guard.attempts.append(what)
    raise NetworkBlockedError(f"network access is blocked in tests: {what}")


@pytest.fixture(scope="session", autouse=True)
def _socket_guard() -> Iterator[None]:
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex
    original_create_connection = socket.create_connection
    original_getaddrinfo = socket.getaddrinfo

    def allowed(address: Any) -> bool:
        return _Guard.allow_loopback and _is_loopback_address(address)

    def connect(self: socket.socket, address: Any) -> None:
        if not allowed(address):
            _refuse(f"socket.connect({address!r})")
        return original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not allowed(address):
            _refuse(f"socket.connect_ex({address!r})")
        return original_connect_ex(self, address)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        if not allowed(address):
            _refuse(f"socket.create_connection({address!r})")
        return original_create_connection(address, *args, **kwargs)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not (_Guard.allow_loopback and _is_loopback_host(host)):
            _refuse(f"socket.getaddrinfo({host!r})")
        return original_getaddrinfo(host, *args, **kwargs)

    patch = pytest.MonkeyPatch()
    patch.setattr(socket.socket, "connect", connect)
    patch.setattr(socket.socket, "connect_ex", connect_ex)
    patch.setattr(socket, "create_connection", create_connection)
    patch.setattr(socket, "getaddrinfo", getaddrinfo)
    try:
        yield
    finally:
        patch.undo()


@pytest.fixture
def network_guard() -> type[_Guard]:
    """The guard's state, for tests of the guard itself."""
    return _Guard


@pytest.fixture(autouse=True)
def no_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any test (or fixture it used) that tried to reach the network; unmarked tests get
    no loopback either. Also keeps the user's EMBEDTAG_* settings out of the tests."""
    monkeypatch.delenv("EMBEDTAG_INDEX", raising=False)
    monkeypatch.delenv("EMBEDTAG_MODEL", raising=False)
    marked = request.node.get_closest_marker("allow_network") is not None
    early = list(_Guard.attempts)  # attempts while session fixtures were being set up
    _Guard.attempts.clear()
    if early:
        pytest.fail(f"network access was attempted while setting up fixtures: {early}")
    _Guard.allow_loopback = marked
    try:
        yield
    finally:
        _Guard.allow_loopback = False
    attempts = list(_Guard.attempts)
    _Guard.attempts.clear()
    if attempts:
        pytest.fail(f"network access was attempted: {attempts}")


@pytest.fixture(scope="session")
def _session_vector_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store") / "vectors.sqlite"


@pytest.fixture(autouse=True)
def _no_user_vector_store(_session_vector_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`batch`/`tag`/`serve` keep a vector store by default: tests use one of their own."""
    monkeypatch.setenv("EMBEDTAG_CACHE", str(_session_vector_store))


@pytest.fixture(autouse=True)
def _backend_left_as_found() -> Iterator[None]:
    """`embedtag --backend X` sets EMBEDTAG_BACKEND for the process (so that `serve` workers and
    Ray actors inherit it); a test that runs the CLI in-process must not leave it to the next."""
    before = os.environ.get("EMBEDTAG_BACKEND")
    yield
    if before is None:
        os.environ.pop("EMBEDTAG_BACKEND", None)
    else:
        os.environ["EMBEDTAG_BACKEND"] = before


# ---- a tiny deterministic index (HashingEncoder: bag of words, no model) -----------------------

# "python " has a trailing space on purpose: output must repeat it verbatim.
FAKE_TAGS_JSON = json.dumps(
    [
        {"id": 11, "name": "k8s"},
        {"id": 12, "name": "database"},
        {"id": 13, "name": "machine-learning"},
        {"id": 14, "name": "cli"},
        {"id": 15, "name": "python "},
        {"id": 16, "name": "game"},
        {"id": 17, "name": "3d"},
    ]
)

FAKE_GLOSSES_JSON = json.dumps(
    {
        "k8s": {
            "aliases": ["kubernetes operator"],
            "glosses": [
                "Kubernetes operator controller for container orchestration clusters pods.",
                "Deploy containers on Kubernetes clusters with helm charts and pods.",
            ],
        },
        "database": [
            "A SQL database engine storing tables rows and running queries.",
            "Postgres database migrations tables and indexes.",
        ],
        "machine-learning": [
            "Train neural network models on datasets with gradient descent.",
            "Machine learning model training inference and evaluation.",
        ],
        "cli": {"glosses": ["A command line tool run from the terminal shell with flags."], "form": True},
        "python": ["A Python library installable with pip for python scripts."],
        "game": ["A video game with players levels sprites and a game engine."],
        "3d": ["Render 3D meshes scenes and shaders with WebGL graphics."],
    }
)


@pytest.fixture(scope="session")
def fake_tags() -> list[Tag]:
    return parse_tags(FAKE_TAGS_JSON, "fake tags")


@pytest.fixture(scope="session")
def fake_encoder() -> HashingEncoder:
    # the same encoder `--model hashing` gives the CLI (load_encoder("hashing"))
    return HashingEncoder()


@pytest.fixture(scope="session")
def fake_built_index(fake_tags: list[Tag], fake_encoder: HashingEncoder) -> TagIndex:
    return build_index(fake_tags, parse_glosses(FAKE_GLOSSES_JSON), fake_encoder)


@pytest.fixture(scope="session")
def fake_index_dir(fake_built_index: TagIndex, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved fake index. Shared by the session: copy it before changing anything in it."""
    return fake_built_index.save(tmp_path_factory.mktemp("fake") / "index")


@pytest.fixture(scope="session")
def fake_index(fake_index_dir: Path) -> TagIndex:
    return load_index(fake_index_dir)


@pytest.fixture(scope="session")
def fake_tagger(fake_index: TagIndex, fake_encoder: HashingEncoder) -> Tagger:
    return Tagger(fake_index, fake_encoder)


# ---- the real model (slow) ------------------------------------------------------------------


@pytest.fixture(scope="session")
def real_tagger() -> Tagger:
    """The bundled MiniLM on the committed default index, loaded once for all slow tests."""
    return Tagger.load(DEFAULT_INDEX_DIR)

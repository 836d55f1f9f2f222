"""A plain BERT with mean pooling, run from its folder's files: the spec, the tokenizer, the weights,
and the same arithmetic in numpy (cold starts) and as a torch module (batches, ONNX export)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from embedtag.encoders.base import _ADDITIVE_NORMALIZERS, _ADDITIVE_PRE_TOKENIZERS, _read_json
from embedtag.errors import ModelError


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


def pool_tokens(states: np.ndarray, lengths: list[int]) -> np.ndarray:
    """Mean over each row's first `lengths[r]` token states, L2-normalised, one row at a time.

    ONNX Runtime's reductions over a (batch, tokens, hidden) tensor round differently with the
    batch's size; the token states themselves do not. Pooling each row on its own in numpy makes
    a chunk's vector the same bits alone or in any batch, padded to any width.
    """
    out = np.empty((len(lengths), states.shape[-1]), dtype=np.float32)
    for row, length in enumerate(lengths):
        pooled = states[row, :length].sum(axis=0, dtype=np.float32) / np.float32(max(length, 1))
        norm = np.float32(np.sqrt(np.dot(pooled, pooled)))
        out[row] = pooled / max(norm, np.float32(1e-12))
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
    spec: BertSpec, weights: dict[str, np.ndarray] | None = None, explicit_attention: bool = False,
    smooth: dict[str, np.ndarray] | None = None, token_states: bool = False,
) -> Any:
    """A torch module: (input_ids, attention_mask) -> L2-normalised mean-pooled embeddings.

    The same arithmetic as transformers' BertModel + sentence-transformers' mean Pooling and
    Normalize. `explicit_attention` spells attention out (matmul, softmax) for ONNX export.
    The module shares the numpy `weights`' memory. `smooth` (SmoothQuant, for a static int8
    export) maps a linear layer's name to per-input-channel factors s: its input is divided by s
    and its weight columns multiplied by s, the same product with the outlier channels tamed.
    `token_states` returns the last layer's token states instead of pooled vectors (the ONNX
    files do: `pool_tokens` pools them row by row, so a vector never depends on its batch).
    """
    import torch
    import torch.nn.functional as F

    arrays = weights if weights is not None else bert_weights(spec)
    smoothing = {name: torch.from_numpy(np.asarray(f, dtype=np.float32)) for name, f in (smooth or {}).items()}
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
            if name in smoothing:
                factors = smoothing[name]
                return F.linear(x / factors, self.w[name + "_weight"] * factors, self.w[name + "_bias"])
            return F.linear(x, self.w[name + "_weight"], self.w[name + "_bias"])

        def _norm(self, x: Any, name: str) -> Any:
            return F.layer_norm(x, (hidden,), self.w[name + "_weight"], self.w[name + "_bias"], eps)

        def embed(self, input_ids: Any, attention_mask: Any) -> tuple[Any, Any]:
            """The embedding layer's output and the additive attention mask, as in BertModel."""
            w = self.w
            length = input_ids.shape[1]
            x = (
                F.embedding(input_ids, w["embeddings_word_embeddings_weight"])
                + w["embeddings_position_embeddings_weight"][:length]
                + w["embeddings_token_type_embeddings_weight"][0]
            )
            x = self._norm(x, "embeddings_LayerNorm")
            keep = attention_mask[:, None, None, :].to(x.dtype)
            return x, (1.0 - keep) * torch.finfo(x.dtype).min

        def layer(self, i: int, x: Any, bias: Any) -> Any:
            """Transformer layer `i` (of `spec.layers`)."""
            batch, length = x.shape[0], x.shape[1]
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
            x = self._norm(self._linear(context, p + "attention_output_dense") + x, p + "attention_output_LayerNorm")
            h = F.gelu(self._linear(x, p + "intermediate_dense"))
            return self._norm(self._linear(h, p + "output_dense") + x, p + "output_LayerNorm")

        def pool(self, x: Any, attention_mask: Any) -> Any:
            """Mean over the real tokens, L2-normalised (sentence-transformers' Pooling + Normalize)."""
            m = attention_mask[:, :, None].to(x.dtype)
            pooled = (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
            return F.normalize(pooled, p=2.0, dim=1)

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            x, bias = self.embed(input_ids, attention_mask)
            for i in range(spec.layers):
                x = self.layer(i, x, bias)
            return x if token_states else self.pool(x, attention_mask)

    return MeanPooledBert().eval()



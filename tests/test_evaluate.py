"""Metrics on a toy example computed by hand."""

from __future__ import annotations

import pytest

from embedtag.evaluate import GoldItem, evaluate, format_report

GOLD = [
    GoldItem("a", core=("k8s", "cloud-native"), also=("devops",)),
    GoldItem("b", core=("database",)),
    GoldItem("c", core=("ai",), also=("ml",)),
]
PREDICTIONS = [
    ["k8s ", "devops", "cli"],  # trailing space: compared trimmed
    [],
    ["ml", "ai"],
]
# predicted 5, relevant 4, strict correct 2 (k8s, ai), lenient correct 4 (k8s, devops, ml, ai)


def test_headline_metrics() -> None:
    report = evaluate(PREDICTIONS, GOLD)
    assert report.items == 3
    assert report.strict_precision == pytest.approx(2 / 5)
    assert report.strict_recall == pytest.approx(2 / 4)
    assert report.strict_f1 == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    assert report.lenient_precision == pytest.approx(4 / 5)
    assert report.hit_at_1 == pytest.approx(2 / 3)  # a: k8s core, b: empty, c: ml is an 'also'
    assert report.tags_per_item == pytest.approx(5 / 3)
    assert report.empty_share == pytest.approx(1 / 3)


def test_per_tag_table() -> None:
    per_tag = evaluate(PREDICTIONS, GOLD).per_tag
    got = {name: (s.support, s.predicted, s.correct) for name, s in per_tag.items()}
    assert got == {
        "k8s": (1, 1, 1),
        "cloud-native": (1, 0, 0),
        "devops": (0, 1, 0),  # defensible, but not core: no strict credit
        "cli": (0, 1, 0),
        "database": (1, 0, 0),
        "ai": (1, 1, 1),
        "ml": (0, 1, 0),
    }
    assert per_tag["k8s"].precision == 1.0 and per_tag["k8s"].recall == 1.0
    assert per_tag["cloud-native"].precision == 0.0 and per_tag["cloud-native"].recall == 0.0
    assert per_tag["cli"].precision == 0.0


def test_confusions_pair_wrong_predictions_with_missed_core_tags() -> None:
    # only "cli" is wrong (devops and ml are defensible); item a missed cloud-native
    assert evaluate(PREDICTIONS, GOLD).confusions == [("cli", "cloud-native", 1)]


def test_confusions_are_counted_over_items() -> None:
    gold = [GoldItem("x", ("api",)), GoldItem("y", ("api",)), GoldItem("z", ("db",))]
    report = evaluate([["cli"], ["cli"], ["cli", "db"]], gold)
    assert report.confusions == [("cli", "api", 2)]


def test_perfect_and_empty_predictions() -> None:
    perfect = evaluate([["k8s", "cloud-native"], ["database"], ["ai"]], GOLD)
    assert (perfect.strict_precision, perfect.strict_recall, perfect.strict_f1, perfect.hit_at_1) == (
        1,
        1,
        1,
        1,
    )
    nothing = evaluate([[], [], []], GOLD)
    assert (nothing.strict_precision, nothing.strict_recall, nothing.strict_f1) == (0, 0, 0)
    assert nothing.lenient_precision == 0 and nothing.empty_share == 1.0


def test_prediction_count_must_match() -> None:
    with pytest.raises(ValueError, match="2 predictions for 3 gold items"):
        evaluate([[], []], GOLD)


def test_json_and_text_report() -> None:
    report = evaluate(PREDICTIONS, GOLD)
    data = report.to_json()
    assert data["strict_precision"] == 0.4
    assert data["strict_f1"] == 0.4444
    assert data["hit_at_1"] == 0.6667
    assert list(data["per_tag"]) == sorted(data["per_tag"])
    assert data["per_tag"]["k8s"] == {"support": 1, "predicted": 1, "precision": 1.0, "recall": 1.0}
    assert data["confusions"] == [{"predicted": "cli", "gold": "cloud-native", "count": 1}]

    text = format_report(report)
    lines = text.splitlines()
    assert "strict precision   0.400" in lines
    assert "strict F1          0.444" in lines
    assert "hit@1              0.667" in lines
    assert "empty predictions  33.3%" in lines
    # per-tag rows: most support first, then by name
    rows = [
        line.split()[0]
        for line in lines[lines.index(next(x for x in lines if x.startswith("tag "))) + 1 :]
        if line and not line.startswith((" ", "most"))
    ]
    assert rows[:4] == ["ai", "cloud-native", "database", "k8s"]
    assert "  cli <- cloud-native: 1" in lines

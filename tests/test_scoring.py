"""Scoring: similarities per tag, votes, keywords, example votes, selection."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedtag.glosses import load_glosses, tag_cues
from embedtag.scoring import (
    CuePattern,
    ScoringSettings,
    aggregate_votes,
    cue_hits,
    cue_patterns,
    example_votes,
    keyword_hits,
    keyword_pattern,
    required_literal,
    select_tags,
    tag_similarities,
)
from embedtag.tags import load_tags

NAN = np.nan


def f32(rows: Sequence[Sequence[float]] | Sequence[float]) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


# ---- tag_similarities ----------------------------------------------------------------------


def test_tag_similarity_is_mean_of_its_top_k_texts() -> None:
    # texts 0,1 -> tag 0; texts 2,3,4 -> tag 1; tag 2 has no text
    sims = f32([[0.9, 0.1, 0.2, 0.8, 0.6], [0.0, 0.4, 0.5, 0.1, 0.3]])
    rows = np.array([0, 0, 1, 1, 1])
    out = tag_similarities(sims, rows, n_tags=3, top_k=2)
    expected = f32([[0.5, 0.7, -1.0], [0.2, 0.4, -1.0]])
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out.shape == (2, 3) and out.dtype == np.float32


def test_tag_similarity_top_1_is_the_best_text() -> None:
    sims = f32([[0.9, 0.1, 0.2, 0.8, 0.6]])
    out = tag_similarities(sims, np.array([0, 0, 1, 1, 1]), n_tags=2, top_k=1)
    np.testing.assert_allclose(out, f32([[0.9, 0.8]]), rtol=1e-6)


def test_tag_similarity_with_rows_in_any_order() -> None:
    sims = f32([[0.9, 0.1, 0.2, 0.8, 0.6]])
    rows = np.array([1, 0, 1, 0, 1])  # texts interleaved between tags
    out = tag_similarities(sims, rows, n_tags=2, top_k=2)
    np.testing.assert_allclose(out, f32([[0.45, 0.75]]), rtol=1e-6)


def test_top_k_larger_than_texts_uses_them_all() -> None:
    sims = f32([[0.3, 0.6]])
    out = tag_similarities(sims, np.array([0, 0]), n_tags=1, top_k=10)
    np.testing.assert_allclose(out, f32([[0.45]]), rtol=1e-6)


def test_texts_faiss_did_not_return_count_as_lowest() -> None:
    sims = f32([[0.9, NAN, 0.2, 0.3]])
    out = tag_similarities(sims, np.array([0, 0, 1, 1]), n_tags=2, top_k=2)
    assert not np.isnan(out).any()
    # the missing text counts as the lowest value seen (or 0): it cannot lift tag 0 above 0.45
    assert out[0, 0] == pytest.approx((0.9 + 0.0) / 2)
    assert out[0, 1] == pytest.approx(0.25)


def test_negative_sims_and_nan() -> None:
    sims = f32([[-0.5, NAN, -0.1]])
    out = tag_similarities(sims, np.array([0, 0, 1]), n_tags=2, top_k=2)
    assert out[0, 0] == pytest.approx(-0.5)  # NaN counts as the lowest seen, -0.5
    assert out[0, 1] == pytest.approx(-0.1)


# ---- aggregate_votes -----------------------------------------------------------------------


def test_aggregate_votes_weighted_mean_plus_max() -> None:
    tag_sims = f32([[0.8, 0.2], [0.2, 0.6]])
    weights = f32([3.0, 1.0])
    out = aggregate_votes(tag_sims, weights, mean_weight=0.8)
    # tag 0: mean (2.4 + 0.2)/4 = 0.65, max 0.8 -> 0.52 + 0.16 = 0.68
    # tag 1: mean (0.6 + 0.6)/4 = 0.30, max 0.6 -> 0.24 + 0.12 = 0.36
    np.testing.assert_allclose(out, f32([0.68, 0.36]), rtol=1e-5)


def test_aggregate_votes_pure_mean_and_pure_max() -> None:
    tag_sims = f32([[0.8, 0.2], [0.2, 0.6]])
    weights = f32([1.0, 1.0])
    np.testing.assert_allclose(aggregate_votes(tag_sims, weights, 1.0), f32([0.5, 0.4]), rtol=1e-6)
    np.testing.assert_allclose(aggregate_votes(tag_sims, weights, 0.0), f32([0.8, 0.6]), rtol=1e-6)


def test_aggregate_votes_no_chunks() -> None:
    out = aggregate_votes(np.zeros((0, 4), dtype=np.float32), np.zeros(0), 0.8)
    np.testing.assert_array_equal(out, np.zeros(4))


# ---- keywords ------------------------------------------------------------------------------


def test_keyword_pattern_whole_words_case_insensitive() -> None:
    pattern = keyword_pattern(["k8s", "Kubernetes", "x", " "])
    assert pattern is not None
    assert pattern.search("Runs on KUBERNETES clusters")
    assert pattern.search("Deploy to k8s.")
    assert pattern.search("(k8s)")
    assert not pattern.search("k8sx tooling")
    assert not pattern.search("my-k8s-tool")  # part of a hyphenated name
    assert not pattern.search("x marks the spot")  # 1-letter terms are dropped


def test_keyword_pattern_escapes_regex_characters() -> None:
    pattern = keyword_pattern(["c++", "node.js"])
    assert pattern is not None
    assert pattern.search("written in C++ for speed")
    assert pattern.search("a Node.js server")
    assert not pattern.search("a nodexjs server")


def test_keyword_pattern_nothing_usable() -> None:
    assert keyword_pattern([]) is None
    assert keyword_pattern(["a", " ", ""]) is None


def test_keyword_hits_vector() -> None:
    patterns = [keyword_pattern(["k8s"]), None, keyword_pattern(["database", "SQL"])]
    hits = keyword_hits("A SQL layer for k8s operators", patterns)
    np.testing.assert_array_equal(hits, f32([1.0, 0.0, 1.0]))
    np.testing.assert_array_equal(keyword_hits("nothing here", patterns), f32([0.0, 0.0, 0.0]))


# ---- example votes -------------------------------------------------------------------------


def test_example_votes_weighted_by_squared_similarity() -> None:
    sims = f32([0.8, 0.4, -0.3])
    labels: list[tuple[tuple[int, ...], tuple[int, ...]]] = [((0,), (2,)), ((1,), ()), ((2,), ())]
    votes = example_votes(sims, labels, n_tags=3)
    total = 0.64 + 0.16  # the negative neighbour weighs nothing
    np.testing.assert_allclose(votes, f32([0.64 / total, 0.16 / total, 0.5 * 0.64 / total]), rtol=1e-5)


def test_example_votes_all_dissimilar_or_none() -> None:
    np.testing.assert_array_equal(example_votes(f32([-0.2, 0.0]), [((0,), ()), ((1,), ())], 2), f32([0, 0]))
    np.testing.assert_array_equal(example_votes(f32([]), [], 3), f32([0, 0, 0]))


def test_example_votes_length_mismatch_refused() -> None:
    with pytest.raises(ValueError):
        example_votes(f32([0.5, 0.4]), [((0,), ())], 2)


# ---- selection -----------------------------------------------------------------------------


def test_select_best_first_within_margin() -> None:
    settings = ScoringSettings(threshold=0.3, margin=0.1, max_tags=3)
    scores = f32([0.40, 0.55, 0.50, 0.44, 0.20])
    assert select_tags(scores, settings) == [1, 2]  # 0.44 is 0.11 below the best


def test_select_at_most_max_tags() -> None:
    scores = f32([0.50, 0.51, 0.52, 0.53, 0.54])
    assert select_tags(scores, ScoringSettings(threshold=0.0, margin=1.0)) == [4, 3, 2]
    assert select_tags(scores, ScoringSettings(threshold=0.0, margin=1.0, max_tags=1)) == [4]


def test_select_threshold_cuts() -> None:
    scores = f32([0.50, 0.45, 0.39])
    assert select_tags(scores, ScoringSettings(threshold=0.42, margin=0.2)) == [0, 1]


def test_select_none_when_nothing_clears_the_threshold() -> None:
    scores = f32([0.30, 0.35, 0.20])
    assert select_tags(scores, ScoringSettings(threshold=0.4, margin=0.5, min_tags=0)) == []
    assert select_tags(scores, ScoringSettings(threshold=0.4, margin=0.5)) == [1]  # min_tags 1: the best
    assert select_tags(f32([]), ScoringSettings()) == []


def test_select_ties_keep_list_order() -> None:
    scores = f32([0.5, 0.5, 0.5, 0.5])
    assert select_tags(scores, ScoringSettings(threshold=0.0, margin=0.1)) == [0, 1, 2]


def test_tag_bias_lowers_a_tag_that_wins_too_often() -> None:
    settings = ScoringSettings(threshold=0.3, margin=0.05)
    scores = f32([0.60, 0.58, 0.40])
    assert select_tags(scores, settings) == [0, 1]
    bias = f32([0.10, 0.0, 0.0])  # tag 0 adjusted to 0.50: now tag 1 leads, tag 0 out of margin
    assert select_tags(scores, settings, bias) == [1]
    bias = f32([0.0, 0.0, -0.24])  # a negative bias lifts tag 2 to 0.64
    assert select_tags(scores, settings, bias) == [2, 0]


# ---- settings ------------------------------------------------------------------------------


def test_settings_json_round_trip() -> None:
    settings = ScoringSettings(threshold=0.31, margin=0.05, max_tags=2, tag_bias={64: 0.05, 3: -0.125})
    data = settings.to_json()
    assert data["tag_bias"] == {"3": -0.125, "64": 0.05}  # JSON keys, sorted
    assert ScoringSettings.from_json(data) == settings


def test_settings_from_json_ignores_unknown_and_fills_defaults() -> None:
    settings = ScoringSettings.from_json({"threshold": 0.2, "future_knob": 1})
    assert settings.threshold == 0.2
    assert settings.margin == ScoringSettings().margin
    assert settings.tag_bias == {}


# ---- README cues ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("pattern", "literal"),
    [
        (r"\bbrew install\b", "brew install"),
        (r"\bCLI\b", "cli"),
        (r"^usage:", "usage:"),
        (r"\bdevelopers?\b", "developer"),  # the optional s is not required
        (r"\bcheat ?sheet", "cheat"),
        (r"\bnpm (i|install) -g\b", "npm "),
        (r"#include\s*[<\"]", "#include"),
        (r"\b(windows|macos|linux)\b.*\bdownload", ""),  # starts with a group
        (r"^\s*\$ [\w-]+", ""),
        (r"foo bar|baz", ""),  # top-level alternation: either branch
        (r"[(]x|yyyy", ""),  # a parenthesis inside a class opens no group
        (r"\(foo\)|bar", ""),
        (r"ab", ""),  # too short to be worth checking
        (r"abc{2}", ""),
        (r"abcd{2}", "abc"),
    ],
)
def test_required_literal(pattern: str, literal: str) -> None:
    assert required_literal(pattern) == literal


def test_cue_hits_count_matching_cues_up_to_saturation() -> None:
    patterns = [cue_patterns([r"\bbrew install\b", r"\bCLI\b", r"--help\b", r"^usage:"]), [], cue_patterns(["xyz"])]
    text = "Install with `brew install foo`.\nUsage: foo --help\nA fast cli."
    assert cue_hits(text, patterns).tolist() == pytest.approx([1.0, 0.0, 0.0])
    assert cue_hits("run foo --help", patterns).tolist() == pytest.approx([1 / 3, 0.0, 0.0])


SHIPPED_CUES = [cue_patterns(v) for v in tag_cues(load_tags(), load_glosses()).values()]
CUE_WORDS = ["brew", "install", "pip", "npm", "i", "-g", "CLI", "cli", "--help", "usage:", "Usage:", "self-hosted",
             "docker-compose", "Developers", "developer", "tool", "$", "foo", "#include", "<x>", "import", "from",
             "ſelf-host", "K", "\n", "  ", "web", "UI", "tutorials", "Cheat", "sheet", "desktop", "Windows", ".exe"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(CUE_WORDS), max_size=30).map(" ".join))
def test_the_literal_check_never_changes_a_cue_hit(text: str) -> None:
    unfiltered = [[CuePattern(c.regex, "") for c in cues] for cues in SHIPPED_CUES]
    assert cue_hits(text, SHIPPED_CUES).tolist() == cue_hits(text, unfiltered).tolist()


def reference_tag_similarities(sims: np.ndarray, rows: np.ndarray, n_tags: int, top_k: int) -> np.ndarray:
    """The plain per-tag loop that `tag_similarities` vectorises."""
    filled = np.where(np.isnan(sims), np.nanmin(sims, initial=0.0), sims)
    out = np.full((sims.shape[0], n_tags), -1.0, dtype=np.float32)
    for tag in range(n_tags):
        block = filled[:, rows == tag]
        if block.shape[1]:
            out[:, tag] = np.sort(block, axis=1)[:, ::-1][:, :top_k].mean(axis=1)
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 6), st.integers(1, 5), st.integers(1, 4), st.integers(0, 2**32 - 1), st.floats(0.0, 0.5)
)
def test_vectorised_tag_similarities_equal_the_loop(
    n_chunks: int, n_tags: int, top_k: int, seed: int, nan_share: float
) -> None:
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, n_tags, rng.integers(1, 12))  # some tags may have no text at all
    sims = rng.uniform(-1, 1, (n_chunks, len(rows))).astype(np.float32)
    sims[rng.random(sims.shape) < nan_share] = np.nan
    np.testing.assert_allclose(
        tag_similarities(sims, rows, n_tags, top_k), reference_tag_similarities(sims, rows, n_tags, top_k), atol=1e-6
    )

"""`embedtag doctor`: what is wrong with a tag list, found with what the index already holds.

Three kinds of finding, each with a suggestion:

- **near-duplicates**: two tags whose texts (name, aliases, glosses) mean nearly the same to the
  model; READMEs then split between them at random. Measured on the mean of each tag's text
  vectors, which the index stores, so no encoding is needed.
- **unclear tags**: a tag with no curated gloss (only the generated placeholder lines), or a name
  the model cannot place: the bare name's vector is far from its own glosses (`julian` reads as
  a person's name, not the Julia language). This needs the model, once, on the bare names.
- **on a corpus**: tags that never reach a README's top three (nothing in the corpus looks like
  them to the tagger) and tags that win far more often than their expected share.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embedtag.errors import EmbedtagError
from embedtag.glosses import generate_glosses
from embedtag.index import TagIndex
from embedtag.language import has_cjk

if TYPE_CHECKING:
    from embedtag.encoders import Encoder
    from embedtag.tagger import Document, Tagger

# Cosine between two tags' mean gloss vectors at or above which they are near-duplicates.
# Default list (MiniLM): filesystem/storage 0.81, http/http-client 0.78, http/web-server 0.76.
DUPLICATE_THRESHOLD = 0.75
# With labelled examples in the index: two tags are near-duplicates in use when the READMEs
# labelled with them look alike (cosine of the mean example vectors) and annotators put both on
# the same READMEs. Default index (672 labelled READMEs): monitoring/observability 0.894 and 76% of
# the rarer one's READMEs; the next pairs below it, game/game-engine 0.889 and 3d/game-engine 0.888.
PROTOTYPE_THRESHOLD = 0.89
CO_LABEL_THRESHOLD = 0.5
MIN_EXAMPLES = 3
# A bare name is "unclear" when none of its own aliases and glosses is at least this similar to it
# (default list, MiniLM: iac 0.22, julian 0.30, dev-exp-lib 0.37, cicd 0.39; then security 0.45).
NAME_SIMILARITY_THRESHOLD = 0.4
NEIGHBOURS = 3
# On a corpus: a tag "wins too often" when it is picked at least this many times its expected
# share, and at least MIN_EXCESS (or 2% of the documents) more often than expected.
OVERUSE_RATIO = 2.0
MIN_EXCESS = 3

KINDS = ("near-duplicate", "no-gloss", "unclear-name", "never-top3", "wins-too-often")


@dataclass(frozen=True)
class Finding:
    kind: str  # one of KINDS
    tag: str
    detail: str
    suggestion: str
    related: tuple[str, ...] = ()
    value: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["related"] = list(self.related)
        data["value"] = round(self.value, 4)
        return data


@dataclass(frozen=True)
class NamePlacement:
    """How the model reads a bare tag name: its best cosine to the tag's own aliases and glosses
    (what the tag is said to mean), and the tag whose aliases or glosses it is nearest to."""

    similarity: float
    nearest: str


@dataclass(frozen=True)
class TagUsage:
    """On a corpus: how often a tag is picked, reaches the top three, and is expected."""

    picked: int
    top3: int
    expected: float


@dataclass
class DoctorReport:
    tags: list[str]
    similarity: np.ndarray  # tags x tags cosine of mean text vectors
    neighbours: dict[str, list[tuple[str, float]]]
    findings: list[Finding] = field(default_factory=list)
    names: dict[str, NamePlacement] | None = None
    usage: dict[str, TagUsage] | None = None
    corpus_size: int = 0
    expected_from: str = ""  # "gold labels" or "uniform share"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tags": len(self.tags),
            "findings": [f.to_json() for f in self.findings],
            "neighbours": {
                t: [{"tag": n, "similarity": round(s, 4)} for n, s in near] for t, near in self.neighbours.items()
            },
        }
        if self.names is not None:
            out["names"] = {
                t: {"similarity": round(p.similarity, 4), "nearest": p.nearest}
                for t, p in self.names.items()
            }
        if self.usage is not None:
            out["corpus"] = {
                "documents": self.corpus_size,
                "expected_from": self.expected_from,
                "tags": {
                    t: {"picked": u.picked, "top3": u.top3, "expected": round(u.expected, 2)}
                    for t, u in self.usage.items()
                },
            }
        return out


# ---- tag-text similarity -------------------------------------------------------------------


def _normalise(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    out: np.ndarray = rows / np.maximum(norms, 1e-9)
    return out


def tag_centroids(index: TagIndex, kinds: Iterable[str] | None = None) -> np.ndarray:
    """(tags x dim): each tag's mean text vector (of the given kinds; all if None), normalised.
    A tag with no such text gets its mean over all its texts. Texts in CJK (glosses.zh.json) are
    left out: the English encoder reads them as noise that would blur every tag alike."""
    wanted = set(kinds) if kinds is not None else None
    rows = index.tag_rows()
    out = np.zeros((len(index.tags), index.dimension), dtype=np.float64)
    fallback = np.zeros_like(out)
    for row, text, vector in zip(rows, index.texts, index.text_vectors, strict=True):
        fallback[row] += vector
        if has_cjk(text.text):
            continue
        if wanted is None or text.kind in wanted:
            out[row] += vector
    empty = ~out.any(axis=1)
    out[empty] = fallback[empty]
    return _normalise(out)


def tag_similarity(index: TagIndex) -> np.ndarray:
    """Cosine of the tags' mean gloss vectors: glosses are what README chunks are matched
    against (names and aliases are a few words, and near each other for unrelated tags)."""
    centroids = tag_centroids(index, kinds=("gloss",))
    sims: np.ndarray = centroids @ centroids.T
    return sims


def nearest_tags(sims: np.ndarray, names: Sequence[str], k: int = NEIGHBOURS) -> dict[str, list[tuple[str, float]]]:
    out: dict[str, list[tuple[str, float]]] = {}
    for i, name in enumerate(names):
        order = [j for j in np.argsort(-sims[i], kind="stable") if j != i][:k]
        out[name] = [(names[j], float(sims[i, j])) for j in order]
    return out


def near_duplicates(sims: np.ndarray, names: Sequence[str], threshold: float) -> list[Finding]:
    found = []
    n = len(names)
    for i in range(n):
        for j in range(i + 1, n):
            if sims[i, j] >= threshold:
                a, b = names[i], names[j]
                found.append(Finding(
                    "near-duplicate", a,
                    f"{a} and {b} mean nearly the same to the model (similarity {sims[i, j]:.2f})",
                    f"merge them (keep one, list the other as its alias), or rewrite their glosses so that "
                    f"they say what tells {a} projects from {b} projects",
                    (b,), float(sims[i, j]),
                ))
    return sorted(found, key=lambda f: -f.value)


def labelled_overlap(index: TagIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """From the index's labelled examples: (tags x tags) cosine of the mean vectors of the READMEs
    with each core tag, the share of the rarer tag's READMEs that carry both (core or also), and
    each tag's example count. None without examples."""
    if not index.examples or index.example_vectors is None:
        return None
    position = {t.id: i for i, t in enumerate(index.tags)}
    core = np.zeros((len(index.examples), len(index.tags)))
    any_label = np.zeros_like(core)
    for row, example in enumerate(index.examples):
        for t in example.core:
            core[row, position[t]] = any_label[row, position[t]] = 1.0
        for t in example.also:
            any_label[row, position[t]] = 1.0
    prototypes = _normalise(core.T @ index.example_vectors.astype(np.float64))
    counts = any_label.sum(axis=0)
    both = any_label.T @ any_label
    share = both / np.maximum(np.minimum(counts[:, None], counts[None, :]), 1.0)
    return prototypes @ prototypes.T, share, core.sum(axis=0)


def duplicates_in_use(index: TagIndex, names: Sequence[str], text_pairs: set[frozenset[str]]) -> list[Finding]:
    overlap = labelled_overlap(index)
    if overlap is None:
        return []
    proto, share, counts = overlap
    found = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            if frozenset((names[i], names[j])) in text_pairs or min(counts[i], counts[j]) < MIN_EXAMPLES:
                continue
            if proto[i, j] >= PROTOTYPE_THRESHOLD and share[i, j] >= CO_LABEL_THRESHOLD:
                a, b = names[i], names[j]
                found.append(Finding(
                    "near-duplicate", a,
                    f"{a} and {b} are used alike: their labelled READMEs look the same (similarity "
                    f"{proto[i, j]:.2f}) and {share[i, j]:.0%} of the rarer one's READMEs carry both",
                    f"merge them, or say in both glosses what tells {a} projects from {b} projects",
                    (b,), float(proto[i, j]),
                ))
    return sorted(found, key=lambda f: -f.value)


# ---- unclear tags ----------------------------------------------------------------------------


def generated_only(index: TagIndex) -> list[str]:
    """Tags whose glosses are the generated placeholders (nobody described them)."""
    by_tag: dict[int, list[str]] = {}
    for text in index.texts:
        if text.kind == "gloss":
            by_tag.setdefault(text.tag_id, []).append(text.text)
    out = []
    for tag in index.tags:
        glosses = by_tag.get(tag.id, [])
        placeholder = {g.casefold() for g in generate_glosses(tag.key).glosses}
        if not glosses or all(g.casefold() in placeholder for g in glosses):
            out.append(tag.key)
    return out


def place_names(index: TagIndex, encoder: Encoder) -> dict[str, NamePlacement]:
    """Encode each bare tag name and compare it with every tag's aliases and glosses."""
    names = [t.key for t in index.tags]
    vectors = _normalise(np.asarray(encoder.encode(names), dtype=np.float64))
    meaning = np.array([t.kind in ("alias", "gloss") and not has_cjk(t.text) for t in index.texts])
    rows = index.tag_rows()
    sims = vectors @ index.text_vectors.astype(np.float64).T
    sims[:, ~meaning] = -np.inf
    best = np.full((len(names), len(names)), -np.inf)
    np.maximum.at(best.T, rows, sims.T)  # best[name, tag]: the name's best text of that tag
    out: dict[str, NamePlacement] = {}
    for i, name in enumerate(names):
        own = float(best[i, i]) if np.isfinite(best[i, i]) else 0.0
        out[name] = NamePlacement(own, names[int(np.argmax(best[i]))])
    return out


def unclear_names(placements: dict[str, NamePlacement], index: TagIndex, min_similarity: float) -> list[Finding]:
    expansions = {t.tag_id: t.text for t in index.texts if t.kind == "name"}
    by_key = {t.key: t.id for t in index.tags}
    found = []
    for name, p in placements.items():
        if p.similarity >= min_similarity:
            continue
        name_text = expansions.get(by_key[name], name)
        elsewhere = f"; nearest to {p.nearest}'s texts" if p.nearest != name else ""
        if name_text != name:
            hint = (f"embedtag reads it as {name_text!r} (its expansion), but people and READMEs may not: "
                    f"consider a name that says it, and keep aliases that READMEs use")
        else:
            hint = f"give {name} an 'expansion' and aliases that spell out what it means, or rename it"
        found.append(Finding(
            "unclear-name", name,
            f"the model cannot place the bare name {name!r}: best similarity {p.similarity:.2f} to its own "
            f"aliases and glosses{elsewhere}",
            hint, (p.nearest,) if p.nearest != name else (), p.similarity,
        ))
    return sorted(found, key=lambda f: f.value)


# ---- usage on a corpus -----------------------------------------------------------------------


def corpus_usage(
    tagger: Tagger, docs: Sequence[Document], gold: Sequence[Sequence[str]] | None = None
) -> tuple[dict[str, TagUsage], str]:
    """Tag the corpus; count per tag how often it is picked and how often it is in a README's
    top three candidates. The expected count is the gold count where the corpus is labelled,
    else an even share of all picks."""
    names = [t.key for t in tagger.index.tags]
    by_name = {t.name: t.key for t in tagger.index.tags}
    picked = dict.fromkeys(names, 0)
    top3 = dict.fromkeys(names, 0)
    total = 0
    for result in tagger.tag_many(docs, explain=True):
        for tag in result.tags:
            picked[tag.key] += 1
            total += 1
        for name in list(result.scores)[:3]:  # `scores` holds the 8 best, best first
            top3[by_name[name]] += 1
    if gold is not None:
        expected = dict.fromkeys(names, 0.0)
        for tags in gold:
            for t in tags:
                if t in expected:
                    expected[t] += 1
        source = "gold labels"
    else:
        expected = dict.fromkeys(names, total / max(len(names), 1))
        source = "uniform share"
    return {n: TagUsage(picked[n], top3[n], expected[n]) for n in names}, source


def usage_findings(usage: dict[str, TagUsage], n_docs: int) -> list[Finding]:
    found = []
    min_excess = max(MIN_EXCESS, 0.02 * n_docs)
    for name, u in usage.items():
        if u.top3 == 0:
            found.append(Finding(
                "never-top3", name,
                f"{name} never reached a README's top three on the corpus ({n_docs} READMEs; "
                f"expected {u.expected:.1f})",
                f"add glosses that read like the READMEs of {name} projects, or labelled examples "
                "(`embedtag learn`, then `embedtag calibrate --from-store`)",
                value=u.expected,
            ))
        elif u.picked >= OVERUSE_RATIO * u.expected and u.picked - u.expected >= min_excess:
            found.append(Finding(
                "wins-too-often", name,
                f"{name} was picked {u.picked} times, {u.picked / max(u.expected, 1e-9):.1f}x its expected "
                f"{u.expected:.1f}",
                f"make {name}'s glosses narrower (they match too much), or add examples of projects that "
                f"are not {name}",
                value=u.picked / max(u.expected, 1e-9),
            ))
    return found


# ---- the whole check -------------------------------------------------------------------------


def diagnose(
    index: TagIndex,
    encoder: Encoder | None = None,
    tagger: Tagger | None = None,
    corpus: Sequence[Document] | None = None,
    gold: Sequence[Sequence[str]] | None = None,
    duplicate_threshold: float = DUPLICATE_THRESHOLD,
) -> DoctorReport:
    """Every finding for `index`'s tag list. `encoder` enables the name check; `tagger` and
    `corpus` the usage check (`gold`: the corpus' core tags, to compare against)."""
    names = [t.key for t in index.tags]
    sims = tag_similarity(index)
    report = DoctorReport(names, sims, nearest_tags(sims, names))
    findings = near_duplicates(sims, names, duplicate_threshold)
    findings += duplicates_in_use(index, names, {frozenset((f.tag, *f.related)) for f in findings})
    for name in generated_only(index):
        findings.append(Finding(
            "no-gloss", name, f"{name} has no curated gloss, only generated placeholder lines",
            f"write 4-6 one-line glosses of what a {name} project looks like (`embedtag glosses` makes the file "
            "to edit), then `embedtag build-index --glosses FILE`",
        ))
    if encoder is not None:
        report.names = place_names(index, encoder)
        findings.extend(unclear_names(report.names, index, NAME_SIMILARITY_THRESHOLD))
    if corpus is not None:
        if tagger is None:
            raise ValueError("a corpus needs a tagger")
        report.usage, report.expected_from = corpus_usage(tagger, corpus, gold)
        report.corpus_size = len(corpus)
        findings.extend(usage_findings(report.usage, len(corpus)))
    order = {k: i for i, k in enumerate(KINDS)}
    report.findings = sorted(findings, key=lambda f: order[f.kind])
    return report


def format_report(report: DoctorReport) -> str:
    """The readable table: findings first, then each tag's nearest tags."""
    lines = [f"{len(report.tags)} tags, {len(report.findings)} findings", ""]
    if report.findings:
        width = max(len(f.tag) for f in report.findings)
        lines.append(f"{'kind':<15} {'tag':<{width}}  finding / suggestion")
        for f in report.findings:
            lines.append(f"{f.kind:<15} {f.tag:<{width}}  {f.detail}")
            lines.append(f"{'':<15} {'':<{width}}  -> {f.suggestion}")
        lines.append("")
    lines.append("nearest tags (tag-text similarity)")
    width = max(len(t) for t in report.tags)
    for tag, near in report.neighbours.items():
        lines.append(f"  {tag:<{width}}  " + ", ".join(f"{n} {s:.2f}" for n, s in near))
    return "\n".join(lines)


def plot_similarity(report: DoctorReport, path: str | Path) -> None:
    """A tag-similarity heatmap (PNG), tags ordered so that similar tags sit together."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EmbedtagError("--plot needs matplotlib: pip install 'embedtag[plot]'") from None
    order = _chain_order(report.similarity)
    sims = report.similarity[np.ix_(order, order)]
    labels = [report.tags[i] for i in order]
    size = max(6.0, 0.12 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(sims, cmap="viridis", vmin=max(-1.0, float(sims.min())), vmax=1.0)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
    ax.set_yticks(range(len(labels)), labels, fontsize=6)
    ax.set_title("tag-text similarity (embedtag doctor)")
    fig.colorbar(image, ax=ax, shrink=0.7)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise EmbedtagError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        plt.close(fig)


def _chain_order(sims: np.ndarray) -> list[int]:
    """Greedy nearest-neighbour chain: each next tag is the most similar one not yet placed."""
    n = len(sims)
    if n == 0:
        return []
    order, left = [0], set(range(1, n))
    while left:
        last = order[-1]
        nxt = max(left, key=lambda j: sims[last, j])
        order.append(nxt)
        left.remove(nxt)
    return order


def read_corpus(path: str | Path) -> tuple[list[Document], list[list[str]] | None]:
    """READMEs to tag (batch input JSONL); their `core` tags when every line has them."""
    import json

    from embedtag.errors import InputError
    from embedtag.records import read_records

    docs: list[Document] = []
    gold: list[list[str]] = []
    labelled = True
    with Path(path).open("rb") as handle:
        raw_lines = [line for line in handle if line.strip()]
    for record, raw in zip(read_records(path), raw_lines, strict=True):
        if record.document is None:
            raise InputError(f"corpus {path}: {record.error}")
        docs.append(record.document)
        core = json.loads(raw).get("core")
        if isinstance(core, list):
            gold.append([str(t).strip() for t in core])
        else:
            labelled = False
    if not docs:
        raise InputError(f"corpus {path} has no records")
    return docs, gold if labelled else None

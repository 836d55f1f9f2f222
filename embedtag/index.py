"""The tag index: tag texts embedded once into FAISS, plus a JSON manifest (never a pickle)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from embedtag.encoders import Encoder
from embedtag.encoders.adapter import ADAPTER_FILE
from embedtag.encoders.base import file_sha256, model_family
from embedtag.errors import IndexError_
from embedtag.exemplars import EXEMPLAR_WEIGHT
from embedtag.glosses import TagGlosses, TagText, form_tags, tag_cues, tag_keywords, tag_texts
from embedtag.head import HEAD_FILE, TagHead
from embedtag.scoring import ScoringSettings
from embedtag.tags import Tag, tags_fingerprint

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TEXT_VECTORS = "tags.faiss"
EXAMPLE_VECTORS = "examples.faiss"
EXAMPLE_CHUNK_VECTORS = "example_chunks.faiss"
EXEMPLAR_VECTORS = "exemplars.faiss"
REBUILD_HINT = "rebuild it with `embedtag build-index --out DIR` (see README)"


def default_index_path() -> Path:
    """The default index: $EMBEDTAG_INDEX, else `index/` of the checkout the package runs from
    (the shipped index, built for the default tag list), else `embedtag/data/index`."""
    env = os.environ.get("EMBEDTAG_INDEX")
    if env:
        return Path(env)
    package = Path(str(resources.files("embedtag")))
    checkout = package.parent / "index"
    if (checkout / MANIFEST).is_file():
        return checkout
    return package / "data" / "index"


def texts_fingerprint(texts: list[TagText]) -> str:
    payload = json.dumps([[t.tag_id, t.kind, t.text] for t in texts], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _faiss() -> Any:
    import faiss

    return faiss


def _flat_index(vectors: np.ndarray, half: bool = False) -> Any:
    """An inner-product FAISS index; `half` stores float16 (exemplars: half the size, same votes)."""
    faiss = _faiss()
    dim = int(vectors.shape[1])
    if half:
        index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexFlatIP(dim)
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


@dataclass(frozen=True)
class Example:
    """A labelled README kept as a prototype: its document vector lives in examples.faiss, its
    `chunks` chunk vectors (in example order) in example_chunks.faiss."""

    id: str
    core: tuple[int, ...]
    also: tuple[int, ...] = ()
    # a person's correction (`embedtag calibrate --from-store`): the answer for this very text
    corrected: bool = False
    chunks: int = 0


@dataclass
class TagIndex:
    """Tag texts and their vectors, and everything needed to check that they still fit."""

    tags: list[Tag]
    texts: list[TagText]
    text_vectors: np.ndarray
    model_name: str
    model_fingerprint: str
    max_tokens: int
    settings: ScoringSettings = field(default_factory=ScoringSettings)
    keywords: dict[int, list[str]] = field(default_factory=dict)
    cues: dict[int, list[str]] = field(default_factory=dict)
    # ids of the tags that name a project form (lib, cli, web-app...: `TagGlosses.form`)
    form_tags: frozenset[int] = frozenset()
    examples: list[Example] = field(default_factory=list)
    example_vectors: np.ndarray | None = None
    # every example's chunk vectors, example after example (Example.chunks of each)
    example_chunk_vectors: np.ndarray | None = None
    # exemplars (embedtag.exemplars): tag ids per exemplar and their vectors; never their text
    exemplar_tags: list[tuple[int, ...]] = field(default_factory=list)
    # per exemplar, its secondary (`also`) tag ids: empty, or as long as `exemplar_tags`
    exemplar_also: list[tuple[int, ...]] = field(default_factory=list)
    exemplar_vectors: np.ndarray | None = None
    exemplar_source: str = ""
    # an `embedtag train` adapter the encoder ran with (safetensors bytes), saved beside the vectors
    adapter: bytes | None = field(default=None, repr=False)
    # a trained tag head (embedtag.head), saved beside the vectors as HEAD_FILE
    head: TagHead | None = field(default=None, repr=False)
    _faiss_texts: Any = field(default=None, repr=False)
    _faiss_examples: Any = field(default=None, repr=False)
    _faiss_example_chunks: Any = field(default=None, repr=False)

    @property
    def dimension(self) -> int:
        return int(self.text_vectors.shape[1])

    @property
    def texts_fingerprint(self) -> str:
        return texts_fingerprint(self.texts)

    def tag_rows(self) -> np.ndarray:
        """For each text vector, the position of its tag in `tags`."""
        position = {tag.id: i for i, tag in enumerate(self.tags)}
        return np.array([position[t.tag_id] for t in self.texts], dtype=np.int64)

    def form_mask(self) -> np.ndarray:
        """Per tag, in `tags` order, whether it names a project form."""
        return np.array([tag.id in self.form_tags for tag in self.tags], dtype=bool)

    def faiss_texts(self) -> Any:
        if self._faiss_texts is None:
            self._faiss_texts = _flat_index(self.text_vectors)
        return self._faiss_texts

    def faiss_examples(self) -> Any:
        if self._faiss_examples is None and self.example_vectors is not None:
            self._faiss_examples = _flat_index(self.example_vectors)
        return self._faiss_examples

    def faiss_example_chunks(self) -> Any:
        if self._faiss_example_chunks is None and self.example_chunk_vectors is not None:
            self._faiss_example_chunks = _flat_index(self.example_chunk_vectors)
        return self._faiss_example_chunks

    def example_chunk_groups(self) -> list[np.ndarray]:
        """Each example's own chunk vectors (empty lists without chunk vectors)."""
        if self.example_chunk_vectors is None:
            return []
        ends = np.cumsum([e.chunks for e in self.examples])[:-1]
        return np.split(self.example_chunk_vectors, ends)

    def example_chunk_owners(self) -> np.ndarray:
        """For each example chunk vector, the row of its example."""
        return np.repeat(np.arange(len(self.examples)), [e.chunks for e in self.examples])

    def check_encoder(self, encoder: Encoder) -> None:
        """Refuse to score with vectors from a model other than the one that built the index."""
        # the usual cause is a forgotten --model: say so before suggesting a rebuild
        hint = f"pass the --model it was built with ({self.model_name}), or {REBUILD_HINT}"
        if encoder.dimension != self.dimension:
            raise IndexError_(
                f"index was built with {self.dimension}-dim vectors from {self.model_name}, the "
                f"model in use gives {encoder.dimension}; {hint}"
            )
        # the int8 encoder approximates the float model: an index built with either serves both
        if model_family(encoder.fingerprint()) != model_family(self.model_fingerprint):
            raise IndexError_(
                f"index was built with model {self.model_name} ({self.model_fingerprint}), the model "
                f"in use is {encoder.name} ({encoder.fingerprint()}); {hint}"
            )

    def check_tags(self, tags: list[Tag]) -> None:
        if tags_fingerprint(tags) != tags_fingerprint(self.tags):
            raise IndexError_(
                f"index was built for another tag list ({len(self.tags)} tags); "
                f"rebuild it with `embedtag build-index --tags FILE --out DIR`"
            )

    # ---- another tag list --------------------------------------------------------------------

    def without_learning(self) -> TagIndex:
        """Only the tag list and its embedded texts: no examples, exemplars or fitted settings."""
        return replace(
            self,
            settings=_zero_shot_settings(self.settings, exemplars=False),
            examples=[],
            example_vectors=None,
            example_chunk_vectors=None,
            exemplar_tags=[],
            exemplar_also=[],
            exemplar_vectors=None,
            exemplar_source="",
            head=None,
            _faiss_examples=None,
            _faiss_example_chunks=None,
        )

    def retarget(self, onto: TagIndex, mapping: Mapping[int, int], min_shared: float) -> TagIndex:
        """This index as it would answer for `onto`'s tag list: `onto`'s tags and embedded texts
        with what this index learned that applies to them. `mapping` is this index's tag id →
        `onto`'s for the tags both lists name (which names match is the caller's policy:
        `embedtag.transfer.id_map`).

        The exemplars of shared tags always carry over; the labelled examples and the fitted
        ranker (biases following their tags) only when at least `min_shared` of `onto`'s tags are
        in `mapping`, else it scores zero-shot. Anything `onto` had learned is replaced. Arrays are
        shared with this index, not copied: one index per request's list must stay cheap."""
        unknown = sorted(set(mapping) - {tag.id for tag in self.tags})
        strays = sorted(set(mapping.values()) - {tag.id for tag in onto.tags})
        if unknown or strays:
            # a wrong mapping would silently drop or mislabel votes: say which ids are off
            raise IndexError_(
                f"cannot retarget: the mapping names ids {unknown or strays} that are not in the "
                f"{'source' if unknown else 'target'} tag list"
            )
        index = _carry_exemplars(self, onto.without_learning(), mapping)
        if onto.tags and len(mapping) >= min_shared * len(onto.tags):
            index = _carry_examples(self, index, mapping)
            settings = _carry_settings(self.settings, mapping, [tag.id for tag in self.tags])
        else:
            settings = _zero_shot_settings(self.settings, exemplars=index.exemplar_vectors is not None)
        # the tag head answers for the shared tags it was trained on, the others fall back to the rest
        # of the evidence (as tags new to the ranker do); it goes with the ranker that weighs it
        head = self.head.remapped(dict(mapping)) if self.head is not None and settings.ranker is not None else None
        return replace(index, settings=settings, head=head)

    # ---- persistence -------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "model": {
                "name": self.model_name,
                "fingerprint": self.model_fingerprint,
                "dimension": self.dimension,
                "max_tokens": self.max_tokens,
                **({"adapter": ADAPTER_FILE} if self.adapter is not None else {}),
            },
            "tags": [tag.to_json() for tag in self.tags],
            "tags_fingerprint": tags_fingerprint(self.tags),
            "texts_fingerprint": self.texts_fingerprint,
            "texts": [{"tag_id": t.tag_id, "kind": t.kind, "text": t.text} for t in self.texts],
            "keywords": {str(k): v for k, v in self.keywords.items()},
            "cues": {str(k): v for k, v in self.cues.items()},
            "form_tags": sorted(self.form_tags),
            "settings": self.settings.to_json(),
            **(
                {"head": {"file": HEAD_FILE, "tags": len(self.head.tag_ids), "trained_on": self.head.trained_on}}
                if self.head is not None else {}
            ),
            "exemplars": {
                "source": self.exemplar_source,
                "count": len(self.exemplar_tags),
                # one "id,id" string per exemplar keeps the manifest short and readable
                "tags": [",".join(str(t) for t in tags) for tags in self.exemplar_tags],
                **(
                    {"also": [",".join(str(t) for t in tags) for tags in self.exemplar_also]}
                    if any(self.exemplar_also) else {}
                ),
            },
            "examples": [
                {
                    "id": e.id, "core": list(e.core), "also": list(e.also),
                    **({"chunks": e.chunks} if e.chunks else {}),
                    **({"corrected": True} if e.corrected else {}),
                }
                for e in self.examples
            ],
        }

    def save(self, out_dir: str | Path) -> Path:
        """Write atomically: a complete index appears under `out_dir` or nothing changes.

        Concurrent builds each write their own temp dir; the last rename wins whole.
        """
        faiss = _faiss()
        out = Path(out_dir).resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            faiss.write_index(_flat_index(self.text_vectors), str(tmp / TEXT_VECTORS))
            manifest = self.manifest()
            manifest["files"] = {TEXT_VECTORS: file_sha256(tmp / TEXT_VECTORS)}
            if self.example_vectors is not None and len(self.examples):
                faiss.write_index(_flat_index(self.example_vectors), str(tmp / EXAMPLE_VECTORS))
                manifest["files"][EXAMPLE_VECTORS] = file_sha256(tmp / EXAMPLE_VECTORS)
            if self.example_chunk_vectors is not None and len(self.example_chunk_vectors):
                # float16 halves the file: 3.6 MB for the dev set's 4,627 chunks
                faiss.write_index(_flat_index(self.example_chunk_vectors, half=True), str(tmp / EXAMPLE_CHUNK_VECTORS))
                manifest["files"][EXAMPLE_CHUNK_VECTORS] = file_sha256(tmp / EXAMPLE_CHUNK_VECTORS)
            if self.exemplar_vectors is not None and len(self.exemplar_tags):
                faiss.write_index(_flat_index(self.exemplar_vectors, half=True), str(tmp / EXEMPLAR_VECTORS))
                manifest["files"][EXEMPLAR_VECTORS] = file_sha256(tmp / EXEMPLAR_VECTORS)
            if self.adapter is not None:
                (tmp / ADAPTER_FILE).write_bytes(self.adapter)
                manifest["files"][ADAPTER_FILE] = file_sha256(tmp / ADAPTER_FILE)
            if self.head is not None:
                (tmp / HEAD_FILE).write_bytes(self.head.to_bytes())
                manifest["files"][HEAD_FILE] = file_sha256(tmp / HEAD_FILE)
            with (tmp / MANIFEST).open("w", encoding="utf-8") as handle:
                json.dump(manifest, handle, ensure_ascii=False, indent=1)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o755)
            _swap_into_place(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out


SWAP_ATTEMPTS = 200  # x 5 ms: how long a save waits out concurrent saves before giving up


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Move a finished temp dir to `out`, replacing what is there.

    Two renames: the old index steps aside, the new one steps in. If the second fails, the
    old one is put back (unless a concurrent build already put a complete index there).
    """
    old: Path | None = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        old.rmdir()
        try:
            os.rename(out, old)
        except FileNotFoundError:  # a concurrent build moved it away first
            old = None
    for attempt in range(SWAP_ATTEMPTS):
        try:
            os.rename(tmp, out)
            break
        except OSError:
            if (out / MANIFEST).is_file():  # a concurrent build won: its index is complete
                shutil.rmtree(tmp, ignore_errors=True)
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
                return
            if attempt == SWAP_ATTEMPTS - 1:
                shutil.rmtree(tmp, ignore_errors=True)
                if old is not None and not out.exists():
                    os.rename(old, out)
                raise
            # another build is between its two renames (`out` there but not yet complete, or
            # just moved aside): wait for it to finish and try again
            time.sleep(0.005)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _index_set_aside(directory: Path) -> Path | None:
    """A build killed between its two renames leaves the old index aside as `.NAME.old-*`.

    Readers use it where it lies and never move it: moving it back could undo a build that is
    between its renames right now."""
    parent = directory.parent
    if not parent.is_dir():
        return None
    candidates = sorted(
        (p for p in parent.glob(f".{directory.name}.old-*") if (p / MANIFEST).is_file()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    return candidates[0] if candidates else None


def _read_vectors(path: Path, expected_sha: str | None, what: str) -> np.ndarray:
    if not path.is_file():
        raise IndexError_(f"index file {path} is missing; {REBUILD_HINT}")
    if expected_sha is not None and file_sha256(path) != expected_sha:
        raise IndexError_(f"index file {path} is corrupt or truncated (checksum differs); {REBUILD_HINT}")
    try:
        index = _faiss().read_index(str(path))
        vectors = index.reconstruct_n(0, index.ntotal)
    except Exception:  # faiss raises RuntimeError with a C++ trace: say it plainly
        raise IndexError_(f"{what} in {path} cannot be read (corrupt file); {REBUILD_HINT}") from None
    return np.asarray(vectors, dtype=np.float32)


def load_index(path: str | Path | None = None) -> TagIndex:
    """Read and validate an index directory."""
    directory = Path(path) if path is not None else default_index_path()
    if not directory.exists():
        directory = _index_set_aside(directory) or directory
    if not directory.is_dir():
        raise IndexError_(f"index directory {directory} does not exist; {REBUILD_HINT}")
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise IndexError_(f"{directory} has no {MANIFEST}, so it is not an embedtag index; {REBUILD_HINT}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("format_version") != FORMAT_VERSION:
            raise IndexError_(
                f"index {directory} has format version {manifest.get('format_version')!r}, this "
                f"embedtag reads version {FORMAT_VERSION}; {REBUILD_HINT}"
            )
        model = manifest["model"]
        tags = [Tag(id=int(t["id"]), name=str(t["name"])) for t in manifest["tags"]]
        texts = [TagText(int(t["tag_id"]), str(t["kind"]), str(t["text"])) for t in manifest["texts"]]
        examples = [
            Example(
                str(e["id"]), tuple(int(x) for x in e["core"]), tuple(int(x) for x in e.get("also", [])),
                bool(e.get("corrected", False)), int(e.get("chunks", 0)),
            )
            for e in manifest.get("examples", [])
        ]
        if any(e.chunks < 0 for e in examples):
            raise ValueError("an example lists a negative number of chunks")
        exemplar_info = manifest.get("exemplars") or {}
        exemplar_tags = [
            tuple(int(x) for x in str(entry).split(",") if x) for entry in exemplar_info.get("tags", [])
        ]
        exemplar_also = [
            tuple(int(x) for x in str(entry).split(",") if x) for entry in exemplar_info.get("also", [])
        ]
        if exemplar_also and len(exemplar_also) != len(exemplar_tags):
            raise ValueError("exemplars' 'also' and 'tags' lists differ in length")
        exemplar_source = str(exemplar_info.get("source", ""))
        settings = ScoringSettings.from_json(manifest.get("settings", {}))
        dimension = int(model["dimension"])
        model_name, model_fingerprint = str(model["name"]), str(model["fingerprint"])
        max_tokens = int(model.get("max_tokens", 128))
        adapter_file = ADAPTER_FILE if model.get("adapter") else None
        head_file = HEAD_FILE if manifest.get("head") else None
        keywords = {int(k): [str(x) for x in v] for k, v in manifest.get("keywords", {}).items()}
        cues = {int(k): [str(x) for x in v] for k, v in manifest.get("cues", {}).items()}
        forms = frozenset(int(x) for x in manifest.get("form_tags", []))
        unknown_forms = sorted(forms - {tag.id for tag in tags})
        if unknown_forms:
            raise ValueError(f"form_tags lists ids that are not in its tag list: {unknown_forms}")
        files = manifest.get("files", {})
        if not isinstance(files, dict):
            raise TypeError("'files' must be an object")
    except IndexError_:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise IndexError_(f"{manifest_path} is malformed ({exc!r}); {REBUILD_HINT}") from None
    text_vectors = _read_vectors(directory / TEXT_VECTORS, files.get(TEXT_VECTORS), "tag vectors")
    if text_vectors.shape != (len(texts), dimension):
        raise IndexError_(
            f"{directory / TEXT_VECTORS} holds {text_vectors.shape[0]} vectors of dimension "
            f"{text_vectors.shape[1] if text_vectors.ndim == 2 else '?'}, the manifest lists "
            f"{len(texts)} of {dimension}; {REBUILD_HINT}"
        )
    example_vectors = None
    if examples:
        example_vectors = _read_vectors(directory / EXAMPLE_VECTORS, files.get(EXAMPLE_VECTORS), "example vectors")
        if example_vectors.shape[0] != len(examples):
            raise IndexError_(f"{directory / EXAMPLE_VECTORS} does not match the manifest; {REBUILD_HINT}")
    example_chunk_vectors = None
    n_example_chunks = sum(e.chunks for e in examples)
    if n_example_chunks:
        example_chunk_vectors = _read_vectors(
            directory / EXAMPLE_CHUNK_VECTORS, files.get(EXAMPLE_CHUNK_VECTORS), "example chunk vectors"
        )
        if example_chunk_vectors.shape != (n_example_chunks, dimension):
            raise IndexError_(f"{directory / EXAMPLE_CHUNK_VECTORS} does not match the manifest; {REBUILD_HINT}")
    adapter = None
    if adapter_file is not None:
        adapter = _read_blob(directory / adapter_file, files.get(adapter_file), "the encoder adapter")
    head = None
    if head_file is not None:
        head_bytes = _read_blob(directory / head_file, files.get(head_file), "the tag head")
        try:
            head = TagHead.from_bytes(head_bytes)
        except ValueError as exc:
            raise IndexError_(f"index file {directory / head_file}: {exc}; {REBUILD_HINT}") from None
        if any(t not in {tag.id for tag in tags} for t in head.tag_ids) or head.input_size != 2 * dimension:
            raise IndexError_(f"{directory / head_file} does not fit the index's tags or model; {REBUILD_HINT}")
    exemplar_vectors = None
    if exemplar_tags:
        exemplar_vectors = _read_vectors(
            directory / EXEMPLAR_VECTORS, files.get(EXEMPLAR_VECTORS), "exemplar vectors"
        )
        if exemplar_vectors.shape != (len(exemplar_tags), dimension):
            raise IndexError_(f"{directory / EXEMPLAR_VECTORS} does not match the manifest; {REBUILD_HINT}")
        known = {tag.id for tag in tags}
        if any(t not in known for entry in [*exemplar_tags, *exemplar_also] for t in entry):
            raise IndexError_(f"{manifest_path} lists exemplar tags that are not in its tag list; {REBUILD_HINT}")
    return TagIndex(
        tags=tags,
        texts=texts,
        text_vectors=text_vectors,
        model_name=model_name,
        model_fingerprint=model_fingerprint,
        max_tokens=max_tokens,
        settings=settings,
        keywords=keywords,
        cues=cues,
        form_tags=forms,
        examples=examples,
        example_vectors=example_vectors,
        example_chunk_vectors=example_chunk_vectors,
        exemplar_tags=exemplar_tags,
        exemplar_also=exemplar_also,
        exemplar_vectors=exemplar_vectors,
        exemplar_source=exemplar_source,
        adapter=adapter,
        head=head,
    )


def _read_blob(path: Path, expected_sha: str | None, what: str) -> bytes:
    """A weights file beside the vectors (an adapter, the tag head), checked against its manifest sha256."""
    try:
        data = path.read_bytes()
    except OSError:
        raise IndexError_(f"index file {path} ({what}) is missing; {REBUILD_HINT}") from None
    if expected_sha is not None and hashlib.sha256(data).hexdigest() != expected_sha:
        raise IndexError_(f"index file {path} is corrupt or truncated (checksum differs); {REBUILD_HINT}")
    return data


def _carry_exemplars(source: TagIndex, target: TagIndex, mapping: Mapping[int, int]) -> TagIndex:
    """`target` plus the exemplars of `source` that stand under a tag in `mapping`, their ids
    mapped. An exemplar none of whose tags is mapped is left out."""
    if source.exemplar_vectors is None or not source.exemplar_tags:
        return target
    rows: list[int] = []
    labels: list[tuple[int, ...]] = []
    also: list[tuple[int, ...]] = []
    for row, ids in enumerate(source.exemplar_tags):
        mapped = tuple(mapping[t] for t in ids if t in mapping)
        if mapped:
            rows.append(row)
            labels.append(mapped)
            if source.exemplar_also:
                also.append(tuple(mapping[t] for t in source.exemplar_also[row] if t in mapping))
    if not rows:
        return target
    # every exemplar kept: share the array rather than copy 20 MB per list
    vectors = source.exemplar_vectors if len(rows) == len(source.exemplar_tags) else source.exemplar_vectors[rows]
    return replace(
        target, exemplar_tags=labels, exemplar_also=also, exemplar_vectors=vectors,
        exemplar_source=source.exemplar_source,
    )


def _carry_examples(source: TagIndex, target: TagIndex, mapping: Mapping[int, int]) -> TagIndex:
    """`target` plus all of `source`'s labelled examples, labels mapped (those of unmapped tags
    dropped: such a README still tells its neighbours "not these tags"). Vectors and FAISS
    indexes are shared with `source`, not copied."""
    if not source.examples or source.example_vectors is None:
        return target
    examples = [
        replace(
            e,
            core=tuple(mapping[t] for t in e.core if t in mapping),
            also=tuple(mapping[t] for t in e.also if t in mapping),
        )
        for e in source.examples
    ]
    return replace(
        target,
        examples=examples,
        example_vectors=source.example_vectors,
        example_chunk_vectors=source.example_chunk_vectors,
        _faiss_examples=source.faiss_examples(),
        _faiss_example_chunks=source.faiss_example_chunks(),
    )


def _carry_settings(settings: ScoringSettings, mapping: Mapping[int, int], source_ids: list[int]) -> ScoringSettings:
    """`settings` with per-tag biases (of the ranker and of the zero-shot score) moved to the new
    ids, those of unmapped tags dropped, and the ranker's fitted tags (default: all of
    `source_ids`) mapped, so that it knows which tags are new to it (`scoring.lift_new_tags`)."""
    tag_bias = {mapping[t]: v for t, v in settings.tag_bias.items() if t in mapping}
    ranker = settings.ranker
    if ranker is not None:
        fitted = ranker.fitted_tags if ranker.fitted_tags is not None else tuple(source_ids)
        ranker = replace(
            ranker,
            tag_bias={mapping[t]: v for t, v in ranker.tag_bias.items() if t in mapping},
            fitted_tags=tuple(sorted(mapping[t] for t in fitted if t in mapping)),
        )
    return replace(settings, tag_bias=tag_bias, ranker=ranker)


def _zero_shot_settings(settings: ScoringSettings, exemplars: bool) -> ScoringSettings:
    """`settings` without anything fitted to a tag list: no ranker, biases or example weight (the
    exemplars' vote, where there are exemplars, is added with its fixed weight)."""
    return replace(
        settings, example_weight=0.0, tag_bias={}, ranker=None, exemplar_weight=EXEMPLAR_WEIGHT if exemplars else 0.0
    )


def gloss_evidence(tags: list[Tag], glosses: dict[str, TagGlosses]) -> dict[str, Any]:
    """What an index takes from the glosses besides the texts it embeds (keywords, cues, project
    forms): cheap to derive, so a cached index takes them from the glosses in use, not its disk."""
    return {
        "keywords": tag_keywords(tags, glosses),
        "cues": tag_cues(tags, glosses),
        "form_tags": frozenset(form_tags(tags, glosses)),
    }


def build_index(
    tags: list[Tag],
    glosses: dict[str, TagGlosses],
    encoder: Encoder,
    settings: ScoringSettings | None = None,
) -> TagIndex:
    """Embed every tag text once (the index keeps the encoder's adapter, if it has one)."""
    texts = tag_texts(tags, glosses)
    vectors = encoder.encode([t.text for t in texts])
    return TagIndex(
        tags=tags,
        texts=texts,
        text_vectors=vectors,
        model_name=encoder.name,
        model_fingerprint=encoder.fingerprint(),
        max_tokens=encoder.max_tokens,
        settings=settings or ScoringSettings(),
        **gloss_evidence(tags, glosses),
        adapter=getattr(encoder, "adapter", None),
    )

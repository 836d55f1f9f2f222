"""`embedtag batch --engine ray`: tag on a Ray cluster, one machine or many.

The driver reads the input (JSONL through `records.read_records`, Parquet row by row through
the same `parse_record`), so a record that cannot be tagged gets exactly the error line the
local batch writes. Good records go to a Ray Dataset in windows; `map_batches` runs them
through a pool of actors (`ActorPoolStrategy`), each of which loads the model and the index
once and then tags batch after batch. Ray Data starts actors with `max_restarts=-1` and
`max_task_retries=-1`, so an actor that dies mid-run is restarted and its batch retried.
Results are matched back by their position in the window, and the driver writes one line per
input record, in input order.

Why the driver reads the input: output order and the local batch's line numbers need one
reader that sees every line; reading JSONL is far cheaper than encoding it (a 2-core actor
tags ~8 READMEs/s, the reader parses tens of thousands a second), so the driver stays idle
long before it limits a cluster.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from embedtag.batch import BatchSummary, _error_line
from embedtag.errors import InputError
from embedtag.records import Record, parse_record, read_records

DEFAULT_WINDOW = 20_000  # records handed to Ray at a time: bounds the driver's memory


@dataclass
class RayOptions:
    address: str | None = None  # None: RAY_ADDRESS, else start a local Ray
    actors: int | None = None  # None: one per `cpus_per_actor` CPUs of the cluster
    cpus_per_actor: float = 2.0
    gpus_per_actor: float = 0.0
    batch_size: int = 64
    adaptive: bool = False
    adaptive_band: float | None = None  # with adaptive: None is the default band
    use_cache: bool = False
    cache: str | None = None  # None with use_cache: each node's default store
    window: int = DEFAULT_WINDOW
    init_kwargs: dict[str, Any] = field(default_factory=dict)  # extra ray.init arguments (tests)
    crash_marker: str | None = None  # tests only: the first actor to see this path absent dies


class TagActor:
    """One Ray actor: loads model and index once, tags every batch it is given."""

    def __init__(
        self, index: str | None, model: str | None, tag_format: str, adaptive: bool, use_cache: bool,
        cache: str | None, threads: int, crash_marker: str | None, adaptive_band: float | None = None,
    ) -> None:
        from embedtag.tagger import Tagger

        tagger = Tagger.load(index, model)
        if use_cache:
            from embedtag.vectorstore import cached_tagger, open_store

            tagger = cached_tagger(tagger, open_store(cache))
        if adaptive:
            from embedtag.adaptive import AdaptivePolicy, AdaptiveTagger

            tagger = AdaptiveTagger.wrap(tagger, AdaptivePolicy.with_band(adaptive_band))
        set_threads = getattr(tagger.encoder, "set_threads", None)
        if set_threads is not None:  # actors on one node share its cores instead of each taking all
            set_threads(max(1, threads))
        self.tagger = tagger
        self.tag_format = tag_format
        self.crash_marker = crash_marker

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        from embedtag.tagger import Document

        if self.crash_marker and not os.path.exists(self.crash_marker):
            Path(self.crash_marker).write_text(str(os.getpid()))
            os._exit(1)  # a crash mid-run, for the retry test
        docs = [
            Document(str(i), str(r), str(d))
            for i, r, d in zip(batch["id"], batch["readme"], batch["description"], strict=True)
        ]
        lines = [
            json.dumps(result.to_json(self.tag_format), ensure_ascii=False)
            for result in self.tagger.tag_many(docs, batch_size=max(1, len(docs)))
        ]
        return {"seq": np.asarray(batch["seq"]), "line": np.array(lines, dtype=object)}


def read_any(path: str | Path) -> Iterator[Record]:
    """Records of a JSONL file, or of a Parquet file's rows (numbered from 1 as "line")."""
    p = Path(path)
    if str(path) != "-" and p.suffix.lower() in {".parquet", ".pq"}:
        yield from _read_parquet(p)
    else:
        yield from read_records(path)


def _read_parquet(path: Path) -> Iterator[Record]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError("reading Parquet needs pyarrow: pip install 'embedtag[ray]'") from None
    try:
        handle = pq.ParquetFile(path)
    except Exception as exc:
        raise InputError(f"input {path} is not a readable Parquet file ({exc})") from None
    number = 0
    for part in handle.iter_batches(batch_size=1024):
        for row in part.to_pylist():
            number += 1
            yield parse_record(json.dumps(row, default=str), number, path.parent)


def _windows(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    window: list[Record] = []
    for record in records:
        window.append(record)
        if len(window) >= size:
            yield window
            window = []
    if window:
        yield window


def _start_ray(options: RayOptions) -> bool:
    """Join the cluster (or start a local one); True when this call started Ray."""
    import ray

    if ray.is_initialized():
        return False
    kwargs = dict(options.init_kwargs)
    kwargs.setdefault("include_dashboard", False)
    kwargs.setdefault("log_to_driver", False)
    backend = os.environ.get("EMBEDTAG_BACKEND")
    if backend and "runtime_env" not in kwargs:  # `embedtag --backend` reaches actors on other machines too
        kwargs["runtime_env"] = {"env_vars": {"EMBEDTAG_BACKEND": backend}}
    address = options.address or os.environ.get("RAY_ADDRESS") or None
    ray.init(address=address, **kwargs)
    return True


def _quiet_ray_data() -> None:
    """The batch's own summary line is the report; Ray Data's progress lines would drown it."""
    import logging

    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def run_ray_batch(
    index: str | None,
    model: str | None,
    input_path: str | Path,
    output_path: str | Path | None,
    options: RayOptions,
    tag_format: str = "names",
) -> BatchSummary:
    """Like `batch.run_batch`, with the tagging done by Ray actors."""
    import sys

    try:
        import ray
        import ray.data
    except ImportError:
        raise InputError("--engine ray needs Ray: pip install 'embedtag[ray]'") from None
    if str(input_path) != "-" and not Path(input_path).is_file():
        raise InputError(f"input {input_path} does not exist; pass a JSONL or Parquet file")
    # actors may run in another directory (or on another node): hand them absolute paths
    index = str(Path(index).resolve()) if index else None
    if model and Path(model).exists():
        model = str(Path(model).resolve())
    if options.cache:
        options.cache = str(Path(options.cache).resolve())
    started = _start_ray(options)
    _quiet_ray_data()
    out: IO[str]
    try:
        cpus = float(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
        actors = options.actors or max(1, int(cpus // max(options.cpus_per_actor, 1)))
        threads = max(1, int(options.cpus_per_actor))
        summary = BatchSummary()
        seen: Counter[str] = Counter()
        if output_path is not None:
            try:
                out = Path(output_path).open("w", encoding="utf-8")  # noqa: SIM115 - closed below
            except OSError as exc:
                raise InputError(f"output {output_path} cannot be written: {exc.strerror}") from None
        else:
            out = sys.stdout
        try:
            for window in _windows(read_any(input_path), options.window):
                lines = _tag_window(window, index, model, tag_format, options, actors, threads)
                for seq, record in enumerate(window):
                    if record.document is None:
                        text = json.dumps(_error_line(record), ensure_ascii=False)
                        summary.failed += 1
                    else:
                        text = lines[seq]
                    out.write(text + "\n")
                    summary.written += 1
                    if record.id is not None:
                        seen[record.id] += 1
                        if seen[record.id] == 2:
                            summary.duplicate_ids.append(record.id)
                out.flush()
        finally:
            if out is not sys.stdout:
                out.close()
        return summary
    finally:
        if started:
            ray.shutdown()


def _tag_window(
    window: list[Record], index: str | None, model: str | None, tag_format: str, options: RayOptions,
    actors: int, threads: int,
) -> dict[int, str]:
    import ray.data

    rows = [
        {"seq": seq, "id": r.document.id, "readme": r.document.readme, "description": r.document.description}
        for seq, r in enumerate(window)
        if r.document is not None
    ]
    if not rows:
        return {}
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, len(rows) // options.batch_size))
    tagged = dataset.map_batches(
        TagActor,
        fn_constructor_kwargs={
            "index": index, "model": model,
            "tag_format": tag_format, "adaptive": options.adaptive, "adaptive_band": options.adaptive_band,
            "use_cache": options.use_cache,
            "cache": options.cache, "threads": threads, "crash_marker": options.crash_marker,
        },
        batch_size=options.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=min(actors, len(rows))),
        num_cpus=options.cpus_per_actor,
        num_gpus=options.gpus_per_actor or None,
    )
    found = {int(row["seq"]): str(row["line"]) for row in tagged.iter_rows()}
    lost = [window[seq].line for seq, r in enumerate(window) if r.document is not None and seq not in found]
    if lost:  # Ray retries failed batches; if one still went missing, say so rather than write a hole
        raise InputError(f"Ray returned no result for input lines {lost[:5]}; rerun the batch")
    return found

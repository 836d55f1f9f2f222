"""Command line: parse arguments, call the library, print. Heavy imports happen inside commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from embedtag.errors import EmbedtagError, TagListError

if TYPE_CHECKING:
    from embedtag.index import TagIndex
    from embedtag.scoring import ScoringSettings
    from embedtag.tagger import Tagger

TAG_FORMATS = click.Choice(["names", "ids", "objects"])


class UserError(click.ClickException):
    """One line on stderr, no traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]


def _fail(exc: EmbedtagError) -> UserError:
    # a bad tag list is a usage error of the command (exit 2), like a bad option
    return UserError(str(exc), 2 if isinstance(exc, TagListError) else 1)


def _load_tagger(index: str | None, model: str | None, cache: str | None = None, no_cache: bool = True) -> Tagger:
    from embedtag.tagger import Tagger

    try:
        tagger = Tagger.load(index, model)
    except EmbedtagError as exc:
        raise _fail(exc) from None
    if no_cache:
        return tagger
    from embedtag.vectorstore import cached_tagger, open_store

    try:
        return cached_tagger(tagger, open_store(cache))
    except EmbedtagError as exc:
        if cache:  # asked for by name: an error
            raise _fail(exc) from None
        click.echo(f"warning: {exc}; going on without it", err=True)  # the default store is a convenience
        return tagger


def _store_line(tagger: Tagger) -> None:
    hits, misses = getattr(tagger.encoder, "hits", None), getattr(tagger.encoder, "misses", None)
    if hits is not None and misses is not None:
        click.echo(f"vector store: {hits} chunks from the store, {misses} encoded", err=True)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


index_option = click.option(
    "--index", "index", type=click.Path(), envvar="EMBEDTAG_INDEX", help="Index directory [default: shipped index]."
)
model_option = click.option(
    "--model", type=click.Path(), envvar="EMBEDTAG_MODEL",
    help="Local sentence-transformers folder [default: bundled all-MiniLM-L6-v2].",
)
cache_option = click.option(
    "--cache", type=click.Path(dir_okay=False), envvar="EMBEDTAG_CACHE",
    help="Vector store file: chunks seen before are not encoded again [default: vectors.sqlite "
    "under $EMBEDTAG_HOME or ~/.cache/embedtag].",
)
no_cache_option = click.option("--no-cache", is_flag=True, help="Encode everything; read and write no vector store.")


# the same names as embedtag.encoders.BACKENDS, spelled out so that --help imports nothing heavy
BACKEND_CHOICES = click.Choice(["onnx-int8", "torch", "onnx", "sentence-transformers"], case_sensitive=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="embedtag")
@click.option("--backend", type=BACKEND_CHOICES, envvar="EMBEDTAG_BACKEND", default=None,
              help="Encoder for README chunks: onnx-int8 (the static int8 MiniLM, the default), torch "
              "(float MiniLM, the model's own vectors), onnx (float on onnxruntime), sentence-transformers.")
def cli(backend: str | None) -> None:
    """Tag software projects from their README, offline, with at most three tags from your list."""
    if backend:
        import os

        # the encoders read it (and so do `serve` workers and Ray actors, which inherit it)
        os.environ["EMBEDTAG_BACKEND"] = backend.lower()


@cli.command()
@click.argument("readme", required=False, type=click.Path(allow_dash=True))
@click.option("--id", "doc_id", default="", help="Record id echoed in the output.")
@click.option("--description", default="", help="The project's one-line description.")
@index_option
@model_option
@click.option("--explain", is_flag=True, help="Add scores and the README snippets behind each tag.")
@click.option("--tag-format", type=TAG_FORMATS, default="names", show_default=True)
@click.option("--prompt", "prompt_path", type=click.Path(allow_dash=True),
              help="Answer an LLM tagging prompt (file, or - for stdin): its README, id and tag list.")
@cache_option
@no_cache_option
def tag(
    readme: str | None, doc_id: str, description: str, index: str | None, model: str | None,
    explain: bool, tag_format: str, prompt_path: str | None, cache: str | None, no_cache: bool,
) -> None:
    """Tag one README (a file, or - for stdin) and print the expected JSON."""
    from embedtag.records import decode_readme, read_readme

    if prompt_path is not None:
        if readme or description or doc_id or explain:
            raise UserError(
                "--prompt carries the README, description and id and answers exactly the expected JSON; "
                "give no README, --id, --description or --explain", 2,
            )
        click.echo(_dumps(_answer_prompt(prompt_path, index, model, tag_format)))
        return
    try:
        if readme == "-":
            text = decode_readme(sys.stdin.buffer.read(), "README on stdin")
        elif readme:
            text = read_readme(readme)
        elif description:
            text = ""
        else:
            raise UserError("give a README file (or - for stdin), or at least --description", 2)
    except EmbedtagError as exc:
        raise _fail(exc) from None
    tagger = _load_tagger(index, model, cache, no_cache)
    result = tagger.tag(text, description=description, id=doc_id, explain=explain)
    click.echo(_dumps(result.to_json(tag_format, explain)))


def _answer_prompt(path: str, index: str | None, model: str | None, tag_format: str) -> dict[str, Any]:
    """`tag --prompt`: the prompt's own tag list picks the index (the shipped one when it matches)."""
    from embedtag.index_cache import IndexCache
    from embedtag.prompt import decode_prompt, parse_prompt, read_prompt

    try:
        text = decode_prompt(sys.stdin.buffer.read(), "prompt on stdin") if path == "-" else read_prompt(path)
        parsed = parse_prompt(text)
    except EmbedtagError as exc:
        raise UserError(str(exc), 2) from None
    base = _load_tagger(index, model)
    try:
        tagger, _ = IndexCache(base).tagger_for(parsed.tags)
    except EmbedtagError as exc:
        raise _fail(exc) from None
    result = tagger.tag(parsed.readme, description=parsed.description, id=parsed.id)
    return parsed.answer(result, tag_format)


@cli.command()
@click.argument("input_path", metavar="INPUT.jsonl", type=click.Path(allow_dash=True))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Output JSONL [default: stdout].")
@index_option
@model_option
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1), help="READMEs per encode call.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run: keep OUTPUT's finished lines.")
@click.option("--tag-format", type=TAG_FORMATS, default="names", show_default=True)
@cache_option
@no_cache_option
@click.option("--adaptive", is_flag=True,
              help="Embed the description and first chunks; the rest only where the decision is close.")
@click.option("--adaptive-band", type=click.FloatRange(0, 1), default=None,
              help="With --adaptive: how close a chance must be to the threshold to embed the rest "
                   "[default: 0.1; 0 never embeds more: the fastest, lower F1] (benchmarks/adaptive_quality.md).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: tag on a Ray cluster (pip install 'embedtag[ray]'); JSONL or Parquet input.")
@click.option("--address", envvar="RAY_ADDRESS", help="Ray cluster to join [default: start a local one].")
@click.option("--actors", type=click.IntRange(1), default=None, help="Ray actors [default: one per 2 CPUs].")
@click.option("--cpus-per-actor", type=click.FloatRange(0), default=2.0, show_default=True)
@click.option("--gpus-per-actor", type=click.FloatRange(0), default=0.0, show_default=True)
def batch(
    input_path: str, output: str | None, index: str | None, model: str | None,
    batch_size: int, resume: bool, tag_format: str, cache: str | None, no_cache: bool, adaptive: bool,
    adaptive_band: float | None, engine: str, address: str | None, actors: int | None, cpus_per_actor: float,
    gpus_per_actor: float,
) -> None:
    """Tag every line {"id", "description", "readme" | "readme_path"} of a JSONL file.

    Writes exactly one output line per input record, in order; a record that cannot be tagged
    gets an "error" field and the run goes on (exit code 1 at the end).
    """
    from embedtag.batch import run_batch

    if resume and not output:
        raise UserError("--resume needs -o OUTPUT (the file to continue)", 2)
    if input_path != "-" and not Path(input_path).is_file():
        raise UserError(f"input {input_path} does not exist; pass a JSONL file", 2)
    if adaptive_band is not None and not adaptive:
        raise UserError("--adaptive-band goes with --adaptive", 2)
    if engine == "ray":
        from embedtag.ray_engine import RayOptions, run_ray_batch

        options = RayOptions(address=address, actors=actors, cpus_per_actor=cpus_per_actor,
                             gpus_per_actor=gpus_per_actor, batch_size=batch_size, adaptive=adaptive,
                             adaptive_band=adaptive_band, cache=None if no_cache else cache,
                             use_cache=not no_cache)
        try:
            summary = run_ray_batch(index, model, input_path, output, options, tag_format=tag_format)
        except EmbedtagError as exc:
            raise _fail(exc) from None
        click.echo(summary.line(), err=True)
        if summary.failed:
            sys.exit(1)
        return
    tagger = _load_tagger(index, model, cache, no_cache)
    if adaptive:
        from embedtag.adaptive import AdaptivePolicy, AdaptiveTagger

        tagger = AdaptiveTagger.wrap(tagger, AdaptivePolicy.with_band(adaptive_band))
    try:
        summary = run_batch(
            tagger, input_path, output, batch_size=batch_size, resume=resume,
            tag_format=tag_format, progress=sys.stderr.isatty(),
        )
    except EmbedtagError as exc:
        raise _fail(exc) from None
    if sys.stderr.isatty():
        _store_line(tagger)
    click.echo(summary.line(), err=True)
    if summary.failed:
        sys.exit(1)


@cli.command("build-index")
@click.option("--tags", "tags_path", type=click.Path(allow_dash=True), help="Tag list JSON [default: shipped list].")
@click.option("--glosses", "glosses_path", type=click.Path(), help="Gloss file [default: shipped glosses].")
@model_option
@click.option(
    "--examples", "examples_path", type=click.Path(), help="Labelled JSONL (id, readme, core, also) to learn from."
)
@click.option(
    "--exemplars", "exemplars_path", type=click.Path(),
    help="JSONL of project descriptions with tags ({text, tags}) whose nearest ones vote (README: Exemplars).",
)
@click.option("--adapter", "adapter_path", type=click.Path(),
              help="Encoder adapter from `embedtag train` (its folder or file); the index keeps a copy.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Index directory to write.")
@click.option("--max-chunks", type=click.IntRange(1, 64), default=None,
              help="Chunks embedded per README [default: 12]; fewer is faster (curve in benchmarks/speed.md).")
@click.option("--max-tokens", type=click.IntRange(16, 256), default=None,
              help="Model tokens per chunk [default: 64; the bundled model reads at most 256].")
@click.option("--min-tags", type=click.IntRange(0, 3), default=None,
              help="Tags every README with text gets, its best ones, even below the threshold [default: 1; "
                   "0: none when nothing clears it].")
@click.option("--carry-over", "carry_over", type=click.Path(file_okay=False),
              help="An index (e.g. the shipped one) whose exemplars, labelled examples and ranker the new tag "
                   "list keeps for the tags it shares with it (README: Each prompt brings its own tag list).")
def build_index_cmd(
    tags_path: str | None, glosses_path: str | None, model: str | None, examples_path: str | None,
    exemplars_path: str | None, adapter_path: str | None, out: str, max_chunks: int | None,
    max_tokens: int | None, min_tags: int | None, carry_over: str | None,
) -> None:
    """Embed tag names and glosses once into a FAISS index."""
    from dataclasses import replace

    from embedtag.build import build
    from embedtag.scoring import ScoringSettings

    if carry_over is not None and (max_chunks, max_tokens, min_tags) != (None, None, None):
        raise UserError("--carry-over keeps that index's settings; leave out --max-chunks/--max-tokens/--min-tags", 2)
    settings = ScoringSettings()
    if max_chunks is not None:
        settings = replace(settings, max_chunks=max_chunks)
    if max_tokens is not None:
        settings = replace(settings, max_tokens=max_tokens)
    if min_tags is not None:
        settings = replace(settings, min_tags=min_tags)
    try:
        index = build(
            tags_path, glosses_path, model, out, examples_path, settings, exemplars_path, adapter_path, carry_over
        )
    except EmbedtagError as exc:
        raise _fail(exc) from None
    click.echo(
        f"wrote {out}: {len(index.tags)} tags, {len(index.texts)} tag texts, "
        f"{len(index.examples)} examples, {len(index.exemplar_tags)} exemplars, model {index.model_name}",
        err=True,
    )
    if carry_over is not None:
        ranker = index.settings.ranker
        kept = (f"its ranker kept; {int(ranker.new_tags([t.id for t in index.tags]).sum())} tags new to it"
                if ranker is not None else "no ranker carried (fewer than half the tags shared, or it had none)")
        click.echo(f"carried over from {carry_over}: {kept}", err=True)


@cli.command()
@click.option("--exemplars", "exemplars_path", required=True, type=click.Path(),
              help="JSONL of project descriptions with tags ({text, tags}) to learn from.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for adapter.safetensors.")
@click.option("--tags", "tags_path", type=click.Path(allow_dash=True), help="Tag list JSON [default: shipped list].")
@click.option("--glosses", "glosses_path", type=click.Path(), help="Gloss file [default: shipped glosses].")
@model_option
@click.option("--layers", type=click.IntRange(1), default=2, show_default=True, help="Top transformer layers to train.")
@click.option("--epochs", type=click.IntRange(1), default=1, show_default=True)
@click.option("--learning-rate", type=click.FloatRange(0, min_open=True), default=None,
              help="AdamW learning rate [default: 5e-06].")
@click.option("--per-tag-cap", type=click.IntRange(1), default=400, show_default=True,
              help="Exemplars kept per tag, so the biggest tags do not dominate.")
@click.option("--seed", type=int, default=0, show_default=True)
def train(
    exemplars_path: str, out: str, tags_path: str | None, glosses_path: str | None, model: str | None,
    layers: int, epochs: int, learning_rate: float | None, per_tag_cap: int, seed: int,
) -> None:
    """Fine-tune the encoder's top layers on exemplars (an adapter for `build-index --adapter`)."""
    from dataclasses import replace

    from embedtag.build import train as train_adapter
    from embedtag.encoders.adapter import TrainSettings

    settings = replace(TrainSettings(), layers=layers, epochs=epochs, per_tag_cap=per_tag_cap, seed=seed)
    if learning_rate is not None:
        settings = replace(settings, learning_rate=learning_rate)

    def progress(step: int, total: int, loss: float) -> None:
        if step == 1 or step % 25 == 0 or step == total:
            click.echo(f"step {step}/{total} loss {loss:.3f}", err=True)

    try:
        path, report = train_adapter(exemplars_path, out, tags_path, glosses_path, model, settings, progress)
    except EmbedtagError as exc:
        raise _fail(exc) from None
    click.echo(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {report.pairs} exemplars, {report.steps} steps, "
        f"loss {report.first_loss:.3f} -> {report.last_loss:.3f}, {report.seconds:.0f}s; "
        f"use it with `embedtag build-index --adapter {out} ...`",
        err=True,
    )


@cli.command()
@click.option("--tags", "tags_path", type=click.Path(allow_dash=True), help="Tag list JSON [default: shipped list].")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Gloss file to write [default: stdout].")
def glosses(tags_path: str | None, output: str | None) -> None:
    """Write a gloss file for a tag list: curated where known, generated (to review) elsewhere."""
    from embedtag.glosses import glosses_document, load_glosses
    from embedtag.tags import load_tags
    from embedtag.transfer import curated_for

    try:
        tags = load_tags(tags_path)
        document = glosses_document(tags, curated_for(tags, load_glosses()))
    except EmbedtagError as exc:
        raise _fail(exc) from None
    text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    generated = sum(1 for v in document.values() if v.get("generated"))
    if output:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot write {output}: {exc.strerror}") from None
        click.echo(f"wrote {output}: {len(document)} tags, {generated} with generated glosses to review", err=True)
    else:
        click.echo(text, nl=False)


@cli.command()
@index_option
def info(index: str | None) -> None:
    """Show the index: model, tags, thresholds."""
    from embedtag.index import default_index_path, load_index

    try:
        idx = load_index(index)
    except EmbedtagError as exc:
        raise _fail(exc) from None
    s = idx.settings
    lines = [
        f"index       {Path(index) if index else default_index_path()}",
        f"model       {idx.model_name} ({idx.model_fingerprint}), {idx.dimension} dims",
        f"encoder     {_describe_backend(idx.model_name, idx.adapter)}",
        f"tags        {len(idx.tags)}",
        f"tag texts   {len(idx.texts)}",
        "forms       " + (", ".join(t.key for t in idx.tags if t.id in idx.form_tags) or "none (every tag a subject)"),
        f"examples    {len(idx.examples)}"
        + (f" ({sum(e.chunks for e in idx.examples)} chunk vectors)" if idx.example_chunk_vectors is not None else ""),
        f"exemplars   {len(idx.exemplar_tags)}" + (f" from {idx.exemplar_source}" if idx.exemplar_source else ""),
        f"adapter     {_describe_adapter(idx.adapter)}",
        f"tag head    {_describe_head(idx)}",
        f"chunks      {s.max_chunks} x {s.max_tokens} tokens",
        f"thresholds  score >= {s.threshold}, within {s.margin} of the best, {s.min_tags} to {s.max_tags} tags"
        + (" (used without a ranker)" if s.ranker else ""),
        f"calibrated  {_describe_ranker(s, [t.id for t in idx.tags])}",
    ]
    click.echo("\n".join(lines))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: all).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@index_option
@model_option
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
              help="Server processes, each with its own model and micro-batcher.")
@click.option("--max-body-bytes", default=2_000_000, show_default=True, type=click.IntRange(1),
              help="Larger request bodies get 413.")
@click.option("--max-batch", default=32, show_default=True, type=click.IntRange(1),
              help="Most documents tagged in one encode call.")
@click.option("--batch-wait-ms", default=5.0, show_default=True, type=click.FloatRange(0),
              help="How long a request waits for others to share its encode call.")
@click.option("--allow-origin", "allow_origins", multiple=True,
              help="Browser origin allowed to call the API (CORS), e.g. http://localhost:3000; repeatable.")
@click.option("--store", type=click.Path(dir_okay=False), envvar="EMBEDTAG_STORE",
              help="Corrections store for POST /feedback [default: $EMBEDTAG_HOME/corrections.sqlite3].")
@click.option("--api-key", envvar="EMBEDTAG_API_KEY", default=None,
              help="Require Authorization: Bearer KEY on every route but /health and the docs [env EMBEDTAG_API_KEY].")
@cache_option
@no_cache_option
def serve(
    host: str, port: int, index: str | None, model: str | None, workers: int, max_body_bytes: int,
    max_batch: int, batch_wait_ms: float, allow_origins: tuple[str, ...], store: str | None, api_key: str | None,
    cache: str | None, no_cache: bool,
) -> None:
    """Serve the tagger over HTTP: POST /tag, POST /tag/batch, GET /tags, GET /health, docs at /docs,
    and OpenAI-compatible POST /v1/chat/completions and GET /v1/models."""
    import os

    try:
        import uvicorn

        from embedtag.service import app as service
    except ImportError as exc:
        hint = "pip install 'embedtag[serve]'"
        raise UserError(f"`embedtag serve` needs FastAPI and uvicorn ({exc}); {hint}") from None
    tagger = _load_tagger(index, model, cache, no_cache)  # once, before listening: a bad index or model fails here
    cache_path = str(getattr(getattr(tagger.encoder, "store", None), "path", ""))
    if host not in {"127.0.0.1", "localhost", "::1"} and not api_key:
        click.echo(f"warning: listening on {host}: whoever reaches it can call the API (no auth)", err=True)
    if workers == 1:
        app = service.create_app(
            tagger, max_body_bytes=max_body_bytes, max_batch=max_batch, batch_wait_ms=batch_wait_ms,
            allow_origins=list(allow_origins) or None, index_path=index, store_path=store, api_key=api_key,
        )
        uvicorn.run(app, host=host, port=port, log_level="info")
        return
    del tagger  # checked; each worker process loads its own
    os.environ.update({
        service.ENV_INDEX: index or "",
        service.ENV_MODEL: model or "",
        service.ENV_MAX_BODY: str(max_body_bytes),
        service.ENV_MAX_BATCH: str(max_batch),
        service.ENV_BATCH_WAIT: str(batch_wait_ms),
        service.ENV_THREADS: str(max(1, (os.cpu_count() or 1) // workers)),
        service.ENV_ORIGINS: ",".join(allow_origins),
        service.ENV_STORE: store or "",
        "EMBEDTAG_API_KEY": api_key or "",
        service.ENV_CACHE: cache_path,
    })
    uvicorn.run(
        "embedtag.service.app:create_app_from_env", factory=True, host=host, port=port, workers=workers,
        log_level="info",
    )


def _read_gold(path: str, tagger: Tagger) -> Any:
    from embedtag.records import read_labelled

    try:
        return read_labelled(path, {t.key for t in tagger.index.tags})
    except EmbedtagError as exc:
        raise _fail(exc) from None


def _describe_head(idx: TagIndex) -> str:
    """Which tags the tag head answers for, and which fall back to the other evidence."""
    if idx.head is None:
        return "none (tags rest on similarity, keywords, cues and neighbours' votes)"
    covered = set(idx.head.tag_ids)
    missing = [t.key for t in idx.tags if t.id not in covered]
    learned = ", ".join(f"{n} {what}" for what, n in idx.head.trained_on.items())
    line = f"{len(idx.tags) - len(missing)} tags (trained on {learned or 'unknown'})"
    if missing:
        line += f"; without it (other evidence only): {', '.join(missing)}"
    return line


def _describe_backend(model_name: str, adapter: bytes | None) -> str:
    """Which encoder reads READMEs with this index (the tag texts' vectors are the index's own)."""
    from embedtag.encoders import BUNDLED_MODEL_NAME, default_backend

    if model_name.startswith("hashing"):
        return "hashing (the index's own, for tests)"
    if not model_name.startswith(BUNDLED_MODEL_NAME):
        return f"float {model_name} on torch: tag with --model pointing at that folder"
    backend = default_backend(None, adapter)
    what = {"onnx-int8": "static int8 MiniLM on onnxruntime (the default)", "torch": "float MiniLM on torch",
            "onnx": "float MiniLM on onnxruntime", "sentence-transformers": "float MiniLM on sentence-transformers"}
    return f"{backend}: {what.get(backend, 'unknown')}; `embedtag --backend NAME` picks another"


def _describe_adapter(data: bytes | None) -> str:
    if data is None:
        return "none (the model as is)"
    from embedtag.encoders.adapter import adapter_metadata

    trained = json.loads(adapter_metadata(data).get("settings") or "{}")
    return (f"top {trained.get('layers', '?')} layers fine-tuned on {trained.get('exemplars', '?')} "
            f"({trained.get('pairs', '?')} exemplars, {trained.get('steps', '?')} steps)")


def _describe_ranker(settings: ScoringSettings, tag_ids: list[int]) -> str:
    if settings.ranker is None:
        return f"no (zero-shot selection; {len(settings.tag_bias)} tag biases)"
    text = f"yes: ranker keeps tags with chance >= {settings.ranker.threshold}"
    if settings.ranker.fitted_tags is not None:  # carried over to this list (build-index --carry-over)
        new = int(settings.ranker.new_tags(tag_ids).sum())
        text += f"; carried over, {new} tags new to it (kept where the zero-shot rule keeps them)"
    return text


@cli.command("eval")
@click.argument("gold_path", metavar="GOLD.jsonl", type=click.Path(exists=True, dir_okay=False))
@index_option
@model_option
@click.option("--folds", type=click.IntRange(0), default=0,
              help="Cross-validate: fit examples and calibration on K-1 folds, score the held-out one.")
@click.option("--zero-shot", is_flag=True, help="With --folds: ignore labels (no examples, no calibration).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a precision-recall plot (PNG).")
@click.option("--predictions", type=click.Path(exists=True, dir_okay=False),
              help="Score an existing `embedtag batch` output instead of tagging (matched by id).")
def eval_cmd(
    gold_path: str, index: str | None, model: str | None, folds: int, zero_shot: bool,
    as_json: bool, plot: str | None, predictions: str | None,
) -> None:
    """Precision, recall, F1, hit@1 and a per-tag table against gold tags."""
    import numpy as np

    from embedtag.calibrate import cross_validate, examples_from_index, predict, score_labelled
    from embedtag.evaluate import (
        GoldItem,
        evaluate,
        format_report,
        plot_precision_recall,
        precision_recall_curve,
    )

    if predictions:
        from embedtag.evaluate import read_gold_tags, read_predictions

        try:
            gold_only = read_gold_tags(gold_path)
            predicted = read_predictions(predictions, [g.id for g in gold_only])
        except EmbedtagError as exc:
            raise _fail(exc) from None
        report = evaluate(predicted, gold_only)
        click.echo(_dumps(report.to_json()) if as_json else format_report(report))
        return
    tagger = _load_tagger(index, model)
    records = _read_gold(gold_path, tagger)
    gold = [GoldItem(r.document.id, r.core, r.also) for r in records]
    names = [t.key for t in tagger.index.tags]
    if folds:
        from dataclasses import replace

        from embedtag.calibrate import HeadTraining

        # the index's head learned from labelled READMEs, perhaps these: each fold trains its own
        scored = replace(score_labelled(tagger, records), head=None)
        head = None
        if tagger.index.head is not None and not zero_shot:
            head = HeadTraining.from_index(tagger.index, tagger.index.head.settings)
        try:
            positions, final = cross_validate(
                scored, tagger.settings, folds, use_examples=not zero_shot, calibrated=not zero_shot, head=head
            )
        except ValueError as exc:
            raise UserError(str(exc), 2) from None
        predicted_names = [[names[t] for t in p] for p in positions]
    else:
        results = list(tagger.tag_many(r.document for r in records))
        predicted_names = [[t.key for t in res.tags] for res in results]
        final = None
    report = evaluate(predicted_names, gold)
    if plot:
        if final is None:
            scored = score_labelled(tagger, records)
            bias = np.array([tagger.settings.tag_bias.get(t.id, 0.0) for t in tagger.index.tags])
            scored.zero_shot -= bias[None, :]
            examples = examples_from_index(tagger.index)
            _, final = predict(scored, examples, tagger.settings)
        curve = precision_recall_curve(final, gold, names)
        try:
            plot_precision_recall(curve, (report.strict_recall, report.strict_precision), plot,
                                  f"embedtag on {Path(gold_path).name}")
        except EmbedtagError as exc:
            raise _fail(exc) from None
    click.echo(_dumps(report.to_json()) if as_json else format_report(report))


store_option = click.option(
    "--store", type=click.Path(dir_okay=False), envvar="EMBEDTAG_STORE",
    help="Corrections store (SQLite) [default: $EMBEDTAG_HOME/corrections.sqlite3].",
)


@cli.command()
@click.argument("gold_path", metavar="[GOLD.jsonl]", required=False, type=click.Path(exists=True, dir_okay=False))
@index_option
@model_option
@click.option("--examples/--no-examples", default=True, show_default=True,
              help="Also keep the labelled READMEs as prototypes (kNN votes).")
@click.option(
    "--out", type=click.Path(file_okay=False), help="Where to write the calibrated index [default: in place]."
)
@click.option("--from-store", is_flag=True,
              help="Learn from the stored corrections (`embedtag learn`, POST /feedback), with GOLD.jsonl if given.")
@click.option("--head/--no-head", default=True, show_default=True,
              help="Also train the tag head (a small classifier over the encoder's vectors) on the index's "
                   "exemplars and the labelled READMEs; a few minutes on 2 cores.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the tag head's training.")
@store_option
def calibrate(
    gold_path: str | None, index: str | None, model: str | None, examples: bool, out: str | None,
    from_store: bool, head: bool, seed: int, store: str | None,
) -> None:
    """Fit the ranker (how much each kind of evidence counts) and the tag head on labelled
    READMEs and store them in the index."""
    from dataclasses import replace

    from embedtag import calibrate as cal_mod
    from embedtag import corrections as corr
    from embedtag.build import with_examples
    from embedtag.index import default_index_path

    if not gold_path and not from_store:
        raise UserError("give a labelled GOLD.jsonl, or --from-store (or both)", 2)
    tagger = _load_tagger(index, model)
    records = _read_gold(gold_path, tagger) if gold_path else []
    corrected: set[str] = set()
    if from_store:
        try:
            stored = corr.labelled_from_store(corr.CorrectionStore(store), tagger.index.tags)
        except EmbedtagError as exc:
            raise _fail(exc) from None
        if not stored:
            raise UserError("the corrections store is empty; add corrections with `embedtag learn` or POST /feedback")
        corrected = {r.document.id for r in stored}
        records = corr.merge_records(records, stored)
    # corrections alone, and few: keep the index's ranker and examples, add the corrections
    add_only = not gold_path and len(records) < corr.MIN_RECORDS_TO_REFIT
    scored = cal_mod.score_labelled(tagger, records)
    base = tagger.without_examples()
    tag_head = tagger.index.head
    if add_only:
        settings = tagger.settings
    elif head:
        training = cal_mod.HeadTraining.from_index(tagger.index)
        try:
            settings, tag_head = cal_mod.calibrate_with_head(
                scored, base.settings, training, use_examples=examples, seed=seed,
                progress=lambda line: click.echo(line, err=True),
            )
        except ValueError as exc:
            raise UserError(f"cannot train the tag head: {exc}; or calibrate with --no-head") from None
    else:  # a ranker fitted without head features must not meet the old head's probabilities
        settings, tag_head = cal_mod.calibrate(scored, base.settings, use_examples=examples), None
    # the index's own examples are rebuilt below; its tag texts and exemplars stay
    new_index = replace(
        tagger.index, settings=settings, examples=[], example_vectors=None, example_chunk_vectors=None,
        _faiss_examples=None, _faiss_example_chunks=None, head=tag_head,
    )
    if examples or from_store:
        new_index = with_examples(new_index, base, records, scored.doc_vectors, scored.chunk_vectors)
    if from_store and not gold_path:  # the index's own examples stay, corrected ones replaced
        new_index = corr.keep_old_examples(new_index, tagger.index, corrected)
    if add_only:  # settings as they were: a zero-shot index must not let a few examples vote on every README
        new_index = replace(new_index, settings=tagger.settings)
    new_index = corr.mark_corrected(new_index, corrected)
    target = out or index or str(default_index_path())
    new_index.save(target)
    if add_only:
        click.echo(
            f"wrote {target}: {len(corrected)} corrections added as examples ({len(new_index.examples)} in all); "
            f"ranker kept (refitted from {corr.MIN_RECORDS_TO_REFIT} corrections, or with GOLD.jsonl)",
            err=True,
        )
        return
    assert settings.ranker is not None
    click.echo(
        f"wrote {target}: ranker fitted on {len(records)} READMEs (keeps tags with chance >= "
        f"{settings.ranker.threshold}), {len(new_index.examples)} examples"
        + (f", tag head for {len(tag_head.tag_ids)} tags" if tag_head is not None else ", no tag head"),
        err=True,
    )


@cli.command()
@click.argument("input_path", metavar="CORRECTIONS.jsonl", type=click.Path(exists=True, dir_okay=False))
@index_option
@store_option
def learn(input_path: str, index: str | None, store: str | None) -> None:
    """Add corrections to the store: one JSON object per line {"id", "core": [...], "also": [...],
    "description", "readme" | "readme_path"}. Then `embedtag calibrate --from-store`."""
    from embedtag import corrections as corr
    from embedtag.index import load_index

    try:
        tags = load_index(index).tags
        target = corr.CorrectionStore(store)
        good, bad = corr.read_corrections(input_path, tags, lookup=target.document)
        projects = target.add(good) if good else None
    except EmbedtagError as exc:
        raise _fail(exc) from None
    for message in bad:
        click.echo(f"error: {message}", err=True)
    click.echo(
        f"stored {len(good)} corrections in {target.path} ({projects if projects is not None else 'no new'} "
        f"projects in all); {len(bad)} refused",
        err=True,
    )
    if bad:
        sys.exit(1)


@cli.command()
@click.option("--tags", "tags_path", type=click.Path(allow_dash=True), help="Tag list JSON (builds its tag texts).")
@click.option("--glosses", "glosses_path", type=click.Path(), help="Gloss file for --tags [default: shipped].")
@index_option
@model_option
@click.option("--corpus", type=click.Path(exists=True, dir_okay=False),
              help="READMEs (JSONL) to tag: finds tags that never reach the top three or win too often.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a tag-similarity heatmap (PNG).")
def doctor(
    tags_path: str | None, glosses_path: str | None, index: str | None, model: str | None, corpus: str | None,
    as_json: bool, plot: str | None,
) -> None:
    """Check a tag list: near-duplicate tags, unclear names, tags that never win or win too often."""
    from embedtag import doctor as doc_mod

    try:
        if tags_path:
            from embedtag.encoders import load_encoder
            from embedtag.glosses import load_glosses
            from embedtag.index import build_index
            from embedtag.tagger import Tagger
            from embedtag.tags import load_tags

            encoder = load_encoder(model)
            tagger = Tagger(build_index(load_tags(tags_path), load_glosses(glosses_path), encoder), encoder)
        else:
            tagger = _load_tagger(index, model)
        docs, gold = None, None
        if corpus:
            docs, gold = doc_mod.read_corpus(corpus)
        report = doc_mod.diagnose(tagger.index, tagger.encoder, tagger, docs, gold)
        if plot:
            doc_mod.plot_similarity(report, plot)
    except EmbedtagError as exc:
        raise _fail(exc) from None
    click.echo(_dumps(report.to_json()) if as_json else doc_mod.format_report(report))


@cli.group()
def cache() -> None:
    """The vector store: chunk vectors kept so a re-tag does not encode them again."""


def _existing_store(path: str | None) -> Any:
    from embedtag.vectorstore import default_store_path, open_store

    target = Path(path) if path else default_store_path()
    if not target.is_file():
        raise UserError(f"no vector store at {target}; it is created by `embedtag batch` or `tag` (or pass --cache)")
    try:
        return open_store(target)
    except EmbedtagError as exc:
        raise _fail(exc) from None


@cache.command("info")
@cache_option
def cache_info(cache: str | None) -> None:
    """Where the store is, its size, and how many vectors of which model it holds."""
    with _existing_store(cache) as store:
        click.echo("\n".join(store.info().lines()))


@cache.command("prune")
@cache_option
@click.option("--max-mb", type=click.FloatRange(0), required=True, help="Shrink the store to at most this size.")
def cache_prune(cache: str | None, max_mb: float) -> None:
    """Drop the least recently used vectors until the store fits in --max-mb."""
    with _existing_store(cache) as store:
        before = store.size_bytes()
        dropped = store.prune(int(max_mb * 1e6))
        click.echo(f"dropped {dropped} vectors: {before / 1e6:.1f} MB -> {store.size_bytes() / 1e6:.1f} MB", err=True)


def main() -> None:
    cli()

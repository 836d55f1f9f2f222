"""Build the static int8 ONNX model of the bundled MiniLM that embedtag ships as its default encoder.

    python scripts/build_int8_encoder.py                        # writes embedtag/data/all-MiniLM-L6-v2.int8.{onnx,json}
    python scripts/build_int8_encoder.py --out /tmp/int8.onnx   # somewhere else

Static quantization: every activation's int8 range is measured once, on real README chunks (chunked
as the shipped index chunks them), and frozen in the model, so a chunk's vector depends on that
chunk alone (dynamic quantization measures each batch, which makes vectors depend on their batch).

What the model is, and why (each choice measured on held-out dev chunks, cosine to float32):
- weights int8 per output channel, activations uint8 per tensor (MinMax over the calibration set);
  all MatMuls quantized, attention's two included, and the embedding table (Gather): 23 MB.
- MatMul *outputs* are left in float (`OpTypesToExcludeOutputQuantization`): the feed-forward
  output has a few huge channels (range ~200) and quantizing it gave cosine 0.92 instead of 0.99.
- SmoothQuant (alpha 0.5) on the four linears that read a LayerNorm output (Q, K, V, FFN in):
  their input is divided per channel by s and their weight columns multiplied by s, taming the
  outlier channels before the per-tensor activation range is taken (mean cosine 0.9928 -> 0.9945).
  It did not help the FFN output or attention output layers, which are left alone.
- Percentile calibration (99.99) clipped exactly the outliers that matter: cosine 0.94.

Calibration data: chunks of READMEs from the dev set (data only; nothing of it is written out).
The result is checked against float32 on chunks of other READMEs and the figures are written to
the JSON file beside the model, with its sha256 and the weights fingerprint it was built from.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from embedtag.encoders import bert_spec, bundled_model_path, weights_fingerprint  # noqa: E402
from embedtag.encoders.base import file_sha256  # noqa: E402
from embedtag.encoders.bert import BertSpec, _batches, _padded, _Tokenizers, bert_module, bert_weights  # noqa: E402
from embedtag.encoders.onnx import INT8_MODEL, OnnxEncoder, export_onnx, quick_fingerprint  # noqa: E402
from embedtag.tagger import Document, Tagger  # noqa: E402

DEV_ITEMS = REPO.parent / "shared" / "data" / "dev" / "items.jsonl"
# linears that read a LayerNorm output (their input has outlier channels SmoothQuant can move)
SMOOTHED = ("attention_self_query", "attention_self_key", "attention_self_value", "intermediate_dense")
# --smooth-all: the other two as well (measured worse: their inputs are not where the outliers are)
ALL_LINEARS = (*SMOOTHED, "attention_output_dense", "output_dense")


def readme_chunks(items: Path) -> list[tuple[int, str]]:
    """(README number, chunk text) for every chunk the shipped index would embed."""
    tagger = Tagger.load()  # main() picks the float encoder: only its token counts matter here
    out: list[tuple[int, str]] = []
    with items.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            row = json.loads(line)
            doc = Document(id=str(row.get("id", number)), description=row.get("description") or "",
                           readme=row.get("readme") or "")
            out.extend((number, chunk.text) for chunk in tagger.chunks(doc))
    return out


def split_chunks(chunks: list[tuple[int, str]], calibration_readmes: int, calibration_chunks: int,
                 held_out: int, seed: int) -> tuple[list[str], list[str]]:
    """Calibration chunks from some READMEs, held-out chunks from the others."""
    rng = random.Random(seed)
    readmes = sorted({number for number, _ in chunks})
    chosen = set(rng.sample(readmes, min(calibration_readmes, len(readmes))))
    calibration = [text for number, text in chunks if number in chosen]
    rest = [text for number, text in chunks if number not in chosen]
    rng.shuffle(calibration)
    rng.shuffle(rest)
    return calibration[:calibration_chunks], rest[:held_out]


def input_maxima(spec: BertSpec, weights: dict[str, np.ndarray], ids: list[list[int]]) -> dict[str, np.ndarray]:
    """Per input channel, the largest |value| each linear layer reads over the real tokens."""
    import torch

    module = bert_module(spec, weights)
    maxima: dict[str, Any] = {}
    plain = module._linear
    mask_now: list[Any] = []

    def recording(x: Any, name: str) -> Any:
        values = x.abs() * mask_now[0][:, :, None]
        channel_max = values.reshape(-1, values.shape[-1]).amax(dim=0)
        maxima[name] = torch.maximum(maxima[name], channel_max) if name in maxima else channel_max
        return plain(x, name)

    module._linear = recording
    with torch.inference_mode():
        for rows in _batches(ids, 32, True):
            input_ids, mask = _padded(ids, rows, 0)
            mask_now[:] = [torch.from_numpy(mask).float()]
            module(torch.from_numpy(input_ids), torch.from_numpy(mask))
    return {name: value.numpy() for name, value in maxima.items()}


def smoothing(spec: BertSpec, weights: dict[str, np.ndarray], maxima: dict[str, np.ndarray],
              alpha: float, parts: tuple[str, ...] = SMOOTHED) -> dict[str, np.ndarray]:
    """SmoothQuant factors s = max|x|^alpha / max|w|^(1 - alpha) per input channel."""
    factors = {}
    for layer in range(spec.layers):
        for part in parts:
            name = f"encoder_layer_{layer}_{part}"
            w_max = np.abs(weights[name + "_weight"]).max(axis=0)
            s = np.maximum(maxima[name], 1e-5) ** alpha / np.maximum(w_max, 1e-5) ** (1 - alpha)
            factors[name] = s.astype(np.float32)
    return factors


def quantize(float_path: Path, target: Path, feeds: list[dict[str, np.ndarray]], percentile: bool = False,
             float_embeddings: bool = False, quantize_outputs: bool = False) -> None:
    """Static QDQ quantization; the flags are the variants that were measured and not kept."""
    from onnxruntime.quantization import (  # type: ignore[import-not-found,import-untyped]
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import (  # type: ignore[import-not-found,import-untyped]
        quant_pre_process,
    )

    class Feeds(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.left = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.left, None)

    prepared = float_path.with_suffix(".pre.onnx")
    quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared), str(target), Feeds(), quant_format=QuantFormat.QDQ, per_channel=True,
        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
        op_types_to_quantize=["MatMul"] if float_embeddings else ["MatMul", "Gather"],
        calibrate_method=CalibrationMethod.Percentile if percentile else CalibrationMethod.MinMax,
        extra_options={**({} if quantize_outputs else {"OpTypesToExcludeOutputQuantization": ["MatMul"]}),
                       **({"CalibPercentile": 99.99} if percentile else {})},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=Path, default=DEV_ITEMS, help="labelled or plain JSONL of READMEs")
    parser.add_argument("--out", type=Path, default=INT8_MODEL)
    parser.add_argument("--alpha", type=float, default=0.5, help="SmoothQuant migration strength")
    parser.add_argument("--calibration-readmes", type=int, default=200)
    parser.add_argument("--calibration-chunks", type=int, default=512)
    parser.add_argument("--held-out", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    # variants measured and not kept (benchmarks/speed.md): build them with --out elsewhere
    parser.add_argument("--no-smoothquant", action="store_true")
    parser.add_argument("--smooth-all", action="store_true", help="SmoothQuant on every linear layer")
    parser.add_argument("--percentile", action="store_true", help="Percentile (99.99) calibration, not MinMax")
    parser.add_argument("--float-embeddings", action="store_true", help="leave the embedding table float")
    parser.add_argument("--quantize-matmul-outputs", action="store_true")
    args = parser.parse_args()
    import os
    import tempfile

    os.environ["EMBEDTAG_BACKEND"] = "torch"  # the model this script builds may not exist yet
    started = time.perf_counter()
    spec = bert_spec(bundled_model_path())
    if spec is None:
        sys.exit("the bundled model is not a BERT mean-pooling folder")
    weights = bert_weights(spec)
    calibration, held_out = split_chunks(readme_chunks(args.items), args.calibration_readmes,
                                         args.calibration_chunks, args.held_out, args.seed)
    tokens = _Tokenizers(spec, 66)
    calibration_ids = tokens.ids(calibration)
    parts = () if args.no_smoothquant else ALL_LINEARS if args.smooth_all else SMOOTHED
    factors = smoothing(spec, weights, input_maxima(spec, weights, calibration_ids), args.alpha, parts)
    feeds = []
    for rows in _batches(calibration_ids, 16, True):
        input_ids, mask = _padded(calibration_ids, rows, 0)
        if args.percentile:  # its histograms need one shape: every batch padded to the full window
            width = ((0, 0), (0, 66 - input_ids.shape[1]))
            input_ids, mask = np.pad(input_ids, width), np.pad(mask, width)
        feeds.append({"input_ids": input_ids, "attention_mask": mask})
    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / "smoothed.onnx"
        export_onnx(spec, float_path, weights, smooth=factors)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.chdir(tmp):  # onnxruntime's pre-processing leaves scratch files in the working directory
            quantize(float_path, args.out.resolve(), feeds, args.percentile, args.float_embeddings,
                     args.quantize_matmul_outputs)
    sha256 = file_sha256(args.out)
    meta: dict[str, Any] = {
        "model": "all-MiniLM-L6-v2", "weights_fingerprint": weights_fingerprint(spec.path), "sha256": sha256,
        "quick_sha256": quick_fingerprint(args.out),
        "quantization": "static QDQ: int8 weights per output channel, uint8 activations per tensor "
                        "(MinMax), MatMul + Gather, MatMul outputs float",
        "smoothquant_alpha": args.alpha, "smoothed": list(parts),
        "variant": {k: v for k, v in vars(args).items() if isinstance(v, bool) and v},
        "calibration": {"readmes": args.calibration_readmes, "chunks": len(calibration), "seed": args.seed,
                        "source": args.items.name},
    }
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    # how close to float32, on chunks of READMEs the calibration never saw
    with tempfile.TemporaryDirectory() as tmp:
        reference = OnnxEncoder(max_tokens=64, cache_dir=tmp).encode(held_out)
    quantized = OnnxEncoder(max_tokens=64, quantize=True, int8_path=args.out).encode(held_out)
    cosine = (reference * quantized).sum(axis=1)
    meta["held_out"] = {"chunks": len(held_out), "cosine_mean": round(float(cosine.mean()), 5),
                        "cosine_p1": round(float(np.percentile(cosine, 1)), 5),
                        "cosine_min": round(float(cosine.min()), 5)}
    meta["build_s"] = round(time.perf_counter() - started, 1)
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    size_mb = args.out.stat().st_size / 1e6
    print(f"{args.out} ({size_mb:.1f} MB, sha256 {sha256[:12]}): held-out cosine to float32 mean "
          f"{cosine.mean():.4f}, 1st percentile {np.percentile(cosine, 1):.4f}, min {cosine.min():.4f}; "
          f"{meta['build_s']} s")


if __name__ == "__main__":
    main()

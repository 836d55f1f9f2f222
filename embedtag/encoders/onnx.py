"""`OnnxEncoder`: the bundled BERT on ONNX Runtime, float32 (exported locally once) or the shipped
static int8 model (the default encoder).

Both ONNX files output the last layer's token states; `pool_tokens` pools them one row at a time,
which makes a chunk's vector the same bits alone or inside any batch (tests/test_int8.py).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from embedtag.encoders.adapter import adapted_fingerprint, apply_adapter
from embedtag.encoders.base import (
    BUNDLED_MODEL_NAME,
    _env_threads,
    _model_dir,
    cache_home,
    head_and_tail,
    set_offline,
    weights_fingerprint,
)
from embedtag.encoders.bert import (
    BertSpec,
    _batches,
    _padded,
    _Tokenizers,
    bert_module,
    bert_spec,
    bert_weights,
    pool_tokens,
)
from embedtag.errors import ModelError

# The static int8 model of the bundled MiniLM, built by scripts/build_int8_encoder.py.
INT8_MODEL = Path(__file__).resolve().parent.parent / "data" / f"{BUNDLED_MODEL_NAME}.int8.onnx"
INT8_BUILD_HINT = "run `python scripts/build_int8_encoder.py`, or use the float encoder: embedtag --backend torch"


def onnxruntime_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def int8_metadata(path: Path = INT8_MODEL) -> dict[str, Any]:
    """What the build script recorded beside the int8 model: the weights it came from, its
    calibration and how close its vectors are to float32."""
    meta_path = path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {meta_path}: {exc}; {INT8_BUILD_HINT}") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{meta_path} is not a JSON object; {INT8_BUILD_HINT}")
    return meta


def quick_fingerprint(path: Path) -> str:
    """sha256 of a file's size, first and last MiB: what every start checks (1 ms, where the
    whole file's sha256 costs 35 ms of a cold `embedtag tag`)."""
    digest = hashlib.sha256()
    head_and_tail(digest, path)
    return digest.hexdigest()


class OnnxEncoder:
    """The bundled BERT mean-pooling model on ONNX Runtime.

    `quantize=False`: float32, exported from the model folder (or adapted weights) into the local
    cache on first use (needs torch + `onnx` that once); same vectors as the torch encoder to
    ~1e-6, same fingerprint. `quantize=True`: the shipped static int8 model (activation ranges
    calibrated once on README chunks and frozen), 1.8x float32 on ONNX Runtime end to end; its
    vectors differ from float32 (cosine ~0.99), so it has a fingerprint of its own and says
    which float model it `approximates` (an index built with either scores with either).
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        max_tokens: int = 128,
        batch_size: int = 32,
        threads: int | None = None,
        quantize: bool = False,
        cache_dir: str | Path | None = None,
        sort_by_length: bool = True,
        adapter: bytes | None = None,
        int8_path: str | Path | None = None,
    ) -> None:
        set_offline()
        self.path = _model_dir(model_path)
        spec = bert_spec(self.path)
        if spec is None:
            raise ModelError(
                f"the ONNX backend runs BERT mean-pooling models only; {self.path} is not one "
                "(use the default torch backend)"
            )
        try:
            import onnxruntime  # type: ignore[import-not-found,import-untyped]
        except ImportError:
            raise ModelError("the ONNX backend needs onnxruntime: pip install onnxruntime") from None
        base = BUNDLED_MODEL_NAME if model_path is None else self.path.name
        self.quantized = quantize
        self.name = f"{base}-int8" if quantize else base
        self.batch_size = batch_size
        self.sort_by_length = sort_by_length
        weights = weights_fingerprint(self.path)
        self.max_tokens = min(max_tokens, spec.window - 2)
        self.dimension = spec.hidden
        self._tokens = _Tokenizers(spec, self.max_tokens + 2)
        if quantize:
            if adapter is not None:
                raise ModelError("the int8 model has no adapter; use the float encoder: embedtag --backend torch")
            self.onnx_path = Path(int8_path) if int8_path else INT8_MODEL
            self._fingerprint, self.approximates = self._int8_identity(weights, onnxruntime.__version__)
        else:
            arrays = None
            if adapter is not None:
                arrays = apply_adapter(adapter, bert_weights(spec), weights)
                weights = adapted_fingerprint(weights, adapter)
                self.name += "+adapter"
            self._fingerprint = weights
            self.approximates = weights
            directory = Path(cache_dir) if cache_dir else cache_home() / "onnx"
            self.onnx_path = onnx_model(spec, directory / weights, arrays)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or _env_threads() or 0
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.onnx_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            hint = INT8_BUILD_HINT if quantize else "delete it to export it again"
            raise ModelError(f"cannot load {self.onnx_path}: {exc}; {hint}") from None

    def _int8_identity(self, weights: str, runtime_version: str) -> tuple[str, str]:
        """(fingerprint, the float fingerprint it approximates) of the int8 file, checked against
        the weights it was built from."""
        if not self.onnx_path.is_file():
            raise ModelError(f"no int8 model at {self.onnx_path}; {INT8_BUILD_HINT}")
        meta = int8_metadata(self.onnx_path)
        if meta.get("weights_fingerprint") != weights:
            raise ModelError(
                f"{self.onnx_path} was built from other weights ({meta.get('weights_fingerprint')}) than "
                f"{self.path} ({weights}); {INT8_BUILD_HINT}"
            )
        # The runtime's version is part of it: int8 kernels may round differently between
        # releases, and the vector store must never hand back a vector from another one.
        if meta.get("quick_sha256") != quick_fingerprint(self.onnx_path):
            raise ModelError(
                f"{self.onnx_path} is not the file its metadata describes (sha256 differs); {INT8_BUILD_HINT}"
            )
        runtime = ".".join(runtime_version.split(".")[:2])
        return f"{weights}-int8-{str(meta.get('sha256', ''))[:12]}-ort{runtime}", weights

    def fingerprint(self) -> str:
        return self._fingerprint

    def count_tokens(self, text: str) -> int:
        return self._tokens.count(text)

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        ids = self._tokens.ids(texts)
        for rows in _batches(ids, self.batch_size, self.sort_by_length):
            input_ids, mask = _padded(ids, rows, self._tokens.pad_id)
            states = self.session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]
            out[rows] = pool_tokens(states, [len(ids[i]) for i in rows])
        return out


def onnx_model(spec: BertSpec, directory: Path, weights: dict[str, np.ndarray] | None = None) -> Path:
    """The cached float32 ONNX file for a model folder (or `weights`, e.g. adapted), exported
    here on first use."""
    target = directory / "model.tokens.onnx"
    if not target.is_file():
        directory.mkdir(parents=True, exist_ok=True)
        export_onnx(spec, target, weights)
    return target


def export_onnx(
    spec: BertSpec, target: Path, weights: dict[str, np.ndarray] | None = None,
    smooth: dict[str, np.ndarray] | None = None,
) -> None:
    """torch.onnx.export of `bert_module` (token states out), checked against torch before it is kept."""
    import warnings

    try:
        import onnx  # type: ignore[import-not-found,import-untyped]  # noqa: F401 - the exporter needs it
        import onnxruntime
        import torch
    except ImportError as exc:
        raise ModelError(f"exporting the ONNX model needs torch, onnx and onnxruntime ({exc})") from None
    module = bert_module(spec, weights, explicit_attention=True, smooth=smooth, token_states=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    probe_ids = torch.tensor([[101, 7592, 2088, 2003, 102, 0], [101, 2023, 102, 0, 0, 0]])
    probe_mask = (probe_ids != 0).long()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, (probe_ids, probe_mask), str(tmp), input_names=["input_ids", "attention_mask"],
                output_names=["token_states"], opset_version=17, dynamo=False,
                dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                              "attention_mask": {0: "batch", 1: "tokens"},
                              "token_states": {0: "batch", 1: "tokens"}},
            )
        with torch.inference_mode():
            expected = module(probe_ids, probe_mask).numpy()
        session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(None, {"input_ids": probe_ids.numpy(), "attention_mask": probe_mask.numpy()})[0]
        if float(np.abs(got - expected).max()) > 1e-4:
            raise ModelError("the exported ONNX model does not reproduce the torch model; not kept")
        os.replace(tmp, target)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"cannot export the model to ONNX: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)

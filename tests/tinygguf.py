"""Build a tiny quantized Llama-architecture GGUF chat model for the tests.

The model is made offline in a couple of seconds: a small byte-level BPE
tokenizer is trained with `tokenizers` on a few standard-library sources,
seeded random weights are written as an F32 GGUF with `gguf.GGUFWriter`, and
llama.cpp's own quantizer (through llama-cpp-python) turns that into the
final quantized file.  The weights are noise, so the text it generates is
gibberish, but it loads, tokenizes, applies its chat template and generates
exactly like a real model, which is what the tests need.

Same arguments (and same Python stdlib sources) give the same file bytes.

Heavy imports (numpy, gguf, tokenizers, llama_cpp) happen inside the
functions, so importing this module from conftest costs nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import logging
import sysconfig
from dataclasses import dataclass
from pathlib import Path

# The usual ChatML template.  It is the exact string llama-cpp-python ships as
# its ChatML template, so Llama() reports chat_format "chatml" for this model.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)
MODEL_NAME = "codelearn-tiny"
LLAMA_LOGGER = "llama-cpp-python"  # the logging name llama-cpp-python uses

# llama.cpp maps "gpt-2" to its GPT-2 pre-tokenizer regex, the same split that
# `tokenizers`' ByteLevel(use_regex=True) uses while training, so both sides
# cut text identically ("default" would first split punctuation runs apart).
PRE_TOKENIZER = "gpt-2"

# llama_ftype values (llama.h); kept literal so no llama_cpp import is needed
# to validate the argument.
QUANT_FTYPES = {"Q4_0": 2, "Q8_0": 7, "Q4_K_M": 15}

# gguf token types (gguf.TokenType)
TOKEN_NORMAL, TOKEN_CONTROL = 1, 3

STDLIB_CORPUS = ("textwrap.py", "string.py", "shlex.py", "fnmatch.py", "json/encoder.py")
INLINE_CORPUS = """\
The quick brown fox jumps over the lazy dog. Where is the function defined?
This repository indexes source files and answers questions about the code.
def add(a, b):
    return a + b

class Index:
    \"\"\"Holds chunks of code and their embeddings.\"\"\"

    def __init__(self, path):
        self.path = path
        self.chunks = []

    def search(self, query, limit=10):
        return [chunk for chunk in self.chunks if query in chunk][:limit]
"""


@dataclass(frozen=True)
class TinyShape:
    """Hyperparameters of the tiny model.

    Every weight row (n_embd, n_ff) is a multiple of 256, the K-quant block
    size, so Q4_K_M really produces K-quant tensors instead of falling back;
    256 is the smallest such width.
    """

    vocab_size: int = 768
    n_embd: int = 256
    n_ff: int = 512
    n_layer: int = 2
    n_head: int = 4
    n_head_kv: int = 4
    rms_eps: float = 1e-5
    init_scale: float = 0.02


@dataclass(frozen=True)
class TinyVocab:
    """A trained byte-level BPE vocabulary in the form GGUF stores it."""

    tokens: tuple[str, ...]
    token_types: tuple[int, ...]
    merges: tuple[str, ...]
    bos_id: int
    eos_id: int


def training_texts() -> list[str]:
    """The tokenizer's training corpus: a few stdlib modules plus inline text."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [INLINE_CORPUS]
    for rel in STDLIB_CORPUS:
        path = stdlib / rel
        if path.is_file():
            texts.append(path.read_text(encoding="utf-8"))
    return texts


def _merge_strings(raw_merges: list) -> tuple[str, ...]:
    """Merges as "left right" strings, from either JSON form tokenizers uses."""
    return tuple(m if isinstance(m, str) else " ".join(m) for m in raw_merges)


@functools.lru_cache(maxsize=4)
def train_tokenizer(vocab_size: int = TinyShape.vocab_size):
    """A byte-level BPE `tokenizers.Tokenizer` with the chat special tokens.

    Cached per process: both test fixtures share one training run.  Training
    is deterministic for a given corpus, so is the resulting vocabulary.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_texts(), trainer)
    return tokenizer


def vocab_from_tokenizer(tokenizer) -> TinyVocab:
    """The GGUF view of a trained tokenizer: tokens by id, types, merges."""
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    if sorted(by_id) != list(range(len(by_id))):
        raise RuntimeError("trained vocabulary ids are not contiguous")
    tokens = tuple(by_id[i] for i in range(len(by_id)))
    types = tuple(TOKEN_CONTROL if t in SPECIAL_TOKENS else TOKEN_NORMAL for t in tokens)
    merges = _merge_strings(json.loads(tokenizer.to_str())["model"]["merges"])
    return TinyVocab(tokens=tokens, token_types=types, merges=merges,
                     bos_id=tokens.index(ENDOFTEXT), eos_id=tokens.index(IM_END))


def random_weights(shape: TinyShape, n_vocab: int, seed: int) -> dict:
    """Seeded Llama tensors by GGUF name (numpy shape is the reverse of ggml's)."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def matrix(rows: int, cols: int):
        return rng.standard_normal((rows, cols), dtype=np.float32) * shape.init_scale

    def ones(n: int):
        return np.ones(n, dtype=np.float32)

    head_dim = shape.n_embd // shape.n_head
    n_embd_kv = head_dim * shape.n_head_kv
    tensors = {"token_embd.weight": matrix(n_vocab, shape.n_embd)}
    for layer in range(shape.n_layer):
        blk = f"blk.{layer}."
        tensors[blk + "attn_norm.weight"] = ones(shape.n_embd)
        tensors[blk + "attn_q.weight"] = matrix(shape.n_embd, shape.n_embd)
        tensors[blk + "attn_k.weight"] = matrix(n_embd_kv, shape.n_embd)
        tensors[blk + "attn_v.weight"] = matrix(n_embd_kv, shape.n_embd)
        tensors[blk + "attn_output.weight"] = matrix(shape.n_embd, shape.n_embd)
        tensors[blk + "ffn_norm.weight"] = ones(shape.n_embd)
        tensors[blk + "ffn_gate.weight"] = matrix(shape.n_ff, shape.n_embd)
        tensors[blk + "ffn_up.weight"] = matrix(shape.n_ff, shape.n_embd)
        tensors[blk + "ffn_down.weight"] = matrix(shape.n_embd, shape.n_ff)
    tensors["output_norm.weight"] = ones(shape.n_embd)
    tensors["output.weight"] = matrix(n_vocab, shape.n_embd)
    return tensors


def _add_metadata(writer, shape: TinyShape, vocab: TinyVocab,
                  chat_template: str | None, n_ctx_train: int) -> None:
    """Llama hyperparameters and the gpt2-style tokenizer keys."""
    writer.add_name(MODEL_NAME)
    writer.add_file_type(0)  # LLAMA_FTYPE_ALL_F32
    writer.add_context_length(n_ctx_train)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layer)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    writer.add_rope_dimension_count(shape.n_embd // shape.n_head)
    writer.add_layer_norm_rms_eps(shape.rms_eps)
    writer.add_vocab_size(len(vocab.tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(PRE_TOKENIZER)
    writer.add_token_list(list(vocab.tokens))
    writer.add_token_types(list(vocab.token_types))
    writer.add_token_merges(list(vocab.merges))
    writer.add_bos_token_id(vocab.bos_id)
    writer.add_eos_token_id(vocab.eos_id)
    writer.add_add_bos_token(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)


def write_f32_gguf(path: Path, shape: TinyShape, vocab: TinyVocab, *,
                   chat_template: str | None, seed: int, n_ctx_train: int) -> Path:
    """Write the unquantized model to `path`."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch="llama")
    try:
        _add_metadata(writer, shape, vocab, chat_template, n_ctx_train)
        for name, array in random_weights(shape, len(vocab.tokens), seed).items():
            writer.add_tensor(name, array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return path


@contextlib.contextmanager
def quiet_llama_log():
    """Hold back llama.cpp's per-tensor log lines (below ERROR) for a while.

    llama-cpp-python routes llama.cpp's log through this logger; until some
    `Llama(verbose=False)` sets its level, everything is printed to stderr.
    """
    logger = logging.getLogger(LLAMA_LOGGER)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def quantize(src: Path, dst: Path, quant: str) -> Path:
    """Quantize `src` into `dst` with llama.cpp's quantizer."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_FTYPES[quant]
    with quiet_llama_log():
        status = llama_cpp.llama_model_quantize(
            str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if status != 0:
        raise RuntimeError(f"llama_model_quantize failed ({status}) for {quant}")
    return dst


def weight_types(path: Path) -> dict[str, str]:
    """GGML type name of every 2-D tensor in the GGUF at `path`."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    return {t.name: t.tensor_type.name for t in reader.tensors if len(t.shape) == 2}


def is_quantized(path: Path) -> bool:
    """True when most 2-D weights are stored in a quantized (not float) type."""
    types = weight_types(path).values()
    quantized = sum(name not in ("F32", "F16", "BF16") for name in types)
    return quantized * 2 > len(types)


def build_tiny_gguf(dest: Path, *, chat_template: str | None = CHATML_TEMPLATE,
                    quant: str = "Q4_0", seed: int = 0, n_ctx_train: int = 2048) -> Path:
    """Write a tiny quantized Llama chat model to `dest` and return `dest`.

    `chat_template=None` leaves the `tokenizer.chat_template` key out.
    `quant` is one of QUANT_FTYPES.  The F32 intermediate is deleted.
    """
    if quant not in QUANT_FTYPES:
        raise ValueError(f"quant must be one of {sorted(QUANT_FTYPES)}, not {quant!r}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shape = TinyShape()
    vocab = vocab_from_tokenizer(train_tokenizer(shape.vocab_size))
    intermediate = dest.with_name(dest.name + ".f32.tmp")
    try:
        write_f32_gguf(intermediate, shape, vocab, chat_template=chat_template,
                       seed=seed, n_ctx_train=n_ctx_train)
        quantize(intermediate, dest, quant)
    finally:
        intermediate.unlink(missing_ok=True)
    if not is_quantized(dest):
        raise RuntimeError(f"{dest} is not quantized: {weight_types(dest)}")
    return dest

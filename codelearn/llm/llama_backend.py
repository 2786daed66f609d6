"""The llama-cpp-python adapter: the one module that loads and runs a local GGUF.

The prompt is rendered here (not by llama-cpp-python's chat handler) so that
the text `--show-context` prints, the tokens the budget counts and the tokens
the model evaluates are the same.
"""

from __future__ import annotations

import codecs
import contextlib
import threading
import time
from pathlib import Path
from typing import Iterator

from codelearn.errors import CodelearnError, MissingExtraError
from codelearn.llm.base import GenerationStats, Message, SamplingOptions, auto_threads
from codelearn.llm.templates import ChatFormat, choose_format
from codelearn.llm.gguf_header import GGUFInfo, read_gguf_info
from codelearn.llm.native_engine import flash_attention

_LOAD_LOCK = threading.Lock()
DEFAULT_CTX_CAP = 4096


def _llama_cpp():
    """llama-cpp-python, loading the native engine built for this CPU where one was kept."""
    from codelearn.llm.native_engine import import_llama_cpp

    try:
        return import_llama_cpp()
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingExtraError("llama-cpp-python") from exc


def build_has_amx(llama_cpp) -> bool:
    """True when this llama.cpp build uses the AMX path that crashes on quantized models."""
    return "AMX" in llama_cpp.llama_print_system_info().decode(errors="replace")


@contextlib.contextmanager
def _safe_model_params(llama_cpp):
    """Disable extra buffer types (AMX, repacking) while a model loads, if the build has AMX.

    A native build on an AMX CPU segfaults on the first decode of any quantized
    model (FACTS.md); `Llama()` does not expose `use_extra_bufts`, so its call
    to `llama_model_default_params` is wrapped for the duration of the load.
    Portable (AVX2) builds keep repacking, which speeds up Q4_0.
    """
    if not build_has_amx(llama_cpp):
        yield
        return
    low = llama_cpp.llama_cpp
    original = low.llama_model_default_params

    def params():
        value = original()
        value.use_extra_bufts = False
        return value

    low.llama_model_default_params = params
    try:
        yield
    finally:
        low.llama_model_default_params = original


def default_gpu_layers(llama_cpp, requested: int) -> int:
    if requested >= 0:
        return requested
    return -1 if llama_cpp.llama_supports_gpu_offload() else 0


class LlamaModel:
    """A GGUF loaded in this process."""

    backend = "llama.cpp"

    def __init__(self, path: Path, *, name: str = "", declared_format: str = "", format_override: str = "",
                 context_size: int = 0, threads: int = 0, gpu_layers: int = -1,
                 lora_path: Path | None = None) -> None:
        self.path = Path(path)
        self.info: GGUFInfo = read_gguf_info(self.path)
        self.name = name or self.info.name
        llama_cpp = _llama_cpp()
        trained = self.info.context_length or DEFAULT_CTX_CAP
        self.n_ctx = context_size or min(trained, DEFAULT_CTX_CAP)
        self.threads = auto_threads(threads)
        self.gpu_layers = default_gpu_layers(llama_cpp, gpu_layers)
        started = time.perf_counter()
        # an adapter load logs a line per tensor ("cannot use buft 'CPU_REPACK'") even when quiet
        quiet = _quiet_llama_log() if lora_path else contextlib.nullcontext()
        with _LOAD_LOCK, _safe_model_params(llama_cpp), quiet:
            try:
                self.llm = llama_cpp.Llama(
                    model_path=str(self.path), n_ctx=self.n_ctx, n_threads=self.threads,
                    n_threads_batch=self.threads, n_gpu_layers=self.gpu_layers, verbose=False,
                    flash_attn=flash_attention(), **({"lora_path": str(lora_path)} if lora_path else {}))
            except (ValueError, RuntimeError) as exc:
                raise CodelearnError(
                    f"llama.cpp could not load {self.path} ({exc}).",
                    "The file may be truncated or use an architecture this llama-cpp-python "
                    "does not know: fetch it again or upgrade llama-cpp-python.") from exc
        self.load_s = time.perf_counter() - started
        vocab = self.llm._model
        self.bos_id = vocab.token_bos()
        self.add_bos = bool(vocab.add_bos_token()) and self.bos_id >= 0
        bos = self._piece(self.bos_id)
        eos = self._piece(vocab.token_eos())
        self.format: ChatFormat = choose_format(self.info.chat_template, declared_format,
                                                self.info.chat_markers, bos, eos, format_override)
        self.last_stats = GenerationStats()

    def _piece(self, token: int) -> str:
        if token < 0:
            return ""
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    # -- counting ----------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def prompt_text(self, messages: list[Message]) -> str:
        return self.format.render(messages)

    def _prompt_ids(self, messages: list[Message]) -> list[int]:
        text = self.prompt_text(messages)
        ids = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if self.add_bos and (not ids or ids[0] != self.bos_id):
            ids.insert(0, self.bos_id)
        return ids

    def prompt_tokens(self, messages: list[Message]) -> int:
        return len(self._prompt_ids(messages))

    def warm(self, head: list[Message], marker: str) -> int:
        """Evaluate the prompt's fixed beginning now (while the index is being searched).

        `head` ends with a message whose content starts with `marker`; the
        rendered text before the marker (system rules, template tokens) is the
        same for every question, so `generate` later reuses its KV cache and
        only the retrieved code and the question are left to evaluate.
        Returns the tokens evaluated.
        """
        text = self.prompt_text(head)
        cut = text.find(marker)
        if cut <= 0:
            return 0
        ids = self.llm.tokenize(text[:cut].encode("utf-8"), add_bos=False, special=True)
        if self.add_bos and (not ids or ids[0] != self.bos_id):
            ids.insert(0, self.bos_id)
        ids = ids[:-1]  # the last token may merge with what follows the cut
        if not ids or len(ids) >= self.n_ctx // 2:
            return 0
        self.llm.reset()
        self.llm.eval(ids)
        return len(ids)

    # -- generating ----------------------------------------------------------
    def stream(self, messages: list[Message], options: SamplingOptions) -> Iterator[str]:
        ids = self._prompt_ids(messages)
        if len(ids) + 16 > self.n_ctx:
            raise CodelearnError(
                f"The prompt is {len(ids)} tokens but the model's window is {self.n_ctx}.",
                "Lower --max-context, or raise the `context_size` setting.")
        max_tokens = max(1, min(options.max_tokens, self.n_ctx - len(ids)))
        stats = GenerationStats(prompt_tokens=len(ids), cached_prompt_tokens=self._cached_prefix(ids))
        self.last_stats = stats
        llama_cpp = _llama_cpp()
        vocab = self.llm._model
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        started = time.perf_counter()
        first = last = 0.0
        # Our own loop over `generate`: llama-cpp-python's streaming completion
        # re-detokenizes the whole answer for every token (quadratic; minutes on
        # long answers with split UTF-8); here each token is decoded once.
        tokens = self.llm.generate(ids, top_k=40, top_p=0.95, min_p=0.05, temp=options.temperature,
                                   repeat_penalty=options.repeat_penalty)
        for count, token in enumerate(tokens, 1):
            last = time.perf_counter()
            if llama_cpp.llama_vocab_is_eog(vocab.vocab, token):
                break
            stats.generated_tokens = count
            if count == 1:
                first = last
                stats.ttft_s = first - started
            text = decoder.decode(vocab.detokenize([token]))
            if text:
                yield text
            if count >= max_tokens:
                break
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail
        stats.total_s = time.perf_counter() - started
        # Rates from the wall clock: llama.cpp's perf counters did not separate
        # one request from the previous ones here.
        if stats.ttft_s > 0:
            stats.prompt_tok_s = (stats.prompt_tokens - stats.cached_prompt_tokens) / stats.ttft_s
        if stats.generated_tokens > 1 and last > first:
            stats.gen_tok_s = (stats.generated_tokens - 1) / (last - first)

    def _cached_prefix(self, ids: list[int]) -> int:
        """Prompt tokens already in the KV cache (a warmed head, an earlier chat turn)."""
        cached = 0
        for have, want in zip(self.llm._input_ids.tolist(), ids):
            if have != want:
                break
            cached += 1
        return min(cached, len(ids) - 1)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.llm.close()


@contextlib.contextmanager
def _quiet_llama_log():
    """llama.cpp's own warnings (a vocab-only load warns about its context) stay off the terminal:
    they are written by C code straight to file descriptor 2, so it is pointed at /dev/null."""
    import os
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _load(path: Path, **kwargs):
    """`Llama(...)` with the AMX guard and one error for files llama.cpp refuses."""
    llama_cpp = _llama_cpp()
    with _LOAD_LOCK, _safe_model_params(llama_cpp), _quiet_llama_log():
        try:
            return llama_cpp.Llama(model_path=str(path), verbose=False, **kwargs)
        except (ValueError, RuntimeError) as exc:
            raise CodelearnError(
                f"llama.cpp could not load {path} ({exc}).",
                "The file may be truncated or not a model llama.cpp knows.") from exc


class LlamaVocab:
    """A GGUF's tokenizer and chat format only (no weights): fast to open."""

    def __init__(self, path: Path, *, format_override: str = "", declared_format: str = "") -> None:
        self.path = Path(path)
        self.info = read_gguf_info(self.path)
        self.llm = _load(self.path, vocab_only=True)
        model = self.llm._model
        self.n_vocab = model.n_vocab()
        bos = self._piece(model.token_bos())
        self.eos_id = model.token_eos()
        self.chat_end = self._piece(self.eos_id)
        self.format = choose_format(self.info.chat_template, declared_format,
                                    self.info.chat_markers, bos, self.chat_end, format_override)

    def _piece(self, token: int) -> str:
        if token < 0:
            return ""
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def tokenize(self, text: str, special: bool = False) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)

    def detokenize(self, ids: list[int]) -> bytes:
        return self.llm.detokenize(ids, special=True)

    def special_id(self, piece: str) -> int | None:
        """The id of `piece` when it is one control token of this vocabulary."""
        ids = self.tokenize(piece, special=True)
        if len(ids) == 1 and self.tokenize(piece, special=False) != ids:
            return ids[0]
        return None

    def render_chat(self, messages: list[Message]) -> str:
        return self.format.render(messages)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.llm.close()


def _nll(row, target: int, top: float) -> float:
    """-log softmax(row)[target], `top` being the row's largest logit: exponentials in float32
    (all ≤ 1), summed in float64; 6x faster than float64 throughout on a 150k vocabulary, the
    same to ~1e-7."""
    import numpy as np

    total = np.exp(row - np.float32(top), dtype=np.float32).sum(dtype=np.float64)
    return top + float(np.log(total)) - float(row[target])


class LlamaScorer:
    """Per-token log-likelihoods of a text under a GGUF, as llama.cpp serves it.

    Logits are requested only for the positions whose next token is scored
    (llama.cpp computes the 150k-wide output layer for those alone), so a long
    context before a short target costs a forward pass, not a full softmax per
    position. The cache keeps the last probe's tokens: a probe that begins like it
    (the same header, the same distractors) evaluates only what differs, up to its
    first scored position. `lora_path` applies an adapter GGUF the way `ask` would serve it.
    """

    def __init__(self, path: Path, *, n_ctx: int = 2048, threads: int = 0,
                 lora_path: Path | None = None) -> None:
        self.path = Path(path)
        extra = {"lora_path": str(lora_path)} if lora_path else {}
        self.n_batch = min(512, n_ctx)
        threads = auto_threads(threads)
        self.llm = _load(self.path, n_ctx=n_ctx, n_batch=self.n_batch, n_ubatch=self.n_batch,
                         n_threads=threads, n_threads_batch=threads, flash_attn=flash_attention(),
                         n_gpu_layers=default_gpu_layers(_llama_cpp(), -1), **extra)
        self.n_ctx = n_ctx
        self.n_vocab = self.llm._model.n_vocab()
        self.cached: list[int] = []  # the tokens whose keys and values sequence 0 holds
        self.evaluated = 0  # tokens decoded so far (a reused prefix is not counted)

    def score(self, ids: list[int], scored: list[bool]):
        """(negative log-likelihood, greedy hit) for each token i > 0 with `scored[i]`.

        Returns two numpy arrays aligned with the scored positions, in order.
        """
        import numpy as np

        llama_cpp = _llama_cpp()
        if len(ids) > self.n_ctx:
            raise CodelearnError(f"A {len(ids)}-token probe does not fit the {self.n_ctx}-token window.",
                                 "Lower the probe size (eval_tokens setting).")
        ctx = self.llm._ctx.ctx
        start = self._reuse(ctx, ids, scored)
        batch = self.llm._batch.batch
        nll, hit = [], []
        for begin in range(start, len(ids), self.n_batch):
            part = ids[begin:begin + self.n_batch]
            batch.n_tokens = len(part)
            wanted = []
            for i, token in enumerate(part):
                pos = begin + i
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
                batch.seq_id[i][0] = 0
                flag = pos + 1 < len(ids) and scored[pos + 1]
                batch.logits[i] = flag
                if flag:
                    wanted.append(i)
            if llama_cpp.llama_decode(ctx, batch) != 0:
                raise CodelearnError("llama.cpp failed to evaluate a probe.", "Retry with --debug.")
            self.evaluated += len(part)
            for i in wanted:
                row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, i), shape=(self.n_vocab,))
                target = ids[begin + i + 1]
                top = float(row.max())
                nll.append(_nll(row, target, top))
                hit.append(bool(row[target] >= top))
        self.cached = list(ids)
        return np.array(nll, dtype=np.float64), np.array(hit, dtype=bool)

    def _reuse(self, ctx, ids: list[int], scored: list[bool]) -> int:
        """Keep the cached prefix `ids` shares with the last probe, up to the first position whose
        logits are needed (they are not cached); drop the rest. Returns where decoding starts."""
        llama_cpp = _llama_cpp()
        memory = llama_cpp.llama_get_memory(ctx)
        first = next((i for i in range(1, len(ids)) if scored[i]), len(ids))
        keep = min(llama_cpp.Llama.longest_token_prefix(self.cached, ids), first - 1)
        self.cached = []  # until this probe is evaluated in full
        if keep <= 0 or not llama_cpp.llama_memory_seq_rm(memory, 0, keep, -1):
            llama_cpp.llama_memory_clear(memory, True)
            return 0
        return keep

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.llm.close()


def quantize_gguf(src: Path, dst: Path, file_type: str) -> Path:
    """Requantize `src` into `dst` (file_type as `GGUFInfo.file_type` names it: Q4_K_M, Q8_0...)."""
    import ctypes

    from codelearn.llm.gguf_header import FILE_TYPES

    codes = {name: code for code, name in FILE_TYPES.items()}
    if file_type not in codes:
        raise CodelearnError(f"Cannot quantize to {file_type!r}.", f"Use one of: {', '.join(codes)}.")
    llama_cpp = _llama_cpp()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = codes[file_type]
    partial = dst.with_name(dst.name + ".partial")
    with _quiet_llama_log():  # one warning line per tensor that falls back; the status says if it failed
        status = llama_cpp.llama_model_quantize(str(src).encode(), str(partial).encode(), ctypes.byref(params))
    if status != 0:
        partial.unlink(missing_ok=True)
        raise CodelearnError(f"llama.cpp failed to quantize {src} to {file_type} (status {status}).",
                             "Set export_quant to Q8_0 or F16, or export the adapter instead.")
    partial.replace(dst)
    return dst


def smoke_generate(path: Path, lora_path: Path | None = None, tokens: int = 8) -> str:
    """Load a model the way `ask` will and generate a few tokens: proof the file serves."""
    extra = {"lora_path": str(lora_path)} if lora_path else {}
    llm = _load(path, n_ctx=256, n_threads=auto_threads(0), **extra)
    try:
        out = llm.create_completion("def add(a, b):\n", max_tokens=tokens, temperature=0.0)
        return out["choices"][0]["text"]
    finally:
        with contextlib.suppress(Exception):
            llm.close()

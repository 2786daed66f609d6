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
from codelearn.models.gguf_header import GGUFInfo, read_gguf_info

_LOAD_LOCK = threading.Lock()
DEFAULT_CTX_CAP = 4096


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingExtraError("llama-cpp-python", "ask") from exc
    return llama_cpp


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
                 context_size: int = 0, threads: int = 0, gpu_layers: int = -1) -> None:
        self.path = Path(path)
        self.info: GGUFInfo = read_gguf_info(self.path)
        self.name = name or self.info.name
        llama_cpp = _llama_cpp()
        trained = self.info.context_length or DEFAULT_CTX_CAP
        self.n_ctx = context_size or min(trained, DEFAULT_CTX_CAP)
        self.threads = auto_threads(threads)
        self.gpu_layers = default_gpu_layers(llama_cpp, gpu_layers)
        started = time.perf_counter()
        with _LOAD_LOCK, _safe_model_params(llama_cpp):
            try:
                self.llm = llama_cpp.Llama(
                    model_path=str(self.path), n_ctx=self.n_ctx, n_threads=self.threads,
                    n_threads_batch=self.threads, n_gpu_layers=self.gpu_layers, verbose=False)
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

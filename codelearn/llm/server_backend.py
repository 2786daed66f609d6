"""A running llama.cpp server as the answer engine (its OpenAI-compatible API).

The server applies its own chat template; codelearn still builds the messages,
packs context by the server's tokenizer (`/tokenize`) and maps citations.

Works with llama.cpp's `llama-server` and with llama-cpp-python's server
(`python -m llama_cpp.server`), which differ in the extras around
`/v1/chat/completions`: the latter has no `/props`, `/tokenize` or
`/apply-template` (it tokenizes at `/extras/tokenize`), sends no usage chunk,
and when a prompt overflows its window it ends the stream with no data and no
`[DONE]` (tests/test_server_backend.py runs the real thing).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Iterator

from codelearn.errors import CodelearnError
from codelearn.llm.base import GenerationStats, Message, SamplingOptions

TIMEOUT_S = 10.0
CHARS_PER_TOKEN = 3.5  # fallback estimate for servers without a tokenize endpoint
# The window to assume when the server does not say. llama-server reports it in
# /props; llama-cpp-python's server reports it nowhere (no /props, and its
# /v1/models lists only ids). Assuming more than the server has overflows it:
# the request is refused or, by llama-cpp-python, answered with an empty
# stream. 2048 is llama-cpp-python's server default (was 4096 here, more than
# that server has unless started with a larger --n_ctx). Set `context_size`
# to the server's window to use more.
FALLBACK_N_CTX = 2048
# Where servers count tokens: llama-server, then llama-cpp-python's server.
TOKENIZE_ENDPOINTS = (("/tokenize", "content"), ("/extras/tokenize", "input"))


class ServerModel:
    """Answers from `model_url` (e.g. http://gpu-box:8080)."""

    backend = "llama.cpp server"

    def __init__(self, url: str, *, context_size: int = 0, timeout: float = TIMEOUT_S) -> None:
        self.url = url.strip().rstrip("/")
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CodelearnError(f"`model_url` {url!r} is not an http(s) URL.",
                                 "Set it like http://localhost:8080, or clear it.")
        self.timeout = timeout
        props = self._get_json("/props", optional=True) or {}
        settings = props.get("default_generation_settings") or {}
        models = self._get_json("/v1/models", optional=True) or {}
        listed = models.get("data") or [{}]
        first = listed[0] if isinstance(listed[0], dict) else {}
        served = int(settings.get("n_ctx") or props.get("n_ctx") or 0)
        trained = int((first.get("meta") or {}).get("n_ctx_train") or 0)  # llama-server only
        fallback = min(FALLBACK_N_CTX, trained) if trained else FALLBACK_N_CTX
        self.n_ctx = context_size or served or fallback
        self.name = str(first.get("id") or props.get("model_path") or self.url)
        self._tokenizer: tuple[str, str] | None = None  # the endpoint that worked
        self._tokenizers = list(TOKENIZE_ENDPOINTS)  # those still worth trying
        self._bos_tokens = 0  # what the endpoint adds to every text (a BOS)
        self._can_template = True
        self.last_stats = GenerationStats()

    # -- HTTP ----------------------------------------------------------------
    def _request(self, path: str, body: dict | None = None, timeout: float | None = None):
        data = json.dumps(body).encode() if body is not None else None
        try:
            request = urllib.request.Request(self.url + path, data=data,
                                             headers={"Content-Type": "application/json"})
            return urllib.request.urlopen(request, timeout=timeout or self.timeout)
        except urllib.error.HTTPError:
            raise
        except ValueError as exc:  # a malformed URL (a bad port, ...)
            raise CodelearnError(f"`model_url` {self.url!r} is not a valid URL ({exc}).",
                                 "Set it like http://localhost:8080, or clear it.") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise CodelearnError(
                f"Cannot reach the model server at {self.url} ({reason}).",
                "Start it (`llama-server -m MODEL.gguf --port 8080`), fix `model_url`, "
                "or clear `model_url` to answer with a local model.") from None

    def _post_json(self, path: str, body: dict) -> dict:
        with self._request(path, body) as response:
            return json.loads(response.read())

    def _get_json(self, path: str, optional: bool = False) -> dict | None:
        try:
            with self._request(path) as response:
                answer = json.loads(response.read())
            if isinstance(answer, dict):
                return answer
            raise ValueError("not a JSON object")
        except (urllib.error.HTTPError, ValueError) as exc:
            if optional:
                return None
            status = getattr(exc, "code", "an unreadable answer")
            raise CodelearnError(f"The model server answered {status} for {path}.",
                                 "Check that `model_url` points at a llama.cpp server.") from None

    # -- counting ------------------------------------------------------------
    def _tokenize(self, path: str, key: str, text: str) -> int:
        return len(self._post_json(path, {key: text})["tokens"])

    def count_tokens(self, text: str) -> int:
        if self._tokenizer:
            return max(0, self._tokenize(*self._tokenizer, text) - self._bos_tokens)
        while self._tokenizers:
            path, key = self._tokenizers[0]
            try:
                count = self._tokenize(path, key, text)
                # llama-cpp-python's /extras/tokenize adds the model's BOS to
                # every text; what it adds to "" is what to take off.
                bos = self._tokenize(path, key, "") if path == "/extras/tokenize" else 0
            except (urllib.error.HTTPError, KeyError, TypeError, ValueError):
                self._tokenizers.pop(0)
                continue
            self._tokenizer, self._bos_tokens = (path, key), bos
            return max(0, count - bos)
        return int(len(text) / CHARS_PER_TOKEN) + 1

    def prompt_text(self, messages: list[Message]) -> str:
        if self._can_template:
            try:
                return self._post_json("/apply-template", {"messages": messages})["prompt"]
            except (urllib.error.HTTPError, KeyError, TypeError, ValueError):
                self._can_template = False  # llama-cpp-python's server has no such endpoint
        return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)

    def prompt_tokens(self, messages: list[Message]) -> int:
        return self.count_tokens(self.prompt_text(messages))

    # -- generating ----------------------------------------------------------
    def stream(self, messages: list[Message], options: SamplingOptions) -> Iterator[str]:
        body = {"messages": messages, "stream": True, "max_tokens": options.max_tokens,
                "temperature": options.temperature, "repeat_penalty": options.repeat_penalty,
                "stream_options": {"include_usage": True}}
        stats = GenerationStats()
        self.last_stats = stats
        started = time.perf_counter()
        try:
            response = self._request("/v1/chat/completions", body, timeout=max(self.timeout, 300))
        except urllib.error.HTTPError as exc:
            detail = _error_detail(exc.read().decode(errors="replace"))
            raise CodelearnError(f"The model server refused the request ({exc.code}: {detail}).",
                                 "Check the server log; a smaller --max-context may help.") from None
        chunks = 0
        finished = usage = False
        with response:
            for event in _sse_events(response, self.url):
                if event.get("error"):
                    raise CodelearnError(
                        f"The model server failed while answering: {_error_detail(event)}.",
                        "Check the server log; a smaller --max-context may help.")
                if event.get("usage"):
                    usage = True
                    stats.prompt_tokens = int(event["usage"].get("prompt_tokens") or 0)
                    stats.generated_tokens = int(event["usage"].get("completion_tokens") or 0)
                timings = event.get("timings") or {}
                if timings:
                    stats.prompt_tok_s = float(timings.get("prompt_per_second", 0) or 0)
                    stats.gen_tok_s = float(timings.get("predicted_per_second", 0) or 0)
                for choice in event.get("choices") or []:
                    finished = finished or bool(choice.get("finish_reason"))
                    text = (choice.get("delta") or {}).get("content") or ""
                    if text:
                        chunks += 1
                        if not stats.ttft_s:
                            stats.ttft_s = time.perf_counter() - started
                        yield text
        stats.total_s = time.perf_counter() - started
        if not finished and not chunks:
            # llama-cpp-python's server ends the stream like this when the
            # prompt does not fit its window (the error is only in its log).
            raise CodelearnError(
                f"The model server at {self.url} ended the answer without any text; "
                "the prompt may not fit its context window.",
                f"Check the server log; lower --max-context, or set `context_size` to the "
                f"server's window (now assumed {self.n_ctx}).")
        if not usage:
            # No usage chunk (llama-cpp-python's server): servers send one chunk
            # per token, and the prompt is counted with the server's tokenizer.
            stats.generated_tokens = chunks
            with contextlib.suppress(CodelearnError):
                stats.prompt_tokens = self.prompt_tokens(messages)
        if not stats.gen_tok_s and stats.generated_tokens > 1 and stats.total_s > stats.ttft_s:
            stats.gen_tok_s = (stats.generated_tokens - 1) / (stats.total_s - stats.ttft_s)

    def close(self) -> None:
        return None


def _sse_events(response, url: str) -> Iterator[dict]:
    """Parse the `data: {...}` (and llama-server's `error: {...}`) lines of a server-sent event stream."""
    try:
        for raw in response:
            line = raw.decode("utf-8", errors="replace").strip()
            field, _, payload = line.partition(":")
            if field not in ("data", "error"):
                continue  # blank separators, `: ping` comments, `event:` names
            payload = payload.strip()
            if payload == "[DONE]":
                return
            try:
                event = json.loads(payload)
            except ValueError:
                continue
            if isinstance(event, dict):
                yield {"error": event} if field == "error" else event
    except (OSError, http.client.HTTPException) as exc:  # a timeout or a dropped connection
        raise CodelearnError(f"The answer stream from the model server at {url} broke off ({exc}).",
                             "Check that the server is still running, and its log.") from None


def _error_detail(payload: dict | str) -> str:
    """The message of an OpenAI-style or llama-server error, in one short line."""
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            return " ".join(payload.split())[:200]
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    message = (error.get("message") or error.get("detail")) if isinstance(error, dict) else error
    return " ".join(str(message or payload).split())[:200]

"""A running llama.cpp server as the answer engine (its OpenAI-compatible API).

The server applies its own chat template; codelearn still builds the messages,
packs context by the server's tokenizer (`/tokenize`) and maps citations.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Iterator

from codelearn.errors import CodelearnError
from codelearn.llm.base import GenerationStats, Message, SamplingOptions

TIMEOUT_S = 10.0
CHARS_PER_TOKEN = 3.5  # fallback estimate for servers without /tokenize


class ServerModel:
    """Answers from `model_url` (e.g. http://gpu-box:8080)."""

    backend = "llama.cpp server"

    def __init__(self, url: str, *, context_size: int = 0, timeout: float = TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        props = self._get_json("/props", optional=True) or {}
        settings = props.get("default_generation_settings", {})
        self.n_ctx = context_size or int(settings.get("n_ctx") or props.get("n_ctx") or 4096)
        models = self._get_json("/v1/models", optional=True) or {}
        listed = models.get("data") or [{}]
        self.name = str(listed[0].get("id") or props.get("model_path") or self.url)
        self._can_tokenize = True
        self.last_stats = GenerationStats()

    # -- HTTP ----------------------------------------------------------------
    def _request(self, path: str, body: dict | None = None, timeout: float | None = None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data,
                                         headers={"Content-Type": "application/json"})
        try:
            return urllib.request.urlopen(request, timeout=timeout or self.timeout)
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CodelearnError(
                f"Cannot reach the model server at {self.url} ({reason}).",
                "Start it (`llama-server -m MODEL.gguf --port 8080`), fix `model_url`, "
                "or clear `model_url` to answer with a local model.") from None

    def _get_json(self, path: str, optional: bool = False) -> dict | None:
        try:
            with self._request(path) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if optional:
                return None
            raise CodelearnError(f"The model server answered {exc.code} for {path}.",
                                 "Check that `model_url` points at a llama.cpp server.") from None

    # -- counting ------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        if self._can_tokenize:
            try:
                with self._request("/tokenize", {"content": text}) as response:
                    return len(json.loads(response.read())["tokens"])
            except (urllib.error.HTTPError, KeyError, ValueError):
                self._can_tokenize = False
        return int(len(text) / CHARS_PER_TOKEN) + 1

    def prompt_text(self, messages: list[Message]) -> str:
        try:
            with self._request("/apply-template", {"messages": messages}) as response:
                return json.loads(response.read())["prompt"]
        except (urllib.error.HTTPError, KeyError, ValueError):
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
            detail = exc.read().decode(errors="replace")[:200]
            raise CodelearnError(f"The model server refused the request ({exc.code}: {detail}).",
                                 "Check the server log; a smaller --max-context may help.") from None
        with response:
            for event in _sse_events(response):
                if event.get("usage"):
                    stats.prompt_tokens = int(event["usage"].get("prompt_tokens", 0))
                    stats.generated_tokens = int(event["usage"].get("completion_tokens", 0))
                timings = event.get("timings") or {}
                if timings:
                    stats.prompt_tok_s = float(timings.get("prompt_per_second", 0) or 0)
                    stats.gen_tok_s = float(timings.get("predicted_per_second", 0) or 0)
                for choice in event.get("choices", []):
                    text = (choice.get("delta") or {}).get("content") or ""
                    if text:
                        if not stats.ttft_s:
                            stats.ttft_s = time.perf_counter() - started
                        yield text
        stats.total_s = time.perf_counter() - started

    def close(self) -> None:
        return None


def _sse_events(response) -> Iterator[dict]:
    """Parse `data: {...}` lines of a server-sent event stream."""
    for raw in response:
        line = raw.decode("utf-8", errors="replace").strip()
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        try:
            yield json.loads(payload)
        except ValueError:
            continue

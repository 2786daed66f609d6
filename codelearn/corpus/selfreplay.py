"""The base model's own answers to generic prompts, generated once per base model.

Training on them (replay) pulls an adapted model back toward what it said
before; scoring them (probe half) measures how far it drifted as a *chat*
model, which raw-code loss cannot show.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from codelearn.corpus.general import PROMPTS
from codelearn.paths import user_cache_dir, write_json

SYSTEM = "You are a helpful coding assistant."


def cache_file(model_sha: str, max_tokens: int) -> Path:
    return user_cache_dir() / "replay" / f"{model_sha[:16]}-{max_tokens}.json"


def self_answers(model_path: Path, model_sha: str, *, max_tokens: int = 160, threads: int = 0,
                 progress: Callable[[int, int], None] | None = None) -> dict[str, str]:
    """prompt → the base model's greedy answer, for every prompt in `PROMPTS` (cached)."""
    path = cache_file(model_sha, max_tokens)
    answers = json.loads(path.read_text()) if path.is_file() else {}
    missing = [p for p in PROMPTS if p not in answers]
    if not missing:
        return {p: answers[p] for p in PROMPTS}
    from codelearn.llm.base import SamplingOptions
    from codelearn.llm.llama_backend import LlamaModel

    model = LlamaModel(model_path, threads=threads, context_size=1024)
    try:
        options = SamplingOptions(max_tokens=max_tokens, temperature=0.0, repeat_penalty=1.1)
        for done, prompt in enumerate(missing, 1):
            answers[prompt] = "".join(model.stream(chat_messages(prompt), options)).strip()
            _save(path, answers)  # a killed run keeps what it generated
            if progress:
                progress(done, len(missing))
    finally:
        model.close()
    return {p: answers[p] for p in PROMPTS}


def _save(path: Path, answers: dict[str, str]) -> None:
    write_json(path, answers)


def chat_messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]

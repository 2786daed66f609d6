"""What an answer engine offers, whichever backend runs it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Protocol

Message = dict[str, str]


@dataclass
class GenerationStats:
    """Counts and rates of one generation, for `--json` and the benchmark."""

    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0  # evaluated earlier and reused from the KV cache
    generated_tokens: int = 0
    ttft_s: float = 0.0  # from the request to the first piece of text
    prompt_tok_s: float = 0.0
    gen_tok_s: float = 0.0
    total_s: float = 0.0

    def as_json(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in vars(self).items()}


@dataclass(frozen=True)
class SamplingOptions:
    max_tokens: int = 512
    temperature: float = 0.2
    repeat_penalty: float = 1.1


class ChatModel(Protocol):
    """A chat model codelearn can prompt: a local GGUF or a llama.cpp server."""

    name: str
    backend: str
    n_ctx: int
    last_stats: GenerationStats

    def count_tokens(self, text: str) -> int: ...

    def prompt_text(self, messages: list[Message]) -> str: ...

    def prompt_tokens(self, messages: list[Message]) -> int: ...

    def stream(self, messages: list[Message], options: SamplingOptions) -> Iterator[str]: ...

    def close(self) -> None: ...


def auto_threads(requested: int = 0) -> int:
    """Threads for generation: all cores when idle, fewer when the machine is busy.

    llama.cpp's OpenMP threads spin-wait for each other: with every core in use
    by other work, 2 threads generated 3-20x slower than 1 (benchmarks/MODELS.md).
    """
    if requested > 0:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = others_busy_cores()
    return max(1, min(cores, round(cores - busy + 0.25)))


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat (Linux)."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def others_busy_cores(window: float = 0.05) -> float:
    """How many cores *other* processes keep busy right now.

    Measured over a short window, minus this process's own CPU time: the load average
    lags by a minute, so right after codelearn's own indexing it reported the machine
    busy and generation ran on one thread at half speed.
    """
    import time

    before, own_before = _cpu_jiffies(), os.times()
    if before is None:
        try:
            return os.getloadavg()[0]
        except OSError:
            return 0.0
    time.sleep(window)
    after, own_after = _cpu_jiffies(), os.times()
    own = own_after.user + own_after.system - own_before.user - own_before.system
    return busy_cores(before, after, own, os.sysconf("SC_CLK_TCK"), os.cpu_count() or 1)


def busy_cores(before: tuple[int, int], after: tuple[int, int], own_seconds: float, ticks: int,
               cores: int) -> float:
    """Cores kept busy by others between two /proc/stat readings, our own CPU time taken out."""
    total = max(1, after[1] - before[1])  # all cores' ticks in the window
    # Linux's idle and iowait counters can step backwards, which would make busy > total.
    busy = min(after[0] - before[0], total) / total * cores
    return max(0.0, busy - own_seconds * ticks / total * cores)

"""Measure the llama.cpp this process loads: `python -m codelearn.llm.engine_probe MODEL.gguf`.

Run by `native_engine.measure` in a subprocess per engine (LLAMA_CPP_LIB_PATH picks the
libraries). Prints one JSON line: tokens per second evaluating a prompt, the mean loss on its
scored tokens (the same tokens for every engine: codelearn's own source), and llama.cpp's
system line. Every 16th token is scored, so the time is the model's, not the output layer's.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

TOKENS = 1024
RUNS = 2
EVERY = 16


def measuring_text() -> str:
    """The same text on every machine and engine: codelearn's own modules, in a fixed order."""
    here = Path(__file__).resolve().parent.parent
    return "\n".join((here / name).read_text(encoding="utf-8") for name in (
        "llm/llama_backend.py", "evaluate/scoring.py", "train/gate.py", "ask/context.py"))


def probe(model: Path, tokens: int = TOKENS, runs: int = RUNS) -> dict:
    from codelearn.llm.llama_backend import LlamaScorer, _llama_cpp

    scorer = LlamaScorer(model, n_ctx=tokens + 16)
    try:
        ids = scorer.llm.tokenize(measuring_text().encode("utf-8"), add_bos=False)[:tokens]
        scored = [i % EVERY == 0 for i in range(len(ids))]
        best, losses = float("inf"), None
        for _ in range(runs):
            scorer.cached = []  # evaluate every token again
            started = time.perf_counter()
            nll, _hit = scorer.score(ids, scored)
            best = min(best, time.perf_counter() - started)
            losses = nll if losses is None else losses
        info = _llama_cpp().llama_print_system_info().decode("utf-8", errors="replace").strip()
        return {"tokens_per_s": round(len(ids) / best, 2), "mean_loss": float(losses.mean()),
                "system_info": info}
    finally:
        scorer.close()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m codelearn.llm.engine_probe MODEL.gguf", file=sys.stderr)
        return 2
    print(json.dumps(probe(Path(argv[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

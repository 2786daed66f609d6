"""`codelearn ask` against raw llama-cpp-python: same GGUF, same prompt, same sampling.

For each question, codelearn builds its prompt (hybrid search, merge, pack);
then the *same messages* go to a plain `llama_cpp.Llama.create_chat_completion`
stream, the way a user of the library would write it. Both use their own
loaded instance of the model (so neither sees the other's KV cache), greedy
decoding, the same thread count and the same `max_tokens`; the order of the
two alternates per question. Reported per question and as medians:

- TTFT: raw = request to first streamed text; codelearn = question to first
  streamed text (so retrieval and prompt building are inside it);
- generation tokens/s = (tokens - 1) / (last token time - first token time).

    python benchmarks/ask_speed.py --repo /path/to/indexed/stdlib [--model NAME|PATH] [--threads 2]
    python benchmarks/ask_speed.py --repo ... --cli 5    # whole processes instead (see `cli_pairs`)

The corpus is the running Python's stdlib in a git repo indexed by codelearn
(`python benchmarks/index_stdlib.py --keep DIR` makes one).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

QUESTIONS = [
    "How does textwrap.dedent remove the common leading whitespace?",
    "How does functools.total_ordering fill in the missing comparison methods?",
    "How does os.makedirs create missing parent directories, and what does exist_ok do?",
    "How does random.shuffle permute a list in place?",
    "How does shlex.quote make a string safe for a shell command?",
]


def timed_stream(pieces) -> tuple[float, float, int, str]:
    """(first piece time, last piece time, pieces, text) of a stream."""
    first = last = 0.0
    count = 0
    parts = []
    for piece in pieces:
        now = time.perf_counter()
        if not count:
            first = now
        last = now
        count += 1
        parts.append(piece)
    return first, last, count, "".join(parts)


def run_codelearn(conversation, question: str) -> dict:
    started = time.perf_counter()
    prepared = conversation.prepare(question)
    first, last, _, text = timed_stream(conversation.stream(prepared))
    stats = conversation.model.last_stats
    conversation.finish(prepared, text)
    conversation.reset()
    tokens = stats.generated_tokens
    return {"ttft": first - started, "tokens": tokens, "prompt_tokens": prepared.prompt_tokens,
            "gen_tok_s": (tokens - 1) / (last - first) if last > first else 0.0,
            "retrieve_s": prepared.timings["retrieve_s"], "pack_s": prepared.timings["pack_s"],
            "messages": prepared.messages, "text": text}


def run_raw(llm, messages, max_tokens: int, repeat_penalty: float) -> dict:
    started = time.perf_counter()
    stream = llm.create_chat_completion(messages=messages, stream=True, temperature=0.0,
                                        max_tokens=max_tokens, repeat_penalty=repeat_penalty)
    first = last = 0.0
    tokens = 0
    parts = []
    for chunk in stream:
        delta = chunk["choices"][0].get("delta", {}).get("content")
        if not delta:
            continue
        now = time.perf_counter()
        if not tokens:
            first = now
        last = now
        tokens += 1  # llama-cpp-python streams one chunk per token
        parts.append(delta)
    return {"ttft": first - started, "tokens": tokens,
            "gen_tok_s": (tokens - 1) / (last - first) if last > first else 0.0, "text": "".join(parts)}


RAW_SCRIPT = """
import json, sys, llama_cpp
prompt = json.load(open(sys.argv[2]))["prompt"]
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=4096, n_threads=int(sys.argv[3]),
                      n_threads_batch=int(sys.argv[3]), verbose=False)
for chunk in llm.create_completion(prompt, max_tokens=8, temperature=0, stream=True):
    sys.stdout.write(chunk["choices"][0]["text"] or " ")
    sys.stdout.flush()
"""


def first_byte_s(command: list[str], env: dict) -> float:
    """Seconds from starting a process to the first byte on its stdout."""
    import subprocess

    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    process.stdout.read(1)
    elapsed = time.perf_counter() - started
    process.kill()
    process.wait()
    return elapsed


def cli_pairs(args) -> None:
    """Whole processes: `codelearn ask` (imports, index, model load, retrieval, prompt) against a
    minimal script that loads the same GGUF and streams the same prompt text (taken from
    `ask --show-context --json`), both to their first byte of answer."""
    import json
    import subprocess
    import tempfile

    env = {**os.environ, "CODELEARN_THREADS": str(args.threads), "CODELEARN_ANSWER_TOKENS": "8",
           "CODELEARN_TEMPERATURE": "0", "CODELEARN_MAX_CONTEXT": str(args.max_context)}
    codelearn = [sys.executable, "-m", "codelearn", "ask", "--repo", str(args.repo)]
    if args.model:
        codelearn += ["--model", args.model]
    rows = []
    for question in QUESTIONS[: args.cli]:
        shown = json.loads(subprocess.run(codelearn + [question, "--json", "--show-context"], env=env,
                                          capture_output=True, text=True, check=True).stdout)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump({"prompt": shown["prompt"]}, fh)
        raw = [sys.executable, "-c", RAW_SCRIPT, shown["model"]["path"], fh.name, str(args.threads)]
        ours = codelearn + [question]
        raw_s, ours_s = first_byte_s(raw, env), first_byte_s(ours, env)
        rows.append((question, shown["context"]["prompt_tokens"], raw_s, ours_s))
        os.unlink(fh.name)
    print("| question | prompt tok | raw script s | codelearn ask s | Δ s |")
    print("|---|---|---|---|---|")
    for question, tokens, raw_s, ours_s in rows:
        print(f"| {question[:38]}… | {tokens} | {raw_s:.2f} | {ours_s:.2f} | {ours_s - raw_s:+.2f} |")
    print(f"\nmedian Δ {statistics.median(o - r for _, _, r, o in rows):+.2f} s "
          f"(process start to first answer byte)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, required=True, help="an indexed repo (the stdlib copy)")
    parser.add_argument("--model", default="", help="model name or .gguf (default: what ask uses)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--max-context", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1, help="repeat the question set")
    parser.add_argument("--cli", type=int, default=0, metavar="N",
                        help="instead: N questions as whole processes (codelearn ask vs a raw script)")
    args = parser.parse_args()
    from codelearn.machine import this_machine

    print(f"machine: {this_machine().summary()}", flush=True)
    if args.cli:
        cli_pairs(args)
        return

    import llama_cpp

    from codelearn.ask.engine import open_model
    from codelearn.ask.pipeline import AskOptions, Conversation
    from codelearn.project import open_project

    project = open_project(args.repo, {"model": args.model or None, "threads": args.threads,
                                       "temperature": 0.0, "max_context": args.max_context,
                                       "answer_tokens": args.max_tokens})
    model, choice = open_model(project)
    conversation = Conversation(project, AskOptions.from_settings(project.settings), lambda: (model, choice))
    repeat_penalty = project.settings.repeat_penalty
    raw = llama_cpp.Llama(model_path=choice.path, n_ctx=model.n_ctx, n_threads=args.threads,
                          n_threads_batch=args.threads, verbose=False)
    print(f"model {choice.name} ({choice.path}), threads {args.threads}, n_ctx {model.n_ctx}, "
          f"max_tokens {args.max_tokens}, load avg {os.getloadavg()[0]:.2f}", file=sys.stderr)

    # Warm-up, untimed: imports, the embedder, the vector store, page cache, llama.cpp buffers.
    warm = run_codelearn(conversation, "How are files read?")
    run_raw(raw, warm["messages"][:1] + [{"role": "user", "content": "Say hi."}], 4, repeat_penalty)

    rows = []
    for number, question in enumerate(QUESTIONS * args.rounds):
        if number % 2 == 0:
            ours = run_codelearn(conversation, question)
            theirs = run_raw(raw, ours["messages"], args.max_tokens, repeat_penalty)
        else:
            # Same messages are needed for raw: build them first (not timed), then time both.
            prepared = conversation.prepare(question)
            conversation.reset()
            theirs = run_raw(raw, prepared.messages, args.max_tokens, repeat_penalty)
            ours = run_codelearn(conversation, question)
        same = "same" if ours["text"] == theirs["text"] else "differs"
        rows.append((question, ours, theirs, same))

    print("| question | prompt tok | TTFT raw s | TTFT codelearn s | Δ s | retrieve+pack s "
          "| gen tok/s raw | gen tok/s codelearn | ratio | output |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for question, ours, theirs, same in rows:
        ratio = ours["gen_tok_s"] / theirs["gen_tok_s"] if theirs["gen_tok_s"] else 0.0
        print(f"| {question[:38]}… | {ours['prompt_tokens']} | {theirs['ttft']:.2f} | {ours['ttft']:.2f} "
              f"| {ours['ttft'] - theirs['ttft']:+.2f} | {ours['retrieve_s'] + ours['pack_s']:.3f} "
              f"| {theirs['gen_tok_s']:.1f} | {ours['gen_tok_s']:.1f} | {ratio:.3f} | {same} |")
    med = statistics.median
    print(f"\nmedian TTFT raw {med(t['ttft'] for _, _, t, _ in rows):.2f} s, codelearn "
          f"{med(o['ttft'] for _, o, _, _ in rows):.2f} s, Δ {med(o['ttft'] - t['ttft'] for _, o, t, _ in rows):+.2f} s; "
          f"median gen tok/s raw {med(t['gen_tok_s'] for _, _, t, _ in rows):.1f}, codelearn "
          f"{med(o['gen_tok_s'] for _, o, _, _ in rows):.1f}, ratio "
          f"{med(o['gen_tok_s'] / t['gen_tok_s'] for _, o, t, _ in rows if t['gen_tok_s']):.3f}")
    print(f"prompt eval (codelearn, wall clock, last question): "
          f"{model.last_stats.prompt_tok_s:.1f} tok/s; generation {model.last_stats.gen_tok_s:.1f} tok/s")


if __name__ == "__main__":
    main()

"""Does the code that answers a question reach the model? (a script, not a test)

For each hand-written question (default: the stdlib's `questions.jsonl`), run
`ask`'s retrieval and packing and check whether the target definition is among
the excerpts the model would see, within each `max_context`. With
`--multi-query on` the answer model first writes its own search queries (the
only generation; its time per question is printed).

    python benchmarks/ask_context.py --repo /path/to/indexed/stdlib [--model NAME|PATH] [--budgets 500,1000,2000]
    python benchmarks/ask_context.py --repo <indexed clone of this repo> \
        --questions benchmarks/questions_codelearn.jsonl --budgets 1000 --multi-query off,on
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).parent


def holds(excerpts, path: str, symbol: str) -> tuple[bool, bool]:
    """(target file shown, target definition shown)."""
    in_file = [e for e in excerpts if e.path == path]
    named = any(s == symbol or s.endswith("." + symbol) for e in in_file for s in e.symbols)
    return bool(in_file), named


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--model", default="")
    ap.add_argument("--budgets", default="500,1000,2000", help="max_context values to compare")
    ap.add_argument("--questions", type=Path, default=HERE / "questions.jsonl")
    ap.add_argument("--multi-query", default="off", help="off, on or both (off,on)")
    args = ap.parse_args()
    from codelearn.machine import this_machine

    print(f"machine: {this_machine().summary()}", flush=True)

    from codelearn.ask.engine import open_model
    from codelearn.project import open_project

    from retrieval import refuse_indexed_questions

    refuse_indexed_questions(args.repo, args.questions)  # before the model's slow load
    project = open_project(args.repo, {"model": args.model or None})
    model, choice = open_model(project)
    questions = [json.loads(line) for line in args.questions.read_text().splitlines() if line]
    print(f"model {choice.name}, {len(questions)} questions")
    print("| multi-query | max_context | target file shown | target definition shown | excerpts (mean) "
          "| test excerpts (mean) | retrieval s/question |")
    print("|---|---|---|---|---|---|---|")
    for mode in args.multi_query.split(","):
        for budget in (int(b) for b in args.budgets.split(",")):
            measure(project, model, choice, questions, mode, budget)


def measure(project, model, choice, questions, mode: str, budget: int) -> None:
    from codelearn.ask.pipeline import AskOptions, Conversation
    from codelearn.index.indexer import is_test_path

    options = AskOptions.from_settings(project.settings, multi_query=mode, max_context=budget)
    conversation = Conversation(project, options, lambda: (model, choice))
    files = defs = shown = tests = 0
    seconds = 0.0
    for item in questions:
        prepared = conversation.prepare(item["q"])
        conversation.reset()
        seconds += prepared.timings["retrieve_s"]
        excerpts = prepared.packed.excerpts
        in_file, named = holds(excerpts, item["path"], item["symbol"])
        files += in_file
        defs += named
        shown += len(excerpts)
        tests += sum(is_test_path(e.path) for e in excerpts)
    conversation.close()
    n = len(questions)
    print(f"| {mode} | {budget} | {files / n:.3f} | {defs / n:.3f} | {shown / n:.1f} | {tests / n:.1f} "
          f"| {seconds / n:.2f} |", flush=True)

if __name__ == "__main__":
    main()

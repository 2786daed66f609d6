"""Does the code that answers a question reach the model? (a script, not a test)

For each of the hand-written stdlib questions in `questions.jsonl`, run `ask`'s
retrieval and packing (no generation) and check whether the target definition
is among the excerpts the model would see, within the default `max_context`.

    python benchmarks/ask_context.py --repo /path/to/indexed/stdlib [--model NAME|PATH] [--budgets 500,1000,2000]
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
    args = ap.parse_args()

    from codelearn.ask.engine import open_model
    from codelearn.ask.pipeline import AskOptions, Conversation
    from codelearn.project import open_project

    from codelearn.index.indexer import is_test_path

    project = open_project(args.repo, {"model": args.model or None})
    model, choice = open_model(project)
    questions = [json.loads(line) for line in (HERE / "questions.jsonl").read_text().splitlines() if line]
    print(f"model {choice.name}, {len(questions)} questions")
    print("| max_context | target file shown | target definition shown | excerpts (mean) | test excerpts (mean) |")
    print("|---|---|---|---|---|")
    for budget in (int(b) for b in args.budgets.split(",")):
        options = AskOptions.from_settings(project.settings, multi_query="off", max_context=budget)
        conversation = Conversation(project, options, lambda: (model, choice))
        files = defs = shown = tests = 0
        for item in questions:
            packed = conversation.prepare(item["q"]).packed
            conversation.reset()
            in_file, named = holds(packed.excerpts, item["path"], item["symbol"])
            files += in_file
            defs += named
            shown += len(packed.excerpts)
            tests += sum(is_test_path(e.path) for e in packed.excerpts)
        conversation.close()
        n = len(questions)
        print(f"| {budget} | {files / n:.3f} | {defs / n:.3f} | {shown / n:.1f} | {tests / n:.1f} |")


if __name__ == "__main__":
    main()

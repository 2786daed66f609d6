"""Deep mode against plain `ask` on questions whose answer spans several files (a script, not a test).

Each question lists the files a good answer draws on. Both modes answer with the same model
(loaded once); for each the script counts the relevant files the model was given (plain: the
excerpts in its prompt; deep: every excerpt it read), the relevant files the answer cites with
a checked `path:line`, those it cites or names a symbol of, and the cost (tokens read, tokens
written, seconds). Answers and per-question numbers go to --out as JSON.

    python benchmarks/deep.py --repo . --questions benchmarks/deep_codelearn.jsonl
    python benchmarks/deep.py --repo /path/to/indexed/stdlib --questions benchmarks/deep_stdlib.jsonl

The stdlib copy is made and indexed by `benchmarks/index_stdlib.py --keep DIR`. A repo holding the
question file itself is refused (it names every answer's files): use a clone without `benchmarks/`'s
question files.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

HERE = Path(__file__).parent


def files_of(answer) -> tuple[set[str], set[str], set[str]]:
    """(files given to the model, files cited with a checked location, files cited or named)."""
    excerpts = answer.prepared.packed.excerpts
    given = {e.path for e in excerpts}
    cited = {c.path for c in answer.citations if c.verified}
    used = cited | {excerpts[i].path for i in answer.used}
    return given, cited, used


def cost(answer) -> dict:
    stats, deep = answer.stats, answer.prepared.deep
    read = stats["prompt_tokens"] + (sum(b.prompt_tokens for b in deep.batches) if deep else 0)
    written = stats["generated_tokens"] + (sum(b.note_tokens for b in deep.batches) if deep else 0)
    seconds = stats["total_s"] + (deep.seconds if deep else 0.0) + answer.prepared.timings["retrieve_s"]
    return {"tokens_read": read, "tokens_written": written, "seconds": round(seconds, 1)}


def run_mode(conversation, question: dict) -> dict:
    started = time.perf_counter()
    answer = conversation.ask(question["q"])
    wall = time.perf_counter() - started
    relevant = set(question["files"])
    given, cited, used = files_of(answer)
    noted = {n.path for n in answer.prepared.deep.notes} if answer.prepared.deep else set()
    return {"answer": answer.text, "given": sorted(given & relevant), "cited": sorted(cited & relevant),
            "used": sorted(used & relevant), "all_cited": sorted(cited),
            "share_given": len(given & relevant) / len(relevant),
            "share_cited": len(cited & relevant) / len(relevant),
            "share_used": len(used & relevant) / len(relevant),
            "share_noted": len(noted & relevant) / len(relevant),
            "notes": [n.render() for n in answer.prepared.deep.notes] if answer.prepared.deep else None,
            "wall_s": round(wall, 1), **cost(answer)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--questions", type=Path, default=HERE / "deep_codelearn.jsonl")
    ap.add_argument("--model", default="")
    ap.add_argument("--deep-tokens", type=int, default=6000)
    ap.add_argument("--out", type=Path, default=Path("deep-results.json"))
    args = ap.parse_args()
    from codelearn.ask.engine import ModelLoader
    from codelearn.ask.pipeline import AskOptions, Conversation
    from codelearn.machine import this_machine
    from codelearn.project import open_project

    print(f"machine: {this_machine().summary()}", flush=True)
    from retrieval import refuse_indexed_questions

    refuse_indexed_questions(args.repo, args.questions)  # the file lists the answers' files
    project = open_project(args.repo, {"model": args.model or None})
    questions = [json.loads(line) for line in args.questions.read_text().splitlines() if line.strip()]
    loader = ModelLoader(project, args.model)
    modes = {"plain": AskOptions.from_settings(project.settings, history=False, deep=False),
             "deep": AskOptions.from_settings(project.settings, history=False, deep=True,
                                              deep_tokens=args.deep_tokens)}
    results: list[dict] = []
    try:
        for question in questions:
            row = {"q": question["q"], "files": question["files"]}
            for mode, options in modes.items():
                conversation = Conversation(project, options, loader)
                try:
                    row[mode] = run_mode(conversation, question)
                finally:
                    conversation.close()
                print(f"{mode:5} {row[mode]['share_cited']:.2f} cited, {row[mode]['share_given']:.2f} given, "
                      f"{row[mode]['seconds']:.0f} s  {question['q']}", flush=True)
            results.append(row)
        model = loader.get()[1].name
    finally:
        loader.close()
    args.out.write_text(json.dumps({"model": model, "machine": this_machine().summary(),
                                    "questions": results}, indent=1))
    print(f"\nmodel {model}, {len(results)} questions, deep_tokens {args.deep_tokens}\n")
    print("| mode | relevant files given | cited (checked) | cited or named | in the notes | tokens read "
          "| written | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for mode in modes:
        rows = [r[mode] for r in results]

        def mean(key: str) -> float:
            return statistics.fmean(r[key] for r in rows)

        noted = f"{mean('share_noted'):.0%}" if mode == "deep" else "-"
        print(f"| {mode} | {mean('share_given'):.0%} | {mean('share_cited'):.0%} | {mean('share_used'):.0%} "
              f"| {noted} | {mean('tokens_read'):,.0f} | {mean('tokens_written'):,.0f} | {mean('seconds'):.0f} |")


if __name__ == "__main__":
    main()

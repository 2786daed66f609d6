"""Facts right about held-out code, model against model, through the real `ask` pipeline.

    python benchmarks/facts.py --repo CLONE --since CUT --model base=A.gguf --model adapted=B.gguf \
        [--limit 12] [--json out.json]
    python benchmarks/facts.py --repo CLONE --since CUT --limit 12 --rejudge out.json   # judge old answers again

CLONE is an indexed repo (e.g. the `repo` folder `benchmarks/learning.py --work DIR` leaves), CUT
the commit the models were trained up to (code after it is held out). Builds the fact questions
`codelearn eval` asks (the exception a held-out function raises, a parameter's default, the string
it returns, the repo helper it calls, its class and file), asks each model with retrieval, and
prints facts right per model and per kind. `--rejudge` asks nothing: it judges the answers an
earlier run saved with today's judge (the same questions, rebuilt from the same clone and cut).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--since", required=True, help="the cut commit: what came after is held out")
    parser.add_argument("--model", action="append", default=[], help="LABEL=PATH.gguf (repeat)")
    parser.add_argument("--limit", type=int, default=12)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--rejudge", type=Path, default=None, help="a --json file of an earlier run")
    args = parser.parse_args()
    if not args.model and not args.rejudge:
        parser.error("give --model LABEL=PATH.gguf (or --rejudge an earlier run's --json)")
    from codelearn.machine import this_machine

    print(f"machine: {this_machine().summary()}", flush=True)
    from codelearn.corpus.units import load_units
    from codelearn.evaluate.facts import ask_facts, build_facts
    from codelearn.index.indexer import run_index
    from codelearn.project import open_project
    from codelearn.train.dataset import DataOptions, repo_split

    project = open_project(args.repo)
    run_index(project, wait=True)
    split = repo_split(project, DataOptions.from_settings(project.settings, cut_commit=args.since))
    facts = build_facts(split.new or split.random, load_units(project.catalog_path), args.limit)
    if args.rejudge:
        result = rejudge(json.loads(args.rejudge.read_text()), facts)
        models = dict.fromkeys(result["right"])
    else:
        models = dict(m.split("=", 1) for m in args.model)
        result = ask_facts(project, facts, models,
                           progress=lambda stage, d, t: print(f"  {stage} {d}/{t}", flush=True))
    kinds = Counter(f.kind for f in facts)
    print(f"\n{len(facts)} questions about {len({f.key for f in facts})} held-out definitions "
          f"({', '.join(f'{k} {n}' for k, n in kinds.items())})\n")
    print("| model | facts right | " + " | ".join(kinds) + " | seconds |")
    print("|---|---|" + "---|" * len(kinds) + "---|")
    for label in models:
        per_kind = Counter(item["kind"] for item in result["items"] if item["answers"][label]["right"])
        print(f"| {label} | {result['right'][label]}/{len(facts)} | "
              + " | ".join(f"{per_kind[k]}/{n}" for k, n in kinds.items()) + f" | {result['seconds'][label]} |")
    if args.rejudge:
        print(f"\nright under the judge that saved them: {result['right_before']}")
    if args.json:
        args.json.write_text(json.dumps({"machine": this_machine().as_json(), **result}, indent=1))


def rejudge(earlier: dict, facts) -> dict:
    """An earlier run's saved answers, judged again (its questions must be these)."""
    from codelearn.evaluate.facts import holds

    saved = {item["question"]: item for item in earlier["items"]}
    missing = [f.question for f in facts if f.question not in saved]
    if missing:
        raise SystemExit(f"{len(missing)} questions are not in the earlier run (another clone, cut or "
                         f"--limit?), e.g. {missing[0]!r}")
    items, right = [], {}
    for fact in facts:
        item = {**fact.as_json(), "answers": {}}
        for label, answer in saved[fact.question]["answers"].items():
            ok = holds(answer["text"], fact)
            item["answers"][label] = {"text": answer["text"], "right": ok, "right_before": answer["right"]}
            right[label] = right.get(label, 0) + ok
        items.append(item)
    return {"questions": len(facts), "right": right, "right_before": earlier["right"],
            "seconds": earlier.get("seconds", {}), "items": items}


if __name__ == "__main__":
    main()

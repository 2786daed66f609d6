"""Seconds to score the nightly gate's probes, and the scores themselves (to compare two builds).

    python benchmarks/gate_speed.py --repo CLONE [--since CUT] [--targets 24] \
        [--model LABEL=PATH.gguf[+ADAPTER.gguf]] [--gate] [--json out.json] [--compare before.json]

Builds eval's probe set (held-out repo code in four context conditions, chat questions about it,
unseen stdlib code and, when the base model's answers are cached, chat forgetting probes), scores
it with each model through llama.cpp with no score cache, and prints seconds, tokens and tokens/s
per model. `--gate` scores what the gate scores instead, stage by stage (`train/gate.py`
`gate_stages`: the oracle condition left out, the cheap decisive probes first): stage 1 alone is
the cost of a refusal there, both stages the cost of a promotion, per model not found in the cache. `--json` keeps every probe's tally; `--compare` reads such a
file from another build (the code before a change) and prints the largest loss difference over
the probes both scored with identical tokens: a faster scorer must give the same scores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def probes_for(project, cut: str, targets: int):
    from codelearn.corpus.formats import TextFormat
    from codelearn.corpus.neighbours import Neighbours, load_vectors
    from codelearn.corpus.selfreplay import cache_file, self_answers
    from codelearn.evaluate.probes import ProbeOptions, all_probes
    from codelearn.evaluate.served import SearchNeighbours
    from codelearn.llm.llama_backend import LlamaVocab
    from codelearn.models.registry import Registry
    from codelearn.models.bases import serving_model, training_base
    from codelearn.train.dataset import DataOptions, repo_split

    registry = Registry()
    base = training_base(project, registry, serving_model(project, registry))
    vocab = LlamaVocab(base.gguf, declared_format=base.template)
    s = project.settings
    split = repo_split(project, DataOptions.from_settings(s, cut_commit=cut))
    vectors = load_vectors(project.catalog_path, {u.vec_key for u in split.train if u.vec_key})
    finder = Neighbours(split.train, vectors, seed=s.train_seed)
    answers = self_answers(base.gguf, base.sha256) if cache_file(base.sha256, 160).is_file() else None
    options = ProbeOptions(targets=targets, neighbours=s.context_neighbours, seed=s.train_seed)
    search = SearchNeighbours(project, vocab)
    try:
        probes = all_probes(split, finder, TextFormat.for_vocab(vocab), vocab, project.root.name, answers,
                            options, retrieve=search)
    finally:
        search.close()
    return base, vocab, probes, answers is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--since", default="", help="the cut commit (default: the settings' hold-out)")
    parser.add_argument("--targets", type=int, default=24)
    parser.add_argument("--model", action="append", default=[], help="LABEL=PATH.gguf[+ADAPTER.gguf] (repeat; "
                        "default: the training base)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--gate", action="store_true", help="score the gate's stages, not eval's set")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--compare", type=Path, default=None)
    args = parser.parse_args()
    from codelearn.machine import this_machine

    print(f"machine: {this_machine().summary()}", flush=True)
    from codelearn.evaluate.scoring import ModelRef, ScoreCache, score_probes
    from codelearn.index.indexer import run_index
    from codelearn.project import open_project

    project = open_project(args.repo)
    run_index(project, wait=True)
    base, vocab, probes, chat = probes_for(project, args.since, args.targets)
    models = [ModelRef("base", base.gguf, base.sha256)]
    for spec in args.model:
        label, _, paths = spec.partition("=")
        gguf, _, lora = paths.partition("+")
        models.append(ModelRef(label, Path(gguf), label, Path(lora) if lora else None))
    from codelearn.train.gate import gate_stages

    sets = {f"stage {n}": stage for n, stage in enumerate(gate_stages(probes), 1)} if args.gate else {"eval": probes}
    tokens = sum(len(p.encoded.ids) for stage in sets.values() for p in stage)
    print(f"{len(probes)} probes, {sum(len(p.encoded.ids) for p in probes)} tokens"
          + ("" if chat else " (no chat probes: the base model's answers are not cached)"))
    for name, stage in sets.items():
        print(f"  {name}: {len(stage)} probes, {sum(len(p.encoded.ids) for p in stage)} tokens")
    print("\n| model | probes | seconds | tokens/s |")
    print("|---|---|---|---|")
    rows: dict = {}
    for ref in models:
        row = rows.setdefault(ref.label, {"seconds": 0.0, "probes": {}})
        for name, stage in sets.items():
            started = time.perf_counter()
            fresh = ScoreCache(None)  # nothing known: every probe is scored; it keeps each one's tally
            score_probes(ref, stage, vocab, cache=fresh, threads=args.threads)
            seconds = time.perf_counter() - started
            row["seconds"] = round(row["seconds"] + seconds, 2)
            # by the probe's exact tokens: another build's scores are compared on identical inputs
            row["probes"].update({key.split(":")[-1]: t.loss for key, t in fresh.known.items()})
            print(f"| {ref.label} | {name} | {seconds:.1f} | "
                  f"{sum(len(p.encoded.ids) for p in stage) / seconds:.0f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": this_machine().as_json(), "probes": len(probes),
                                         "tokens": tokens, "models": rows}, indent=1))
    if args.compare:
        compare(json.loads(args.compare.read_text())["models"], rows)


def compare(before: dict, after: dict) -> None:
    print("\n| model | probes compared | largest loss difference | seconds before | seconds now |")
    print("|---|---|---|---|---|")
    for label, row in after.items():
        old = before.get(label)
        if not old:
            continue
        common = [k for k in row["probes"] if k in old["probes"]]
        worst = max((abs(row["probes"][k] - old["probes"][k]) for k in common), default=0.0)
        print(f"| {label} | {len(common)} | {worst:.2e} | {old['seconds']} | {row['seconds']} |")


if __name__ == "__main__":
    main()

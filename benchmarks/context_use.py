"""Does a trained model read its context worse, or need it less? Scores the base and trained
adapters (from a `benchmarks/learning.py --work W` folder) on held-out repo code alone, with what
`ask`'s search finds, and with the answer itself among the context (copying); and on unseen stdlib
definitions alone and after the three definitions before them in their file (code the adapter
holds no facts about). A skill lost shows on stdlib and copying; an overlap between what training
and search teach shows on the repo alone.

    python benchmarks/context_use.py --work W --since C --targets 16 --adapter W/export-fresh-adapter/adapter.gguf
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="a learning.py work folder (its repo/ clone)")
    parser.add_argument("--since", required=True, help="the cut commit of the runs that made the adapters")
    parser.add_argument("--targets", type=int, default=16)
    parser.add_argument("--adapter", type=Path, action="append", default=[], help="an adapter GGUF (repeat)")
    args = parser.parse_args()
    from codelearn.corpus.formats import encode
    from codelearn.corpus.general import general_units
    from codelearn.corpus.samples import context_pieces
    from codelearn.corpus.selfreplay import self_answers
    from codelearn.evaluate.learning import score_models
    from codelearn.evaluate.probes import Probe, ProbeOptions, clip, pick_targets
    from codelearn.evaluate.scoring import ScoreCache
    from codelearn.evaluate.served import SearchNeighbours
    from codelearn.llm.llama_backend import LlamaVocab
    from codelearn.machine import this_machine
    from codelearn.models.bases import ModelRef, serving_model, training_base
    from codelearn.models.registry import Registry, sha256_file
    from codelearn.project import open_project
    from codelearn.train.dataset import DataOptions, build_dataset

    print(f"machine: {this_machine().summary()}", flush=True)
    project = open_project(args.work / "repo", {})
    registry = Registry()
    base = training_base(project, registry, serving_model(project, registry))
    vocab = LlamaVocab(base.gguf)
    data = build_dataset(project, vocab, DataOptions.from_settings(project.settings, cut_commit=args.since),
                         self_answers(base.gguf, base.sha256))
    options = ProbeOptions(targets=args.targets, seed=0)
    room = options.max_tokens - options.target_tokens - 32
    per = max(32, room // options.neighbours)

    def clipped(unit, tokens):
        return replace(unit, text=clip(vocab, unit.text, tokens))

    def probe(group, condition, target, shown, repo):
        pieces = context_pieces(data.fmt, repo, target, shown)
        return Probe(group, condition, target.key, encode(pieces, vocab, options.max_tokens))

    probes = []
    search = SearchNeighbours(project, vocab)
    try:
        for unit in pick_targets(data.split, args.targets, 0):
            target = clipped(unit, options.target_tokens)
            probes += [probe("repo", "none", target, [], data.repo_name),
                       probe("repo", "retrieved", target, search(unit, room), data.repo_name),
                       probe("repo", "copy", target, [clipped(n, per) for n in data.finder.similar(unit, 2)]
                             + [target], data.repo_name)]
    finally:
        search.close()
    by_file: dict[str, list] = {}
    for unit in general_units("probe", 40, 0):
        by_file.setdefault(unit.path, []).append(unit)
    chosen = 0
    for units in (by_file[path] for path in sorted(by_file)):
        later = [i for i in range(3, len(units)) if len(vocab.tokenize(units[i].text)) >= 60]
        if not later or chosen == args.targets:
            continue
        i = later[len(later) // 2]
        target = clipped(units[i], options.target_tokens)
        probes += [probe("general_code", "none", target, [], "python-stdlib"),
                   probe("general_code", "samefile", target, [clipped(u, per) for u in units[i - 3:i]],
                         "python-stdlib")]
        chosen += 1
    models = [ModelRef("base", base.gguf, base.sha256)] + [
        ModelRef(a.parent.name, base.gguf, f"learning:{sha256_file(a)}", a) for a in args.adapter]
    scored = score_models(models, probes, vocab, cache=ScoreCache(args.work / "scores.jsonl"))
    print(f"\n{args.targets} repo targets, {chosen} stdlib definitions")
    print("| model | repo alone | repo + search | search takes off | repo, the answer in context "
          "| stdlib alone | stdlib + its file | context takes off |")
    print("|---|---|---|---|---|---|---|---|")
    rows = {}
    for model in scored.by_model:
        r = {c: scored.loss(model, "repo", c) for c in ("none", "retrieved", "copy")}
        g = {c: scored.loss(model, "general_code", c) for c in ("none", "samefile")}
        rows[model] = {"repo": r, "stdlib": g}
        print(f"| {model} | {r['none']:.3f} | {r['retrieved']:.3f} | {r['none'] - r['retrieved']:.3f} | "
              f"{r['copy']:.3f} | {g['none']:.3f} | {g['samefile']:.3f} | {g['none'] - g['samefile']:.3f} |")
    (args.work / "context_use.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("CODELEARN_EMBEDDER", "default")
    main()

"""Training speed with a step's samples packed into longer sequences, against one a sequence,
on a repo's real training mix (the product's data), on this machine.

    python benchmarks/packing.py --repo CLONE [--minutes 3] [--rounds 2] [--pack 512]

CLONE is an indexed git repo (e.g. the `repo` folder `benchmarks/learning.py --work DIR` leaves).
The arms alternate (one a sequence, packed, packed, one a sequence, ...) so that a machine that
drifts in speed favours neither, each training the default answer model from the same first
sample for `--minutes`. Prints tokens/s per arm and whether the first steps' losses agree (packing
must not change what is learned, only how fast).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget per arm")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pack", type=int, default=512, help="tokens per packed sequence")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    from codelearn.machine import this_machine

    print(f"machine: {this_machine().summary()}", flush=True)
    from codelearn.corpus.selfreplay import self_answers
    from codelearn.llm.llama_backend import LlamaVocab
    from codelearn.models.bases import serving_model, training_base
    from codelearn.models.registry import Registry
    from codelearn.project import open_project
    from codelearn.train.dataset import DataOptions, build_dataset
    from codelearn.train.hf import prepare_base
    from codelearn.train.trainers.base import TrainConfig
    from codelearn.train.trainers.peft import PeftTrainer

    project = open_project(args.repo)
    registry = Registry()
    base = training_base(project, registry, serving_model(project, registry))
    vocab = LlamaVocab(base.gguf)
    dataset = build_dataset(project, vocab, DataOptions.from_settings(project.settings),
                            self_answers(base.gguf, base.sha256))
    lengths = [len(e.ids) for e in dataset.encoded]
    print(f"{len(lengths)} samples, {sum(lengths):,} tokens, mean {sum(lengths) / len(lengths):.0f} tokens")
    hf_dir = prepare_base(base.weights, base.sha256)
    arms = [("one a sequence", 0), (f"packed to {args.pack}", args.pack)]
    order = [arm for r in range(args.rounds) for arm in (arms if r % 2 == 0 else arms[::-1])]
    rows = []
    print("\n| arm | sequences (samples) | steps | tokens | tokens/s | first-step loss | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for name, pack in order:
        config = TrainConfig(max_minutes=args.minutes, seed=0, pack_tokens=pack)
        with tempfile.TemporaryDirectory() as out:
            result = PeftTrainer().train(hf_dir, dataset.encoded, config, Path(out) / "adapter")
        rows.append({"arm": name, "pack": pack, **{k: v for k, v in result.as_json().items() if k != "losses"},
                     "first_step_loss": result.losses[0] if result.losses else None})
        print(f"| {name} | {result.sequences} | {result.steps} | {result.tokens:,} | {result.tokens_per_s:.1f} | "
              f"{rows[-1]['first_step_loss']:.4f} | {result.peak_rss_mb:.0f} |", flush=True)
    for name, pack in arms:
        mine = [r["tokens_per_s"] for r in rows if r["pack"] == pack]
        print(f"{name}: mean {sum(mine) / len(mine):.1f} tokens/s over {len(mine)} arms")
    if args.json:
        args.json.write_text(json.dumps({"machine": this_machine().as_json(), "rows": rows}, indent=1, default=str))


if __name__ == "__main__":
    main()

"""Training speed of the default answer model in each precision, on this machine.

    python benchmarks/train_precision.py [--minutes 2] [--seq-len 512]

Loads the bundled 0.5B model as a training base (dequantised once, then cached), then runs the
real LoRA loop (`PeftTrainer`, rank 16 on every projection, batch 1) on code from the running
Python's standard library for `--minutes` per precision, the budget checked after every
sequence. Prints the precision probe `train_dtype = auto` uses and a table of tokens/s, with
the machine named, so numbers from two CPUs are never compared blind.
"""

from __future__ import annotations

import argparse
import sysconfig
import tempfile
from pathlib import Path


def stdlib_samples(vocab, seq_len: int, count: int) -> list:
    from codelearn.corpus.formats import Encoded

    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    samples = []
    for path in files:
        ids = vocab.tokenize(path.read_text(errors="replace"))
        for start in range(0, len(ids) - seq_len, seq_len):
            samples.append(Encoded(ids[start:start + seq_len], [True] * seq_len))
            if len(samples) >= count:
                return samples
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="training budget per precision")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--precisions", default="fp32,bf16-autocast,bf16")
    args = parser.parse_args()
    from codelearn.machine import this_machine

    print(f"machine: {this_machine().summary()}", flush=True)

    import torch

    from codelearn.llm.llama_backend import LlamaVocab
    from codelearn.models.registry import Registry, resolve_model
    from codelearn.models.registry import sha256_file
    from codelearn.train.hf import prepare_base
    from codelearn.train.precision import measure_here, pick
    from codelearn.train.trainers.base import TrainConfig
    from codelearn.train.trainers.peft import PeftTrainer

    probe = measure_here(torch)
    print(f"probe (ms per forward+backward): {probe} -> auto picks {pick(probe).precision}")
    model = resolve_model(Registry(), "", None, "default")
    vocab = LlamaVocab(model.path)
    data = stdlib_samples(vocab, args.seq_len, 200)
    base = prepare_base(model.path, model.entry.sha256 if model.entry else sha256_file(model.path))
    print("\n| precision | sequences | steps | tokens/s | first-step loss | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for precision in args.precisions.split(","):
        with tempfile.TemporaryDirectory() as out:
            config = TrainConfig(max_minutes=args.minutes, dtype=precision, grad_accum=4)
            result = PeftTrainer().train(base, data, config, Path(out) / "adapter")
        print(f"| {precision} | {result.sequences} | {result.steps}"
              f"{f' (last cut at {result.partial_step})' if result.partial_step else ''} | "
              f"{result.tokens_per_s:.1f} | {result.losses[0]:.3f} | {result.peak_rss_mb:.0f} |", flush=True)


if __name__ == "__main__":
    main()

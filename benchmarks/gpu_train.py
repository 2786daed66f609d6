"""On a CUDA machine: peft vs unsloth training speed, and the learning experiment at GPU scale.

    python benchmarks/gpu_train.py --gguf qwen.gguf --data data.npz --minutes 3 --out DIR

`data.npz` holds the encoded training samples and probes of one `codelearn train` split (made on
the CPU machine with the served model's tokenizer; see the README's learning benchmark). The base
GGUF is dequantised with transformers exactly as `codelearn train` does, then trained with
codelearn's own peft trainer (and, in a subprocess, its unsloth trainer) on the GPU. Held-out
probes are scored with transformers (not llama.cpp, which this machine lacks): base vs adapted,
per group and context condition. Writes DIR/gpu.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def load_data(path: Path):
    import numpy as np

    from codelearn.corpus.formats import Encoded

    z = np.load(path)

    def unpack(prefix: str) -> list[Encoded]:
        ids, mask, offs = z[f"{prefix}_ids"], z[f"{prefix}_mask"], z[f"{prefix}_offs"]
        return [Encoded(ids[a:b].tolist(), mask[a:b].tolist()) for a, b in zip(offs[:-1], offs[1:])]

    return unpack("train"), unpack("probe"), list(z["probe_group"]), list(z["probe_cond"])


def score(model, probes, groups, conds) -> dict:
    """Mean NLL per scored token and next-line-free greedy hit rate, per (group, condition)."""
    import torch

    sums: dict[str, list[float]] = {}
    model.eval()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        for enc, group, cond in zip(probes, groups, conds):
            ids = torch.tensor([enc.ids], device="cuda")
            logits = model(input_ids=ids).logits[0, :-1].float()
            target = ids[0, 1:]
            keep = torch.tensor(enc.train[1:], device="cuda")
            nll = torch.nn.functional.cross_entropy(logits, target, reduction="none")[keep]
            hits = (logits.argmax(-1) == target)[keep]
            row = sums.setdefault(f"{group}/{cond}", [0.0, 0, 0])
            row[0] += float(nll.sum())
            row[1] += int(keep.sum())
            row[2] += int(hits.sum())
    return {k: {"loss": round(v[0] / v[1], 4), "top1": round(v[2] / v[1], 4), "tokens": v[1]}
            for k, v in sorted(sums.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gguf", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--unsloth-minutes", type=float, default=1.0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--unsloth-only", action="store_true", help="(internal) the unsloth subprocess")
    args = parser.parse_args()
    from codelearn.machine import this_machine

    print(f"machine: {this_machine().summary()}", flush=True)
    import torch

    from codelearn.train.hf import prepare_base
    from codelearn.train.trainers.base import TrainConfig

    train, probes, groups, conds = load_data(args.data)
    base_dir = prepare_base(args.gguf, "gpu-" + args.gguf.stem)
    if args.unsloth_only:
        from codelearn.train.trainers.unsloth import UnslothTrainer

        why = UnslothTrainer().unavailable()
        if why:
            print(json.dumps({"unsloth": {"error": why}}))
            return
        result = UnslothTrainer().train(base_dir, train, TrainConfig(max_minutes=args.unsloth_minutes),
                                        args.out / "unsloth-adapter")
        print(json.dumps({"unsloth": {k: v for k, v in result.as_json().items() if k != "losses"}}))
        return
    out: dict = {"machine": this_machine().as_json(), "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                 "train_samples": len(train), "train_tokens": sum(len(e.ids) for e in train)}
    started = time.perf_counter()
    from codelearn.train.trainers.peft import PeftTrainer

    result = PeftTrainer().train(base_dir, train, TrainConfig(max_minutes=args.minutes, dtype="bf16"),
                                 args.out / "peft-adapter")
    out["peft"] = {k: v for k, v in result.as_json().items() if k != "losses"}
    out["peft"]["loss_curve"] = [round(x, 3) for x in result.losses[:: max(1, len(result.losses) // 20)]]
    out["peft"]["wall_s"] = round(time.perf_counter() - started, 1)
    out["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
    print(json.dumps(out, indent=1), flush=True)

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.bfloat16).to("cuda")
    out["score_base"] = score(model, probes, groups, conds)
    model = PeftModel.from_pretrained(model, str(args.out / "peft-adapter")).to("cuda")
    out["score_adapted"] = score(model, probes, groups, conds)
    del model
    torch.cuda.empty_cache()
    print(json.dumps({k: out[k] for k in ("score_base", "score_adapted")}, indent=1), flush=True)

    proc = subprocess.run([sys.executable, __file__, "--gguf", str(args.gguf), "--data", str(args.data),
                           "--out", str(args.out), "--unsloth-only", "--unsloth-minutes",
                           str(args.unsloth_minutes)], capture_output=True, text=True,
                          env={**os.environ})
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    try:
        out.update(json.loads(last))
    except ValueError:
        out["unsloth"] = {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-1500:]}"}
    (args.out / "gpu.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out.get("unsloth"), indent=1))


if __name__ == "__main__":
    main()

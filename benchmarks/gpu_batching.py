"""On a CUDA machine: how much faster does codelearn's training loop run when a step's samples are
packed into one sequence, or when a step holds more samples? Tokens/s and GPU load per setting.

    python benchmarks/gpu_batching.py --data data.npz --seconds 40 --out DIR

`data.npz` holds one real `codelearn train` split's encoded samples (`benchmarks/learning.py
--gpu-data`), so sequence lengths are what a user's run trains on. The models are the default
0.5B's and the catalogue's 1.5B's architectures with random weights (`--arch`): a machine that
cannot download the weights still measures their speed, which does not depend on the values.
The same loop as `codelearn train` (PeftTrainer, LoRA r16 on every linear layer, bf16 weights)
runs for `--seconds` per setting, packed as the setting says (`--shipped`: as the loop packs for
users on this device, which shows what a user gets); tokens/s is counted after the first 5 s (CUDA warm-up). Before
timing, it checks on this GPU that a packed sequence scores each sample as it scores alone (the
premise of packing). Writes DIR/batching.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Qwen2.5-Coder architectures (the weights' values do not change the speed)
ARCHS = {
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, tie_word_embeddings=True),
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, tie_word_embeddings=True),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, tie_word_embeddings=True),  # a CPU smoke test of this script
}
SETTINGS = [(4, 0), (4, 512), (4, 2048), (16, 8192), (32, 16384)]  # (samples per step, pack tokens)


def random_base(name: str, folder: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    if (folder / "config.json").is_file():
        return folder
    config = Qwen2Config(vocab_size=151936, max_position_embeddings=32768, rope_theta=1e6,
                         rms_norm_eps=1e-6, **ARCHS[name])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    return folder


def packing_check(base: Path, samples, device: str) -> dict:
    """Each sample's hidden states packed into one sequence (positions restarting at each sample,
    as the loop packs) against the sample alone: ~0 when the attention keeps samples apart. The
    control packs with running positions (samples see each other), which must differ: random
    weights predict every token alike, so a loss comparison could not fail, the hidden states can."""
    import torch
    from transformers import AutoModelForCausalLM

    def relative(a, b) -> float:
        return float((a.float() - b.float()).norm() / b.float().norm())

    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = AutoModelForCausalLM.from_pretrained(str(base), dtype=dtype).to(device).eval()
        ids = torch.tensor([[t for s in samples for t in s.ids]], device=device)
        restart = torch.tensor([[p for s in samples for p in range(len(s.ids))]], device=device)
        running = torch.arange(ids.shape[1], device=device)[None]
        with torch.no_grad():
            packed = model.model(input_ids=ids, position_ids=restart, use_cache=False).last_hidden_state[0]
            leaky = model.model(input_ids=ids, position_ids=running, use_cache=False).last_hidden_state[0]
            diffs, control, at = [], [], 0
            for s in samples:
                alone = model.model(input_ids=torch.tensor([s.ids], device=device), use_cache=False).last_hidden_state[0]
                span = slice(at, at + len(s.ids))
                diffs.append(relative(packed[span], alone))
                control.append(relative(leaky[span], alone))
                at += len(s.ids)
        name = str(dtype).split(".")[-1]
        out[name] = {"packed_vs_alone": round(max(diffs), 5), "control_running_positions": round(max(control[1:]), 5)}
        del model
    return {"relative_hidden_state_diff": out, "attn": "sdpa (transformers default)"}


class GpuLoad:
    """Mean GPU utilisation while a run goes on (NVML through torch)."""

    def __init__(self) -> None:
        self.readings: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        import torch

        while torch.cuda.is_available() and not self.stop.wait(0.5):
            try:
                self.readings.append(torch.cuda.utilization())
            except Exception:  # no NVML: no reading
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def mean(self) -> float | None:
        tail = self.readings[10:] or self.readings  # after the warm-up
        return round(sum(tail) / len(tail), 1) if tail else None


def timed_run(base: Path, train, accum: int, pack: int, seconds: float, out: Path, shipped: bool) -> dict:
    import torch

    from codelearn.train.trainers import loop

    if not shipped:  # the packing asked for, not the loop's own choice for this device
        loop.pack_limit = lambda config, samples, **_: config.pack_tokens

    from codelearn.train.trainers.base import TrainConfig
    from codelearn.train.trainers.peft import PeftTrainer

    marks: list[tuple[float, float]] = []  # (seconds, tokens) after each sequence

    def progress(state) -> None:
        marks.append((state.seconds, state.tokens_per_s * state.seconds))

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    config = TrainConfig(max_minutes=seconds / 60, dtype="bf16", grad_accum=accum, pack_tokens=pack)
    with GpuLoad() as load:
        result = PeftTrainer().train(base, train, config, out, progress)
    warm = [m for m in marks if m[0] >= 5.0] or marks
    (t0, n0), (t1, n1) = warm[0], marks[-1]
    return {"samples_per_step": accum, "pack_tokens": result.pack_tokens, "steps": result.steps, "tokens": result.tokens,
            "tokens_per_s": round((n1 - n0) / max(1e-9, t1 - t0)), "tokens_per_s_with_warmup":
            round(result.tokens_per_s), "gpu_util_pct": load.mean(),
            "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2) if cuda else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--arch", default="0.5b,1.5b")
    parser.add_argument("--settings", default="", help="e.g. 4:0,16:8192 (default: all of SETTINGS)")
    parser.add_argument("--shipped", action="store_true",
                        help="let the loop pack as it does for users on this device (pack tokens ignored)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import torch

    from benchmarks.gpu_train import load_data
    from codelearn.machine import this_machine
    from codelearn.train.trainers.loop import trainable

    args.out.mkdir(parents=True, exist_ok=True)
    train, _, _, _ = load_data(args.data)
    train = trainable(train)
    settings = ([tuple(int(x) for x in s.split(":")) for s in args.settings.split(",")] if args.settings
                else SETTINGS)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    report: dict = {"machine": this_machine().summary(),
                    "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
                    "torch": torch.__version__, "samples": len(train),
                    "mean_sample_tokens": round(sum(len(s.ids) for s in train) / len(train), 1), "runs": []}
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}), flush=True)
    for arch in args.arch.split(","):
        base = random_base(arch, Path("/tmp") / f"random-{arch}")
        if arch == args.arch.split(",")[0]:
            report["packing_check"] = packing_check(base, train[:4], device)
            print(json.dumps(report["packing_check"]), flush=True)
        for accum, pack in settings:
            row = {"arch": arch, **timed_run(base, train, accum, pack, args.seconds, args.out / "adapter", args.shipped)}
            report["runs"].append(row)
            print(json.dumps(row), flush=True)
            (args.out / "batching.json").write_text(json.dumps(report, indent=1))
    print("\n| model | samples/step | pack tokens | tokens/s | GPU load % | peak GB |\n|---|---|---|---|---|---|")
    for r in report["runs"]:
        print(f"| {r['arch']} | {r['samples_per_step']} | {r['pack_tokens'] or 'off'} | {r['tokens_per_s']:,} "
              f"| {r['gpu_util_pct']} | {r['peak_gpu_gb']} |")


if __name__ == "__main__":
    main()

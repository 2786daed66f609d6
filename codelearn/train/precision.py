"""Which precision trains fastest here: measured once per machine, never assumed.

bf16 is fast only where the CPU has AVX512-BF16 or AMX. On an AVX2-only CPU (most AMD
Zen 2/3 and recent Intel laptops) torch's bf16 matmul is ~80x slower than fp32 and even
autocast costs ~5x, so a default taken from one machine stalls training for hours on
another. `train_dtype = auto` times one decoder-block-sized matmul, forward and backward,
in each precision (well under a second), caches the timings under the machine's key
(CPU model, flags, torch version) and takes the fastest; fp32 wins ties because it is exact,
bf16 weights win near-ties with autocast because the real loop favours them (`_weights_tie`).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from codelearn.paths import user_cache_dir, write_json

log = logging.getLogger(__name__)

# fp32 weights and math; fp32 weights under bf16 autocast; bf16 weights under autocast
# (LoRA weights stay fp32 in every case).
PRECISIONS = ("fp32", "bf16-autocast", "bf16")
SETTINGS = ("auto", *PRECISIONS)
SMALL_MODEL_PARAMS = 50_000_000  # below this fp32 is as fast in practice, and exact
MIN_SPEEDUP = 1.15  # bf16 must beat fp32 by this much to be worth its rounding
PROBE_SHAPE = (64, 896, 1024)  # tokens x hidden x ffn: a slice of a 0.5B model's MLP
PROBE_BUDGET_S = 0.1  # per precision, after one warm-up call

Measure = Callable[[], dict[str, float]]


@dataclass(frozen=True)
class Choice:
    """The precision a run trains in, and why (shown by --dry-run and in report.json)."""

    precision: str
    reason: str
    timings_ms: dict[str, float] = field(default_factory=dict)  # the probe's, when one ran

    def as_json(self) -> dict:
        return {"precision": self.precision, "reason": self.reason, "probe_ms": self.timings_ms}


def choose_precision(setting: str, *, params: int, device: str = "cpu", bf16_cuda: bool = False,
                     measure: Measure | None = None) -> Choice:
    """The precision for `setting` (auto or one of PRECISIONS) on this machine."""
    if setting in PRECISIONS:
        return Choice(setting, "set by train_dtype")
    if setting != "auto":
        from codelearn.errors import CodelearnError

        raise CodelearnError(f"Unknown train_dtype {setting!r}.", f"Use one of: {', '.join(SETTINGS)}.")
    if device.startswith("cuda"):
        return (Choice("bf16", "CUDA GPU with bf16 support") if bf16_cuda
                else Choice("fp32", "this CUDA GPU has no bf16 support"))
    if params < SMALL_MODEL_PARAMS:
        return Choice("fp32", f"small model ({params / 1e6:.1f}M parameters): fp32 is as fast and exact")
    timings = (measure or cached_probe)()
    return pick(timings)


def decide(setting: str, weights) -> Choice:
    """The precision a run on this machine trains `weights` (a GGUF file or a Hugging Face
    folder) in. Works without importing torch (a dry run): the probe then runs in a child."""
    if setting in PRECISIONS:
        return Choice(setting, "set by train_dtype")
    device, bf16_cuda = _device()
    return choose_precision(setting, params=base_params(weights), device=device, bf16_cuda=bf16_cuda)


def base_params(weights) -> int:
    """A decoder's parameter count, 12 x hidden^2 per layer, read from its config or GGUF header."""
    from pathlib import Path

    weights = Path(weights)
    if weights.is_dir():
        config = json.loads((weights / "config.json").read_text())
        hidden, layers = config.get("hidden_size", 0), config.get("num_hidden_layers", 0)
    else:
        from codelearn.llm.gguf_header import read_gguf_info

        info = read_gguf_info(weights)
        hidden = info.metadata.get(f"{info.architecture}.embedding_length", 0)
        layers = info.metadata.get(f"{info.architecture}.block_count", 0)
    return int(hidden) ** 2 * int(layers) * 12


def _device() -> tuple[str, bool]:
    """(cpu | cuda, whether the GPU does bf16); without torch loaded, a visible NVIDIA driver
    stands in for CUDA."""
    torch = sys.modules.get("torch")
    if torch is None:
        import shutil

        return ("cuda", True) if shutil.which("nvidia-smi") else ("cpu", False)
    if torch.cuda.is_available():
        return "cuda", bool(torch.cuda.is_bf16_supported())
    return "cpu", False


def pick(timings: dict[str, float]) -> Choice:
    """The fastest measured precision; bf16 only when it beats fp32 by MIN_SPEEDUP."""
    from codelearn.machine import this_machine

    fp32 = timings.get("fp32")
    shown = ", ".join(f"{p} {timings[p]:.1f} ms" for p in PRECISIONS if p in timings)
    where = this_machine().cpu
    if not fp32:
        return Choice("fp32", f"no probe result; fp32 is safe everywhere ({where})", timings)
    best = min((p for p in PRECISIONS if p in timings), key=lambda p: timings[p])
    if best == "bf16-autocast" and _weights_tie(timings):
        return Choice("bf16", f"{fp32 / timings['bf16']:.1f}x faster than fp32 on {where}, and within "
                      f"{MIN_SPEEDUP:.2f}x of autocast, which also recasts every frozen weight each step "
                      f"({shown})", timings)
    if best != "fp32" and fp32 / timings[best] >= MIN_SPEEDUP:
        return Choice(best, f"{fp32 / timings[best]:.1f}x faster than fp32 on {where} ({shown})", timings)
    slowest = max(timings.values()) / fp32
    why = (f"bf16 is {slowest:.0f}x slower on {where}" if slowest >= 2
           else f"bf16 is not {MIN_SPEEDUP:.2f}x faster on {where}")
    return Choice("fp32", f"{why} ({shown})", timings)


def _weights_tie(timings: dict[str, float]) -> bool:
    """bf16 weights pay where the probe cannot see it: autocast keeps fp32 weights and casts each
    frozen one to bf16 again at every forward, a cost one matmul hides (on 2 AMX cores the probe
    tied them, 0.84 against 0.89 ms, while the real LoRA loop ran 82 against 100 tokens/s). So
    bf16 weights win unless autocast is MIN_SPEEDUP faster, when bf16 beats fp32 by that much."""
    weights, autocast, fp32 = timings.get("bf16"), timings["bf16-autocast"], timings["fp32"]
    return bool(weights) and fp32 / weights >= MIN_SPEEDUP and weights / autocast < MIN_SPEEDUP


def measure_here(torch, shape: tuple[int, int, int] = PROBE_SHAPE) -> dict[str, float]:
    """Milliseconds for one forward + backward (input gradient, as under LoRA) of a
    tokens x hidden x ffn linear layer in each precision; the best of a few calls."""
    tokens, hidden, ffn = shape
    gen = torch.Generator().manual_seed(0)
    x32 = torch.randn(tokens, hidden, generator=gen)
    w32 = torch.randn(ffn, hidden, generator=gen) / hidden ** 0.5
    timings = {}
    for precision in PRECISIONS:
        weight = w32.to(torch.bfloat16) if precision == "bf16" else w32
        x = (x32.to(torch.bfloat16) if precision == "bf16" else x32).clone().requires_grad_(True)

        def call() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision != "fp32"):
                y = torch.nn.functional.linear(x, weight)
            y.float().sum().backward()

        timings[precision] = _best_of(call)
    return timings


def _best_of(call: Callable[[], None]) -> float:
    started = time.perf_counter()
    call()  # warm-up: kernels chosen, buffers allocated
    first = time.perf_counter() - started
    if first > PROBE_BUDGET_S / 2:  # slow even allowing for the warm-up: that is the answer
        return round(first * 1000, 3)
    best, spent = float("inf"), 0.0
    while spent < PROBE_BUDGET_S:
        started = time.perf_counter()
        call()
        took = time.perf_counter() - started
        best, spent = min(best, took), spent + took
        if took > PROBE_BUDGET_S / 2:  # slow enough that one more call tells nothing new
            break
    return round(best * 1000, 3)


def cache_file():
    return user_cache_dir() / "precision.json"


def cached_probe() -> dict[str, float]:
    """The probe's timings for this machine: from the cache, or measured (in this process when
    torch is loaded, else in a child process so that the caller stays torch-free)."""
    from codelearn.machine import this_machine

    machine = this_machine()
    cache = _read_cache()
    if machine.key() in cache:
        return cache[machine.key()]["probe_ms"]
    timings = measure_here(sys.modules["torch"]) if "torch" in sys.modules else _measure_in_child()
    if not timings:
        return timings  # not cached: the next run measures again
    cache[machine.key()] = {"probe_ms": timings, "machine": machine.as_json(),
                            "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json(cache_file(), cache)
    log.info("precision probe on %s: %s", machine.cpu, timings)
    return timings


def _read_cache() -> dict:
    try:
        data = json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _measure_in_child() -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-m", "codelearn.train.precision"], capture_output=True,
                          text=True, timeout=120, check=False)
    if proc.returncode != 0:
        log.warning("precision probe failed: %s", proc.stderr.strip()[-500:])
        return {}
    return json.loads(proc.stdout)


def _main() -> None:
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    sys.stdout.write(json.dumps(measure_here(torch)) + "\n")


if __name__ == "__main__":
    _main()

"""From a trained adapter to a file `ask` can serve, with llama.cpp's own tools.

`gguf` (what the user asked for): merge the adapter into the base weights, save
model and tokenizer, convert with llama.cpp's converter (in a subprocess), then
requantize to the serving model's type with llama.cpp's quantizer. `adapter`:
convert only the LoRA adapter to GGUF and serve it on top of the unchanged base
(no second quantization: nothing of the training is rounded away). Either way
the result is loaded and generates a few tokens before anyone may promote it.
`scaled_adapter` makes a copy of an adapter whose learned change is scaled (a step
part of the way from the base to the trained model), which either export serves.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from codelearn.errors import CodelearnError

log = logging.getLogger(__name__)
EXPORTS = ("gguf", "adapter")


@dataclass
class ExportResult:
    """The files to serve and what each step cost."""

    kind: str  # gguf | adapter
    model: Path  # the GGUF to load (the base itself for adapter exports)
    adapter: Path | None
    quant: str
    seconds: dict[str, float] = field(default_factory=dict)
    size: int = 0  # bytes the export added on disk
    smoke: str = ""

    def as_json(self) -> dict:
        return {"kind": self.kind, "model": str(self.model), "adapter": str(self.adapter) if self.adapter else None,
                "quant": self.quant, "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
                "size": self.size, "smoke": self.smoke}


class _Clock:
    def __init__(self, result: ExportResult) -> None:
        self.result = result

    def __call__(self, step: str, started: float) -> None:
        self.result.seconds[step] = time.perf_counter() - started


def export_gguf(base_dir: Path, adapter_dir: Path, work: Path, *, quant: str, converter: Path,
                log_file: Path | None = None) -> ExportResult:
    """Merge → convert to F16 GGUF → requantize to `quant` (F16/F32: no requantization)."""
    from codelearn.llm.llama_backend import quantize_gguf
    from codelearn.models.converter import run_convert_hf
    from codelearn.train.hf import merge_adapter

    result = ExportResult("gguf", work / f"model-{quant.lower()}.gguf", None, quant)
    clock = _Clock(result)
    started = time.perf_counter()
    merged = merge_adapter(base_dir, adapter_dir, work / "merged")
    clock("merge", started)
    started = time.perf_counter()
    outtype = "f32" if quant == "F32" else "f16"
    wide = run_convert_hf(merged, work / f"model-{outtype}.gguf", outtype, converter=converter, log_file=log_file)
    clock("convert", started)
    shutil.rmtree(merged, ignore_errors=True)
    if quant in ("F16", "F32"):
        wide.replace(result.model)
    else:
        started = time.perf_counter()
        quantize_gguf(wide, result.model, quant)
        clock("quantize", started)
        wide.unlink()
    result.size = result.model.stat().st_size
    return _smoke(result)


def export_adapter(base_gguf: Path, base_dir: Path, adapter_dir: Path, work: Path, *, converter: Path,
                   log_file: Path | None = None) -> ExportResult:
    """The LoRA adapter as a GGUF, served on top of `base_gguf`."""
    from codelearn.models.converter import run_convert_lora

    result = ExportResult("adapter", base_gguf, work / "adapter.gguf", "adapter")
    started = time.perf_counter()
    run_convert_lora(adapter_dir, base_dir, result.adapter, "f16", converter=converter, log_file=log_file)
    _Clock(result)("convert", started)
    result.size = result.adapter.stat().st_size
    return _smoke(result)


def scaled_adapter(adapter_dir: Path, scale: float, out_dir: Path) -> Path:
    """A copy of the PEFT adapter in `adapter_dir` whose change to the base is `scale` times the
    trained one: LoRA adds (alpha / rank) * B @ A, so scaling alpha scales the change, and both the
    merge (peft) and llama.cpp's adapter converter read alpha from adapter_config.json. Between the
    base (0) and the trained model (1), the weights are interpolated (as in WiSE-FT)."""
    if not 0 < scale <= 1:
        raise CodelearnError(f"An adapter scale must be in (0, 1], not {scale}.",
                             'Set forget_scales to numbers between 0 and 1, e.g. "0.75,0.5".')
    shutil.rmtree(out_dir, ignore_errors=True)
    shutil.copytree(adapter_dir, out_dir)
    config_file = out_dir / "adapter_config.json"
    config = json.loads(config_file.read_text())
    if config.get("alpha_pattern") or config.get("rank_pattern"):
        raise CodelearnError(f"{adapter_dir} has per-module LoRA alphas or ranks; codelearn cannot scale it.",
                             "Set forget_scales to empty for this trainer.")
    config["lora_alpha"] = config["lora_alpha"] * scale
    config_file.write_text(json.dumps(config, indent=2))
    return out_dir


def _smoke(result: ExportResult) -> ExportResult:
    from codelearn.llm.llama_backend import smoke_generate

    started = time.perf_counter()
    try:
        result.smoke = smoke_generate(result.model, result.adapter)
    except CodelearnError as exc:
        raise CodelearnError(f"The exported model does not load in llama.cpp ({exc.message}).",
                             "The serving model was left unchanged; run with --debug and report it.") from exc
    _Clock(result)("smoke_test", started)
    return result


def export_quant(setting: str, serving_type: str) -> str:
    """The quantization to export to: the setting, or the serving model's own type."""
    if setting and setting != "same":
        return setting.upper()
    if serving_type in ("unknown", "", None) or serving_type.isdigit():
        return "Q8_0"
    return serving_type

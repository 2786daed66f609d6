"""QLoRA with unsloth on a CUDA GPU (the `gpu` extra).

Only unsloth's model loading and LoRA wrapping are used; its own GGUF export
clones and downloads llama.cpp at run time, so export goes through llama.cpp's
converter like every other backend.
"""

from __future__ import annotations

from pathlib import Path

from codelearn.corpus.formats import Encoded
from codelearn.train.trainers.base import StepProgress, TrainConfig, TrainResult
from codelearn.train.trainers.loop import run_loop
from codelearn.train.trainers.peft import TARGET_MODULES


class UnslothTrainer:
    name = "unsloth"

    def unavailable(self) -> str | None:
        import importlib.util

        if importlib.util.find_spec("unsloth") is None:
            return "unsloth is not installed (pip install 'codelearn[gpu]')"
        try:
            import torch
        except ImportError:
            return "torch is not installed"
        if not torch.cuda.is_available():
            return "no CUDA GPU is visible"
        return None

    def train(self, base_dir: Path, data: list[Encoded], config: TrainConfig, out_dir: Path,
              progress: StepProgress | None = None) -> TrainResult:
        import unsloth  # noqa: F401  (must be imported before transformers to patch it)
        from unsloth import FastLanguageModel

        import importlib.util

        ensure_pad_token(base_dir)
        longest = max((len(d.ids) for d in data), default=512)
        four_bit = importlib.util.find_spec("bitsandbytes") is not None  # QLoRA; else 16-bit LoRA
        model, _ = FastLanguageModel.from_pretrained(model_name=str(base_dir), max_seq_length=longest,
                                                     load_in_4bit=four_bit, dtype=None)
        model = FastLanguageModel.get_peft_model(
            model, r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
            target_modules=TARGET_MODULES, use_gradient_checkpointing="unsloth", random_state=config.seed)
        return run_loop(model, data, config, out_dir, backend=self.name, device="cuda",
                        dtype="bf16" if not four_bit else "nf4+bf16", progress=progress)


def ensure_pad_token(base_dir: Path) -> None:
    """unsloth refuses a tokenizer without a pad token (a GGUF-derived Qwen has none); codelearn
    trains one sequence at a time and never pads, so naming one changes nothing else."""
    import json

    config_file = base_dir / "tokenizer_config.json"
    if not config_file.is_file():
        return
    config = json.loads(config_file.read_text())
    if config.get("pad_token"):
        return
    tokens = base_dir / "tokenizer.json"
    known = tokens.read_text() if tokens.is_file() else ""
    pad = next((t for t in ("<|endoftext|>", "<|fim_pad|>", "<pad>", "<unk>") if f'"{t}"' in known
                and t != config.get("eos_token")), None)
    if pad is None:
        return  # unsloth then adds one of its own
    config["pad_token"] = pad
    config_file.write_text(json.dumps(config, indent=2))

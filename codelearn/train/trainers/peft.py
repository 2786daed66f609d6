"""LoRA with transformers + peft: the CPU (and plain CUDA) trainer."""

from __future__ import annotations

import os
from pathlib import Path

from codelearn.corpus.formats import Encoded
from codelearn.train.trainers.base import StepProgress, TrainConfig, TrainResult
from codelearn.train.precision import decide
from codelearn.train.trainers.loop import run_loop

# Every linear layer of a decoder block; the output layer (lm_head) stays frozen:
# llama.cpp's LoRA converter refuses it and it is the part most tied to the vocabulary.
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class PeftTrainer:
    name = "peft"

    def unavailable(self) -> str | None:
        try:
            import peft  # noqa: F401
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError:
            return "torch, transformers and peft are not installed (pip install 'codelearn[train]')"
        return None

    def train(self, base_dir: Path, data: list[Encoded], config: TrainConfig, out_dir: Path,
              progress: StepProgress | None = None) -> TrainResult:
        import warnings

        import torch
        from peft import LoraConfig, get_peft_model

        # peft calls a transformers method that transformers 5 deprecates; not the user's concern.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

        from codelearn.train.hf import transformers

        tf = transformers()
        torch.manual_seed(config.seed)
        torch.set_num_threads(config.threads or len(os.sched_getaffinity(0)))
        device = "cuda" if torch.cuda.is_available() else "cpu"
        choice = decide(config.dtype, base_dir)
        dtype = choice.precision
        model = tf.AutoModelForCausalLM.from_pretrained(
            str(base_dir), dtype=torch.bfloat16 if dtype == "bf16" else torch.float32).to(device)
        model.config.use_cache = False
        present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                          target_modules=[m for m in TARGET_MODULES if m in present], task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)  # adapter weights stay fp32 under a bf16 base
        result = run_loop(model, data, config, out_dir, backend=self.name, device=device, dtype=dtype,
                          progress=progress)
        result.precision = choice.as_json()
        return result

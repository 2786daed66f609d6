"""What every trainer offers, and the registry that picks one.

`peft` (LoRA with transformers + peft) runs on a CPU or a CUDA GPU; `unsloth`
(QLoRA) needs CUDA and the `gpu` extra. `auto` takes unsloth when it can run,
else peft. Both train the same adapter shape on the same encoded samples and
write a peft adapter folder, so export and the gate do not care which ran.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from codelearn.corpus.formats import Encoded
from codelearn.errors import CodelearnError


@dataclass(frozen=True)
class LoopState:
    """Where a training loop is, reported after every sequence (a step can take minutes)."""

    step: int  # optimiser steps done
    steps: int  # planned
    sequences: int  # done
    sequences_planned: int
    loss: float | None  # the last sequence's next-token loss
    tokens_per_s: float
    seconds: float
    budget_s: float = 0.0  # 0: no time limit

    @property
    def eta_s(self) -> float | None:
        """Seconds left: the data or the budget, whichever ends first (None before a sequence)."""
        from codelearn.progress import time_left

        return time_left(self.seconds, self.sequences, self.sequences_planned, self.budget_s)


StepProgress = Callable[[LoopState], None]


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters and budget of one run."""

    rank: int = 16
    alpha: int = 32  # 2 x rank: "LoRA learns less and forgets less" (arXiv 2405.09673)
    dropout: float = 0.0
    lr: float = 2e-4
    grad_accum: int = 4
    max_steps: int = 0  # 0: until the time budget or MAX_PASSES over the data
    max_minutes: float = 0.0  # 0: no time limit
    warmup_steps: int = 4
    decay_steps: int = 0  # >0: the rate decays over this many steps, not the planned ones (see loop.py)
    kl_weight: float = 0.0  # >0: penalise drifting from the base model's predictions
    dtype: str = "auto"  # auto | fp32 | bf16-autocast | bf16 (see train/precision.py)
    threads: int = 0
    seed: int = 0
    pack_tokens: int = 0  # >0: a step's samples are joined into sequences of up to this many tokens
    checkpoint_minutes: float = 0.0  # >0: save this often (see trainers/checkpoints.py)
    snapshots: bool = False  # each checkpoint also keeps the adapter in out_dir/checkpoints (a learning curve)
    resume_file: str = ""  # each checkpoint replaces the state here; a run with the same key goes on from it
    resume_key: str = ""  # what must match to resume: data, base and settings
    warm_file: str = ""  # a fresh run starts its adapter from this state's weights (carry.py)


@dataclass
class TrainResult:
    """What a run did."""

    backend: str
    adapter_dir: str
    steps: int = 0
    sequences: int = 0
    tokens: int = 0  # tokens through the model (context included)
    trained_tokens: int = 0  # tokens the loss counted
    seconds: float = 0.0
    tokens_per_s: float = 0.0
    first_loss: float | None = None  # next-token loss on the training data (without the KL term)
    last_loss: float | None = None
    stopped: str = ""  # steps | time | data
    partial_step: int = 0  # sequences of the last step when the budget ended it early (applied)
    pack_tokens: int = 0  # the longest sequence a step's samples were packed into (0: none packed)
    peak_rss_mb: float = 0.0
    device: str = "cpu"
    dtype: str = "fp32"
    precision: dict = field(default_factory=dict)  # the precision choice and why
    checkpoints: list[dict] = field(default_factory=list)  # adapter snapshots saved on the way
    resumed: dict = field(default_factory=dict)  # where a killed run's state took over (steps, seconds, tokens)
    warm_started: bool = False  # the adapter started from `warm_file`'s weights, not from zero
    losses: list[float] = field(default_factory=list)

    def as_json(self) -> dict:
        data = asdict(self)
        data["losses"] = [round(x, 4) for x in self.losses]
        return data


class Trainer(Protocol):
    name: str

    def unavailable(self) -> str | None:
        """Why this backend cannot run here (None: it can)."""

    def train(self, base_dir: Path, data: list[Encoded], config: TrainConfig, out_dir: Path,
              progress: StepProgress | None = None) -> TrainResult: ...


def _registry() -> dict[str, Callable[[], Trainer]]:
    from codelearn.train.trainers.peft import PeftTrainer
    from codelearn.train.trainers.unsloth import UnslothTrainer

    return {"peft": PeftTrainer, "unsloth": UnslothTrainer}


def choose_trainer(name: str = "auto") -> Trainer:
    """The trainer for the `train_backend` setting."""
    registry = _registry()
    if name == "auto":
        unsloth = registry["unsloth"]()
        return unsloth if unsloth.unavailable() is None else registry["peft"]()
    if name not in registry:
        raise CodelearnError(f"Unknown train_backend {name!r}.", f"Use auto or one of: {', '.join(registry)}.")
    trainer = registry[name]()
    why = trainer.unavailable()
    if why:
        raise CodelearnError(f"The {name} trainer cannot run here: {why}.",
                             "Set train_backend = auto (or peft) to train on this machine.")
    return trainer

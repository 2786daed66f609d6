"""The training loop both backends share (torch only; the model arrives wrapped).

Batch size 1 with gradient accumulation: samples vary in length and a CPU does
no better with padded batches, so every token computed is a real one. A step's
short samples may be packed side by side into one sequence (`pack_tokens`; on a
GPU always a whole step), each still scored as if alone: the same gradient from
fewer, longer sequences. The loss counts only the tokens a sample marks as
trained (the target after its context, an answer after its prompt). Stops at the
step limit, the time budget or the end of three passes over the data, whichever
comes first, and always saves. The clock is read after every sequence, not every
step: on a slow CPU one step can take longer than the whole budget.
"""

from __future__ import annotations

import math
import random
import resource
import time
from pathlib import Path

from codelearn.corpus.formats import Encoded
from codelearn.train.trainers.base import LoopState, StepProgress, TrainConfig, TrainResult
from codelearn.train.trainers.checkpoints import (load_resume, load_weights, restore, save_resume,
                                                   save_snapshot)


MAX_PASSES = 3  # a small repo may be seen up to three times; more mostly memorises


def trainable(data: list[Encoded]) -> list[Encoded]:
    """The samples a run trains on: those with a token the loss counts."""
    return [d for d in data if d.trained_tokens and len(d.ids) > 1]


def planned_steps(config: TrainConfig, samples: int) -> int:
    """Steps until the step limit or MAX_PASSES over the data, whichever is fewer."""
    all_passes = max(1, MAX_PASSES * samples // max(1, config.grad_accum))
    return min(config.max_steps, all_passes) if config.max_steps else all_passes


def sample_order(count: int, seed: int) -> list[int]:
    """MAX_PASSES shuffled passes over the samples, each in a new order."""
    rng = random.Random(seed)
    order: list[int] = []
    for _ in range(MAX_PASSES):
        one = list(range(count))
        rng.shuffle(one)
        order += one
    return order


def _lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 10% over the planned steps. A run the clock ends long
    before them (a CPU night covers a fraction of a pass) keeps nearly its peak rate: measured
    better there than decaying by the budget's end (docs/learning.md). `decay_steps` plans the
    decay over other steps, so that a step-limited benchmark learns as a clock-ended run does."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def pack_step(samples: list[Encoded], limit: int) -> list[list[Encoded]]:
    """One step's samples, in order, joined into sequences of at most `limit` tokens (0: one
    sample a sequence). Whether fewer, longer sequences are faster depends on the CPU
    (`benchmarks/packing.py`; on 2 AMX cores they were not)."""
    packs: list[list[Encoded]] = []
    used = 0
    for sample in samples:
        if not packs or not limit or used + len(sample.ids) > limit:
            packs.append([])
            used = 0
        packs[-1].append(sample)
        used += len(sample.ids)
    return packs


def pack_limit(config: TrainConfig, samples: list[Encoded], *, backend: str, device: str) -> int:
    """The longest sequence a step's samples are packed into (0: one sample a sequence). On a GPU,
    always a whole step: the same gradient, and one sequence of ~200 tokens leaves the GPU idle
    (an H200 trained the 0.5B at 791 tokens/s one sample a sequence, 2,380 a step a sequence:
    docs/learning.md). On a CPU, what `train_pack` asked for. Never under unsloth, whose kernels
    were not checked to keep packed samples apart."""
    if backend == "unsloth":
        return 0
    if device.startswith("cuda"):
        return config.grad_accum * max((len(s.ids) for s in samples), default=0)
    return config.pack_tokens


def _per_sample_mean(torch, values, segment, counted, samples: int):
    """The mean of `values` over each sample's counted positions."""
    sums = torch.zeros(samples, device=values.device).index_add(0, segment[counted], values[counted])
    counts = torch.zeros(samples, device=values.device).index_add(
        0, segment[counted], torch.ones_like(values[counted]))
    return sums / counts.clamp(min=1)


def _sequence_loss(torch, model, pack: list[Encoded], kl_weight: float, device: str):
    """(what is optimised: the sum of each sample's mean next-token loss, plus its KL term; each
    sample's plain loss, reported). The samples sit side by side with their positions restarting
    at each, so none attends to another (transformers masks packed sequences by their position
    ids when no attention mask and no cache are given) and each is scored as if alone: the same
    gradient as one sample a sequence."""
    ids = torch.tensor([[t for s in pack for t in s.ids]], device=device)
    positions = torch.tensor([[p for s in pack for p in range(len(s.ids))]], device=device)
    segment = torch.tensor([i for i, s in enumerate(pack) for _ in s.ids], device=device)[1:]
    counted = torch.tensor([keep and p > 0 for s in pack for p, keep in enumerate(s.train)], device=device)[1:]
    logits = model(input_ids=ids, position_ids=positions, use_cache=False).logits[0, :-1].float()
    nll = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="none")
    plain = _per_sample_mean(torch, nll, segment, counted, len(pack))
    objective = plain.sum()
    if kl_weight > 0:
        with torch.no_grad(), model.disable_adapter():
            reference = model(input_ids=ids, position_ids=positions, use_cache=False).logits[0, :-1].float()
        log_p, log_q = torch.log_softmax(logits, -1), torch.log_softmax(reference, -1)
        kl = torch.sum(log_p.exp() * (log_p - log_q), -1)
        objective = objective + kl_weight * _per_sample_mean(torch, kl, segment, counted, len(pack)).sum()
    return objective, plain.detach().tolist()


class _Clock:
    """The loop's time: started, the budget's end, and the progress report after each sequence."""

    def __init__(self, config: TrainConfig, total: int, sequences: int, result: TrainResult,
                 progress: StepProgress | None) -> None:
        self.started = time.perf_counter() - result.seconds  # a resumed run's budget counts what it did
        self.budget = config.max_minutes * 60
        self.every = config.checkpoint_minutes * 60
        self.saved = int(result.seconds // self.every) if self.every else 0  # checkpoints taken so far
        self.total, self.sequences, self.result, self.progress = total, sequences, result, progress

    def checkpoint_due(self) -> bool:
        """True at most once per `checkpoint_minutes` of training, and counted as taken (never at
        the budget's end, when the final adapter is saved anyway)."""
        if not self.every or self.out_of_time() or self.result.seconds < self.every * (self.saved + 1):
            return False
        self.saved = int(self.result.seconds // self.every)
        return True

    def out_of_time(self) -> bool:
        return bool(self.budget) and time.perf_counter() - self.started >= self.budget

    def tick(self, loss: float | None) -> None:
        result = self.result
        result.seconds = time.perf_counter() - self.started
        result.tokens_per_s = result.tokens / result.seconds if result.seconds else 0.0
        if self.progress:
            self.progress(LoopState(result.steps, self.total, result.sequences, self.sequences, loss,
                                    result.tokens_per_s, result.seconds, self.budget))


def _accumulate(torch, model, samples: list[Encoded], config: TrainConfig, autocast, device: str,
                clock: _Clock, pack_tokens: int) -> list[float]:
    """Forward and backward over one step's samples (packed into sequences of `pack_tokens`),
    checking the budget after each sequence; returns the losses of the samples done (fewer than
    given when time ran out)."""
    result, losses = clock.result, []
    for pack in pack_step(samples, pack_tokens):
        with autocast:
            objective, plain = _sequence_loss(torch, model, pack, config.kl_weight, device)
        (objective / config.grad_accum).backward()
        losses += plain
        result.sequences += len(pack)
        result.tokens += sum(len(s.ids) for s in pack)
        result.trained_tokens += sum(s.trained_tokens for s in pack)
        clock.tick(losses[-1])
        if clock.out_of_time():
            break
    return losses


def _rescale(params, done: int, planned: int) -> None:
    """A step cut short by the budget is applied as a smaller step: its gradient is the mean
    over the sequences it did, not a fraction of a full step's."""
    for p in params:
        if p.grad is not None:
            p.grad.mul_(planned / done)


def run_loop(model, data: list[Encoded], config: TrainConfig, out_dir: Path, *, backend: str,
             device: str, dtype: str, progress: StepProgress | None = None) -> TrainResult:
    """Train `model` (a peft model) on `data`, save its adapter to `out_dir`. The budget is
    checked after every sequence, so a run ends within `max_minutes` plus one sequence."""
    import torch

    result = TrainResult(backend=backend, adapter_dir=str(out_dir), device=device, dtype=dtype)
    usable = trainable(data)
    order = sample_order(len(usable), config.seed)
    total = planned_steps(config, len(usable))
    planned = min(len(order), total * config.grad_accum)
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled="bf16" in dtype)
    pack_tokens = result.pack_tokens = pack_limit(config, usable, backend=backend, device=device)
    resume = Path(config.resume_file) if config.resume_file else None
    saved = load_resume(torch, resume, config.resume_key) if resume else None
    if saved is not None:
        restore(torch, saved, model, optimiser, result)
    elif config.warm_file:
        result.warm_started = load_weights(torch, Path(config.warm_file), model)
    clock = _Clock(config, total, planned, result, progress)
    model.train()
    result.stopped = "data"
    start = result.steps * config.grad_accum
    if saved is not None and clock.out_of_time():  # saved at its budget's end: nothing left to train
        start, result.stopped = planned, "time"
        result.partial_step = int(saved.get("partial_step", 0))  # that run's last step, as it was
    for cursor in range(start, planned, config.grad_accum):
        for group in optimiser.param_groups:
            group["lr"] = config.lr * _lr_factor(result.steps, config.warmup_steps, config.decay_steps or total)
        batch = [usable[i] for i in order[cursor:cursor + config.grad_accum]]
        losses = _accumulate(torch, model, batch, config, autocast, device, clock, pack_tokens)
        if len(losses) < len(batch):
            result.partial_step = len(losses)
            _rescale(params, len(losses), config.grad_accum)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        result.steps += 1
        result.losses.append(sum(losses) / len(losses))
        clock.tick(result.losses[-1])
        if cursor + config.grad_accum < planned and clock.checkpoint_due():  # the last step saves anyway
            if config.snapshots:
                save_snapshot(model, out_dir, result, _tail_mean(result.losses))
            if resume:
                save_resume(torch, resume, config.resume_key, model, optimiser, result)
        if clock.out_of_time() and cursor + config.grad_accum < planned:
            result.stopped = "time"
            break
    if result.stopped != "time":
        result.stopped = "steps" if config.max_steps and result.steps >= config.max_steps else "data"
    result.first_loss = result.losses[0] if result.losses else None
    result.last_loss = _tail_mean(result.losses)
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    model.save_pretrained(str(out_dir))
    if resume:  # the end too: a crash after training (export, gate) never trains it again
        save_resume(torch, resume, config.resume_key, model, optimiser, result)
    return result


def _tail_mean(losses: list[float], n: int = 5) -> float | None:
    tail = losses[-n:]
    return sum(tail) / len(tail) if tail else None

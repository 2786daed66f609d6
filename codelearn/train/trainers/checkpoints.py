"""What a training loop saves on the way: adapter snapshots (a learning curve from one run) and
the state a killed run resumes from (trainable weights, optimiser, progress), one file written
atomically, so a crash, `kill -9` or an out-of-memory costs at most `checkpoint_minutes`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from codelearn.train.trainers.base import TrainResult

PROGRESS_FIELDS = ("steps", "sequences", "tokens", "trained_tokens", "seconds")


def save_snapshot(model, out_dir: Path, result: TrainResult, loss: float | None) -> None:
    """The adapter as it is now, in `out_dir/checkpoints/step-N`, with what trained it so far."""
    folder = out_dir / "checkpoints" / f"step-{result.steps:06d}"
    model.save_pretrained(str(folder))
    point = {"dir": str(folder), **{k: getattr(result, k) for k in PROGRESS_FIELDS}, "loss": loss}
    point["seconds"] = round(point["seconds"], 1)
    (folder / "progress.json").write_text(json.dumps(point, indent=1))
    result.checkpoints.append(point)


def save_resume(torch, path: Path, key: str, model, optimiser, result: TrainResult) -> None:
    """Everything the loop needs to go on from here, replacing the previous state in one rename."""
    state = {"key": key, "progress": {k: getattr(result, k) for k in PROGRESS_FIELDS},
             "partial_step": result.partial_step,
             "losses": list(result.losses),
             "params": {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad},
             "optimiser": optimiser.state_dict()}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def load_resume(torch, path: Path, key: str) -> dict | None:
    """The saved state if it was saved by a run with this `key` (same data, base and settings)
    and is whole; None otherwise."""
    if not key or not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a torn or foreign file is simply not resumed from
        return None
    return state if isinstance(state, dict) and state.get("key") == key else None


def load_weights(torch, path: Path, model) -> bool:
    """Start `model`'s adapter from the trainable weights a state file holds (another run's, on other
    data: its optimiser, schedule and progress are not taken). False, and nothing changed, when the
    file is unreadable or its weights do not fit this model."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved = state["params"]
    except Exception:  # noqa: BLE001 - a torn or foreign file is simply not started from
        return False
    params = dict(model.named_parameters())
    if set(saved) != {n for n, p in params.items() if p.requires_grad} or any(
            tuple(v.shape) != tuple(params[n].shape) for n, v in saved.items()):
        return False
    _put_params(torch, params, saved)
    return True


def _put_params(torch, params: dict, saved: dict) -> None:
    """Copy saved trainable weights into the model's parameters (by name), in their device and dtype."""
    with torch.no_grad():
        for name, value in saved.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))


def restore(torch, state: dict, model, optimiser, result: TrainResult) -> None:
    """Put a saved state back: trainable weights, optimiser moments, counters and losses."""
    _put_params(torch, dict(model.named_parameters()), state["params"])
    optimiser.load_state_dict(state["optimiser"])
    for field in PROGRESS_FIELDS:
        setattr(result, field, state["progress"][field])
    result.losses = list(state["losses"])
    result.resumed = {"steps": result.steps, "seconds": round(result.seconds, 1), "tokens": result.tokens}

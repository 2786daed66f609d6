"""Nights that add up: training that goes on from the last promoted run.

On 2 CPU cores one night trains a fraction of a pass over a repo's data, and on slow CPUs, large
repos or larger models it ends before the held-out loss stops falling (on this project it fell
to ~600k tokens, then flattened: docs/learning.md). A promoted run whose
budget ended before its data did therefore keeps its training state (`carry.pt`, the same file a
killed run leaves, and `carry.json`: the key it was saved under and what it had trained). The next
run with the same data (nothing committed since, the same settings) goes on from that state with a
budget of its own on top, on the same schedule and sample order, instead of having nothing to do.

When the data changed (a commit), the next run starts from that state's adapter weights instead
of the base (`train_warm_start`): a fresh optimiser, schedule and sample order (another seed, so it
does not begin with the samples the last run began with), on the new data. Only where the split
allows it: the same base, trainer and LoRA shape, the same random hold-out, and a temporal cut at
or after the last run's, so that nothing now held out was trained on. Otherwise it starts from the
base. The gate judges each night's candidate against the serving model as always. A refused
candidate leaves the kept state to the serving model it belongs to: the next run does not go on
along the refused trajectory (it would train the same steps again) but starts from that state's
adapter with another seed (`refused` counts the tries). A state whose run is no longer the
repo's promoted model (rolled back, or another promoted by hand) is dropped.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from codelearn.paths import write_json

CARRIED_STOPS = ("time", "steps")  # a run the data ended (three passes) has nothing left to carry


@dataclass(frozen=True)
class Carried:
    """What the runs before this one trained, along the same trajectory."""

    run_id: str
    steps: int
    seconds: float
    tokens: int

    def budget(self, per_run_minutes: float, per_run_steps: int) -> tuple[float, int]:
        """The loop's budgets count what a resumed state trained: this run's own come on top (0 stays
        no limit)."""
        return (per_run_minutes + self.seconds / 60 if per_run_minutes else 0.0,
                per_run_steps + self.steps if per_run_steps else 0)

    def as_json(self) -> dict:
        return {"run_id": self.run_id, "steps": self.steps, "seconds": round(self.seconds, 1),
                "tokens": self.tokens}


@dataclass(frozen=True)
class Warm:
    """A promoted run's adapter that a run on changed data may start from, and its lineage."""

    run_id: str
    state: Path  # carry.pt: its trainable weights are what a warm start takes
    shape: str  # base, trainer and LoRA shape it was trained with (`warm_key`)
    split: dict = field(default_factory=dict)  # cut, seed and random_share of its split
    generation: int = 0  # data versions this lineage trained on before that run's
    tokens: int = 0  # tokens the whole lineage trained, that run's included
    refused: int = 0  # candidates refused since that run was promoted (each try gets its own seed)

    def as_json(self) -> dict:
        return {"run_id": self.run_id, "generation": self.generation, "tokens": self.tokens,
                "refused": self.refused}


def _paths(folder: Path) -> tuple[Path, Path]:
    return folder / "carry.pt", folder / "carry.json"


def pending(folder: Path) -> bool:
    """A decided run left training to go on with (none after a refusal: that trajectory is done)."""
    return _paths(folder)[1].is_file() and refusals(folder) == 0


def keep(folder: Path, resume: Path, key: str, run_id: str, progress: dict, lineage: dict) -> None:
    """Keep the state a promoted run saved at its end (`resume`) for the next run with data `key`
    (`lineage`: what a warm start on other data must match, see `Warm`)."""
    state, meta = _paths(folder)
    os.replace(resume, state)
    write_json(meta, {"key": key, "run_id": run_id, "steps": progress["steps"],
                      "seconds": progress["seconds"], "tokens": progress["tokens"], **lineage}, indent=None)


def drop(folder: Path) -> None:
    for path in _paths(folder):
        path.unlink(missing_ok=True)


def refuse(folder: Path) -> None:
    """A candidate was refused: the kept state stays the serving model's, and the next run starts
    from its adapter on a new trajectory instead of going on along this one."""
    data = _meta(folder)
    if data is None:
        return
    data["refused"] = int(data.get("refused", 0)) + 1
    data.pop("taken", None)
    write_json(_paths(folder)[1], data, indent=None)


def kept_run(folder: Path) -> str | None:
    """The run whose state is kept (None: none)."""
    data = _meta(folder)
    return str(data["run_id"]) if data and "run_id" in data else None


def refusals(folder: Path) -> int:
    """Candidates refused since the kept state's run was promoted."""
    try:
        return int((_meta(folder) or {}).get("refused", 0))
    except (TypeError, ValueError):
        return 0


def _meta(folder: Path) -> dict | None:
    try:
        data = json.loads(_paths(folder)[1].read_text())
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _read(folder: Path) -> tuple[str, Carried] | None:
    return _parsed(_meta(folder))


def _parsed(data: dict | None) -> tuple[str, Carried] | None:
    """carry.json's data key and what it carried, or None when it is missing or torn."""
    try:
        return data["key"], Carried(str(data["run_id"]), int(data["steps"]), float(data["seconds"]),
                                    int(data["tokens"]))
    except (KeyError, TypeError, ValueError):
        return None


def waiting(folder: Path) -> Carried | None:
    """What the next run on unchanged data goes on from, for `codelearn status`."""
    read = _read(folder)
    return read[1] if read else None


def take(folder: Path, key: str, resume: Path) -> Carried | None:
    """What earlier runs trained, if they trained on data `key` and no candidate was refused since:
    a copy of their state is put where the loop resumes from (once: a killed run's later state
    there stays), the kept one staying for a refusal. A state kept for other data stays, for
    `warm`; an unreadable one is removed."""
    state, meta = _paths(folder)
    data = _meta(folder) or {}
    read = _parsed(data)
    if read is None or not (state.is_file() or resume.is_file()):
        drop(folder)
        return None
    if read[0] != key or data.get("refused"):
        return None
    if state.is_file() and not (data.get("taken") and resume.is_file()):
        partial = resume.with_name(resume.name + ".part")
        shutil.copyfile(state, partial)
        os.replace(partial, resume)
        write_json(meta, {**data, "taken": True}, indent=None)
    return read[1]


@dataclass(frozen=True)
class Lineage:
    """Where a trajectory of training stands among the data versions it went through."""

    generation: int = 0  # data versions trained on before this one (its seed is offset by it)
    before_tokens: int = 0  # tokens trained on those earlier versions
    warm_from: str = ""  # the run whose adapter it started from ("": the base)
    attempt: int = 0  # candidates refused from that start before this try

    def seed(self, seed: int) -> int:
        """The training seed of this trajectory: another for each data version and each try."""
        return seed + self.generation + TRY_SEED_STRIDE * self.attempt

    def as_json(self) -> dict:
        return {"generation": self.generation, "before_tokens": self.before_tokens, "warm_from": self.warm_from,
                "attempt": self.attempt}


TRY_SEED_STRIDE = 1009  # tries from one start never share a seed with another generation's


def lineage(folder: Path) -> Lineage:
    """The kept state's lineage: what a run that goes on from it on the same data carries forward."""
    data = _meta(folder) or {}
    try:
        return Lineage(int(data.get("generation", 0)), int(data.get("before_tokens", 0)),
                       str(data.get("warm_from", "")), int(data.get("attempt", 0)))
    except (TypeError, ValueError):
        return Lineage()


def warm(folder: Path) -> Warm | None:
    """The kept state of a run on other data, as a start for this one (the caller checks that the
    shape and split allow it)."""
    data, state = _meta(folder), _paths(folder)[0]
    if not data or not state.is_file() or "shape" not in data:
        return None
    kept = lineage(folder)
    try:
        return Warm(str(data["run_id"]), state, str(data["shape"]), dict(data.get("split") or {}),
                    kept.generation, kept.before_tokens + int(data["tokens"]), int(data.get("refused", 0)))
    except (KeyError, TypeError, ValueError):
        return None


def why_not(warm: Warm, shape: str, split: dict, follows: Callable[[str, str], bool]) -> str:
    """Why a run with LoRA `shape` and `split` (its cut, seed and random_share) may not start from
    `warm`, or "" if it may. `follows(old, new)`: commit `new` is `old` or comes after it. A cut
    before the earlier run's would hold out code that run trained on; so would a run with a cut
    after one without."""
    old, new = warm.split.get("cut", ""), split.get("cut", "")
    if warm.shape != shape:
        return "another base, trainer or LoRA shape"
    if (warm.split.get("seed"), warm.split.get("random_share")) != (split.get("seed"), split.get("random_share")):
        return "another random hold-out"
    if new and not (old and follows(old, new)):
        return "this run's cut is not at or after that run's"
    return ""

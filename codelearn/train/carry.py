"""Nights that add up: training that goes on from the last promoted run.

On 2 CPU cores one night trains a fraction of a pass over a repo's data, and on slow CPUs, large
repos or larger models it ends before the held-out loss stops falling (on this project it fell
to ~600k tokens, then flattened: docs/learning.md). A promoted run whose
budget ended before its data did therefore keeps its training state (`carry.pt`, the same file a
killed run leaves, and `carry.json`: the key it was saved under and what it had trained). The next
run with the same data (nothing committed since, the same settings) goes on from that state with a
budget of its own on top, on the same schedule and sample order, instead of having nothing to do;
any change to the data starts again from the base. The gate judges each night's candidate against
the serving model as always, and a refusal ends the carrying.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

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


def _paths(folder: Path) -> tuple[Path, Path]:
    return folder / "carry.pt", folder / "carry.json"


def pending(folder: Path) -> bool:
    """A decided run left training to go on with."""
    return _paths(folder)[1].is_file()


def keep(folder: Path, resume: Path, key: str, run_id: str, progress: dict) -> None:
    """Keep the state a promoted run saved at its end (`resume`) for the next run with data `key`."""
    state, meta = _paths(folder)
    os.replace(resume, state)
    write_json(meta, {"key": key, "run_id": run_id, "steps": progress["steps"],
                      "seconds": progress["seconds"], "tokens": progress["tokens"]}, indent=None)


def drop(folder: Path) -> None:
    for path in _paths(folder):
        path.unlink(missing_ok=True)


def _read(folder: Path) -> tuple[str, Carried] | None:
    try:
        data = json.loads(_paths(folder)[1].read_text())
        return data["key"], Carried(str(data["run_id"]), int(data["steps"]), float(data["seconds"]),
                                    int(data["tokens"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def waiting(folder: Path) -> Carried | None:
    """What the next run on unchanged data goes on from, for `codelearn status`."""
    read = _read(folder)
    return read[1] if read else None


def take(folder: Path, key: str, resume: Path) -> Carried | None:
    """What earlier runs trained, if they trained on data `key`: their state is put where the loop
    resumes from (unless a killed run of this trajectory left a later one there). Anything else is
    stale and removed."""
    state = _paths(folder)[0]
    read = _read(folder)
    if read is None or read[0] != key or not (state.is_file() or resume.is_file()):
        drop(folder)
        return None
    if state.is_file():
        os.replace(state, resume)
    return read[1]

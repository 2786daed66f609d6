"""One training run per repo at a time, and cleaning up after runs that died."""

from __future__ import annotations

import shutil
from pathlib import Path

from codelearn.index.lock import WriterLock

REPORT = "report.json"
HEAVY = ("adapter", "merged", "base")


class TrainLock(WriterLock):
    """The index's flock, on its own file: training and indexing do not block each other."""

    def __init__(self, state: Path) -> None:
        super().__init__(state)
        self.path = state / "train.lock"
        self.pending_path = state / "train.pending"


def clean_stale_runs(runs: Path) -> list[str]:
    """Remove what runs without a report left behind (killed, out of memory): their
    weights and half-written files. Their logs stay, to read what happened."""
    cleaned = []
    if not runs.is_dir():
        return cleaned
    for run in sorted(p for p in runs.iterdir() if p.is_dir()):
        if (run / REPORT).is_file():
            continue
        for item in run.iterdir():
            if item.is_dir():
                shutil.rmtree(item, ignore_errors=True)
            elif item.suffix in (".gguf", ".partial", ".safetensors"):
                item.unlink(missing_ok=True)
        (run / REPORT).write_text('{"status": "died", "message": "the run stopped before it finished"}\n')
        cleaned.append(run.name)
    return cleaned
